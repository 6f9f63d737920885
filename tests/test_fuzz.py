"""Bad input, generated: the page's frame parser, the staff command parser and the reading of a
staff message's content (replies, edits), 10,000 inputs each.

Both are pure functions, so this needs no network: Hypothesis draws raw text, arbitrary JSON and
near-valid frames (or command lines), and each input must either parse into something within the
documented limits or be refused with a clear error (a frame the page can read, a staff reply
that formats) — never an exception of another kind, never the input echoed back. Memory: a frame
is refused before it is read when it is over the 64 KiB limit, and the largest frames under it
are parsed with a bounded peak and nothing retained.
"""

from __future__ import annotations

import gc
import json
import string
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import commands
from bot.commands import (
    MAX_NOTE,
    MAX_SERVICE_MESSAGE,
    Claim,
    Codeword,
    Invalid,
    Join,
    Languages,
    Service,
    Shift,
    Transfer,
)
from bot.ids import REF_ALPHABET, normalize_ref
from bot.messages import STAFF, staff_text
from webchat.protocol import (
    CONTROL,
    MAX_FRAME_BYTES,
    Answer,
    End,
    FrameBudget,
    FrameError,
    Resume,
    Say,
    Start,
    parse,
)

FUZZ = settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
ERROR_CODES = {"bad_frame", "too_long", "empty"}  # the codes parse() itself can give
FRAME_TYPES = ["start", "resume", "say", "end", "answer"]
VOCABULARY = {"type", "language", "chat", "secret", "seen", "id", "text", "question", "value", "frame",
              *FRAME_TYPES, "interpreter_consent", "codeword_new", "codeword_verify", "yes", "no"}

# ------------------------------------------------------------------ frames

# Any Unicode, surrogates and control characters included (json.dumps escapes them, as a page
# or an attacker could send them).
any_text = st.text(st.characters(codec=None, categories=None), max_size=300)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | any_text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(any_text, inner, max_size=5),
    max_leaves=20,
)
field_values = (json_values | any_text | st.integers(min_value=-2, max_value=2**70)
                | st.sampled_from(["", " ", "\n", "yes", "no", "codeword_new", "x" * 65, "a-1_B"])
                | st.text(st.sampled_from("дд😀\"\\\x01\x00\u200b e"), max_size=120))


@st.composite
def near_frames(draw: st.DrawFn) -> str:
    """A JSON object shaped like a frame: a known (or unknown) type and some of its fields."""
    frame: dict[str, object] = {}
    if draw(st.integers(0, 9)):  # now and then no type at all
        frame["type"] = draw(st.sampled_from(FRAME_TYPES) | any_text)
    names = draw(st.lists(st.sampled_from(sorted(VOCABULARY - set(FRAME_TYPES))) | any_text, max_size=5))
    for name in names:
        frame[name] = draw(field_values)
    return json.dumps(frame, ensure_ascii=draw(st.booleans()))


raw_frames = any_text | json_values.map(json.dumps) | near_frames()


def check_refusal(problem: FrameError, raw: str) -> None:
    frame = problem.frame()
    assert problem.code in ERROR_CODES
    assert frame["type"] == "error" and frame["code"] == problem.code
    assert isinstance(frame["message"], str) and 0 < len(frame["message"]) <= 250
    assert json.loads(json.dumps(frame)) == frame  # the page can read it
    if "id" in frame:  # only a say frame's own (valid) id comes back
        assert isinstance(frame["id"], str) and 1 <= len(frame["id"]) <= 64
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return
    # Nothing the frame carried is repeated back, beyond the protocol's own words.
    strings = [data] if isinstance(data, str) else list(data) + list(data.values()) if isinstance(data, dict) else []
    for value in strings:
        if isinstance(value, str) and len(value) >= 4 and value not in VOCABULARY:
            assert value not in frame["message"]


@FUZZ
@given(raw=raw_frames, max_chars=st.sampled_from([100, 10_000]), max_bytes=st.sampled_from([1_000, 14_000]))
def test_any_frame_parses_within_the_limits_or_is_refused_clearly(raw: str, max_chars: int, max_bytes: int) -> None:
    try:
        frame = parse(raw, max_chars, max_bytes)
    except FrameError as problem:
        check_refusal(problem, raw)
        return
    assert isinstance(frame, Start | Resume | Say | End | Answer)
    if isinstance(frame, Say):
        assert frame.text.strip() and not CONTROL.search(frame.text)
        assert len(frame.text) <= max_chars and len(frame.text.encode("utf-8")) <= max_bytes
    if isinstance(frame, Answer):
        assert len(frame.value) <= 200 and "\x00" not in frame.value
        if frame.question == "interpreter_consent":
            assert frame.value in ("yes", "no")
    if isinstance(frame, Resume):
        assert frame.seen >= 0 and len(frame.chat) <= 128 and len(frame.secret) <= 128


LARGEST = [
    "[" * MAX_FRAME_BYTES,
    '{"a":' * (MAX_FRAME_BYTES // 5),
    "[" + "0," * (MAX_FRAME_BYTES // 2 - 2) + "0]",
    '{"type": "say", "id": "x", "text": "' + "\\u0434" * (MAX_FRAME_BYTES // 6 - 10) + '"}',
    '{"type": "say", "id": "x", "text": "' + "д" * (MAX_FRAME_BYTES // 2 - 40) + '"}',
    '{"type": "say", "id": "x", "text": "' + "😀" * (MAX_FRAME_BYTES // 4 - 20) + '"}',
    "1" * MAX_FRAME_BYTES,
    json.dumps({str(n): n for n in range(4_500)}),
    json.dumps({"type": "say", "id": "x", "text": "y", "z" * (MAX_FRAME_BYTES - 60): 1}),
]


def test_the_largest_frames_parse_in_bounded_memory_and_leave_nothing_behind() -> None:
    for raw in LARGEST:
        assert len(raw) <= MAX_FRAME_BYTES
    over = "x" * (MAX_FRAME_BYTES + 1)
    tracemalloc.start()
    try:
        for raw in [*LARGEST, over]:
            gc.collect()
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            try:
                parse(raw, 10_000)
            except FrameError as problem:
                check_refusal(problem, raw)
            peak = tracemalloc.get_traced_memory()[1] - before
            assert peak < 40 * MAX_FRAME_BYTES, (raw[:20], peak)  # 2.6 MB at most for a 64 KiB frame
        gc.collect()
        settled = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            for raw in LARGEST:
                try:
                    parse(raw, 10_000)
                except FrameError:
                    pass
        gc.collect()
        assert tracemalloc.get_traced_memory()[0] - settled < 64 * 1024  # nothing kept per frame
    finally:
        tracemalloc.stop()


def test_an_oversized_frame_is_refused_before_it_is_read() -> None:
    try:
        parse("{" + " " * MAX_FRAME_BYTES + "}", 10_000)
    except FrameError as problem:
        assert problem.code == "bad_frame" and str(MAX_FRAME_BYTES) in problem.message
    else:
        raise AssertionError("an oversized frame was parsed")


# ------------------------------------------------------------------ the frame budget (rate limit)


def test_frame_budget_at_and_past_the_limit() -> None:
    budget = FrameBudget(per_window=30, window=10.0)
    verdicts = [budget.admit(0.0) for _ in range(100)]
    # 30 frames are taken; the 31st is answered (rate_limited) and every later one is dropped.
    assert verdicts == ["take"] * 30 + ["tell"] + ["drop"] * 69
    # The reply counted as a frame: 31 in the bucket, empty after 31 / 3 s.
    assert budget.retry_after(0.0) == 10.4
    # Still blocked a little before then, however slowly the page sends...
    assert [budget.admit(5.0), budget.admit(10.3)] == ["drop", "drop"]
    assert budget.retry_after(10.3) == 0.1
    # ...and taken again once the page has waited as told: a whole window's worth.
    assert [budget.admit(10.4) for _ in range(31)] == ["take"] * 30 + ["tell"]


def test_frame_budget_under_the_limit_is_never_blocked() -> None:
    budget = FrameBudget(per_window=30, window=10.0)
    assert [budget.admit(0.0) for _ in range(30)] == ["take"] * 30
    assert budget.retry_after(0.0) == 0.0
    assert budget.admit(0.34) == "take"  # one frame's worth leaked out


def test_frame_budget_a_steady_pace_under_the_limit_is_never_dropped() -> None:
    budget = FrameBudget(per_window=30, window=10.0)
    assert all(budget.admit(n * 0.34) == "take" for n in range(1_000))  # 2.9 frames a second


# ------------------------------------------------------------------ staff commands

NAMES = ["claim", "transfer", "handoff", "supervisor", "join", "interpreter", "shift", "chats", "devices",
         "verify", "approve", "revoke", "codeword", "languages", "close", "help", "say", "service", "stats",
         "CLAIM", "Claim", "unknown", ""]
words = (st.text(st.characters(codec=None, categories=None), max_size=40)
         | st.sampled_from(["force", "new", "verify", "rotate", "until", "end", "open", "close", "today", "week",
                            "23:59", "24:00", "9:5", "es", "pt-BR", "x-" * 20, "C-K7Q3", "c-k7q3", "C-", "@a:b",
                            "@advocate:example.org", "@" + "a" * 300 + ":b", "DEVICEID", "year", "99"])
         | st.text(alphabet=REF_ALPHABET + "abc01", min_size=3, max_size=5))
spaces = st.sampled_from([" ", "  ", "\t", "\n", "\u00a0", "\u2003", "\u3000", "\r\n"])


@st.composite
def command_lines(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(["", " ", "\n", "\u2003"])) + draw(st.sampled_from(["!", "!!", "! ", "!\u00a0"]))
    line += draw(st.sampled_from(NAMES) | words)
    for word in draw(st.lists(words, max_size=6)):
        line += draw(spaces) + word
    if draw(st.booleans()):
        line += draw(spaces) + draw(st.text(max_size=2_000))  # a long free-text tail (a note, a message)
    return line


@FUZZ
@given(text=any_text | command_lines())
def test_any_staff_line_is_a_message_a_command_or_a_clear_refusal(text: str) -> None:
    command = commands.parse(text)
    if not commands.is_command(text):
        assert command is None  # a message, relayed as it is
        return
    assert command is not None
    if isinstance(command, Invalid):
        assert command.reason in STAFF
        fields = {f for _, f, _, _ in string.Formatter().parse(STAFF[command.reason]) if f}
        reply = staff_text(command.reason, **{f: command.name for f in fields})
        assert reply and len(reply) <= 300 and len(command.name) <= 32
        return
    if isinstance(command, Claim):
        assert command.ref is None or normalize_ref(command.ref) == command.ref
    if isinstance(command, Join):
        assert normalize_ref(command.ref) == command.ref
    if isinstance(command, Transfer):
        assert len(command.note) <= MAX_NOTE
        assert command.to is None or (command.to.startswith("@") and ":" in command.to and len(command.to) <= 255)
    if isinstance(command, Service):
        assert len(command.message) <= MAX_SERVICE_MESSAGE and (command.open or command.message)
    if isinstance(command, Shift) and command.until is not None:
        assert 0 <= command.until[0] <= 23 and 0 <= command.until[1] <= 59
    if isinstance(command, Languages):
        assert 1 <= len(command.languages) <= 20
    if isinstance(command, Codeword):
        assert command.action in {"new", "verify", "rotate"}
        assert (command.case is None) == (command.action == "new")


@st.composite
def staff_contents(draw: st.DrawFn) -> tuple[dict[str, object], str, list[str], str]:
    """The content of a staff message shaped like a reply or an edit (or neither), with the lines a
    reply quotes and what its author wrote."""
    quoted = draw(st.lists(any_text.filter(lambda t: "\n" not in t and "\r" not in t), min_size=1, max_size=4))
    wrote = draw(any_text | command_lines())
    kind = draw(st.sampled_from(["reply", "edit", "plain", "junk"]))
    if kind == "reply":
        sender = draw(st.sampled_from(["@hotline:hs", "@a:b"]))
        fallback = "\n".join(f"> {'<' + sender + '> ' if i == 0 else ''}{line}" for i, line in enumerate(quoted))
        content: dict[str, object] = {"msgtype": "m.text", "body": f"{fallback}\n\n{wrote}",
                                      "m.relates_to": {"m.in_reply_to": {"event_id": "$e"}}}
    elif kind == "edit":
        content = {"msgtype": "m.text", "body": f"* {wrote}", "m.new_content": {"body": wrote},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}}
    elif kind == "plain":
        content = {"msgtype": "m.text", "body": wrote}
    else:
        content = draw(st.dictionaries(st.sampled_from(["body", "m.relates_to", "m.new_content", "msgtype"])
                                       | any_text, json_values, max_size=5))
    return content, kind, (quoted if kind == "reply" else []), (wrote if kind != "junk" else "")


@FUZZ
@given(message=staff_contents())
def test_any_staff_message_is_read_as_meant(message: tuple[dict[str, object], str, list[str], str]) -> None:
    content, kind, quoted, wrote = message
    meant = commands.written(content)  # junk content too: never an exception
    assert isinstance(meant.text, str)
    if kind != "junk":
        assert meant.edit == (kind == "edit")
    if quoted and not wrote.startswith(">"):
        assert meant.text == wrote  # nothing of the quoted original is left, and all that was written
    elif wrote and not commands.FALLBACK_HEADER.match(wrote):
        assert meant.text == wrote  # a plain message as it is; an edit as its new text, never "* …"


def test_the_longest_staff_lines_parse_in_bounded_memory() -> None:
    """A Matrix event is at most 64 KiB, so is a staff line: parsing one keeps nothing and peaks low."""
    longest = [
        "!transfer " + "a note " * 9_000,
        "!service close " + "д" * 60_000,
        "!languages " + "es " * 20_000,
        "!" + "x" * 65_000,
        "!claim " + " " * 65_000 + "force",
        "! " * 30_000,
    ]
    tracemalloc.start()
    try:
        for line in longest:
            gc.collect()
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            command = commands.parse(line)
            assert command is not None
            if isinstance(command, Invalid):
                assert len(staff_text(command.reason, name=command.name, key=command.name)) <= 300
            assert tracemalloc.get_traced_memory()[1] - before < 40 * 65_536, line[:20]
            del command
    finally:
        tracemalloc.stop()
