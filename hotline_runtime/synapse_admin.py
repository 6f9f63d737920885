"""The parts of Synapse's admin API the hotline uses (aiohttp). Needs a server admin's token.

See docs/privacy.md for the erase recipe these calls carry out.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any
from urllib.parse import quote

import aiohttp

from hotline_runtime.errors import AdminApiError


class SynapseAdmin:
    def __init__(self, session: aiohttp.ClientSession, homeserver: str, token: str | None) -> None:
        self._http = session
        self._base = homeserver.rstrip("/")
        self._token = token

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *, auth: bool = True) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token}"} if auth else {}
        try:
            async with self._http.request(
                method, self._base + path, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=60)
            ) as response:
                data = await response.json(content_type=None)
                if response.status >= 400:
                    raise AdminApiError(f"{method} {path.split('?')[0]}", response.status, str(data.get("errcode", "")))
                return data or {}
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise AdminApiError(f"{method} {path.split('?')[0]}", None, type(error).__name__) from error

    async def delete_room(self, room_id: str, *, timeout: float = 120.0) -> None:
        """Delete a room with purge and wait until Synapse has finished."""
        path = f"/_synapse/admin/v2/rooms/{quote(room_id)}"
        started = await self._call("DELETE", path, {"purge": True, "block": False})
        delete_id = started["delete_id"]
        deadline = asyncio.get_running_loop().time() + timeout
        delay = 0.05
        while True:
            status = await self._call("GET", f"/_synapse/admin/v2/rooms/delete_status/{quote(delete_id)}")
            state = status.get("status")
            if state == "complete":
                return
            if state == "failed":
                raise AdminApiError("room delete", "failed", status.get("error", ""))
            if asyncio.get_running_loop().time() > deadline:
                raise AdminApiError("room delete", "timeout")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def deactivate(self, user_id: str, *, erase: bool = True) -> None:
        await self._call("POST", f"/_synapse/admin/v1/deactivate/{quote(user_id)}", {"erase": erase})

    async def exempt_from_rate_limits(self, user_id: str) -> None:
        await self._call(
            "POST",
            f"/_synapse/admin/v1/users/{quote(user_id)}/override_ratelimit",
            {"messages_per_second": 0, "burst_count": 0},
        )

    async def register(self, shared_secret: str, localpart: str, password: str, *, admin: bool) -> dict[str, Any]:
        """Create an account with the registration shared secret (tooling only, never the gateway)."""
        path = "/_synapse/admin/v1/register"
        nonce = (await self._call("GET", path, auth=False))["nonce"]
        message = "\x00".join((nonce, localpart, password, "admin" if admin else "notadmin"))
        mac = hmac.new(shared_secret.encode(), message.encode(), digestmod=hashlib.sha1)
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        return await self._call("POST", path, body, auth=False)
