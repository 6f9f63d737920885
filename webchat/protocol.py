"""The page ↔ gateway WebSocket frames (docs/protocol.md), validated with pydantic. Pure."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

MAX_FRAME_BYTES = 64 * 1024


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


class Say(_Frame):
    type: Literal["say"]
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    text: str


class End(_Frame):
    type: Literal["end"]


class Answer(_Frame):
    """The survivor's answer to an ``ask``: "yes"/"no", or a code word ("" skips)."""

    type: Literal["answer"]
    question: Literal["interpreter_consent", "codeword_new", "codeword_verify"]
    value: str = Field(max_length=200, repr=False)


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


def parse(raw: str, max_chars: int) -> Start | Resume | Say | End | Answer:
    """One frame from the page, or FrameError with the code the page gets back."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise FrameError("bad_frame", "not JSON") from None
    if not isinstance(data, dict):
        raise FrameError("bad_frame", "a frame is a JSON object")
    try:
        frame = _client_frame.validate_python(data)
    except ValidationError as problem:
        first = problem.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "frame"
        raise FrameError("bad_frame", f"{where}: {first['msg']}") from None
    if isinstance(frame, Answer):
        if frame.question == "interpreter_consent" and frame.value not in ("yes", "no"):
            raise FrameError("bad_frame", "value: yes or no")
        if "\x00" in frame.value:
            raise FrameError("bad_frame", "value: NUL characters are not allowed")
    if isinstance(frame, Say):
        if not frame.text.strip():
            raise FrameError("empty", "the message is empty", frame.id)
        if len(frame.text) > max_chars:
            raise FrameError("too_long", f"a message can have at most {max_chars} characters", frame.id)
        if "\x00" in frame.text:
            raise FrameError("bad_frame", "text: NUL characters are not allowed", frame.id)
        try:
            frame.text.encode("utf-8")
        except UnicodeEncodeError:
            raise FrameError("bad_frame", "text: not valid Unicode (lone surrogate)", frame.id) from None
    return frame


def error(code: str, message: str, frame_id: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if frame_id is not None:
        frame["id"] = frame_id
    return frame
