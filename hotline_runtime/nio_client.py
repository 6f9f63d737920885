"""matrix-nio's AsyncClient with two corrections for a room-key share that the homeserver refused.

When a homeserver answers a to-device request of a room-key share with an error (Synapse answers
500 for a few seconds while its PostgreSQL restarts), matrix-nio 0.26:

1. builds its ``ShareGroupSessionError`` with the room id and the recipients in the fields
   ``retry_after_ms`` and ``soft_logout`` (positional arguments in the wrong places), and then
   takes that non-empty ``soft_logout`` as the homeserver logging the client out: it forgets
   its access token. Every later request fails at once with ``LocalProtocolError("Not logged
   in.")``: the sync loop retries every 30 s for ever and no message goes out or comes in, until
   the process is restarted. (Measured: an advocate's client and the bot, after ``pg_ctl restart``.)
2. marks the room's Megolm session as shared all the same, so the devices whose copy of the key
   was refused can never read what is encrypted with that session.

``HotlineClient`` puts the fields where they belong, and after a share that did not reach every
device it drops the session and raises ``KeyShareFailed``: nothing was sent, and the next try
shares a new session with everyone. Every client of the bot, the gateway and the tests uses it.
"""

from __future__ import annotations

from typing import Any

from nio import AsyncClient, ShareGroupSessionError
from nio.responses import Response


class KeyShareFailed(Exception):
    """A room key did not reach every device of the room; nothing was sent. Worth trying again."""


class HotlineClient(AsyncClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._share_refused: set[str] = set()  # rooms whose current key share had a refusal

    async def create_matrix_response(self, response_class: type, transport_response: Any,
                                     data: tuple[Any, ...] | None = None, save_to: Any = None) -> Any:
        response = await super().create_matrix_response(response_class, transport_response, data, save_to)
        if isinstance(response, ShareGroupSessionError):
            # nio put (room_id, users_shared_with) into (retry_after_ms, soft_logout): put them
            # back. (A real logout shows at the next sync; a 429 then waits nio's default 5 s.)
            room_id, users = data if data else ("", set())
            response.room_id, response.users_shared_with = room_id, users
            response.retry_after_ms, response.soft_logout = None, False
        return response

    async def receive_response(self, response: Response) -> None:
        if isinstance(response, ShareGroupSessionError):
            self._share_refused.add(response.room_id)
        await super().receive_response(response)

    async def share_group_session(self, room_id: str, ignore_unverified_devices: bool = False) -> Any:
        self._share_refused.discard(room_id)
        response = await super().share_group_session(room_id, ignore_unverified_devices=ignore_unverified_devices)
        if room_id in self._share_refused:
            self._share_refused.discard(room_id)
            if self.olm is not None:
                self.olm.outbound_group_sessions.pop(room_id, None)
            raise KeyShareFailed("the homeserver refused part of a room-key share")
        return response
