"""The one small helper for Matrix HTTP requests that matrix-nio does not make for us.

The application-service registration and login of the gateway, the service room's state, the
cross-signing keys, Synapse's admin API, and the operations tooling (``hotline admin``, the dev
stack) that has a token but no nio client. One place decides the timeout, the bearer token, how
a body that is not JSON is read, and how a failure is reported: as ``ClientApiError`` (a
``MatrixError``) with the HTTP status and the Matrix ``errcode``, never the response text
otherwise (it could quote what was sent).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from hotline_runtime.errors import MatrixError

DEFAULT_TIMEOUT = 60.0


class ClientApiError(MatrixError):
    """A request failed: refused (``status`` is the HTTP status) or unanswered (``status`` None)."""

    def __init__(self, method: str, path: str, status: int | None, errcode: str = "", error: str = "",
                 cause: str = "") -> None:
        what = f"{method} {path.split('?')[0]}"
        super().__init__(what, status, errcode or cause)
        self.method, self.path = method, path.split("?")[0]
        self.errcode, self.error, self.cause = errcode, error, cause

    @property
    def answered(self) -> bool:
        return self.status is not None


class ClientApi:
    """Requests to one homeserver, with one access token unless a call names another."""

    def __init__(self, http: aiohttp.ClientSession, homeserver: str, token: str | None = None,
                 *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.http = http
        self.base = homeserver.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def request(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                      timeout: float | None = None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON object body or {}), whatever the status. Raises ClientApiError
        (status None) only if the homeserver did not answer."""
        bearer = token or self.token
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        try:
            async with self.http.request(method, self.base + path, json=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=timeout or self.timeout)) as response:
                try:
                    data = await response.json(content_type=None)
                except ValueError:  # not JSON (a proxy's HTML error page, say)
                    data = None
                return response.status, data if isinstance(data, dict) else {}
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise ClientApiError(method, path, None, cause=type(error).__name__) from error

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                   ok: tuple[int, ...] = (), timeout: float | None = None) -> tuple[int, dict[str, Any]]:
        """``request``, raising ClientApiError for an HTTP status of 400 or more not in ``ok``."""
        status, data = await self.request(method, path, body, token=token, timeout=timeout)
        if status >= 400 and status not in ok:
            raise ClientApiError(method, path, status, str(data.get("errcode") or ""), str(data.get("error") or ""))
        return status, data

    async def get(self, path: str, **options: Any) -> dict[str, Any]:
        return (await self.call("GET", path, **options))[1]
