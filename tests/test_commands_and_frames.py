"""Pure parsers: staff commands and the page's frames, as tables."""

from __future__ import annotations

import json

import pytest

from bot.commands import Claim, Close, Help, Invalid, Service, Stats, Written, has_command_line, parse, written
from bot.commands import Say as SayCommand
from bot.ids import new_ref, normalize_ref
from webchat.protocol import End, FrameError, Resume, Say, Start
from webchat.protocol import parse as parse_frame

COMMANDS = [
    ("hello", None),
    ("  not ! a command", None),
    ("!claim", Claim(None)),
    ("!claim k7q3", Claim("K7Q3")),
    ("  !CLAIM K7Q3  ", Claim("K7Q3")),
    ("!claim K7Q3 extra", Invalid("claim", "bad_ref")),
    ("!claim 0000", Invalid("claim", "bad_ref")),
    ("!close", Close()),
    ("!close now", Invalid("close", "no_arguments")),
    ("!help", Help()),
    ("!", Invalid("", "unknown_command")),
    ("!frobnicate", Invalid("frobnicate", "unknown_command")),
    ("!" + "x" * 100, Invalid("x" * 32, "unknown_command")),
    ("!say", SayCommand(None)),
    ("!say Safety", SayCommand("safety")),
    ("!say a b", Invalid("say", "say_one_key")),
    ("!service open", Service(True)),
    ("!service open now", Invalid("service", "service_usage")),
    ("!service close Closed for the storm — call +1 555 0100", Service(False, "Closed for the storm — call +1 555 0100")),
    ("!service close", Invalid("service", "service_usage")),
    ("!service close " + "m" * 501, Invalid("service", "service_message_long")),
    ("!service", Invalid("service", "service_usage")),
    ("!stats", Stats(7)),
    ("!stats today", Stats(1)),
    ("!stats month", Stats(30)),
    ("!stats forever", Invalid("stats", "bad_period")),
]


@pytest.mark.parametrize(("text", "expected"), COMMANDS)
def test_commands(text, expected):
    assert parse(text) == expected


REPLY = {"m.in_reply_to": {"event_id": "$original"}}
NOTE = "Handoff note from the previous advocate: she prefers evenings"
# (content of a staff message, what it says as meant)
WRITTEN = [
    ({"msgtype": "m.text", "body": "hello"}, Written("hello")),
    ({"msgtype": "m.text", "body": "> a quote I mean to send\n\nmy answer"},  # not a reply: kept
     Written("> a quote I mean to send\n\nmy answer")),
    # A reply: the quoted original (the fallback) is not part of what was written.
    ({"msgtype": "m.text", "body": f"> <@hotline:hs> {NOTE}\n\nThank you for waiting", "m.relates_to": REPLY,
      "format": "org.matrix.custom.html",
      "formatted_body": f"<mx-reply><blockquote>{NOTE}</blockquote></mx-reply>Thank you for waiting"},
     Written("Thank you for waiting")),
    ({"msgtype": "m.text", "body": "> <@hotline:hs> Matches case C-K7Q3\n> set on 2026-01-02\n\n!close",
      "m.relates_to": REPLY}, Written("!close")),
    ({"msgtype": "m.text", "body": "> * <@hotline:hs> waves\n\nhi", "m.relates_to": REPLY}, Written("hi")),
    ({"msgtype": "m.text", "body": "no fallback (a newer client)", "m.relates_to": REPLY},
     Written("no fallback (a newer client)")),
    ({"msgtype": "m.text", "body": "> <@hotline:hs> only the quote", "m.relates_to": REPLY}, Written("")),
    # An edit: the new text, never the "* " fallback body.
    ({"msgtype": "m.text", "body": "* !close", "m.new_content": {"msgtype": "m.text", "body": "!close"},
      "m.relates_to": {"rel_type": "m.replace", "event_id": "$first"}}, Written("!close", edit=True)),
    ({"msgtype": "m.text", "body": "* see you at 6", "m.new_content": {"msgtype": "m.text", "body": "see you at 6"},
      "m.relates_to": {"rel_type": "m.replace", "event_id": "$first"}}, Written("see you at 6", edit=True)),
    ({"msgtype": "m.text", "body": "* > <@hotline:hs> Survivor: hi\n\n!close",
      "m.new_content": {"msgtype": "m.text", "body": "> <@hotline:hs> Survivor: hi\n\n!close"},
      "m.relates_to": {"rel_type": "m.replace", "event_id": "$first"}}, Written("!close", edit=True)),
    ({"msgtype": "m.text", "body": "* broken", "m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}},
     Written("", edit=True)),  # no new content: nothing
    ({"msgtype": "m.text", "body": 7}, Written("")),
    ({"msgtype": "m.text", "body": "x", "m.relates_to": "nonsense"}, Written("x")),
]


@pytest.mark.parametrize(("content", "expected"), WRITTEN)
def test_staff_text_as_meant(content, expected):
    assert written(content) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("hello", False), ("!close", False), ("hello\n!close", True), ("hi\n  !say safety", True),
    ("hi!\nwhat a day!", False), ("a\n\n b ! c", False),
])
def test_a_command_line_further_down(text, expected):
    assert has_command_line(text) is expected


def test_refs_are_unambiguous_and_round_trip():
    for _ in range(200):
        ref = new_ref()
        assert normalize_ref(ref.lower()) == ref
        assert not set(ref) & set("0O1IL2Z5S8B")
    assert new_ref({"AAAA"}) != "AAAA"


FRAMES = [
    ('{"type": "start"}', Start(type="start")),
    ('{"type": "end"}', End(type="end")),
    ('{"type": "say", "id": "a-1_B", "text": "hi"}', Say(type="say", id="a-1_B", text="hi")),
    ('{"type": "resume", "chat": "c", "secret": "s", "seen": 3}', Resume(type="resume", chat="c", secret="s", seen=3)),
    ('{"type": "say", "id": "x", "text": "مرحبا 👋🏽"}', Say(type="say", id="x", text="مرحبا 👋🏽")),
]
BAD_FRAMES = [
    ("nonsense", "bad_frame"),
    ("[]", "bad_frame"),
    ('"start"', "bad_frame"),
    ('{"type": "start", "extra": 1}', "bad_frame"),
    ('{"type": "launch"}', "bad_frame"),
    ('{"type": "say", "id": "", "text": "x"}', "bad_frame"),
    ('{"type": "say", "id": "' + "i" * 65 + '", "text": "x"}', "bad_frame"),
    ('{"type": "say", "id": "x", "text": 5}', "bad_frame"),
    ('{"type": "say", "id": "x", "text": ""}', "empty"),
    ('{"type": "say", "id": "x", "text": " \\n\\t "}', "empty"),
    ('{"type": "say", "id": "x", "text": "' + "y" * 101 + '"}', "too_long"),
    ('{"type": "say", "id": "x", "text": "a\\u0000b"}', "bad_frame"),
    ('{"type": "say", "id": "x", "text": "\\ud83d"}', "bad_frame"),
    ('{"type": "resume", "chat": "c", "secret": "s", "seen": -1}', "bad_frame"),
    ("[" * 100_000, "bad_frame"),
]


@pytest.mark.parametrize(("raw", "expected"), FRAMES)
def test_frames(raw, expected):
    assert parse_frame(raw, 100) == expected


@pytest.mark.parametrize(("raw", "code"), BAD_FRAMES, ids=range(len(BAD_FRAMES)))
def test_bad_frames(raw, code):
    with pytest.raises(FrameError) as problem:
        parse_frame(raw, 100)
    assert problem.value.code == code
    assert json.dumps(problem.value.frame())  # always a frame the page can read


def test_every_staff_text_formats_with_its_own_placeholders():
    import string

    from bot.messages import STAFF, staff_text

    for name, text in STAFF.items():
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f}
        assert staff_text(name, **{f: "x" for f in fields})


def test_failures_are_logged_by_type_and_place_never_by_message():
    from hotline_runtime.errors import where

    def relay(text: str) -> None:
        raise KeyError(text)

    try:
        relay("a survivor's words 9f8e")
    except KeyError as error:
        described = where(error)
    assert described.startswith("KeyError at tests/test_commands_and_frames.py:") and described.endswith("in relay")
    assert "survivor" not in described


@pytest.mark.parametrize("rights_url, ends", [
    ("", "You can ask the advocate about this, and for the full text, at any time."),
    ("https://example.org/rights", "The full text is at https://example.org/rights"),
])
def test_the_rights_notice_reads_as_a_sentence_with_or_without_a_link(rights_url, ends):
    from bot.messages import Catalog
    from bot.settings import BotSettings

    text = Catalog.load(None, "+1 555 0100", rights_url).survivor_text("rights")
    assert text.endswith(ends) and "(" not in text
    assert BotSettings.model_fields["rights_url"].default == ""  # the demo's and init's default: no link
