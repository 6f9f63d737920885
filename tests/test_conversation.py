"""The conversation rules, driven by plain tables of events with a fake clock. No I/O."""

from __future__ import annotations

import pytest

from bot.commands import Claim, Close, Help, Invalid
from bot.conversation import (
    AcceptInvite,
    CaseRoomOpened,
    ChatErased,
    ClockTicked,
    CommandGiven,
    EraseChat,
    Hotline,
    IllegalTransition,
    InviteReceived,
    MemberJoined,
    NotifySurvivor,
    OpenCaseRoom,
    Phase,
    PostAlert,
    RelayBacklog,
    RelayToCase,
    RelayToSurvivor,
    Reply,
    Rules,
    SignalClosed,
    StaffWrote,
    SurvivorDisconnected,
    SurvivorEnded,
    SurvivorReconnected,
    SurvivorWrote,
    apply,
    recover,
)
from bot.ids import ChatRef, EventId, RoomId, UserId
from hotline.wire import Role

BOT = UserId("@hotline:hs")
SURVIVOR = UserId("@chat_abc:hs")
SURVIVOR_ROOM = RoomId("!survivor")
CASE_ROOM = RoomId("!case")
DISPATCH = RoomId("!dispatch")
ADVOCATE = UserId("@advocate1:hs")
OTHER = UserId("@advocate2:hs")
REF = ChatRef("K7Q3")
RULES = Rules(bot=BOT, survivor_prefix="@chat_", server_name="hs", reconnect_grace=120)


def claim(ref: str | None = REF, who: UserId = ADVOCATE, advocate: bool = True) -> CommandGiven:
    return CommandGiven(DISPATCH, who, Claim(ChatRef(ref) if ref else None), advocate)


def close(who: UserId = ADVOCATE, room: RoomId = CASE_ROOM) -> CommandGiven:
    return CommandGiven(room, who, Close(), True)


OPEN = [(0, InviteReceived(SURVIVOR_ROOM, SURVIVOR, REF)), (1, MemberJoined(SURVIVOR_ROOM, BOT))]
ACTIVE = OPEN + [(10, claim()), (11, CaseRoomOpened(REF, CASE_ROOM)), (12, MemberJoined(CASE_ROOM, ADVOCATE))]


def run(steps: list[tuple[float, object]]) -> tuple[Hotline, list[object]]:
    state, effects = Hotline(rules=RULES), []
    for now, event in steps:
        state, effects = apply(state, event, now)  # type: ignore[arg-type]
    return state, effects


def phase(state: Hotline) -> Phase | None:
    chat = state.chats.get(REF)
    return chat.phase if chat else None


CASES = [
    # (name, steps, expected phase afterwards, expected effects of the last step)
    ("invite from a survivor account is accepted", OPEN[:1], Phase.WAITING, [AcceptInvite(SURVIVOR_ROOM)]),
    ("welcome and alert once the bot has joined", OPEN, Phase.WAITING,
     [NotifySurvivor(SURVIVOR_ROOM, "welcome"), PostAlert(REF)]),
    ("invite from anyone else is ignored", [(0, InviteReceived(SURVIVOR_ROOM, ADVOCATE, REF))], None, []),
    ("invite from another server's lookalike is ignored",
     [(0, InviteReceived(SURVIVOR_ROOM, UserId("@chat_abc:evil"), REF))], None, []),
    ("a replayed invite changes nothing", OPEN + [(2, InviteReceived(SURVIVOR_ROOM, SURVIVOR, ChatRef("AAAA")))],
     Phase.WAITING, []),
    ("waiting messages are kept for the backlog", OPEN + [(2, SurvivorWrote(SURVIVOR_ROOM, SURVIVOR, EventId("$1"), "hi"))],
     Phase.WAITING, []),
    ("claim by ref", OPEN + [(10, claim())], Phase.INVITING,
     [Reply(DISPATCH, "claimed", (("ref", REF),)), OpenCaseRoom(REF, ADVOCATE)]),
    ("claim the oldest", OPEN + [(10, claim(None))], Phase.INVITING,
     [Reply(DISPATCH, "claimed", (("ref", REF),)), OpenCaseRoom(REF, ADVOCATE)]),
    ("claim by a non-advocate is refused", OPEN + [(10, claim(advocate=False))], Phase.WAITING,
     [Reply(DISPATCH, "not_advocate")]),
    ("claim of an unknown ref", OPEN + [(10, claim("QQQQ"))], Phase.WAITING,
     [Reply(DISPATCH, "unknown_ref", (("ref", "QQQQ"),))]),
    ("claim with nothing waiting", [(10, claim(None))], None, [Reply(DISPATCH, "nothing_waiting")]),
    ("second claim is already taken", OPEN + [(10, claim()), (11, claim(who=OTHER))], Phase.INVITING,
     [Reply(DISPATCH, "already_taken", (("ref", REF),))]),
    ("advocate joins: intro, backlog, survivor told", ACTIVE, Phase.ACTIVE,
     [Reply(CASE_ROOM, "case_intro", (("ref", REF),)), RelayBacklog(SURVIVOR_ROOM, SURVIVOR, CASE_ROOM),
      NotifySurvivor(SURVIVOR_ROOM, "advocate_joined")]),
    ("someone else joining the case room changes nothing", ACTIVE[:-1] + [(12, MemberJoined(CASE_ROOM, OTHER))],
     Phase.INVITING, []),
    ("survivor text is relayed to the case room",
     ACTIVE + [(20, SurvivorWrote(SURVIVOR_ROOM, SURVIVOR, EventId("$2"), "hello"))], Phase.ACTIVE,
     [RelayToCase(CASE_ROOM, EventId("$2"), "hello")]),
    ("text in a survivor room from another account is dropped",
     ACTIVE + [(20, SurvivorWrote(SURVIVOR_ROOM, OTHER, EventId("$2"), "hello"))], Phase.ACTIVE, []),
    ("advocate text is relayed as Advocate",
     ACTIVE + [(20, StaffWrote(CASE_ROOM, ADVOCATE, EventId("$3"), "hi"))], Phase.ACTIVE,
     [RelayToSurvivor(SURVIVOR_ROOM, EventId("$3"), "hi", Role.ADVOCATE)]),
    ("someone else's text in the case room is not relayed",
     ACTIVE + [(20, StaffWrote(CASE_ROOM, OTHER, EventId("$3"), "hi"))], Phase.ACTIVE, []),
    ("!close by the advocate", ACTIVE + [(30, close())], Phase.CLOSING, "closing:advocate"),
    ("!close by someone else is refused", ACTIVE + [(30, close(OTHER))], Phase.ACTIVE,
     [Reply(CASE_ROOM, "not_your_chat")]),
    ("!close outside a case room", ACTIVE + [(30, close(room=DISPATCH))], Phase.ACTIVE,
     [Reply(DISPATCH, "close_in_case_room")]),
    ("End chat on the page", ACTIVE + [(30, SurvivorEnded(SURVIVOR_ROOM))], Phase.CLOSING, "closing:survivor"),
    ("End chat while waiting", OPEN + [(30, SurvivorEnded(SURVIVOR_ROOM))], Phase.CLOSING, "closing:waiting"),
    ("a second end changes nothing", ACTIVE + [(30, SurvivorEnded(SURVIVOR_ROOM)), (31, close())], Phase.CLOSING,
     []),
    ("disconnect is announced to the advocate", ACTIVE + [(40, SurvivorDisconnected(SURVIVOR_ROOM))], Phase.ACTIVE,
     [Reply(CASE_ROOM, "survivor_disconnected", (("minutes", "2"),))]),
    ("reconnect is announced", ACTIVE + [(40, SurvivorDisconnected(SURVIVOR_ROOM)),
                                         (50, SurvivorReconnected(SURVIVOR_ROOM))], Phase.ACTIVE,
     [Reply(CASE_ROOM, "survivor_reconnected")]),
    ("a reconnect without a disconnect changes nothing", ACTIVE + [(50, SurvivorReconnected(SURVIVOR_ROOM))],
     Phase.ACTIVE, []),
    ("the clock before the grace period ends changes nothing",
     ACTIVE + [(40, SurvivorDisconnected(SURVIVOR_ROOM)), (159.9, ClockTicked())], Phase.ACTIVE, []),
    ("the grace period ends: closed", ACTIVE + [(40, SurvivorDisconnected(SURVIVOR_ROOM)), (160, ClockTicked())],
     Phase.CLOSING, "closing:lost"),
    ("a reconnect stops the grace timer", ACTIVE + [(40, SurvivorDisconnected(SURVIVOR_ROOM)),
                                                    (100, SurvivorReconnected(SURVIVOR_ROOM)), (500, ClockTicked())],
     Phase.ACTIVE, []),
    ("erased: the chat is gone", ACTIVE + [(30, close()), (31, ChatErased(REF))], None, []),
    ("!help answers where it was asked", [(0, CommandGiven(DISPATCH, ADVOCATE, Help(), True))], None,
     [Reply(DISPATCH, "help")]),
    ("an invalid command is explained", [(0, CommandGiven(DISPATCH, ADVOCATE, Invalid("zap", "unknown_command"), True))],
     None, [Reply(DISPATCH, "unknown_command", (("name", "zap"),))]),
]


@pytest.mark.parametrize(("name", "steps", "expected_phase", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rules(name, steps, expected_phase, expected):
    state, effects = run(steps)
    assert phase(state) == expected_phase
    if isinstance(expected, str):
        assert_closing(state, effects, expected.split(":")[1])
    else:
        assert effects == expected


def assert_closing(state: Hotline, effects: list[object], why: str) -> None:
    chat = state.chats[REF]
    key = {"advocate": "closed_advocate", "survivor": "closed_survivor", "lost": "closed_connection_lost"}.get(why)
    expected: list[object] = [NotifySurvivor(SURVIVOR_ROOM, "chat_ended")]
    if key:
        expected.append(Reply(CASE_ROOM, key, (("ref", REF),)))
    expected += [SignalClosed(SURVIVOR_ROOM), EraseChat(chat)]
    assert effects == expected


def test_illegal_transitions_leave_the_state_unchanged():
    state, _ = run(OPEN)
    with pytest.raises(IllegalTransition):
        apply(state, CaseRoomOpened(REF, CASE_ROOM), 5)  # not claimed
    with pytest.raises(IllegalTransition):
        apply(state, ChatErased(REF), 5)  # not closing
    with pytest.raises(IllegalTransition):
        apply(state, InviteReceived(RoomId("!other"), SURVIVOR, REF), 5)  # reference in use
    assert phase(state) is Phase.WAITING


def test_oldest_waiting_is_claimed_first():
    later = ChatRef("M4N6")
    steps = OPEN + [(5, InviteReceived(RoomId("!later"), UserId("@chat_b:hs"), later)), (10, claim(None)),
                    (11, claim(None, who=OTHER))]
    state, effects = run(steps)
    assert state.chats[REF].advocate == ADVOCATE  # opened at 0: first in line
    assert state.chats[later].advocate == OTHER
    assert effects[-1] == OpenCaseRoom(later, OTHER)


def test_recover_finishes_interrupted_work():
    state, _ = run(ACTIVE + [(30, close())])
    claimed, _ = run(OPEN + [(10, claim())])
    assert recover(state) == [EraseChat(state.chats[REF])]
    assert recover(claimed) == [OpenCaseRoom(REF, ADVOCATE)]
    active, _ = run(ACTIVE)
    assert recover(active) == []
