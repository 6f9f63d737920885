"""Who may run which command, and where: one table.

``refusal`` checks a command against it before any rule runs (``on_command_given``); ``!help``
is written from it (``bot.messages.help_text``), and so are the tests of who is refused
(tests/test_permissions.py). A row is one ``!`` command: the roles that may use it (``None``:
anyone), where it works, the reply to someone who may not, and its lines in ``!help`` (by role).

Roles are room memberships (see ``StaffRole``). Where a command works:
- ``ANYWHERE``: any room the bot is in;
- ``ADMIN_ROOM``: the admin room only (the answers may say more than other rooms should see);
- ``OWN_CASE_ROOM``: the case room of a chat whose advocate one is (``in_case_room`` elsewhere,
  ``not_your_chat`` for anyone else in that room).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from bot.commands import (
    Chats,
    Claim,
    Close,
    Codeword,
    Command,
    DeviceDecision,
    Devices,
    Help,
    InterpreterRequest,
    Join,
    Languages,
    Say,
    Service,
    Shift,
    Stats,
    SupervisorRequest,
    Transfer,
    TrustIdentity,
    VerifyDevice,
)
from bot.conversation.effects import Effect, Reply
from bot.conversation.events import CommandGiven
from bot.conversation.state import Chat, Hotline, StaffRole


class Where(StrEnum):
    ANYWHERE = "anywhere"
    ADMIN_ROOM = "the admin room"
    OWN_CASE_ROOM = "the case room of one's own chat"


ADVOCATE, SUPERVISOR, INTERPRETER, ADMIN = StaffRole
EVERYONE = None


@dataclass(frozen=True)
class Permission:
    name: str  # as typed after "!"
    command: type[Command]
    roles: frozenset[StaffRole] | None  # None: anyone the bot hears
    where: Where
    refusal: str = ""  # the reply (a key of messages.STAFF) to someone without one of the roles
    help: tuple[tuple[StaffRole | None, str], ...] = ()  # (listed for, line); None: for everyone
    example: str = ""  # a valid use, for the generated tests
    form: Callable[[Command], bool] = lambda command: True  # which of the command's forms this row is
    late: bool = False  # the roles are checked by the rule, once the chat is found (see on_join)


def _only(*roles: StaffRole) -> frozenset[StaffRole]:
    return frozenset(roles)


PERMISSIONS: tuple[Permission, ...] = (
    Permission("claim", Claim, _only(ADVOCATE), Where.ANYWHERE, "not_advocate", (
        (ADVOCATE, "!claim REF — take the waiting chat with that ref (dispatch room); add force near your shift's end"),
        (ADVOCATE, "!claim — take the chat that has waited longest"),
    ), "!claim K7Q3"),
    Permission("say", Say, EVERYONE, Where.ANYWHERE, help=(
        (ADVOCATE, "!say — list ready-made messages; !say KEY sends one (case room)"),
    ), example="!say", form=lambda c: isinstance(c, Say) and c.key is None),
    Permission("say KEY", Say, EVERYONE, Where.OWN_CASE_ROOM, example="!say greeting",
               form=lambda c: isinstance(c, Say) and c.key is not None),
    Permission("supervisor", SupervisorRequest, EVERYONE, Where.OWN_CASE_ROOM, help=(
        (ADVOCATE, "!supervisor — ask a supervisor to join (case room)"),
    ), example="!supervisor"),
    Permission("interpreter", InterpreterRequest, EVERYONE, Where.OWN_CASE_ROOM, help=(
        (ADVOCATE, "!interpreter LANGUAGE or !interpreter @user — ask the survivor, then bring in an interpreter "
                   "(case room)"),
    ), example="!interpreter es"),
    Permission("transfer", Transfer, EVERYONE, Where.OWN_CASE_ROOM, help=(
        (ADVOCATE, "!transfer [NOTE] — back to the queue, first in line; !transfer @user [NOTE] — to a colleague "
                   "(case room)"),
    ), example="!transfer", form=lambda c: isinstance(c, Transfer) and not c.shift_change),
    Permission("handoff", Transfer, EVERYONE, Where.OWN_CASE_ROOM, help=(
        (ADVOCATE, "!handoff [NOTE] — the shift-change transfer (case room)"),
    ), example="!handoff", form=lambda c: isinstance(c, Transfer) and c.shift_change),
    Permission("shift", Shift, _only(ADVOCATE), Where.ANYWHERE, "not_advocate", (
        (ADVOCATE, "!shift until HH:MM — when your shift ends; !shift end"),
    ), "!shift until 17:30"),
    Permission("codeword", Codeword, EVERYONE, Where.OWN_CASE_ROOM, help=(
        (ADVOCATE, "!codeword new | verify C-XXXX | rotate C-XXXX — code words for ongoing advocacy (case room)"),
    ), example="!codeword new"),
    Permission("chats", Chats, EVERYONE, Where.ANYWHERE, help=((ADVOCATE, "!chats — your open chats"),),
               example="!chats"),
    Permission("close", Close, EVERYONE, Where.OWN_CASE_ROOM, help=(
        (ADVOCATE, "!close — end this chat and erase it (case room)"),
    ), example="!close"),
    Permission("join", Join, _only(SUPERVISOR, INTERPRETER), Where.ANYWHERE, "join_refused", (
        (SUPERVISOR, "!join REF — join an active chat (the survivor is told)"),
        (INTERPRETER, "!join REF — join a chat that asked for an interpreter"),
    ), "!join K7Q3", late=True),
    Permission("languages", Languages, _only(INTERPRETER), Where.ANYWHERE, "not_interpreter", (
        (INTERPRETER, "!languages CODE… — the languages you work in (interpreters room)"),
    ), "!languages es fr"),
    Permission("service", Service, _only(ADMIN), Where.ADMIN_ROOM, "not_admin", (
        (ADMIN, "!service close MESSAGE — stop new chats now; the page shows MESSAGE (admin room)"),
        (ADMIN, "!service open — take new chats again (admin room)"),
    ), "!service open"),
    Permission("stats", Stats, _only(ADMIN), Where.ADMIN_ROOM, "not_admin", (
        (ADMIN, "!stats [today|week|month|90d|year] — statistics without personal data (admin room)"),
    ), "!stats week"),
    Permission("devices", Devices, _only(ADMIN), Where.ADMIN_ROOM, "not_admin", (
        (ADMIN, "!devices — staff devices waiting for approval; !approve @user DEVICE; !revoke @user DEVICE "
                "(admin room)"),
    ), "!devices"),
    Permission("approve", DeviceDecision, _only(ADMIN), Where.ADMIN_ROOM, "not_admin",
               example="!approve @advocate:hotline.test DEV1",
               form=lambda c: isinstance(c, DeviceDecision) and c.approve),
    Permission("revoke", DeviceDecision, _only(ADMIN), Where.ADMIN_ROOM, "not_admin",
               example="!revoke @advocate:hotline.test DEV1",
               form=lambda c: isinstance(c, DeviceDecision) and not c.approve),
    Permission("verify", VerifyDevice, _only(ADMIN), Where.ADMIN_ROOM, "not_admin", (
        (ADMIN, "!verify @user DEVICE — after comparing the emojis of a staff device's verification (admin room)"),
    ), "!verify @advocate:hotline.test DEV1"),
    Permission("trust", TrustIdentity, _only(ADMIN), Where.ADMIN_ROOM, "not_admin", (
        (ADMIN, "!trust @user — trust a staff member's current identity after checking it with them (admin room)"),
    ), "!trust @advocate:hotline.test"),
    Permission("help", Help, EVERYONE, Where.ANYWHERE, help=((EVERYONE, "!help — this list"),), example="!help"),
)


def permission_for(command: Command) -> Permission:
    """The row of the table for a (valid) command."""
    for row in PERMISSIONS:
        if isinstance(command, row.command) and row.form(command):
            return row
    raise LookupError(f"no permission for {type(command).__name__}")


def has_role(row: Permission, roles: frozenset[StaffRole]) -> bool:
    return row.roles is None or bool(row.roles & roles)


def refusal(state: Hotline, event: CommandGiven, *, late: bool = False) -> list[Effect]:
    """The reply that refuses this command to its sender here, or [] if they may run it.

    ``late`` rows are checked by their rule (``late=True``) once it has found the chat."""
    row = permission_for(event.command)
    if row.late != late:
        return []
    if not has_role(row, event.roles):
        return [Reply(event.room, row.refusal)]
    if row.where is Where.ADMIN_ROOM and event.room != state.rules.admin_room:
        return [Reply(event.room, "not_admin")]
    if row.where is Where.OWN_CASE_ROOM:
        chat = state.by_case_room(event.room)
        if chat is None:
            return [Reply(event.room, "in_case_room")]
        if event.sender != chat.advocate:
            return [Reply(event.room, "not_your_chat")]
    return []


def own_chat(state: Hotline, event: CommandGiven) -> Chat:
    """The chat of the case room a command came from (``OWN_CASE_ROOM`` commands, once allowed)."""
    chat = state.by_case_room(event.room)
    assert chat is not None and chat.advocate == event.sender
    return chat


def help_lines(roles: frozenset[StaffRole] | set[str]) -> list[str]:
    """The ``!help`` lines for someone with these roles: by role, in the table's order; then everyone's."""
    lines = [line for role in StaffRole if role in roles
             for row in PERMISSIONS for listed, line in row.help if listed is role]
    return lines + [line for row in PERMISSIONS for listed, line in row.help if listed is EVERYONE]
