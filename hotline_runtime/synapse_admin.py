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

from hotline_runtime.client_api import ClientApi, ClientApiError
from hotline_runtime.errors import AdminApiError
from hotline_runtime.retry import Backoff

# How often a purge is asked after: 50 ms at first, then at most every second.
DELETE_STATUS_POLL = Backoff(0.05, cap=1.0)


class SynapseAdmin:
    def __init__(self, session: aiohttp.ClientSession, homeserver: str, token: str | None) -> None:
        self._api = ClientApi(session, homeserver, token)
        self._anonymous = ClientApi(session, homeserver)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *, auth: bool = True) -> dict[str, Any]:
        try:
            _, data = await (self._api if auth else self._anonymous).call(method, path, body)
        except ClientApiError as error:
            raise AdminApiError(f"{method} {path.split('?')[0]}", error.status, error.errcode or error.cause) from error
        return data

    async def delete_room(self, room_id: str, *, timeout: float = 120.0) -> None:
        """Delete a room with purge and wait until Synapse has finished."""
        path = f"/_synapse/admin/v2/rooms/{quote(room_id)}"
        started = await self._call("DELETE", path, {"purge": True, "block": False})
        delete_id = started["delete_id"]
        deadline = asyncio.get_running_loop().time() + timeout
        delays = DELETE_STATUS_POLL.delays()
        while True:
            status = await self._call("GET", f"/_synapse/admin/v2/rooms/delete_status/{quote(delete_id)}")
            state = status.get("status")
            if state == "complete":
                return
            if state == "failed":
                raise AdminApiError("room delete", "failed", status.get("error", ""))
            if asyncio.get_running_loop().time() > deadline:
                raise AdminApiError("room delete", "timeout")
            await asyncio.sleep(next(delays))

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
