"""Who may run which command, and where: tests written from the one table (bot/conversation/permissions.py).

For every command of the table, every role (and none) and every kind of room, the rules either
refuse it with the table's reply and change nothing, or run it (no refusal). The expectation is
read from the table's row here, by the test; the rules check it through ``refusal``, so a rule
that skipped the check, or checked something else, fails. ``!help`` lists each command to the
roles the table lists it for. tests/test_team.py asks the same of the running bot.
"""

from __future__ import annotations

from dataclasses import replace
from enum import Enum

import pytest

from bot.commands import Command, Invalid, parse
from bot.conversation import (
    PERMISSIONS,
    AskingInterpreters,
    CommandGiven,
    Hotline,
    Permission,
    Reply,
    StaffRole,
    Where,
    apply,
    permission_for,
)
from bot.ids import EventId, RoomId, UserId
from bot.messages import STAFF, help_text
from tests.test_conversation import ACTIVE, ADMIN_ROOM, ADVOCATE, CASE_ROOM, DISPATCH, REF, run_team

STAFF_MEMBER = UserId("@staff:hs")  # anyone who is not the chat's advocate
REFUSALS = {"not_advocate", "not_admin", "not_interpreter", "join_refused", "in_case_room", "not_your_chat"}
ROLE_SETS = [frozenset()] + [frozenset({role}) for role in StaffRole]


class Place(Enum):
    STAFF_ROOM = "a staff room: dispatch, supervisors or interpreters"
    ADMIN_ROOM = "the admin room"
    OWN_CASE_ROOM = "the case room of one's own chat"
    OTHER_CASE_ROOM = "the case room of someone else's chat"


WHERE = {Place.STAFF_ROOM: (DISPATCH, STAFF_MEMBER), Place.ADMIN_ROOM: (ADMIN_ROOM, STAFF_MEMBER),
         Place.OWN_CASE_ROOM: (CASE_ROOM, ADVOCATE), Place.OTHER_CASE_ROOM: (CASE_ROOM, STAFF_MEMBER)}


def expected_refusal(row: Permission, roles: frozenset[StaffRole], place: Place) -> str | None:
    """What the table says: the refusal's key, or None (allowed)."""
    if row.roles is not None and not row.roles & roles:
        return row.refusal
    if row.where is Where.ADMIN_ROOM and place is not Place.ADMIN_ROOM:
        return "not_admin"
    if row.where is Where.OWN_CASE_ROOM and place in (Place.STAFF_ROOM, Place.ADMIN_ROOM):
        return "in_case_room"
    if row.where is Where.OWN_CASE_ROOM and place is Place.OTHER_CASE_ROOM:
        return "not_your_chat"
    return None


def _state() -> Hotline:
    """An active chat of ADVOCATE that waits for an interpreter (so that one may join)."""
    state, _ = run_team(ACTIVE)
    return state.with_chat(replace(state.chats[REF], interpreter_request=AskingInterpreters("es")))


def _row_id(row: Permission) -> str:
    return row.name


def test_each_example_is_its_own_row_and_every_command_has_one() -> None:
    for row in PERMISSIONS:
        command = parse(row.example)
        assert not isinstance(command, Invalid), row.example
        assert permission_for(command) is row, row.example
    kinds = {row.command for row in PERMISSIONS}
    assert kinds == set(Command.__args__) - {Invalid}  # type: ignore[attr-defined]


@pytest.mark.parametrize("row", PERMISSIONS, ids=_row_id)
@pytest.mark.parametrize("roles", ROLE_SETS, ids=lambda roles: "+".join(roles) or "no role")
@pytest.mark.parametrize("place", list(Place), ids=lambda place: place.name.lower())
def test_every_command_for_every_role_and_room(row: Permission, roles: frozenset[StaffRole], place: Place) -> None:
    state = _state()
    room, sender = WHERE[place]
    command = parse(row.example.replace("K7Q3", REF))
    state_after, effects = apply(state, CommandGiven(room, sender, command, roles, EventId("$cmd")), 30)
    refused = expected_refusal(row, roles, place)
    if row.late and place is Place.OWN_CASE_ROOM:
        # !join checks the chat first: one's own chat is answered as such, whoever asks.
        assert effects == [Reply(room, "already_in", (("ref", REF),))]
    elif refused is not None:
        # The wrong person, or the wrong room: refused with the table's reply, and nothing changes.
        assert (effects, state_after) == ([Reply(room, refused)], state), f"{row.name} {set(roles)} in {place.value}"
    else:
        replies = {e.key for e in effects if isinstance(e, Reply)}
        assert not replies & REFUSALS, f"{row.name} {set(roles)} in {place.value}: {effects}"


def test_the_refusals_are_written_for_staff() -> None:
    for row in PERMISSIONS:
        assert row.refusal in STAFF if row.roles is not None else row.refusal == ""
    assert REFUSALS <= set(STAFF)


@pytest.mark.parametrize("roles", ROLE_SETS, ids=lambda roles: "+".join(roles) or "no role")
def test_help_lists_each_command_to_the_roles_the_table_lists_it_for(roles: frozenset[StaffRole]) -> None:
    text = help_text(roles)
    for row in PERMISSIONS:
        for listed, line in row.help:
            assert (line in text) == (listed is None or listed in roles), line


def test_help_names_every_command() -> None:
    everything = help_text(frozenset(StaffRole))
    for row in PERMISSIONS:
        assert f"!{row.name.split()[0]}" in everything, row.name


def test_a_command_given_in_a_case_room_with_no_chat_is_for_the_case_room_only() -> None:
    """A room the rules do not know: OWN_CASE_ROOM commands are refused there for everyone."""
    state = _state()
    for row in PERMISSIONS:
        if row.where is Where.OWN_CASE_ROOM:
            event = CommandGiven(RoomId("!elsewhere"), ADVOCATE, parse(row.example), frozenset(StaffRole))
            assert apply(state, event, 30)[1] == [Reply(RoomId("!elsewhere"), "in_case_room")]
