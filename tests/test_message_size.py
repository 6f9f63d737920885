"""The message limit in bytes: the longest message in the script that grows most when encrypted
still fits Synapse's 65,536-byte event, on the survivor's side and relayed by the bot; one byte
more is refused before anything is sent.

The overhead is measured here, not guessed: Megolm with vodozemac (what nio uses) for the
ciphertext, and the size of the events Synapse stored, for the envelope around it.
"""

from __future__ import annotations

import json
import math

import pytest
import vodozemac

from testkit.clients import Survivor, assert_erased, claim_new_chat, open_chat, until
from webchat.protocol import MAX_ESCAPE_PER_BYTE, MAX_MESSAGE_BYTES, FrameError, parse

SYNAPSE_MAX_EVENT_BYTES = 65_536
# Scripts at the limit: what nio's JSON (ASCII escapes) makes of each UTF-8 byte.
WORST = {
    "Cyrillic (2 bytes → 6)": "д",
    "emoji (4 bytes → 12)": "😀",
    "Devanagari (3 bytes → 6)": "न",
    "quotes and backslashes (1 byte → 2)": '"\\',
    "Latin": "e",
}


def at_limit(unit: str) -> str:
    size = len(unit.encode())
    return unit * (MAX_MESSAGE_BYTES // size) + "e" * (MAX_MESSAGE_BYTES % size)


def escaped(text: str) -> int:
    return len(json.dumps(text)) - 2  # json.dumps escapes as nio's Api.to_json does


@pytest.mark.parametrize("unit", WORST.values(), ids=WORST.keys())
def test_escaping_grows_a_message_at_most_threefold(unit):
    text = at_limit(unit)
    assert len(text.encode()) == MAX_MESSAGE_BYTES
    assert escaped(text) <= MAX_ESCAPE_PER_BYTE * MAX_MESSAGE_BYTES
    parse(json.dumps({"type": "say", "id": "x", "text": text}), 50_000)  # taken
    with pytest.raises(FrameError) as over:
        parse(json.dumps({"type": "say", "id": "x", "text": text + "e"}), 50_000)
    assert over.value.code == "too_long" and str(MAX_MESSAGE_BYTES) in over.value.message


def test_megolm_overhead_measured():
    """Ciphertext size (base64) against plaintext size, with vodozemac's own group session."""
    session = vodozemac.GroupSession()
    worst = 0
    for size in (0, 1, 15, 16, 17, 1_000, 42_000, 43_000, 44_000):
        ciphertext = session.encrypt(b"x" * size).to_base64()
        worst = max(worst, len(ciphertext) - math.ceil(size * 4 / 3))
    assert worst <= 160, worst


async def test_the_longest_message_fits_on_both_sides_and_one_byte_more_is_refused(stack, advocate, canaries):
    texts = {name: at_limit(unit) for name, unit in WORST.items() if len(at_limit(unit)) <= 10_000}  # the character limit
    canaries += list(texts.values())
    survivor = Survivor(stack.page_url)
    try:
        ref, case_room = await claim_new_chat(stack, advocate, survivor)
        survivor_room = open_chat(stack, ref)[0]
        for text in texts.values():
            await survivor.say(text)  # acknowledged: stored encrypted on the homeserver
        await until(lambda: all(f"Survivor: {t}" in advocate.bodies(case_room) for t in texts.values()), 60,
                    "every message relayed whole into the case room")
        await survivor.send({"type": "say", "id": "over", "text": at_limit("д") + "e"})
        too_long = await until(lambda: next((f for f in survivor.frames if f.get("id") == "over"
                                             and f.get("type") == "error"), None), 10, "too_long")
        assert too_long["code"] == "too_long"
        # The envelope, measured: the largest stored events of the chat (survivor side and the
        # bot's relay with its label) against Synapse's limit.
        sizes = {room: stack.homeserver.query(
            "SELECT MAX(LENGTH(CAST(json AS BLOB))) FROM event_json WHERE room_id = ?", [room])[0][0]
            for room in (survivor_room, case_room)}
        for room, size in sizes.items():
            assert size <= SYNAPSE_MAX_EVENT_BYTES
            # The plaintext of the worst script is 3 × 14,000 = 42,000 bytes before Megolm and
            # base64: anything above 4/3 of that is the envelope, which the limit leaves room for.
            envelope = size - math.ceil(MAX_ESCAPE_PER_BYTE * MAX_MESSAGE_BYTES * 4 / 3)
            assert envelope < 4_000, (room, size)
            print(f"largest event in {'case' if room == case_room else 'survivor'} room: {size} bytes "
                  f"({SYNAPSE_MAX_EVENT_BYTES - size} to spare)")
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await survivor.close()
