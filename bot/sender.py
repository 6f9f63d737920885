"""What the bot says in rooms: encrypted sends through the trust policy, staff notices from the
message catalog, and the "typing" it shows in survivor rooms."""

from __future__ import annotations

from typing import Any

from bot import messages
from bot.conversation import Reply
from bot.ids import RoomId
from bot.matrix import BotMatrix
from bot.trust import TrustPolicy

TYPING_TIMEOUT_MS = 30_000


class Sender:
    def __init__(self, matrix: BotMatrix, trust: TrustPolicy) -> None:
        self.matrix = matrix
        self.trust = trust
        self._typing: dict[RoomId, bool] = {}  # survivor room → the bot shows "typing" there

    async def send(self, room: RoomId, content: dict[str, Any], *, event_type: str = "m.room.message",
                   txn_id: str | None = None) -> str:
        return await self.matrix.send(room, content, event_type=event_type, txn_id=txn_id, trust=self.trust)

    async def reply(self, reply: Reply) -> None:
        text = messages.staff_text(reply.key, **dict(reply.params))
        await self.send(reply.room, {"msgtype": "m.notice", "body": text})

    async def show_typing(self, room: RoomId, typing: bool) -> None:
        """Mirror an advocate's typing into the survivor room (sent only when it changes)."""
        if self._typing.get(room, False) == typing:
            return
        self._typing[room] = typing
        await self.matrix.typing(room, typing, timeout_ms=TYPING_TIMEOUT_MS)

    async def stop_typing(self, room: RoomId) -> None:
        """Their "typing…" ends with them (the case room it came from is gone)."""
        if self._typing.pop(room, False):
            await self.matrix.typing(room, False)
