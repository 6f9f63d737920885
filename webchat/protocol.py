"""The page ↔ gateway WebSocket frames (docs/protocol.md), validated with pydantic. Pure."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from hotline_runtime.wire import MAX_CODEWORD_CHARS, AskQuestion

MAX_FRAME_BYTES = 64 * 1024

# How long a survivor's message can be, in bytes of UTF-8. Synapse refuses an event whose JSON is
# over 65,536 bytes, on every retry alike, so the limit is set by what the message becomes there:
# - nio writes the encrypted JSON with ASCII escapes: each UTF-16 unit that is not printable ASCII
#   becomes ``\uXXXX``. Per UTF-8 byte that is at most 3 bytes (a two-byte letter such as "д"
#   becomes 6; an emoji, 4 bytes, becomes 12), once control characters (1 byte → 6) are refused.
# - Megolm adds at most 160 bytes (measured: about 120 once in base64), and base64 makes 4 bytes of
#   every 3.
# - The event around the ciphertext (ids, hashes, signatures, prev_events) and the JSON around the
#   text (room id, type, the bot's "Survivor: " label when it relays into the case room).
# 14,000 × 3 = 42,000 bytes of escaped text, 56,000 once encrypted and in base64. Measured with the
# real homeserver and bot (tests/test_message_size.py): the largest event, on either side, is
# 57,088 bytes, 8,448 under the limit (room for up to Synapse's 10 prev_events and longer ids).
MAX_MESSAGE_BYTES = 14_000
MAX_ESCAPE_PER_BYTE = 3
# C0 controls other than tab, line feed and carriage return, and DEL: never typed, 6 bytes each.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# Several gateways behind one proxy (docs/scaling.md): a chat lives in the memory of the gateway
# that started it, so its id starts with that gateway's name (HOTLINE_GATEWAY_NAME) and a dot. The
# page reconnects with ``?gateway=NAME`` and the proxy sends it there; a gateway refuses a chat
# that names another one (``wrong_gateway``) rather than saying it has ended.
CHAT_ID_SEPARATOR = "."


def new_chat_id(gateway: str, random_part: str) -> str:
    """The page's id for a new chat: ``random_part``, after ``gateway.`` if the gateway has a name."""
    return f"{gateway}{CHAT_ID_SEPARATOR}{random_part}" if gateway else random_part


def chat_gateway(chat_id: str) -> str:
    """The name of the gateway that owns a chat, from its id ("" if the id names none)."""
    head, separator, _ = chat_id.partition(CHAT_ID_SEPARATOR)
    return head if separator else ""


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Start(_Frame):
    type: Literal["start"]
    # The survivor's preferred language (one of the gateway's chat languages), or "" for none.
    language: str = Field(default="", max_length=35)


class Resume(_Frame):
    type: Literal["resume"]
    chat: str = Field(min_length=1, max_length=128)
    secret: str = Field(min_length=1, max_length=128)
    seen: int = Field(ge=0)
    # The sealed state the gateway sent before it restarted (``restarting``); checked by
    # webchat/handover.py, bounded by the frame's own limit.
    state: str | None = Field(default=None, repr=False)


class Say(_Frame):
    type: Literal["say"]
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    text: str


class End(_Frame):
    type: Literal["end"]


class Answer(_Frame):
    """The survivor's answer to an ``ask``: "yes"/"no", or a code word ("" skips)."""

    type: Literal["answer"]
    question: AskQuestion
    value: str = Field(max_length=MAX_CODEWORD_CHARS, repr=False)


ClientFrame = Annotated[Start | Resume | Say | End | Answer, Field(discriminator="type")]
_client_frame: TypeAdapter[Start | Resume | Say | End | Answer] = TypeAdapter(ClientFrame)


class FrameError(Exception):
    def __init__(self, code: str, message: str, frame_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id

    def frame(self) -> dict[str, Any]:
        return error(self.code, self.message, self.frame_id)


_FIELDS = frozenset(
    name for model in (Start, Resume, Say, End, Answer) for name in model.model_fields
)


def parse(raw: str, max_chars: int, max_bytes: int = MAX_MESSAGE_BYTES) -> Start | Resume | Say | End | Answer:
    """One frame from the page, or FrameError with the code the page gets back.

    Pure, and bounded: a frame over MAX_FRAME_BYTES is refused before it is read (the gateway's
    socket closes before that; this holds for any caller), and an error's message names only the
    protocol's own fields, never text from the frame.
    """
    if len(raw) > MAX_FRAME_BYTES:
        raise FrameError("bad_frame", f"a frame can have at most {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise FrameError("bad_frame", "not JSON") from None
    if not isinstance(data, dict):
        raise FrameError("bad_frame", "a frame is a JSON object")
    try:
        frame = _client_frame.validate_python(data)
    except ValidationError as problem:
        first = problem.errors(include_url=False, include_input=False)[0]
        if first["type"] == "union_tag_invalid":  # its message would quote the frame's "type"
            raise FrameError("bad_frame", "type: not a frame type of this protocol") from None
        where = ".".join(part for part in map(str, first["loc"][-1:]) if part in _FIELDS) or "frame"
        raise FrameError("bad_frame", f"{where}: {first['msg'][:200]}") from None
    if isinstance(frame, Answer):
        if frame.question is AskQuestion.INTERPRETER_CONSENT and frame.value not in ("yes", "no"):
            raise FrameError("bad_frame", "value: yes or no")
        if "\x00" in frame.value:
            raise FrameError("bad_frame", "value: NUL characters are not allowed")
    if isinstance(frame, Say):
        if not frame.text.strip():
            raise FrameError("empty", "the message is empty", frame.id)
        if CONTROL.search(frame.text):
            raise FrameError("bad_frame", "text: control characters are not allowed", frame.id)
        try:
            size = len(frame.text.encode("utf-8"))
        except UnicodeEncodeError:
            raise FrameError("bad_frame", "text: not valid Unicode (lone surrogate)", frame.id) from None
        if len(frame.text) > max_chars or size > max_bytes:
            raise FrameError("too_long", f"a message can have at most {max_chars} characters "
                                         f"and {max_bytes} bytes of UTF-8", frame.id)
    return frame


def error(code: str, message: str, frame_id: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if frame_id is not None:
        frame["id"] = frame_id
    return frame


class FrameBudget:
    """How many frames one socket may send: ``per_window`` per ``window`` seconds, as a leaky bucket.

    Every frame counts, text or binary, valid or not. The frame that goes over the limit is
    answered with ``rate_limited``, and that reply counts as a frame too; then the socket is
    blocked until the bucket is empty (``retry_after`` seconds, about one window): every frame in
    that time is dropped unread and unanswered, so a flood never gets a reply per frame, and what
    the page sends again afterwards comes after everything that was taken, in its own order.
    Pure: the caller passes the time.
    """

    TAKE, TELL, DROP = "take", "tell", "drop"

    def __init__(self, per_window: int, window: float) -> None:
        self.per_window = per_window
        self.rate = per_window / window
        self.level = 0.0
        self.last: float | None = None
        self.blocked_until: float | None = None

    def admit(self, now: float) -> str:
        if self.last is not None:
            self.level = max(0.0, self.level - max(0.0, now - self.last) * self.rate)
        self.last = now
        if self.blocked_until is not None:
            if now < self.blocked_until:
                return self.DROP
            self.blocked_until = None
        if self.level + 1 <= self.per_window:
            self.level += 1
            return self.TAKE
        self.level += 1  # the rate_limited reply
        self.blocked_until = now + self.level / self.rate
        return self.TELL

    def retry_after(self, now: float) -> float:
        """Seconds until this socket's frames are taken again (rounded up to a tenth)."""
        if self.blocked_until is None:
            return 0.0
        return max(0.0, -(-(self.blocked_until - now) * 10 // 1) / 10)
