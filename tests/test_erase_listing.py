"""The pure parts of the erase's redactions (hotline_runtime/erase.py) as tables: which events
need redacting and the /messages request that lists them."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from hotline_runtime.erase import REDACTABLE_FILTER, messages_path, needs_redaction

ENCRYPTED = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "opaque"}

EVENTS = [
    # (event as /messages returns it, needs redacting)
    ({"type": "m.room.encrypted", "content": ENCRYPTED}, True),
    ({"type": "m.room.message", "content": {"msgtype": "m.text", "body": "x"}}, True),
    ({"type": "m.reaction", "content": {"m.relates_to": {"key": "x"}}}, True),  # not encrypted: its key is words
    ({"type": "m.room.encrypted", "content": ENCRYPTED, "unsigned": {"age": 5}}, True),
    ({"type": "m.room.encrypted", "content": {}, "unsigned": {"redacted_because": {"type": "m.room.redaction"}}},
     False),  # already redacted
    ({"type": "m.room.encrypted", "content": ENCRYPTED, "unsigned": {"redacted_because": {}}}, False),
    ({"type": "m.room.encrypted", "content": {}}, False),  # nothing left to remove
    ({"type": "m.room.encrypted"}, False),
    ({"type": "m.room.redaction", "content": {}, "redacts": "$a"}, False),
    ({"type": "m.room.redaction", "content": {"redacts": "$a"}}, False),  # room version 11+
    ({"type": "m.room.member", "state_key": "@a:x", "content": {"membership": "join"}}, False),
    ({"type": "m.room.power_levels", "state_key": "", "content": {"users": {}}}, False),
    ({"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}, False),
]


@pytest.mark.parametrize(("event", "expected"), EVENTS)
def test_needs_redaction(event, expected):
    assert needs_redaction(event) is expected


PATHS = [
    # (room, token, page, expected query apart from the filter)
    ("!abc:hotline.localhost", None, 100, {"dir": ["b"], "limit": ["100"]}),
    ("!abc:hotline.localhost", "t47-1_0_0", 100, {"dir": ["b"], "limit": ["100"], "from": ["t47-1_0_0"]}),
    ("!a/b?c#d:x", "s1&x=2", 7, {"dir": ["b"], "limit": ["7"], "from": ["s1&x=2"]}),  # quoted, not injected
]


@pytest.mark.parametrize(("room", "token", "page", "query"), PATHS)
def test_messages_path(room, token, page, query):
    url = urlsplit(messages_path(room, token, page))
    encoded_room = url.path.removeprefix("/_matrix/client/v3/rooms/").removesuffix("/messages")
    assert "/" not in encoded_room and "?" not in encoded_room and "#" not in encoded_room
    got = parse_qs(url.query)
    assert json.loads(got.pop("filter")[0]) == REDACTABLE_FILTER
    assert got == query


def test_the_listing_leaves_out_on_the_server_only_what_never_needs_redacting():
    assert set(REDACTABLE_FILTER) == {"not_types"}
    for event_type in REDACTABLE_FILTER["not_types"]:
        assert not needs_redaction({"type": event_type, "state_key": "@a:x", "content": {"membership": "join"}}
                                   if event_type == "m.room.member" else {"type": event_type, "content": {}})
