"""The conversation rules, driven by plain tables of events with a fake clock. No I/O."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.commands import (
    Chats,
    Claim,
    Close,
    DeviceDecision,
    Devices,
    Help,
    InterpreterRequest,
    Invalid,
    Join,
    Say,
    Service,
    Shift,
    Stats,
    SupervisorRequest,
    Transfer,
)
from bot.conversation import (
    AcceptInvite,
    AskInterpreters,
    AskSurvivor,
    CaseRoomOpened,
    ChatErased,
    ClockTicked,
    CommandGiven,
    Count,
    DecideDevice,
    EraseCaseRoom,
    EraseChat,
    Escalate,
    Hotline,
    IllegalTransition,
    InviteReceived,
    InviteToCase,
    ListCanned,
    MemberJoined,
    MemberLeft,
    NotifySurvivor,
    OpenCaseRoom,
    Phase,
    PostAlert,
    Practice,
    RelayBacklog,
    RelayFailed,
    RelayToCase,
    RelayToSurvivor,
    RemoveFromCase,
    Reply,
    Rules,
    SendCanned,
    SetService,
    ShowDevices,
    ShowHelp,
    EscalateGroup,
    PostAlertGroup,
    ShowStats,
    SignalClosed,
    StaffEdited,
    StaffRole,
    StaffWrote,
    SurvivorAnswered,
    SurvivorDisconnected,
    SurvivorEnded,
    SurvivorNotified,
    SurvivorProfile,
    SurvivorReconnected,
    SurvivorWrote,
    apply,
    recover,
)
from bot.ids import ChatRef, EventId, RoomId, UserId
from hotline_runtime.wire import Role

BOT = UserId("@hotline:hs")
SURVIVOR = UserId("@chat_abc:hs")
SURVIVOR_ROOM = RoomId("!survivor")
CASE_ROOM = RoomId("!case")
DISPATCH = RoomId("!dispatch")
ADVOCATE = UserId("@advocate1:hs")
OTHER = UserId("@advocate2:hs")
REF = ChatRef("K7Q3")
ADMIN_ROOM = RoomId("!admin")
ADVOCATES = frozenset({StaffRole.ADVOCATE})
ADMINS = frozenset({StaffRole.ADMIN})
# Minutes are made distinct so a table row shows which timer fired.
PRACTICE = Practice(reassure_every=180, realert_after=300, escalate_after=600, inactivity_warning_after=600,
                    inactivity_close_after=300, advocate_reminder_after=240, ready_max_age=7200)
RULES = Rules(bot=BOT, survivor_prefix="@chat_", server_name="hs", reconnect_grace=120, dispatch_room=DISPATCH,
              admin_room=ADMIN_ROOM, canned=frozenset({"safety", "greeting"}), practice=PRACTICE)


def claim(ref: str | None = REF, who: UserId = ADVOCATE, advocate: bool = True) -> CommandGiven:
    return CommandGiven(DISPATCH, who, Claim(ChatRef(ref) if ref else None), ADVOCATES if advocate else frozenset())


def close(who: UserId = ADVOCATE, room: RoomId = CASE_ROOM) -> CommandGiven:
    return CommandGiven(room, who, Close(), ADVOCATES)


def command(command, room: RoomId = CASE_ROOM, who: UserId = ADVOCATE, roles=ADVOCATES) -> CommandGiven:
    return CommandGiven(room, who, command, roles, EventId("$cmd"))


# Opened ahead (the invitation, the bot's join), then started by the survivor (the profile).
READY = [(0, InviteReceived(SURVIVOR_ROOM, SURVIVOR, REF)), (0, MemberJoined(SURVIVOR_ROOM, BOT))]
OPEN = READY + [(0, SurvivorProfile(SURVIVOR_ROOM, ""))]
ACTIVE = OPEN + [(10, claim()), (11, CaseRoomOpened(REF, CASE_ROOM)), (12, MemberJoined(CASE_ROOM, ADVOCATE))]
SILENT = ACTIVE + [(12, StaffWrote(CASE_ROOM, ADVOCATE, EventId("$a"), "hello"))]  # answered, then quiet
INTRO = (("ref", REF), ("language", "not given"), ("rights", "no"))


def run(steps: list[tuple[float, object]]) -> tuple[Hotline, list[object]]:
    state, effects = Hotline(rules=RULES), []
    for now, event in steps:
        state, effects = apply(state, event, now)  # type: ignore[arg-type]
    return state, effects


def phase(state: Hotline) -> Phase | None:
    chat = state.chats.get(REF)
    return chat.phase if chat else None


def opened(ahead: float, at: float, ref: str) -> list[tuple[float, object]]:
    """A chat opened ahead at ``ahead`` (invitation, the bot's join) and started at ``at``."""
    room, user = RoomId(f"!s{ref}"), UserId(f"@chat_{ref.lower()}:hs")
    return [(ahead, InviteReceived(room, user, ChatRef(ref))), (ahead, MemberJoined(room, BOT)),
            (at, SurvivorProfile(room, ""))]


CASES = [
    # (name, steps, expected phase afterwards, expected effects of the last step)
    # Opened ahead: nobody has started the chat; staff see nothing of it.
    ("invite from a survivor account is accepted: ready, nobody told", READY[:1], Phase.READY,
     [AcceptInvite(SURVIVOR_ROOM)]),
    ("the bot's join in a chat opened ahead brings the rights notice only", READY, Phase.READY,
     [NotifySurvivor(SURVIVOR_ROOM, "rights")]),
    ("the bot's join seen again sends nothing", READY + [(1, MemberJoined(SURVIVOR_ROOM, BOT))], Phase.READY, []),
    ("the survivor starts (the profile): alert, welcome with the place in line, counted", OPEN, Phase.WAITING,
     [PostAlert(REF), NotifySurvivor(SURVIVOR_ROOM, "welcome", (("place", "1"),)), Count("started")]),
    ("the survivor starts with a language: it goes with the alert", READY + [(0, SurvivorProfile(SURVIVOR_ROOM, "es-MX"))],
     Phase.WAITING, [PostAlert(REF), Reply(DISPATCH, "alert_language", (("ref", REF), ("language", "es-MX"))),
                     NotifySurvivor(SURVIVOR_ROOM, "welcome", (("place", "1"),)), Count("started")]),
    ("the survivor starts with a malformed language: started without one",
     READY + [(0, SurvivorProfile(SURVIVOR_ROOM, "<script>"))], Phase.WAITING,
     [PostAlert(REF), NotifySurvivor(SURVIVOR_ROOM, "welcome", (("place", "1"),)), Count("started")]),
    ("the profile seen before the bot's join: the rights notice first, then the welcome",
     READY[:1] + [(0, SurvivorProfile(SURVIVOR_ROOM, ""))], Phase.WAITING,
     [PostAlert(REF), NotifySurvivor(SURVIVOR_ROOM, "rights"), NotifySurvivor(SURVIVOR_ROOM, "welcome", (("place", "1"),)),
      Count("started")]),
    ("the bot's join seen after the profile sends nothing more",
     READY[:1] + [(0, SurvivorProfile(SURVIVOR_ROOM, "")), (0, MemberJoined(SURVIVOR_ROOM, BOT))], Phase.WAITING, []),
    ("a second profile without a language changes nothing", OPEN + [(2, SurvivorProfile(SURVIVOR_ROOM, ""))],
     Phase.WAITING, []),
    ("a chat opened ahead is not in line: a chat started later is first",
     READY + opened(2, 5, "M4N6"), Phase.READY,
     [PostAlert(ChatRef("M4N6")), NotifySurvivor(RoomId("!sM4N6"), "welcome", (("place", "1"),)), Count("started")]),
    ("!claim of a chat opened ahead: as if there were none", READY + [(10, claim())], Phase.READY,
     [Reply(DISPATCH, "unknown_ref", (("ref", REF),))]),
    ("!claim of the oldest with only a chat opened ahead: nothing waiting", READY + [(10, claim(None))], Phase.READY,
     [Reply(DISPATCH, "nothing_waiting")]),
    ("!chats does not list a chat opened ahead", READY + [(10, command(Chats(), DISPATCH))], Phase.READY,
     [Reply(DISPATCH, "no_chats")]),
    ("!join of a chat opened ahead: as if there were none",
     READY + [(10, command(Join(REF), DISPATCH, UserId("@supervisor1:hs"), frozenset({StaffRole.SUPERVISOR})))],
     Phase.READY, [Reply(DISPATCH, "unknown_active_ref", (("ref", REF),))]),
    ("a chat opened ahead gets no notice, alert, escalation or longest-wait close",
     READY + [(181, ClockTicked()), (601, ClockTicked()), (1800, ClockTicked()), (3600, ClockTicked())],
     Phase.READY, []),
    ("text in a chat opened ahead is not kept", READY + [(1, SurvivorWrote(SURVIVOR_ROOM, SURVIVOR, EventId("$1"), "hi"))],
     Phase.READY, []),
    ("a dropped page in a chat opened ahead changes nothing",
     READY + [(5, SurvivorDisconnected(SURVIVOR_ROOM)), (500, ClockTicked())], Phase.READY, []),
    ("a page coming back in a chat opened ahead changes nothing",
     READY + [(5, SurvivorDisconnected(SURVIVOR_ROOM)), (6, SurvivorReconnected(SURVIVOR_ROOM))], Phase.READY, []),
    ("the gateway lets go of a chat opened ahead: closed and erased, nobody told",
     READY + [(30, SurvivorEnded(SURVIVOR_ROOM))], Phase.CLOSING, "closing:unused"),
    ("a chat opened ahead just under ready_max_age stays", READY + [(7199, ClockTicked())], Phase.READY, []),
    ("a chat opened ahead at ready_max_age: closed and erased, nobody told",
     READY + [(7200, ClockTicked())], Phase.CLOSING, "closing:unused"),
    ("a chat opened ahead past ready_max_age: closed and erased, nobody told",
     READY + [(9000, ClockTicked())], Phase.CLOSING, "closing:unused"),
    ("the wait counts from the start, not from the opening ahead",
     READY + [(1000, SurvivorProfile(SURVIVOR_ROOM, "")), (2799, ClockTicked())], Phase.WAITING,
     [NotifySurvivor(SURVIVOR_ROOM, "still_waiting", (("place", "1"),)), PostAlert(REF, 30), Escalate(REF, 30)]),
    ("the longest wait from the start", READY + [(1000, SurvivorProfile(SURVIVOR_ROOM, "")), (2800, ClockTicked())],
     Phase.CLOSING, "closing:unanswered"),
    # Started chats.
    ("a second chat is second in line", OPEN + opened(2, 3, "M4N6"), Phase.WAITING,
     [PostAlert(ChatRef("M4N6")), NotifySurvivor(RoomId("!sM4N6"), "welcome", (("place", "2"),)), Count("started")]),
    ("a second chat after the alert window is announced at once", OPEN + opened(12, 12, "M4N6"), Phase.WAITING,
     [PostAlert(ChatRef("M4N6")), NotifySurvivor(RoomId("!sM4N6"), "welcome", (("place", "2"),)), Count("started")]),
    ("the preferred language goes to the dispatch room", OPEN + [(2, SurvivorProfile(SURVIVOR_ROOM, "es-MX"))],
     Phase.WAITING, [Reply(DISPATCH, "alert_language", (("ref", REF), ("language", "es-MX")))]),
    ("a malformed language is ignored", OPEN + [(2, SurvivorProfile(SURVIVOR_ROOM, "<script>"))], Phase.WAITING, []),
    ("invite from anyone else is ignored", [(0, InviteReceived(SURVIVOR_ROOM, ADVOCATE, REF))], None, []),
    ("invite from another server's lookalike is ignored",
     [(0, InviteReceived(SURVIVOR_ROOM, UserId("@chat_abc:evil"), REF))], None, []),
    ("a replayed invite changes nothing", OPEN + [(2, InviteReceived(SURVIVOR_ROOM, SURVIVOR, ChatRef("AAAA")))],
     Phase.WAITING, []),
    ("waiting messages are kept for the backlog", OPEN + [(2, SurvivorWrote(SURVIVOR_ROOM, SURVIVOR, EventId("$1"), "hi"))],
     Phase.WAITING, []),
    ("claim by ref", OPEN + [(10, claim())], Phase.INVITING,
     [Reply(DISPATCH, "claimed", (("ref", REF),)), OpenCaseRoom(REF, ADVOCATE), Count("answered"),
      Count("wait", "<1m")]),
    ("claim the oldest, after a longer wait", OPEN + [(400, claim(None))], Phase.INVITING,
     [Reply(DISPATCH, "claimed", (("ref", REF),)), OpenCaseRoom(REF, ADVOCATE), Count("answered"),
      Count("wait", "5-15m")]),
    ("claim by a non-advocate is refused", OPEN + [(10, claim(advocate=False))], Phase.WAITING,
     [Reply(DISPATCH, "not_advocate")]),
    ("claim of an unknown ref", OPEN + [(10, claim("QQQQ"))], Phase.WAITING,
     [Reply(DISPATCH, "unknown_ref", (("ref", "QQQQ"),))]),
    ("claim with nothing waiting", [(10, claim(None))], None, [Reply(DISPATCH, "nothing_waiting")]),
    ("second claim is already taken", OPEN + [(10, claim()), (11, claim(who=OTHER))], Phase.INVITING,
     [Reply(DISPATCH, "already_taken", (("ref", REF),))]),
    ("advocate joins: intro, backlog, survivor told, safety prompt", ACTIVE, Phase.ACTIVE,
     [Reply(CASE_ROOM, "case_intro", INTRO), RelayBacklog(SURVIVOR_ROOM, SURVIVOR, CASE_ROOM),
      NotifySurvivor(SURVIVOR_ROOM, "advocate_joined"), Reply(CASE_ROOM, "safety_prompt")]),
    ("the intro says the rights notice was delivered and the language",
     OPEN + [(2, SurvivorNotified(SURVIVOR_ROOM, "rights")), (3, SurvivorProfile(SURVIVOR_ROOM, "ar"))] + ACTIVE[2:],
     Phase.ACTIVE,
     [Reply(CASE_ROOM, "case_intro", (("ref", REF), ("language", "ar"), ("rights", "yes"))),
      RelayBacklog(SURVIVOR_ROOM, SURVIVOR, CASE_ROOM), NotifySurvivor(SURVIVOR_ROOM, "advocate_joined"),
      Reply(CASE_ROOM, "safety_prompt")]),
    ("someone else joining the case room is removed", ACTIVE[:-1] + [(12, MemberJoined(CASE_ROOM, OTHER))],
     Phase.INVITING, [RemoveFromCase(CASE_ROOM, OTHER)]),
    ("someone uninvited joining an active case room is removed, never announced",
     ACTIVE + [(13, MemberJoined(CASE_ROOM, OTHER))], Phase.ACTIVE, [RemoveFromCase(CASE_ROOM, OTHER)]),
    ("the advocate's join seen again changes nothing", ACTIVE + [(13, MemberJoined(CASE_ROOM, ADVOCATE))],
     Phase.ACTIVE, []),
    ("survivor text is relayed to the case room",
     ACTIVE + [(20, SurvivorWrote(SURVIVOR_ROOM, SURVIVOR, EventId("$2"), "hello"))], Phase.ACTIVE,
     [RelayToCase(CASE_ROOM, EventId("$2"), "hello")]),
    ("a survivor line that did not reach the case room: the survivor is told which, the case room that it is missing",
     ACTIVE + [(20, RelayFailed(CASE_ROOM, "X7K2", "  I need\nhelp  "))], Phase.ACTIVE,
     [NotifySurvivor(SURVIVOR_ROOM, "not_passed_on", (("excerpt", "I need help"),)),
      Reply(CASE_ROOM, "survivor_relay_failed", (("incident", "X7K2"),))]),
    ("an advocate line that did not reach the survivor: the case room is told",
     ACTIVE + [(20, RelayFailed(SURVIVOR_ROOM, "X7K2", "hi"))], Phase.ACTIVE,
     [Reply(CASE_ROOM, "relay_failed", (("incident", "X7K2"),))]),
    ("a survivor line that failed after the advocate left: nothing (the next advocate is shown the history)",
     ACTIVE + [(30, MemberLeft(CASE_ROOM, ADVOCATE)), (31, RelayFailed(CASE_ROOM, "X7K2", "hello"))],
     Phase.WAITING, []),
    ("a relay that failed while the chat closes: nothing more to say",
     ACTIVE + [(30, close()), (31, RelayFailed(SURVIVOR_ROOM, "X7K2", "bye"))], Phase.CLOSING, []),
    ("a relay that failed in a room of no chat: nothing",
     ACTIVE + [(30, RelayFailed(RoomId("!elsewhere"), "X7K2", "hi"))], Phase.ACTIVE, []),
    ("text in a survivor room from another account is dropped",
     ACTIVE + [(20, SurvivorWrote(SURVIVOR_ROOM, OTHER, EventId("$2"), "hello"))], Phase.ACTIVE, []),
    ("advocate text is relayed as Advocate",
     ACTIVE + [(20, StaffWrote(CASE_ROOM, ADVOCATE, EventId("$3"), "hi"))], Phase.ACTIVE,
     [RelayToSurvivor(SURVIVOR_ROOM, EventId("$3"), "hi", Role.ADVOCATE)]),
    ("a message with a command on a later line is neither relayed nor carried out",
     ACTIVE + [(20, StaffWrote(CASE_ROOM, ADVOCATE, EventId("$3"), "take care\n!close"))], Phase.ACTIVE,
     [Reply(CASE_ROOM, "command_not_alone")]),
    ("a message with nothing to say (a reply that was only its quote) is not relayed",
     ACTIVE + [(20, StaffWrote(CASE_ROOM, ADVOCATE, EventId("$3"), " \n"))], Phase.ACTIVE, []),
    ("an edit is not relayed; the advocate is told",
     ACTIVE + [(20, StaffEdited(CASE_ROOM, ADVOCATE, EventId("$e")))], Phase.ACTIVE,
     [Reply(CASE_ROOM, "edit_not_relayed")]),
    ("an edit by someone not in the chat changes nothing",
     ACTIVE + [(20, StaffEdited(CASE_ROOM, OTHER, EventId("$e")))], Phase.ACTIVE, []),
    ("an edit in another room changes nothing", ACTIVE + [(20, StaffEdited(DISPATCH, ADVOCATE, EventId("$e")))],
     Phase.ACTIVE, []),
    ("the advocate leaves the case room: first in line again, the survivor told, the room erased",
     ACTIVE + [(30, MemberLeft(CASE_ROOM, ADVOCATE))], Phase.WAITING,
     [Reply(CASE_ROOM, "advocate_gone", (("ref", REF),)), EraseCaseRoom(CASE_ROOM),
      NotifySurvivor(SURVIVOR_ROOM, "advocate_gone"), Reply(DISPATCH, "alert_returned", (("ref", REF),))]),
    ("the advocate declines the case room's invitation: back in the queue, nothing to tell the survivor",
     OPEN + [(10, claim()), (11, CaseRoomOpened(REF, CASE_ROOM)), (12, MemberLeft(CASE_ROOM, ADVOCATE))],
     Phase.WAITING,
     [Reply(CASE_ROOM, "advocate_gone", (("ref", REF),)), EraseCaseRoom(CASE_ROOM),
      Reply(DISPATCH, "alert_returned", (("ref", REF),))]),
    ("the advocate leaving a closing chat changes nothing",
     ACTIVE + [(30, close()), (31, MemberLeft(CASE_ROOM, ADVOCATE))], Phase.CLOSING, []),
    ("someone else leaving changes nothing", ACTIVE + [(30, MemberLeft(CASE_ROOM, OTHER))], Phase.ACTIVE, []),
    ("someone else's text in the case room is not relayed",
     ACTIVE + [(20, StaffWrote(CASE_ROOM, OTHER, EventId("$3"), "hi"))], Phase.ACTIVE, []),
    ("!close by the advocate", ACTIVE + [(30, close())], Phase.CLOSING, "closing:advocate"),
    ("!close by someone else is refused", ACTIVE + [(30, close(OTHER))], Phase.ACTIVE,
     [Reply(CASE_ROOM, "not_your_chat")]),
    ("!close outside a case room", ACTIVE + [(30, close(room=DISPATCH))], Phase.ACTIVE,
     [Reply(DISPATCH, "in_case_room")]),
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
    ("a reconnect stops the grace timer", SILENT + [(40, SurvivorDisconnected(SURVIVOR_ROOM)),
                                                    (100, SurvivorReconnected(SURVIVOR_ROOM)), (200, ClockTicked())],
     Phase.ACTIVE, []),
    ("erased: the chat is gone", ACTIVE + [(30, close()), (31, ChatErased(REF))], None, []),
    ("!help answers where it was asked, for the sender's roles", [(0, command(Help(), DISPATCH))], None,
     [ShowHelp(DISPATCH, ADVOCATES)]),
    ("an invalid command is explained", [(0, command(Invalid("zap", "unknown_command"), DISPATCH))],
     None, [Reply(DISPATCH, "unknown_command", (("name", "zap"),))]),
    ("!say lists the library", ACTIVE + [(20, command(Say(None)))], Phase.ACTIVE, [ListCanned(CASE_ROOM)]),
    ("!say KEY sends it", ACTIVE + [(20, command(Say("safety")))], Phase.ACTIVE,
     [SendCanned(SURVIVOR_ROOM, CASE_ROOM, "safety", EventId("$cmd"))]),
    ("!say with an unknown key", ACTIVE + [(20, command(Say("nope")))], Phase.ACTIVE,
     [Reply(CASE_ROOM, "unknown_canned", (("key", "nope"),))]),
    ("!say by someone else", ACTIVE + [(20, command(Say("safety"), who=OTHER))], Phase.ACTIVE,
     [Reply(CASE_ROOM, "not_your_chat")]),
    ("!say before the advocate joined", OPEN + [(10, claim()), (11, CaseRoomOpened(REF, CASE_ROOM)),
                                                (12, command(Say("safety")))], Phase.INVITING,
     [Reply(CASE_ROOM, "not_active")]),
    ("!service close by an admin in the admin room", [(0, command(Service(False, "Storm"), ADMIN_ROOM, roles=ADMINS))],
     None, [SetService(True, "Storm"), Reply(ADMIN_ROOM, "service_closed", (("message", "Storm"),))]),
    ("!service open", [(0, command(Service(True), ADMIN_ROOM, roles=ADMINS))], None,
     [SetService(False), Reply(ADMIN_ROOM, "service_opened")]),
    ("!service by an advocate is refused", [(0, command(Service(True), ADMIN_ROOM))], None,
     [Reply(ADMIN_ROOM, "not_admin")]),
    ("!service by an admin outside the admin room is refused",
     [(0, command(Service(True), DISPATCH, roles=ADMINS))], None, [Reply(DISPATCH, "not_admin")]),
    ("!stats for admins", [(0, command(Stats(30), ADMIN_ROOM, roles=ADMINS))], None, [ShowStats(ADMIN_ROOM, 30)]),
    ("!stats refused for advocates", [(0, command(Stats(7), DISPATCH))], None, [Reply(DISPATCH, "not_admin")]),
    ("!stats refused outside the admin room, even for an admin (others read the dispatch room)",
     [(0, command(Stats(7), DISPATCH, roles=ADMINS))], None, [Reply(DISPATCH, "not_admin")]),
    # Timers while waiting (started at 0).
    ("reassurance with the place in line", OPEN + [(181, ClockTicked())], Phase.WAITING,
     [NotifySurvivor(SURVIVOR_ROOM, "still_waiting", (("place", "1"),))]),
    ("no reassurance before its time", OPEN + [(179, ClockTicked())], Phase.WAITING, []),
    ("announced again after 5 minutes", OPEN + [(181, ClockTicked()), (301, ClockTicked())], Phase.WAITING,
     [PostAlert(REF, 5)]),
    ("escalated once after 10 minutes", OPEN + [(181, ClockTicked()), (301, ClockTicked()), (361, ClockTicked()),
                                                (600, ClockTicked())], Phase.WAITING,
     [NotifySurvivor(SURVIVOR_ROOM, "still_waiting", (("place", "1"),)), Escalate(REF, 10)]),
    ("not escalated twice", OPEN + [(600, ClockTicked()), (601, ClockTicked())], Phase.WAITING, []),
    ("unanswered for 30 minutes: the survivor is told the alternatives, closed and erased",
     OPEN + [(1800, ClockTicked())], Phase.CLOSING, "closing:unanswered"),
    ("not closed a moment before the longest wait", OPEN + [(600, ClockTicked()), (1799, ClockTicked())],
     Phase.WAITING, [NotifySurvivor(SURVIVOR_ROOM, "still_waiting", (("place", "1"),)), PostAlert(REF, 30)]),
    ("a disconnected waiting survivor is not announced again", OPEN + [(200, SurvivorDisconnected(SURVIVOR_ROOM)),
                                                                       (301, ClockTicked())], Phase.WAITING, []),
    # Timers while active (advocate joined at 12 and answered at 12).
    ("inactivity warning after 10 quiet minutes", SILENT + [(612, ClockTicked())], Phase.ACTIVE,
     [NotifySurvivor(SURVIVOR_ROOM, "inactivity_warning", (("minutes", "5"),)),
      Reply(CASE_ROOM, "inactivity_warned", (("minutes", "5"),))]),
    ("closed for inactivity 5 minutes later", SILENT + [(612, ClockTicked()), (912, ClockTicked())], Phase.CLOSING,
     "closing:inactivity"),
    ("a word from the survivor resets the silence", SILENT + [(612, ClockTicked()),
                                                              (700, SurvivorWrote(SURVIVOR_ROOM, SURVIVOR, EventId("$w"), "here")),
                                                              (700, StaffWrote(CASE_ROOM, ADVOCATE, EventId("$b"), "ok")),
                                                              (912, ClockTicked())], Phase.ACTIVE, []),
    ("advocate reminded after 4 minutes without an answer",
     SILENT + [(20, SurvivorWrote(SURVIVOR_ROOM, SURVIVOR, EventId("$w"), "hi")), (260, ClockTicked())],
     Phase.ACTIVE, [Reply(CASE_ROOM, "advocate_reminder", (("minutes", "4"),))]),
    ("no reminder once answered",
     SILENT + [(20, SurvivorWrote(SURVIVOR_ROOM, SURVIVOR, EventId("$w"), "hi")),
               (30, StaffWrote(CASE_ROOM, ADVOCATE, EventId("$b"), "yes")), (260, ClockTicked())], Phase.ACTIVE, []),
    ("a disconnected survivor gets no inactivity warning",
     SILENT + [(100, SurvivorDisconnected(SURVIVOR_ROOM)), (219, ClockTicked())], Phase.ACTIVE, []),
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
    if why == "unused":  # opened ahead, never started: no page, no case room, no chat statistics
        assert effects == [SignalClosed(SURVIVOR_ROOM), EraseChat(chat), Count("ready_unused")]
        return
    reason = {"advocate": "advocate", "survivor": "survivor", "lost": "connection_lost",
              "inactivity": "inactivity", "waiting": "survivor", "unanswered": "unanswered"}[why]
    expected: list[object] = [NotifySurvivor(SURVIVOR_ROOM, "chat_ended")]
    if why == "unanswered":
        expected = [NotifySurvivor(SURVIVOR_ROOM, "wait_expired", (("minutes", "30"),))]
        expected += [SignalClosed(SURVIVOR_ROOM), EraseChat(chat), Count("closed_unanswered"), Count("abandoned"),
                     Reply(DISPATCH, "closed_unanswered", (("refs", REF), ("minutes", "30")))]
        assert effects == expected
        return
    if why != "waiting":
        expected.append(Reply(CASE_ROOM, f"closed_{reason}", (("ref", REF),)))
    expected += [SignalClosed(SURVIVOR_ROOM), EraseChat(chat), Count(f"closed_{reason}")]
    if why == "waiting":
        expected.append(Count("abandoned"))
    else:
        assert isinstance(effects[-1], Count) and effects[-1].metric == "duration"
        expected.append(effects[-1])
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
    steps = OPEN + opened(5, 5, later) + [(10, claim(None)), (11, claim(None, who=OTHER))]
    state, effects = run(steps)
    assert state.chats[REF].advocate == ADVOCATE  # opened at 0: first in line
    assert state.chats[later].advocate == OTHER
    assert OpenCaseRoom(later, OTHER) in effects


def test_recover_finishes_interrupted_work():
    state, _ = run(ACTIVE + [(30, close())])
    claimed, _ = run(OPEN + [(10, claim())])
    assert recover(state) == [EraseChat(state.chats[REF])]
    assert recover(claimed) == [OpenCaseRoom(REF, ADVOCATE)]
    active, _ = run(ACTIVE)
    assert recover(active) == []


# ---------------------------------------------------------------- team work

SUPERVISOR = UserId("@supervisor1:hs")
INTERPRETER = UserId("@interpreter1:hs")
SUPERVISORS = frozenset({StaffRole.SUPERVISOR})
INTERPRETERS = frozenset({StaffRole.INTERPRETER})
TEAM_RULES = replace(RULES, supervisors_room=RoomId("!sup"), interpreters_room=RoomId("!int"),
                     max_chats_per_advocate=2, shift_guard=1800, zone="UTC")


def run_team(steps):
    state, effects = Hotline(rules=TEAM_RULES), []
    for now, event in steps:
        state, effects = apply(state, event, now)
    return state, effects


def test_transfer_back_to_the_queue_first_in_line_then_a_new_advocate_reads_everything():
    later = opened(13, 14, "M4N6")
    state, effects = run_team(ACTIVE + later + [(20, command(Transfer(note="prefers mornings")))])
    chat = state.chats[REF]
    assert (chat.phase, chat.advocate, chat.case_room, chat.priority) == (Phase.WAITING, None, None, True)
    assert effects == [Reply(CASE_ROOM, "transferred_out", (("ref", REF),)), EraseCaseRoom(CASE_ROOM),
                       NotifySurvivor(SURVIVOR_ROOM, "transfer_waiting"),
                       Reply(DISPATCH, "alert_transfer_note", (("ref", REF),))]  # the note itself stays off it
    assert state.oldest_waiting().ref == REF  # first in line, ahead of the chat opened at 13
    new_room = RoomId("!case2")
    state, effects = run_team(ACTIVE + later + [(20, command(Transfer(note="prefers mornings"))),
                                                (30, claim(None, who=OTHER)), (31, CaseRoomOpened(REF, new_room)),
                                                (32, MemberJoined(new_room, OTHER))])
    assert effects[1] == Reply(new_room, "handoff_note", (("note", "prefers mornings"),))
    assert effects[2] == RelayBacklog(SURVIVOR_ROOM, SURVIVOR, new_room)
    assert effects[3] == NotifySurvivor(SURVIVOR_ROOM, "new_advocate")  # told before the new advocate writes
    assert state.chats[REF].handoff_note is None
    # The same advocate claiming it back is not "a different advocate".
    _, again = run_team(ACTIVE + later + [(20, command(Transfer(note=""))), (30, claim(None)),
                                          (31, CaseRoomOpened(REF, new_room)), (32, MemberJoined(new_room, ADVOCATE))])
    assert NotifySurvivor(SURVIVOR_ROOM, "same_advocate") in again
    assert NotifySurvivor(SURVIVOR_ROOM, "new_advocate") not in again
    # The previous advocate's words no longer reach the survivor.
    _, effects = apply(state, StaffWrote(CASE_ROOM, ADVOCATE, EventId("$x"), "still here?"), 40)
    assert effects == []


def test_transfer_to_a_named_colleague_and_handoff():
    direct = CommandGiven(CASE_ROOM, ADVOCATE, Transfer(to=OTHER), ADVOCATES, EventId("$t"), ADVOCATES)
    state, effects = run_team(ACTIVE + [(20, direct)])
    assert state.chats[REF].phase is Phase.INVITING and state.chats[REF].advocate == OTHER
    assert OpenCaseRoom(REF, OTHER) in effects and EraseCaseRoom(CASE_ROOM) in effects
    nobody = CommandGiven(CASE_ROOM, ADVOCATE, Transfer(to="@stranger:hs"), ADVOCATES, EventId("$t"), frozenset())
    state, effects = run_team(ACTIVE + [(20, nobody)])
    assert effects == [Reply(CASE_ROOM, "transfer_target", (("user", "@stranger:hs"),))]
    state, effects = run_team(ACTIVE + [(20, command(Transfer(shift_change=True)))])
    assert NotifySurvivor(SURVIVOR_ROOM, "shift_change") in effects


def test_supervisor_asked_joins_and_is_announced_and_relayed():
    state, effects = run_team(ACTIVE + [(20, command(SupervisorRequest()))])
    assert effects == [Reply(RoomId("!sup"), "supervisor_wanted", (("ref", REF),)), Reply(CASE_ROOM, "supervisor_asked")]
    join = CommandGiven(RoomId("!sup"), SUPERVISOR, Join(REF), SUPERVISORS)
    state, effects = run_team(ACTIVE + [(20, join)])
    assert effects == [InviteToCase(CASE_ROOM, SUPERVISOR), Reply(RoomId("!sup"), "joining", (("ref", REF),))]
    state, effects = run_team(ACTIVE + [(20, join), (21, MemberJoined(CASE_ROOM, SUPERVISOR))])
    assert effects[0] == NotifySurvivor(SURVIVOR_ROOM, "supervisor_joined")
    _, effects = apply(state, StaffWrote(CASE_ROOM, SUPERVISOR, EventId("$s"), "hi"), 22)
    assert effects == [RelayToSurvivor(SURVIVOR_ROOM, EventId("$s"), "hi", Role.SUPERVISOR)]
    _, effects = apply(state, MemberLeft(CASE_ROOM, SUPERVISOR), 23)
    assert effects == [NotifySurvivor(SURVIVOR_ROOM, "supervisor_left")]
    # An advocate cannot join someone else's chat.
    _, effects = run_team(ACTIVE + [(20, CommandGiven(DISPATCH, OTHER, Join(REF), ADVOCATES))])
    assert effects == [Reply(DISPATCH, "join_refused")]


@pytest.mark.parametrize("answer", ["yes", "no"])
def test_interpreter_needs_the_survivors_consent(answer):
    steps = ACTIVE + [(20, command(InterpreterRequest(language="es"))),
                      (21, SurvivorAnswered(SURVIVOR_ROOM, "interpreter_consent", answer))]
    state, effects = run_team(steps[:-1])
    assert effects == [AskSurvivor(SURVIVOR_ROOM, "interpreter_consent"), Reply(CASE_ROOM, "interpreter_asking")]
    # Before consent, an interpreter cannot join.
    early = CommandGiven(RoomId("!int"), INTERPRETER, Join(REF), INTERPRETERS)
    assert apply(state, early, 20)[1] == [Reply(RoomId("!int"), "join_refused")]
    state, effects = run_team(steps)
    if answer == "no":
        assert effects == [Reply(CASE_ROOM, "interpreter_declined")]
        return
    assert effects == [Reply(CASE_ROOM, "interpreter_consented"), AskInterpreters(REF, "es")]
    state, effects = apply(state, early, 22)
    assert effects[0] == InviteToCase(CASE_ROOM, INTERPRETER)
    state, effects = apply(state, MemberJoined(CASE_ROOM, INTERPRETER), 23)
    assert effects[0] == NotifySurvivor(SURVIVOR_ROOM, "interpreter_joined")
    _, effects = apply(state, StaffWrote(CASE_ROOM, INTERPRETER, EventId("$i"), "hola"), 24)
    assert effects == [RelayToSurvivor(SURVIVOR_ROOM, EventId("$i"), "hola", Role.INTERPRETER)]


def test_several_chats_up_to_the_limit_and_shift_end():
    second, third = ChatRef("M4N6"), ChatRef("P3Q7")
    opens = opened(2, 2, second) + opened(3, 3, third)
    state, effects = run_team(OPEN + opens + [(10, claim()), (11, claim(second)), (12, claim(third))])
    assert effects == [Reply(DISPATCH, "too_many_chats", (("max", "2"),))]
    _, effects = apply(state, command(Chats(), DISPATCH), 13)
    assert effects[0].key == "chats_list" and "K7Q3" in effects[0].params[0][1] and "M4N6" in effects[0].params[0][1]
    # Shift until 01:00 UTC; now is 00:40 UTC (epoch 2400): inside the last 30 minutes.
    shift = command(Shift(until=(1, 0)), DISPATCH)
    state, effects = run_team(OPEN + [(0, shift), (2400, claim())])
    assert effects == [Reply(DISPATCH, "shift_ending_claim", (("minutes", "20"),))]
    state, effects = run_team(OPEN + [(0, shift), (2400, CommandGiven(DISPATCH, ADVOCATE, Claim(REF, force=True),
                                                                       ADVOCATES))])
    assert OpenCaseRoom(REF, ADVOCATE) in effects
    state, effects = run_team(ACTIVE + [(13, shift), (1900, ClockTicked())])
    assert Reply(CASE_ROOM, "shift_reminder", (("minutes", "28"),)) in effects
    _, effects = apply(state, ClockTicked(), 1901)
    assert not [e for e in effects if getattr(e, "key", "") == "shift_reminder"]  # once


def test_device_commands_are_for_admins_in_the_admin_room():
    decide = DeviceDecision(True, "@advocate1:hs", "DEV2")
    assert run_team([(0, command(Devices(), ADMIN_ROOM, roles=ADMINS))])[1] == [ShowDevices(ADMIN_ROOM)]
    assert run_team([(0, command(decide, ADMIN_ROOM, roles=ADMINS))])[1] == [
        DecideDevice(ADMIN_ROOM, UserId("@advocate1:hs"), "DEV2", True)]
    assert run_team([(0, command(decide, DISPATCH))])[1] == [Reply(DISPATCH, "not_admin")]


# ---------------------------------------------------------------- many chats at once

def alerts(effects: list[object]) -> list[object]:
    return [e for e in effects if isinstance(e, (PostAlert, PostAlertGroup, EscalateGroup, Escalate))
            or (isinstance(e, Reply) and e.room == DISPATCH)]


# One alert per window, to show the grouping with few chats (the default lets 3 through first).
ONE_BY_ONE = replace(RULES, practice=replace(PRACTICE, alert_burst=1))


def run_all(steps: list[tuple[float, object]], rules: Rules = ONE_BY_ONE) -> tuple[Hotline, list[object]]:
    """Like run, but every step's effects."""
    state, everything = Hotline(rules=rules), []
    for now, event in steps:
        state, effects = apply(state, event, now)  # type: ignore[arg-type]
        everything += effects
    return state, everything


GROUP_CASES = [
    # (name, steps, dispatch effects of all steps)
    ("chats within the window after the first are announced together, with their languages",
     OPEN + opened(2, 3, "M4N6") + opened(3, 4, "P2R8") + [(5, SurvivorProfile(RoomId("!sP2R8"), "es")),
                                                            (10, ClockTicked()), (11, ClockTicked())],
     [PostAlert(REF), PostAlertGroup(((ChatRef("M4N6"), ""), (ChatRef("P2R8"), "es")), 1)]),
    ("one chat left for the window is announced alone, its language after it",
     OPEN + opened(2, 3, "M4N6") + [(5, SurvivorProfile(RoomId("!sM4N6"), "es")), (11, ClockTicked())],
     [PostAlert(REF), PostAlert(ChatRef("M4N6")),
      Reply(DISPATCH, "alert_language", (("ref", ChatRef("M4N6")), ("language", "es")))]),
    ("a chat dropped before its grouped alert is not announced",
     OPEN + opened(2, 3, "M4N6") + [(4, SurvivorDisconnected(RoomId("!sM4N6"))), (11, ClockTicked())],
     [PostAlert(REF)]),
    ("repeats due in the same window go out together",
     OPEN + opened(2, 3, "M4N6") + [(11, ClockTicked()), (301, ClockTicked()), (311, ClockTicked())],
     [PostAlert(REF), PostAlert(ChatRef("M4N6")), PostAlert(REF, 5), PostAlert(ChatRef("M4N6"), 5)]),
    ("escalations within a window are grouped",
     OPEN + opened(2, 2, "M4N6") + opened(3, 3, "P2R8") + [(11, ClockTicked()), (600, ClockTicked()),
                                                            (603, ClockTicked()), (610, ClockTicked())],
     [PostAlert(REF), PostAlertGroup(((ChatRef("M4N6"), ""), (ChatRef("P2R8"), "")), 1),
      PostAlertGroup(((REF, ""), (ChatRef("M4N6"), ""), (ChatRef("P2R8"), "")), 10), Escalate(REF, 10),
      EscalateGroup((ChatRef("M4N6"), ChatRef("P2R8")), 10)]),
    ("the default lets three alerts through in a window, then groups",
     OPEN + opened(2, 2, "M4N6") + opened(3, 3, "P2R8") + opened(4, 4, "Q5S7") + opened(5, 5, "T8V9")
     + [(10, ClockTicked()), (11, ClockTicked())],
     [PostAlert(REF), PostAlert(ChatRef("M4N6")), PostAlert(ChatRef("P2R8")),
      PostAlertGroup(((ChatRef("Q5S7"), ""), (ChatRef("T8V9"), "")), 1)]),
    ("chats unanswered together get one dispatch note",
     OPEN + opened(2, 0, "M4N6") + [(1800, ClockTicked())],
     [PostAlert(REF), Reply(DISPATCH, "closed_unanswered", (("refs", "K7Q3, M4N6"), ("minutes", "30")))]),
]


@pytest.mark.parametrize(("name", "steps", "expected"), GROUP_CASES, ids=[c[0] for c in GROUP_CASES])
def test_grouped_dispatch(name, steps, expected):
    _, effects = run_all(steps, RULES if name.startswith("the default") else ONE_BY_ONE)
    assert alerts(effects) == expected


def test_a_flood_cannot_bury_the_dispatch_room_and_every_ref_can_be_claimed():
    """300 chats in 60 s, a tick each second: at most three alerts per 10 s window, every ref listed once."""
    refs = [f"F{i:03d}" for i in range(300)]
    steps: list[tuple[float, object]] = []
    for i, ref in enumerate(refs):
        steps += opened(0, i * 0.2, ref)
        if i % 5 == 4:
            steps.append((i * 0.2, ClockTicked()))
    steps += [(t, ClockTicked()) for t in range(61, 75)]
    state, effects = run_all(steps, RULES)
    posted = alerts(effects)
    assert len(posted) <= 3 * 8, posted  # 75 s: 8 windows
    listed = [ref for e in posted for ref in ([e.ref] if isinstance(e, PostAlert) else [r for r, _ in e.chats])]
    assert sorted(listed) == refs
    state, effects = apply(state, claim("F150"), 80)
    assert effects[0] == Reply(DISPATCH, "claimed", (("ref", "F150"),))


def test_a_chat_handed_back_to_the_queue_is_not_closed_unanswered():
    state, _ = run(ACTIVE)
    state, _ = apply(state, command(Transfer(None, "", False)), 20)
    assert state.chats[REF].phase is Phase.WAITING
    state, effects = apply(state, ClockTicked(), 3600)
    assert state.chats[REF].phase is Phase.WAITING
    assert not any(isinstance(e, NotifySurvivor) and e.key == "wait_expired" for e in effects)


def test_a_survivor_who_is_here_goes_before_chats_whose_page_dropped():
    later = ChatRef("M4N6")
    steps = OPEN + opened(0, 5, "M4N6") + [(6, SurvivorDisconnected(SURVIVOR_ROOM))]
    state, _ = run_all(steps, RULES)
    assert [c.ref for c in state.waiting()] == [later, REF]
    assert state.place_in_line(state.chats[later]) == 1
    claimed, effects = apply(state, claim(None), 10)
    assert OpenCaseRoom(later, ADVOCATE) in effects  # !claim takes the survivor who is there
    back, _ = apply(state, SurvivorReconnected(SURVIVOR_ROOM), 10)
    assert [c.ref for c in back.waiting()] == [REF, later]  # back: first again, by when they came


# ---------------------------------------------------------------- who is in a case room

SUP_ROOM, INT_ROOM = RoomId("!sup"), RoomId("!int")
SUPERVISOR2 = UserId("@supervisor2:hs")
BOTH = frozenset({StaffRole.SUPERVISOR, StaffRole.INTERPRETER})


def join(who: UserId = SUPERVISOR, room: RoomId = SUP_ROOM, roles=SUPERVISORS) -> CommandGiven:
    return CommandGiven(room, who, Join(REF), roles)


def interpreter_join(who: UserId = INTERPRETER) -> CommandGiven:
    return CommandGiven(INT_ROOM, who, Join(REF), INTERPRETERS)


CONSENTED = ACTIVE + [(20, command(InterpreterRequest(language="es"))),
                      (21, SurvivorAnswered(SURVIVOR_ROOM, "interpreter_consent", "yes"))]
NAMED = ACTIVE + [(20, CommandGiven(CASE_ROOM, ADVOCATE, InterpreterRequest(user=INTERPRETER), ADVOCATES,
                                    EventId("$i"), INTERPRETERS)),
                  (21, SurvivorAnswered(SURVIVOR_ROOM, "interpreter_consent", "yes"))]
SUPERVISED = ACTIVE + [(20, join()), (21, MemberJoined(CASE_ROOM, SUPERVISOR))]
ANNOUNCE_SUPERVISOR = [NotifySurvivor(SURVIVOR_ROOM, "supervisor_joined"),
                       Reply(CASE_ROOM, "staff_supervisor_joined", (("user", SUPERVISOR),))]
ANNOUNCE_INTERPRETER = [NotifySurvivor(SURVIVOR_ROOM, "interpreter_joined"),
                        Reply(CASE_ROOM, "staff_interpreter_joined", (("user", INTERPRETER),))]
PENDING = (("ref", REF), ("user", SUPERVISOR))

MEMBERSHIP = [
    # (name, steps, effects of the last step)
    ("two supervisors !join at once: the second waits for the first",
     ACTIVE + [(20, join()), (20, join(SUPERVISOR2))], [Reply(SUP_ROOM, "already_joining", PENDING)]),
    ("the first of them joins: announced once",
     ACTIVE + [(20, join()), (20, join(SUPERVISOR2)), (21, MemberJoined(CASE_ROOM, SUPERVISOR))], ANNOUNCE_SUPERVISOR),
    ("the same join seen again: not announced twice", SUPERVISED + [(22, MemberJoined(CASE_ROOM, SUPERVISOR))], []),
    ("the second, never invited, cannot be in the room unannounced",
     ACTIVE + [(20, join()), (20, join(SUPERVISOR2)), (21, MemberJoined(CASE_ROOM, SUPERVISOR)),
               (22, MemberJoined(CASE_ROOM, SUPERVISOR2))], [RemoveFromCase(CASE_ROOM, SUPERVISOR2)]),
    ("a second supervisor once one is in", SUPERVISED + [(22, join(SUPERVISOR2))],
     [Reply(SUP_ROOM, "supervisor_present", PENDING)]),
    ("asking again while invited: no second invitation", ACTIVE + [(20, join()), (21, join())],
     [Reply(SUP_ROOM, "joining", (("ref", REF),))]),
    ("a declined invitation is told, and frees the way",
     ACTIVE + [(20, join()), (21, MemberLeft(CASE_ROOM, SUPERVISOR))],
     [Reply(CASE_ROOM, "invitation_declined", (("user", SUPERVISOR),))]),
    ("after a decline another supervisor is invited",
     ACTIVE + [(20, join()), (21, MemberLeft(CASE_ROOM, SUPERVISOR)), (22, join(SUPERVISOR2))],
     [InviteToCase(CASE_ROOM, SUPERVISOR2), Reply(SUP_ROOM, "joining", (("ref", REF),))]),
    ("a supervisor who joins after interpreter consent is announced as a supervisor",
     CONSENTED + [(22, join()), (23, MemberJoined(CASE_ROOM, SUPERVISOR))], ANNOUNCE_SUPERVISOR),
    ("... and speaks as a supervisor",
     CONSENTED + [(22, join()), (23, MemberJoined(CASE_ROOM, SUPERVISOR)),
                  (24, StaffWrote(CASE_ROOM, SUPERVISOR, EventId("$s"), "hi"))],
     [RelayToSurvivor(SURVIVOR_ROOM, EventId("$s"), "hi", Role.SUPERVISOR)]),
    ("... while the interpreter can still join, as an interpreter",
     CONSENTED + [(22, join()), (23, MemberJoined(CASE_ROOM, SUPERVISOR)), (24, interpreter_join()),
                  (25, MemberJoined(CASE_ROOM, INTERPRETER))], ANNOUNCE_INTERPRETER),
    ("... and speaks as an interpreter",
     CONSENTED + [(22, join()), (23, MemberJoined(CASE_ROOM, SUPERVISOR)), (24, interpreter_join()),
                  (25, MemberJoined(CASE_ROOM, INTERPRETER)),
                  (26, StaffWrote(CASE_ROOM, INTERPRETER, EventId("$i"), "hola"))],
     [RelayToSurvivor(SURVIVOR_ROOM, EventId("$i"), "hola", Role.INTERPRETER)]),
    ("an interpreter and a supervisor invited at the same time, joining in either order",
     CONSENTED + [(22, interpreter_join()), (22, join()), (23, MemberJoined(CASE_ROOM, SUPERVISOR)),
                  (24, MemberJoined(CASE_ROOM, INTERPRETER))], ANNOUNCE_INTERPRETER),
    ("a second interpreter while one is invited",
     CONSENTED + [(22, interpreter_join()), (23, interpreter_join(UserId("@interpreter2:hs")))],
     [Reply(INT_ROOM, "already_joining", (("ref", REF), ("user", INTERPRETER)))]),
    ("someone who is both, from the supervisors room, joins as a supervisor",
     CONSENTED + [(22, join(INTERPRETER, SUP_ROOM, BOTH)), (23, MemberJoined(CASE_ROOM, INTERPRETER))],
     [NotifySurvivor(SURVIVOR_ROOM, "supervisor_joined"),
      Reply(CASE_ROOM, "staff_supervisor_joined", (("user", INTERPRETER),))]),
    ("someone who is both, from the interpreters room, joins as an interpreter",
     CONSENTED + [(22, join(INTERPRETER, INT_ROOM, BOTH)), (23, MemberJoined(CASE_ROOM, INTERPRETER))],
     ANNOUNCE_INTERPRETER),
    ("the named interpreter is invited on consent", NAMED,
     [Reply(CASE_ROOM, "interpreter_consented"), InviteToCase(CASE_ROOM, INTERPRETER)]),
    ("another interpreter cannot take the named one's place",
     NAMED + [(22, interpreter_join(UserId("@interpreter2:hs")))],
     [Reply(INT_ROOM, "already_joining", (("ref", REF), ("user", INTERPRETER)))]),
    ("the named interpreter joins, announced as an interpreter",
     NAMED + [(22, MemberJoined(CASE_ROOM, INTERPRETER))], ANNOUNCE_INTERPRETER),
    ("the named interpreter declines", NAMED + [(22, MemberLeft(CASE_ROOM, INTERPRETER))],
     [Reply(CASE_ROOM, "invitation_declined", (("user", INTERPRETER),))]),
    ("!interpreter again while one is in the chat",
     NAMED + [(22, MemberJoined(CASE_ROOM, INTERPRETER)), (23, command(InterpreterRequest(language="fr")))],
     [Reply(CASE_ROOM, "interpreter_present", (("user", INTERPRETER),))]),
    ("!interpreter again while one is invited", NAMED + [(22, command(InterpreterRequest(language="fr")))],
     [Reply(CASE_ROOM, "already_joining", (("ref", REF), ("user", INTERPRETER)))]),
    ("the advocate leaves while a supervisor is in: the supervisor's words no longer reach the survivor",
     SUPERVISED + [(30, MemberLeft(CASE_ROOM, ADVOCATE)), (31, StaffWrote(CASE_ROOM, SUPERVISOR, EventId("$s"), "hi"))],
     []),
]


@pytest.mark.parametrize(("name", "steps", "expected"), MEMBERSHIP, ids=[m[0] for m in MEMBERSHIP])
def test_who_is_in_a_case_room(name, steps, expected):
    _, effects = run_team(steps)
    assert effects == expected


def test_an_advocate_who_left_and_the_chat_claimed_again():
    state, _ = run_team(SUPERVISED + [(30, MemberLeft(CASE_ROOM, ADVOCATE))])
    chat = state.chats[REF]
    assert (chat.phase, chat.advocate, chat.case_room, chat.supervisor, chat.priority) == (
        Phase.WAITING, None, None, None, True)
    new_room = RoomId("!case2")
    state, effects = run_team(SUPERVISED + [(30, MemberLeft(CASE_ROOM, ADVOCATE)), (40, claim(None, who=OTHER)),
                                            (41, CaseRoomOpened(REF, new_room)), (42, MemberJoined(new_room, OTHER))])
    assert RelayBacklog(SURVIVOR_ROOM, SURVIVOR, new_room) in effects
    assert NotifySurvivor(SURVIVOR_ROOM, "new_advocate") in effects
    # The old room's people are no one's now: a join seen late there changes nothing.
    assert apply(state, MemberJoined(CASE_ROOM, SUPERVISOR2), 43)[1] == []


EXCERPTS = [
    # (text, limit, excerpt)
    ("hello", 60, "hello"),
    ("  two\n\nlines\t here ", 60, "two lines here"),
    ("x" * 60, 60, "x" * 60),
    ("word " * 20, 20, "word word word word…"),
    ("a " + "y" * 30, 20, "a " + "y" * 18 + "…"),  # no word boundary in the second half: cut inside the word
    ("без перевода строки и так далее до конца", 20, "без перевода строки…"),
    ("😀" * 30, 10, "😀" * 10 + "…"),
    ("", 60, ""),
]


@pytest.mark.parametrize(("text", "limit", "expected"), EXCERPTS)
def test_excerpt_names_a_message_by_its_start(text, limit, expected):
    from bot.conversation.common import excerpt

    assert excerpt(text, limit) == expected
