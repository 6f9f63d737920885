"""The phase table (bot/conversation/state.py, TRANSITIONS): a change that is not in it is refused
(IllegalTransition; the service keeps the state it had), and the rules make every change in it and
no other, over all the rule tables of tests/test_conversation.py and the transfers."""

from __future__ import annotations

from dataclasses import replace
from itertools import product

import pytest

from bot.conversation import TRANSITIONS, Chat, Hotline, IllegalTransition, Phase, Rules, StaffRole, apply
from bot.ids import ChatRef, RoomId, UserId
from tests.test_conversation import (
    ACTIVE,
    CASES,
    OPEN,
    OTHER,
    REF,
    RULES,
    SURVIVOR_ROOM,
    TEAM_RULES,
    ChatErased,
    SurvivorEnded,
    Transfer,
    command,
)

PHASES: list[Phase | None] = [None, *Phase]
CHAT = Chat(ChatRef("K7Q3"), RoomId("!s"), UserId("@chat_1:hs"), opened_at=0.0)


@pytest.mark.parametrize(("before", "after"), list(product(PHASES, PHASES)))
def test_a_phase_change_is_allowed_only_if_the_table_has_it(before: Phase | None, after: Phase | None) -> None:
    state = Hotline(rules=RULES)
    if before is not None:
        state = replace(state, chats={CHAT.ref: replace(CHAT, phase=before)})
    allowed = before is after or (before, after) in TRANSITIONS

    def change() -> Hotline:
        return state.without(CHAT.ref) if after is None else state.with_chat(replace(CHAT, phase=after))

    if allowed:
        change()
    else:
        with pytest.raises(IllegalTransition):
            change()


def _observed(steps: list[tuple[float, object]], rules: Rules) -> set[tuple[Phase | None, Phase | None]]:
    """The phase changes the rules made on the way through these steps."""
    state, seen = Hotline(rules=rules), set()
    for now, event in steps:
        before = {ref: chat.phase for ref, chat in state.chats.items()}
        state, _ = apply(state, event, now)  # type: ignore[arg-type]
        after = {ref: chat.phase for ref, chat in state.chats.items()}
        seen |= {(before.get(ref), after.get(ref)) for ref in before.keys() | after.keys()
                 if before.get(ref) is not after.get(ref)}
    return seen


CLAIMED = OPEN + ACTIVE[len(OPEN):-1]  # claimed, the case room made, the advocate not joined yet
TO_COLLEAGUE = replace(command(Transfer(to=OTHER)), target_roles=frozenset({StaffRole.ADVOCATE}))
MORE = [  # the transfers, a close before the advocate joined, and the erase
    ACTIVE + [(20, command(Transfer()))], CLAIMED + [(20, command(Transfer()))],
    ACTIVE + [(20, TO_COLLEAGUE)], CLAIMED + [(20, TO_COLLEAGUE)],
    CLAIMED + [(20, SurvivorEnded(SURVIVOR_ROOM)), (21, ChatErased(REF))],
]


def test_the_rules_make_every_change_in_the_table_and_no_other() -> None:
    seen: set[tuple[Phase | None, Phase | None]] = set()
    for _, steps, *_ in CASES:
        seen |= _observed(steps, RULES)
    for steps in MORE:
        seen |= _observed(steps, TEAM_RULES)
    assert seen == set(TRANSITIONS)
