"""What one chat has for its page: the numbered frames, kept so that a page that reconnects
misses nothing, and the one page attached now (a page that takes the chat over displaces it)."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

BUFFER_FRAMES = 1000

Sink = Callable[[dict[str, Any]], Awaitable[None]]


class PageFrames:
    def __init__(self, keep: int = BUFFER_FRAMES) -> None:
        self._seq = 0
        self._frames: deque[dict[str, Any]] = deque(maxlen=keep)
        self._sink: Sink | None = None
        self._displaced: Callable[[], None] | None = None  # tells the attached page another took over

    @property
    def seq(self) -> int:
        """The number of the last frame pushed."""
        return self._seq

    def continue_from(self, seq: int) -> None:
        """A chat handed over by the gateway before a restart: number on from where it stopped."""
        self._seq = seq

    @property
    def attached(self) -> Sink | None:
        """Where frames go now: the attached page's sink, or None."""
        return self._sink

    async def push(self, frame: dict[str, Any]) -> None:
        """Number a frame, keep it for a reconnecting page, and send it if a page is attached."""
        self._seq += 1
        frame = {**frame, "seq": self._seq}
        self._frames.append(frame)
        await self.tell(frame)  # if it fails, the frame is kept: the page gets it on resume

    async def tell(self, frame: dict[str, Any]) -> None:
        """Send a frame to the attached page, if any; a page that cannot take it is detached."""
        sink = self._sink
        if sink is not None:
            try:
                await sink(frame)
            except Exception:
                self.detach(sink)

    def after(self, seen: int) -> list[dict[str, Any]]:
        return [frame for frame in self._frames if frame["seq"] > seen]

    def attach(self, sink: Sink, displaced: Callable[[], None] | None = None) -> None:
        """Send new frames to this page from now on (one page at a time: another page attached
        before is displaced). ``displaced`` is called if a later page takes over."""
        self.displace(sink)
        self._sink, self._displaced = sink, displaced

    def displace(self, sink: Sink) -> None:
        """A page is taking this chat over: the page attached until now, if another, is told."""
        if self._sink is not None and self._sink != sink:
            displaced, self._sink, self._displaced = self._displaced, None, None
            if displaced is not None:
                displaced()

    def detach(self, sink: Sink) -> bool:
        """Detach this page if it is the attached one; True if it was."""
        if self._sink == sink:  # bound methods: equal, not identical
            self._sink, self._displaced = None, None
            return True
        return False

    def clear(self) -> None:
        self._frames.clear()
