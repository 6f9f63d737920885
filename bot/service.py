"""The bot's service: Matrix events → conversation events; effects → Matrix and the store.

Everything that changes routing state goes through ``handle()``, one event at a time, so the
rules in bot.conversation see a simple sequential world. Effects run in order right after the
new state is saved; erasing runs in the background and reports back with ``ChatErased``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from nio import (
    InviteMemberEvent,
    KeyVerificationCancel,
    KeyVerificationEvent,
    KeyVerificationKey,
    KeyVerificationMac,
    KeyVerificationStart,
    MegolmEvent,
    RoomMemberEvent,
    RoomMessageEmote,
    RoomMessageNotice,
    RoomMessageText,
    SyncResponse,
    TypingNoticeEvent,
    UnknownEvent,
)

from bot import commands, identity, messages
from hotline_runtime.synapse_admin import SynapseAdmin
from bot.codewords import Codewords
from bot.conversation import (
    AcceptInvite,
    AskInterpreters,
    AskSurvivor,
    CaseRoomOpened,
    Chat,
    ChatErased,
    CheckCodeword,
    ClockTicked,
    CodewordChecked,
    CommandGiven,
    ConfirmVerification,
    Count,
    DecideDevice,
    Effect,
    EraseCaseRoom,
    EraseChat,
    Escalate,
    EscalateGroup,
    Event,
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
    PinIdentity,
    PostAlert,
    PostAlertGroup,
    Practice,
    RelayBacklog,
    RelayToCase,
    RelayToSurvivor,
    RemoveFromCase,
    Reply,
    Rules,
    SendCanned,
    SetLanguages,
    SetService,
    ShowDevices,
    ShowHelp,
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
from hotline_runtime.errors import HotlineError, MatrixError, incident_id, where
from bot.ids import ChatRef, EventId, RoomId, UserId, new_ref, server_name
from bot.matrix import BotMatrix, TrustPolicy, txn_id_for
from bot.messages import Catalog
from bot.settings import BotSettings
from bot.store import Store
from hotline_runtime.cross_signing import KeysApi, fingerprint
from hotline_runtime.wire import GATEWAY_SENDER_LOCALPART
from hotline_runtime.nio_sync import SessionGone, mute_push, sync_loop
from hotline_runtime.wire import (
    ANSWERS_EVENT,
    CONTROL_EVENT,
    ROLE_FIELD,
    SERVICE_STATE,
    Control,
    Role,
)

log = logging.getLogger(__name__)

TEXT_EVENTS = (RoomMessageText, RoomMessageNotice, RoomMessageEmote)
CONTROL_EVENTS = {
    Control.END: SurvivorEnded,
    Control.DISCONNECTED: SurvivorDisconnected,
    Control.RECONNECTED: SurvivorReconnected,
}
TICK_SECONDS = 1.0
OUTBOX_IDLE_SECONDS = 60.0
# The sync position waits for the send queues to be empty; under steady load they may never be,
# so after this long the bot waits for them once (a restart then replays at most this much).
MAX_UNSAVED_SECONDS = 5.0
TYPING_TIMEOUT_MS = 30_000
SYNC_POSITION = "sync_position"
ANNOUNCE_GRACE_SECONDS = 5.0  # a new session is cross-signed right after it appears
UNDECRYPTABLE_GRACE_SECONDS = 5.0  # a room key often arrives a moment after the message
PENDING_ERASE = "erase:"  # store meta key prefix: a handed-on case room whose erase is not done


ALERT_LISTS_AT_MOST = 30  # refs in one grouped alert; the rest are counted ("!claim" takes the oldest)


def _group_params(items: list[str], minutes: int) -> tuple[tuple[str, str], ...]:
    shown = ", ".join(items[:ALERT_LISTS_AT_MOST])
    if len(items) > ALERT_LISTS_AT_MOST:
        shown += f" and {len(items) - ALERT_LISTS_AT_MOST} more"
    return (("count", str(len(items))), ("minutes", str(minutes)), ("refs", shown))


class HotlineBot:
    def __init__(self, settings: BotSettings, store: Store, matrix: BotMatrix, http: aiohttp.ClientSession,
                 catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.zone = ZoneInfo(settings.timezone)
        self.store = store
        self.matrix = matrix
        self.http = http
        self.admin: SynapseAdmin | None = None
        self.rules = Rules(
            bot=UserId(settings.bot_user_id),
            survivor_prefix="@" + settings.survivor_prefix,
            server_name=server_name(settings.bot_user_id),
            reconnect_grace=settings.reconnect_grace_seconds,
            dispatch_room=RoomId(settings.dispatch_room),
            admin_room=RoomId(settings.admin_room) if settings.admin_room else None,
            canned=frozenset(catalog.canned),
            supervisors_room=RoomId(settings.supervisors_room) if settings.supervisors_room else None,
            interpreters_room=RoomId(settings.interpreters_room) if settings.interpreters_room else None,
            max_chats_per_advocate=settings.max_chats_per_advocate,
            shift_guard=settings.shift_guard_minutes * 60,
            zone=settings.timezone,
            codeword_tries_per_chat=settings.codeword_tries_per_chat,
            codewords_enabled=settings.codeword_pepper is not None,
            practice=Practice(
                reassure_every=settings.reassure_minutes * 60,
                realert_after=settings.realert_minutes * 60,
                escalate_after=settings.escalate_minutes * 60,
                inactivity_warning_after=settings.inactivity_warning_minutes * 60,
                inactivity_close_after=settings.inactivity_close_minutes * 60,
                advocate_reminder_after=settings.advocate_reminder_minutes * 60,
                max_wait=settings.max_wait_minutes * 60,
                alert_window=settings.alert_group_seconds,
                alert_burst=settings.alert_burst,
            ),
        )
        self.state = Hotline(rules=self.rules)
        self.trust = TrustPolicy(store, self.rules.is_survivor_account, settings.trust_new_staff_devices,
                                 self._device_held_back, strict=settings.staff_device_verification,
                                 is_admin=lambda user: StaffRole.ADMIN in self.roles_of(UserId(user)))
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._undecrypted: list[tuple[RoomId, MegolmEvent]] = []
        self._erasing: set[ChatRef] = set()
        self._erasing_rooms: set[RoomId] = set()  # handed-on case rooms being erased
        self._typing: dict[RoomId, bool] = {}  # survivor room → the bot shows "typing" there
        self._outboxes: dict[RoomId, asyncio.Queue[Effect]] = {}
        self._in_flight = 0  # effects queued or being sent, over all rooms
        self._handled: str | None = None  # the newest sync position whose events are all handled
        self._saved: str | None = None
        self._saved_at = time.monotonic()
        self._saving = asyncio.Lock()
        self._announced_devices: set[tuple[str, str, str]] = set()
        self._told_devices: set[tuple[str, str, str]] = set()  # (notice, user, device) told in a room
        self.codewords = Codewords(
            store,
            (settings.codeword_pepper.get_secret_value() if settings.codeword_pepper else "").encode(),
            settings.codeword_valid_days,
            settings.codeword_max_failures,
            settings.codeword_lock_hours * 3600,
        )

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        saved = await self._saved_login()
        device_id, token = await self.matrix.login(self.settings.bot_password.get_secret_value(), saved)
        if saved is None:
            await self.store.set_meta("device_id", device_id)
            await self.store.set_meta("access_token", token)
        await mute_push(self.matrix.client)
        await self._cross_sign(device_id, token)
        # The bot is a server admin: its own token serves the admin API (purge, erase).
        self.admin = SynapseAdmin(self.http, self.settings.homeserver, token)
        self.state = Hotline(rules=self.rules, chats=await self.store.load_chats())
        since = await self.store.get_meta(SYNC_POSITION)
        log.info("bot started: device %s, %d open chats", device_id, len(self.state.chats))
        self._first_sync = since is None
        recovered = False

        async def on_response(response: SyncResponse) -> None:
            nonlocal recovered
            await self.on_sync(response)
            if not recovered:
                recovered = True
                for effect in recover(self.state):
                    await self._perform_and_follow(effect)
                await self._resume_pending_erases()

        self.spawn(self._ticker(), "ticker")
        try:
            await sync_loop(self.matrix.client, on_response, since=since, save_position=self._handled_up_to)
        except SessionGone as gone:
            log.error("the homeserver refused the bot's login (%s); stopping", gone)
            raise
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _cross_sign(self, device_id: str, token: str) -> None:
        """The bot's identity on the homeserver, and this device signed by it (today's Element
        trusts only devices their owner cross-signed). Staff identities are checked with this token."""
        hs, password = self.settings.homeserver, self.settings.bot_password.get_secret_value()
        own = await identity.load_or_create(self.http, hs, token, self.settings.data_dir, self.settings.bot_user_id)
        if self.matrix.client.should_upload_keys:
            await self.matrix.client.keys_upload()
        if await identity.publish(self.http, hs, token, password, own) and self.settings.admin_room:
            self._announce_later(Reply(RoomId(self.settings.admin_room), "bot_identity_restored"))
        await identity.sign_device(self.http, hs, token, own, device_id)
        self.trust.keys = KeysApi(self.http, hs, token)
        log.info("the bot's device is cross-signed")

    def _announce_later(self, reply: Reply) -> None:
        """A notice for a staff room that may not be synced yet: sent once the room is known."""
        async def send() -> None:
            while not self.matrix.knows_room(reply.room):
                await asyncio.sleep(1)
            await self._reply(reply)

        self.spawn(send(), "a notice for a staff room")

    async def _saved_login(self) -> tuple[str, str] | None:
        device_id = await self.store.get_meta("device_id")
        token = await self.store.get_meta("access_token")
        return (device_id, token) if device_id and token else None

    # The next sync starts while the last one's sends are still going out: a message that arrives
    # meanwhile is not held up behind them. The position is saved only when every send queued so
    # far is done, so a crash still replays rather than loses a relay (transaction ids make the
    # replayed sends harmless).

    async def _handled_up_to(self, position: str) -> None:
        self._handled = position
        if self._in_flight and time.monotonic() - self._saved_at > MAX_UNSAVED_SECONDS:
            await self._drain()
        await self._save_if_idle()

    async def _save_if_idle(self) -> None:
        async with self._saving:  # one write at a time, so an older position never lands last
            position = self._handled
            if self._in_flight or position is None or position == self._saved:
                return
            await self.store.set_meta(SYNC_POSITION, position)
            self._saved, self._saved_at = position, time.monotonic()

    def spawn(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        """Start a background task, keep a reference, log its failure."""
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("background task %s failed: %s", name, type(task.exception()).__name__)

        task.add_done_callback(done)
        return task

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            await self.handle(ClockTicked())

    # ------------------------------------------------------------------ sync → events

    async def on_sync(self, response: SyncResponse) -> None:
        me = self.matrix.user_id
        for event in response.to_device_events:
            if isinstance(event, KeyVerificationEvent):
                await self._guarded(self._on_verification, event)
        # A staff member's new device is decided (and announced) as soon as the bot knows of it, not at
        # its next message to that person. In memory and cheap: only undecided devices cost anything.
        changed = frozenset(response.device_list.changed)
        await self._guarded(self.trust.review, self.matrix, sorted(self._staff()), changed)
        for room_id, info in response.rooms.invite.items():
            inviter = next(
                (e.sender for e in info.invite_state
                 if isinstance(e, InviteMemberEvent) and e.state_key == me and e.membership == "invite"),
                None,
            )
            if inviter is not None:
                invite = InviteReceived(RoomId(room_id), UserId(inviter), new_ref(set(self.state.chats)))
                await self._guarded(self.handle, invite)
        if self._first_sync:
            # The very first start: old room history is not ours to act on.
            self._first_sync = False
            return
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                await self._guarded(self.on_timeline_event, RoomId(room_id), event)
            for event in info.ephemeral:
                if isinstance(event, TypingNoticeEvent):
                    await self._guarded(self._on_typing, RoomId(room_id), event.users)
        await self._retry_undecrypted()

    async def _guarded(self, handler: Any, *args: Any) -> None:
        """One bad event never stops the bot."""
        try:
            await handler(*args)
        except Exception as error:
            log.error("incident %s: handling an event failed: %s", incident_id(), where(error))

    async def on_timeline_event(self, room: RoomId, event: Any) -> None:
        if isinstance(event, RoomMemberEvent):
            if event.membership == "join" and event.prev_membership != "join":
                await self.handle(MemberJoined(room, UserId(event.state_key)))
            elif event.membership in ("leave", "ban") and event.prev_membership in ("join", "invite"):
                # Left, removed, declined an invitation, or the account was closed.
                await self.handle(MemberLeft(room, UserId(event.state_key)))
            return
        if getattr(event, "sender", None) == self.matrix.user_id:
            return
        if isinstance(event, MegolmEvent):
            await self._undecryptable(room, event)
            return
        chat = self.state.by_survivor_room(room)
        if chat is not None:
            await self._on_survivor_room_event(room, chat, event)
            return
        if room == self.settings.service_room:
            await self._on_service_room_event(event)
            return
        if isinstance(event, TEXT_EVENTS) and getattr(event, "decrypted", False):
            if await self._from_trusted_device(room, event):
                content = event.source.get("content", {})
                written = commands.written(content if isinstance(content, dict) else {})
                await self._on_staff_text(room, UserId(event.sender), EventId(event.event_id), written)

    async def _from_trusted_device(self, room: RoomId, event: Any) -> bool:
        """Staff text counts only from a device the trust policy trusts, as today's Element reads
        only messages from devices their owner verified: a password alone (a new, unverified
        session) cannot claim, close or write to a survivor. The sender is told once per device."""
        device = self.matrix.sending_device(room, event)
        if device is None:
            await self.matrix.refresh_devices(event.sender)  # a session the bot has not seen yet
            device = self.matrix.sending_device(room, event)
        if device is not None:
            await self.trust.review(self.matrix, [event.sender])
            if self.matrix.is_trusted(device):
                return True
        log.warning("ignored a staff message from a session that is not trusted")
        await self._tell_sender_once(room, "staff_device_untrusted", event.sender, device.id if device else "?")
        return False

    async def _tell_sender_once(self, room: RoomId, key: str, user: str, device: str) -> None:
        if (key, user, device) in self._told_devices:
            return
        self._told_devices.add((key, user, device))
        await self._reply(Reply(room, key, (("user", user), ("device", device))))

    async def _on_survivor_room_event(self, room: RoomId, chat: Chat, event: Any) -> None:
        if event.sender != chat.survivor or not getattr(event, "decrypted", False):
            return  # only the survivor's account, and only what was end-to-end encrypted
        if isinstance(event, TEXT_EVENTS):
            await self.handle(SurvivorWrote(room, UserId(event.sender), EventId(event.event_id), event.body))
        elif isinstance(event, UnknownEvent) and event.type == CONTROL_EVENT:
            content = event.source.get("content", {})
            action = content.get("action")
            if action == Control.PROFILE:
                language = content.get("language")
                if isinstance(language, str) and language:
                    await self.handle(SurvivorProfile(room, language[:40]))
                return
            if action == Control.ANSWER:
                question, value = content.get("question"), content.get("value")
                if question in ("codeword_new", "codeword_verify") and isinstance(value, str) and len(value) <= 200:
                    await self.handle(SurvivorAnswered(room, question, value, EventId(event.event_id)))
                elif isinstance(question, str) and value in ("yes", "no"):
                    await self.handle(SurvivorAnswered(room, question[:40], value, EventId(event.event_id)))
                return
            kind = CONTROL_EVENTS.get(action)  # type: ignore[call-overload]
            if kind is not None:
                await self.handle(kind(room))

    async def _on_service_room_event(self, event: Any) -> None:
        """Pooled answers to the page's optional questions, from the gateway: counts only."""
        gateway = f"@{GATEWAY_SENDER_LOCALPART}:{self.rules.server_name}"
        if not (isinstance(event, UnknownEvent) and event.type == ANSWERS_EVENT and event.sender == gateway
                and getattr(event, "decrypted", False)):
            return
        content = event.source.get("content", {})
        day, counts = content.get("day"), content.get("counts")
        if not isinstance(day, str) or len(day) != 10 or not isinstance(counts, dict):
            log.warning("ignored a malformed answers event")
            return
        for question, answers in list(counts.items())[:50]:
            if not isinstance(question, str) or not isinstance(answers, dict):
                continue
            for answer, n in list(answers.items())[:50]:
                if isinstance(answer, str) and isinstance(n, int) and 0 < n < 1_000_000:
                    await self.store.count(day, f"answer:{question[:40]}", answer[:40], n)

    async def _on_typing(self, room: RoomId, users: list[str]) -> None:
        """The advocate typing in the case room shows as the bot typing in the survivor room."""
        chat = self.state.by_case_room(room)
        if chat is None or chat.phase is not Phase.ACTIVE or chat.advocate is None:
            return
        typing = chat.advocate in users
        if self._typing.get(chat.survivor_room, False) == typing:
            return
        self._typing[chat.survivor_room] = typing
        await self.matrix.client.room_typing(chat.survivor_room, typing_state=typing, timeout=TYPING_TIMEOUT_MS)

    async def _on_staff_text(self, room: RoomId, sender: UserId, event_id: EventId, written: commands.Written) -> None:
        """Commands are recognised on the text as meant: a reply without its quote, an edit's new text."""
        command = commands.parse(written.text)
        if command is None:
            await self.handle(StaffEdited(room, sender, event_id) if written.edit
                              else StaffWrote(room, sender, event_id, written.text))
            return
        named = getattr(command, "to", None) or getattr(command, "user", None)
        target_roles = self.roles_of(UserId(named)) if isinstance(named, str) else frozenset()
        await self.handle(CommandGiven(room, sender, command, self.roles_of(sender), event_id, target_roles))

    def roles_of(self, user: UserId) -> frozenset[StaffRole]:
        """Roles are room memberships."""
        rooms = {
            StaffRole.ADVOCATE: self.settings.dispatch_room,
            StaffRole.SUPERVISOR: self.settings.supervisors_room,
            StaffRole.INTERPRETER: self.settings.interpreters_room,
            StaffRole.ADMIN: self.settings.admin_room,
        }
        return frozenset(role for role, room in rooms.items() if room and user in self.matrix.room_members(room))

    async def _undecryptable(self, room: RoomId, event: MegolmEvent) -> None:
        self._undecrypted.append((room, event))
        try:
            # Ask the sender's devices for the room key; it may have been shared before a session existed.
            await self.matrix.client.request_room_key(event)
        except Exception as error:  # e.g. a request for that session is already out
            log.info("room key request not sent (%s)", type(error).__name__)
        chat = self.state.by_survivor_room(room)
        if chat is None and event.sender in self._staff():
            self.spawn(self._tell_undecryptable(room, event), "tell a staff member a message was unreadable")
        if chat is not None and chat.case_room is not None:
            incident = incident_id()
            log.warning("incident %s: an event in a survivor room could not be decrypted yet", incident)
            await self._reply(Reply(chat.case_room, "undecryptable", (("incident", incident),)))

    async def _tell_undecryptable(self, room: RoomId, event: MegolmEvent) -> None:
        """A staff message still unreadable after a few seconds (its key may be on the way): the
        sender is told in that room, once per device, instead of being left in silence."""
        await asyncio.sleep(UNDECRYPTABLE_GRACE_SECONDS)
        if not any(e.event_id == event.event_id for _, e in self._undecrypted):
            return
        device = self.matrix.device_by_key(event.sender, event.sender_key)
        device_id = device.id if device else (getattr(event, "device_id", None) or "?")
        log.warning("a staff message could not be decrypted")
        await self._tell_sender_once(room, "staff_undecryptable", event.sender, device_id)

    async def _retry_undecrypted(self) -> None:
        pending, self._undecrypted = self._undecrypted, []
        for room, event in pending:
            decrypted = self.matrix.decrypt(event)
            if decrypted is None:
                if room in self.matrix.client.rooms:
                    self._undecrypted.append((room, event))
                continue
            decrypted.decrypted = True
            await self._guarded(self.on_timeline_event, room, decrypted)

    # ------------------------------------------------------------------ events → effects

    async def handle(self, event: Event) -> None:
        async with self._lock:
            queue: list[Event] = [event]
            while queue:
                current = queue.pop(0)
                try:
                    state, effects = apply(self.state, current, time.time())
                except IllegalTransition as error:
                    log.warning("ignored: %s", error)
                    continue
                except Exception as error:
                    # A bug in a rule must not stop the bot: the event is dropped, the state kept.
                    log.error("incident %s: the rules failed on %s: %s", incident_id(), type(current).__name__,
                              where(error))
                    continue
                await self.store.save_changes(self.state.chats, state.chats)
                self.state = state
                for effect in effects:
                    room = self._sends_to(effect)
                    if room is None:
                        queue.extend(await self._perform(effect))
                    else:
                        self._in_flight += 1
                        self._outbox(room).put_nowait(effect)

    # Sends go out through one ordered queue per room, so that chats do not wait for each other:
    # order matters within a room, not across rooms. The sync position is saved only when the
    # queues are empty (see _handled_up_to), so a crash still replays rather than loses a relay.

    def _sends_to(self, effect: Effect) -> RoomId | None:
        """The room an effect only sends into (or joins); None for effects carried out at once."""
        if isinstance(effect, (RelayToCase, RelayToSurvivor, Reply, NotifySurvivor, SignalClosed, AskSurvivor,
                               ListCanned, ShowHelp, ShowStats, ShowDevices, AcceptInvite)):
            # AcceptInvite too: when several survivors start at once, the bot joins their rooms
            # side by side instead of one after another.
            return effect.room
        if isinstance(effect, (SendCanned, CheckCodeword)):
            return effect.survivor_room
        if isinstance(effect, RelayBacklog):
            return effect.case_room
        if isinstance(effect, (PostAlert, PostAlertGroup)):
            return RoomId(self.settings.dispatch_room)
        if isinstance(effect, (Escalate, EscalateGroup)):
            return RoomId(self.settings.supervisors_room or self.settings.dispatch_room)
        return None

    def _outbox(self, room: RoomId) -> asyncio.Queue[Effect]:
        queue = self._outboxes.get(room)
        if queue is None:
            queue = self._outboxes[room] = asyncio.Queue()
            self.spawn(self._send_worker(room, queue), "room sender")
        return queue

    async def _send_worker(self, room: RoomId, queue: asyncio.Queue[Effect]) -> None:
        while True:
            try:
                effect = await asyncio.wait_for(queue.get(), OUTBOX_IDLE_SECONDS)
            except TimeoutError:
                if queue.empty():  # no await between this check and the removal
                    del self._outboxes[room]
                    return
                continue
            try:
                for event in await self._perform(effect):
                    await self.handle(event)
            finally:
                self._in_flight -= 1
                queue.task_done()
            await self._guarded(self._save_if_idle)  # a failed save must not stop this room's sends

    async def _drain(self, rooms: list[RoomId] | None = None) -> None:
        """Wait until everything queued for these rooms (or all rooms) is sent."""
        queues = [q for r, q in self._outboxes.items() if rooms is None or r in rooms]
        await asyncio.gather(*(q.join() for q in queues))

    async def _perform_and_follow(self, effect: Effect) -> None:
        for event in await self._perform(effect):
            await self.handle(event)

    async def _perform(self, effect: Effect) -> list[Event]:
        """Carry out one effect; return the events it produced. Failures are logged, not raised."""
        try:
            return await self._carry_out(effect)
        except Exception as error:
            incident = incident_id()
            log.error("incident %s: %s failed: %s", incident, type(effect).__name__,
                      error if isinstance(error, HotlineError) else where(error))
            await self._report_failure(effect, incident)
            return []

    async def _carry_out(self, effect: Effect) -> list[Event]:
        if isinstance(effect, AcceptInvite):
            await self.matrix.join(effect.room)
        elif isinstance(effect, PostAlert):
            params = (("ref", effect.ref), ("minutes", str(effect.waited_minutes)))
            key = "alert_repeat" if effect.waited_minutes else "alert"
            await self._reply(Reply(RoomId(self.settings.dispatch_room), key, params))
        elif isinstance(effect, PostAlertGroup):
            await self._reply(Reply(RoomId(self.settings.dispatch_room), "alert_group", _group_params(
                [f"{ref} ({language})" if language else ref for ref, language in effect.chats],
                effect.longest_minutes)))
        elif isinstance(effect, EscalateGroup):
            room = self.settings.supervisors_room or self.settings.dispatch_room
            await self._reply(Reply(RoomId(room), "escalation_group",
                                    _group_params(list(effect.refs), effect.longest_minutes)))
        elif isinstance(effect, Escalate):
            params = (("ref", effect.ref), ("minutes", str(effect.waited_minutes)))
            room = self.settings.supervisors_room or self.settings.dispatch_room
            await self._reply(Reply(RoomId(room), "escalation", params))
        elif isinstance(effect, Reply):
            await self._reply(effect)
        elif isinstance(effect, NotifySurvivor):
            if effect.key == "advocate_gone" and self._typing.pop(effect.room, False):
                # Their "typing…" ends with them (the case room it came from is gone).
                await self.matrix.client.room_typing(effect.room, typing_state=False)
            text = self.catalog.survivor_text(effect.key, effect.params)
            await self._send(effect.room, {"msgtype": "m.notice", "body": text, ROLE_FIELD: Role.HOTLINE})
            return [SurvivorNotified(effect.room, effect.key)]
        elif isinstance(effect, SendCanned):
            text = self.catalog.canned_text(effect.key)
            content = {"msgtype": "m.text", "body": text, ROLE_FIELD: Role.ADVOCATE}
            await self._send(effect.survivor_room, content, txn_id=txn_id_for(effect.source, "canned"))
            await self._reply(Reply(effect.case_room, "canned_sent", (("text", text),)))
        elif isinstance(effect, ListCanned):
            items = "\n".join(f"{key} — {self.catalog.canned_text(key)[:60]}…" for key in sorted(self.catalog.canned))
            await self._reply(Reply(effect.room, "canned_list", (("items", items),)))
        elif isinstance(effect, ShowHelp):
            await self._send(effect.room, {"msgtype": "m.notice", "body": messages.help_text(effect.roles)})
        elif isinstance(effect, Count):
            await self.store.count(self.today(), effect.metric, effect.bucket)
        elif isinstance(effect, ShowStats):
            await self._show_stats(effect)
        elif isinstance(effect, SetService):
            await self._set_service(effect)
        elif isinstance(effect, InviteToCase):
            await self.matrix.invite(effect.room, effect.user)
        elif isinstance(effect, RemoveFromCase):
            if effect.user in self.matrix.room_members(effect.room):
                await self.matrix.kick(effect.room, effect.user)
                log.warning("removed someone who joined a case room without the bot's invitation")
                await self._reply(Reply(effect.room, "removed_uninvited", (("user", effect.user),)))
        elif isinstance(effect, EraseCaseRoom):
            if effect.room not in self._erasing_rooms:
                self._erasing_rooms.add(effect.room)
                self.spawn(self._erase_handed_on(effect.room), "erase a handed-on case room")
        elif isinstance(effect, AskSurvivor):
            await self._send(effect.room, {"action": Control.ASK, "question": effect.question}, event_type=CONTROL_EVENT)
        elif isinstance(effect, ShowDevices):
            items = "\n".join(f"{user} {device}" for user, device in self.matrix.held_back_devices(self._staff()))
            await self._reply(Reply(effect.room, "devices_list", (("items", items or "(none)"),)))
        elif isinstance(effect, DecideDevice):
            params = (("user", effect.user), ("device", effect.device))
            if not await self.trust.decide(self.matrix, effect.user, effect.device, approve=effect.approve):
                await self._reply(Reply(effect.room, "device_unknown", params))
            else:
                await self._reply(Reply(effect.room, "device_approved" if effect.approve else "device_revoked", params))
        elif isinstance(effect, PinIdentity):
            master = await self.trust.pin(self.matrix, effect.user)
            params = (("user", effect.user), ("fingerprint", fingerprint(master or "")))
            await self._reply(Reply(effect.room, "identity_trusted" if master else "identity_none", params))
        elif isinstance(effect, ConfirmVerification):
            await self._confirm_verification(effect)
        elif isinstance(effect, SetLanguages):
            await self.store.set_meta(f"languages:{effect.user}", " ".join(effect.languages))
            await self._reply(Reply(effect.room, "languages_set", (("languages", ", ".join(effect.languages)),)))
        elif isinstance(effect, AskInterpreters):
            await self._ask_interpreters(effect)
        elif isinstance(effect, CheckCodeword):
            return await self._check_codeword(effect)
        elif isinstance(effect, RelayToCase):
            await self._relay_to_case(effect.room, effect.source, effect.text)
        elif isinstance(effect, RelayToSurvivor):
            content = {"msgtype": "m.text", "body": effect.text, ROLE_FIELD: effect.role}
            await self._send(effect.room, content, txn_id=txn_id_for(effect.source, "to-survivor"))
        elif isinstance(effect, OpenCaseRoom):
            room = await self.matrix.create_private_room(invite=[effect.advocate])
            return [CaseRoomOpened(effect.ref, RoomId(room))]
        elif isinstance(effect, RelayBacklog):
            await self._relay_backlog(effect)
        elif isinstance(effect, SignalClosed):
            await self._send(effect.room, {"action": Control.CLOSED}, event_type=CONTROL_EVENT)
        elif isinstance(effect, EraseChat):
            if effect.chat.ref not in self._erasing:
                self._erasing.add(effect.chat.ref)
                self.spawn(self._erase(effect.chat), f"erase {effect.chat.ref}")
        else:
            raise IllegalTransition(f"unknown effect {effect!r}")
        return []

    async def _check_codeword(self, effect: CheckCodeword) -> list[Event]:
        # The code word leaves the room first: redacted now, purged with the room at the end.
        try:
            await self.matrix.redact(effect.survivor_room, effect.source)
        except HotlineError as error:
            log.error("could not redact a code word answer yet: %s", error)
        today = datetime.now(self.zone).date()
        if effect.mode == "new":
            outcome = await self.codewords.create(effect.value, today)
        elif effect.mode == "rotate" and effect.case:
            outcome = await self.codewords.rotate(effect.case, effect.value, today)
        else:
            outcome = await self.codewords.verify(effect.case or "", effect.value, today)
        params = (("case", outcome.case), ("set_on", outcome.set_on), ("until", outcome.until))
        await self._reply(Reply(effect.case_room, outcome.key, params))
        if outcome.key in ("codeword_set", "codeword_rotated"):
            text = self.catalog.survivor_text(outcome.key, (("case", outcome.case),))
            await self._send(effect.survivor_room, {"msgtype": "m.notice", "body": text, ROLE_FIELD: Role.HOTLINE})
        return [CodewordChecked(effect.ref, outcome.case, outcome.matched)]

    async def _on_verification(self, event: KeyVerificationEvent) -> None:
        """Emoji verification started by a staff member's client; an admin confirms with !verify."""
        sas = self.matrix.client.key_verifications.get(event.transaction_id)
        if sas is None or event.sender not in self._staff():
            return
        device = sas.other_olm_device
        params = (("user", device.user_id), ("device", device.id))
        admin_room = RoomId(self.settings.admin_room) if self.settings.admin_room else None
        if isinstance(event, KeyVerificationStart):
            await self.matrix.client.accept_key_verification(event.transaction_id)
        elif isinstance(event, KeyVerificationKey) and admin_room:
            emojis = ", ".join(f"{emoji} {name}" for emoji, name in sas.get_emoji())
            await self._reply(Reply(admin_room, "verification_emojis", (*params, ("emojis", emojis))))
        elif isinstance(event, KeyVerificationMac) and sas.verified:
            await self._verified(sas, admin_room)
        elif isinstance(event, KeyVerificationCancel) and admin_room:
            await self._reply(Reply(admin_room, "verification_cancelled", params))

    async def _verified(self, sas: Any, room: RoomId | None) -> None:
        device = sas.other_olm_device
        self.matrix.decide_device(device.user_id, device.id, approve=True)
        log.info("staff device %s of %s verified with emojis", device.id, device.user_id)
        if room:
            await self._reply(Reply(room, "verification_done", (("user", device.user_id), ("device", device.id))))

    async def _confirm_verification(self, effect: ConfirmVerification) -> None:
        params = (("user", effect.user), ("device", effect.device))
        sas = self.matrix.find_verification(effect.user, effect.device)
        if sas is None:
            await self._reply(Reply(effect.room, "verification_none", params))
            return
        await self.matrix.client.confirm_short_auth_string(sas.transaction_id)
        if sas.verified:
            await self._verified(sas, effect.room)
        else:
            await self._reply(Reply(effect.room, "verification_waiting", params))

    def _staff(self) -> set[str]:
        rooms = [self.settings.dispatch_room, self.settings.supervisors_room, self.settings.interpreters_room,
                 self.settings.admin_room]
        return {user for room in rooms if room for user in self.matrix.room_members(room)} - {self.matrix.user_id}

    async def _ask_interpreters(self, effect: AskInterpreters) -> None:
        room = self.settings.interpreters_room or self.settings.dispatch_room
        who = []
        for user in sorted(self.matrix.room_members(room) - {self.matrix.user_id}):
            languages = (await self.store.get_meta(f"languages:{user}") or "").split()
            if effect.language in languages or effect.language.split("-")[0] in languages:
                who.append(user)
        mention = f"Interpreters for it: {', '.join(who)}. " if who else ""
        params = (("ref", effect.ref), ("language", effect.language), ("who", mention))
        await self._reply(Reply(RoomId(room), "interpreter_wanted", params))

    def today(self) -> str:
        return datetime.now(self.zone).date().isoformat()

    async def _show_stats(self, effect: ShowStats) -> None:
        first = (datetime.now(self.zone).date() - timedelta(days=effect.days - 1)).isoformat()
        totals: dict[tuple[str, str], int] = {}
        for _, metric, bucket_name, n in await self.store.stats_since(first):
            totals[(metric, bucket_name)] = totals.get((metric, bucket_name), 0) + n
        lines = [f"{metric}{' · ' + b if b else ''}: {n}" for (metric, b), n in sorted(totals.items())]
        table = "\n".join(lines) or "(nothing counted yet)"
        await self._reply(Reply(effect.room, "stats", (("days", str(effect.days)), ("table", table))))

    async def _set_service(self, effect: SetService) -> None:
        if not self.settings.service_room:
            raise HotlineError("no service room is configured (HOTLINE_SERVICE_ROOM)")
        content = {"closed": effect.closed, "message": effect.message}
        await self.matrix.put_state(self.settings.service_room, SERVICE_STATE, content)

    async def _report_failure(self, effect: Effect, incident: str) -> None:
        room: RoomId | None = None
        key = "command_failed"
        if isinstance(effect, RelayToSurvivor):
            chat = self.state.by_survivor_room(effect.room)
            room, key = (chat.case_room if chat else None), "relay_failed"
        elif isinstance(effect, Reply) and effect.key != "command_failed":
            room = effect.room
        if room is not None:
            try:
                await self._reply(Reply(room, key, (("incident", incident),)))
            except Exception:
                log.error("incident %s: could not report the failure either", incident)

    async def _send(self, room: RoomId, content: dict[str, Any], *, event_type: str = "m.room.message",
                    txn_id: str | None = None) -> str:
        return await self.matrix.send(room, content, event_type=event_type, txn_id=txn_id, trust=self.trust)

    async def _reply(self, reply: Reply) -> None:
        text = messages.staff_text(reply.key, **dict(reply.params))
        await self._send(reply.room, {"msgtype": "m.notice", "body": text})

    async def _relay_to_case(self, case_room: RoomId, source: EventId, text: str) -> None:
        body = messages.staff_text("survivor_label", text=text)
        await self._send(case_room, {"msgtype": "m.text", "body": body}, txn_id=txn_id_for(source, "to-case"))

    async def _relay_backlog(self, effect: RelayBacklog) -> None:
        """The conversation so far, oldest first: the survivor's words and the staff's replies."""
        backlog = []
        async for event in self.matrix.history(effect.survivor_room):
            if not isinstance(event, TEXT_EVENTS) or not getattr(event, "decrypted", False):
                continue
            role = event.source.get("content", {}).get(ROLE_FIELD)
            if event.sender == effect.survivor:
                backlog.append((event.event_id, messages.staff_text("survivor_label", text=event.body)))
            elif event.sender == self.matrix.user_id and role in (Role.ADVOCATE, Role.INTERPRETER, Role.SUPERVISOR):
                backlog.append((event.event_id, f"{str(role).capitalize()} (earlier): {event.body}"))
        for event_id, body in reversed(backlog):
            # The same transaction id as a live relay of that event: never delivered twice.
            txn = txn_id_for(event_id, "to-case")
            await self._send(effect.case_room, {"msgtype": "m.text", "body": body}, txn_id=txn)

    async def _device_held_back(self, user_id: str, device_id: str, reason: str, master: str | None) -> None:
        if self.rules.is_survivor_account(user_id) or (user_id, device_id, reason) in self._announced_devices:
            return
        self._announced_devices.add((user_id, device_id, reason))
        log.warning("staff device %s of %s held back (%s)", device_id, user_id, reason)
        if self.settings.admin_room:
            params = (("user", user_id), ("device", device_id), ("fingerprint", fingerprint(master or "")))
            self.spawn(self._announce_held_back(user_id, device_id, Reply(RoomId(self.settings.admin_room),
                                                                          f"device_{reason}", params)),
                       "announce a held-back device")

    async def _announce_held_back(self, user_id: str, device_id: str, reply: Reply) -> None:
        """Announced to the admins only if still held back a little later: a new session is
        usually cross-signed by its owner's client a moment after it appears."""
        await asyncio.sleep(ANNOUNCE_GRACE_SECONDS)
        device = next((d for d in self.matrix.devices_of(user_id) if d.id == device_id), None)
        if device is not None and self.matrix.is_held_back(device):
            await self._reply(reply)

    # ------------------------------------------------------------------ erasing
    #
    # The survivor room has no human client caching it: it is purged at once, without redactions,
    # and the survivor's account erased, so the survivor's words are off the server within about a
    # second of the close whatever the chat's length. Case rooms are redacted first (staff clients
    # cache them and drop redacted content), given a moment for staff clients to receive the
    # redactions (a purge right after them can leave a "ghost room" with the content in a client
    # that had not synced yet), then purged. Every erase is retried with capped backoff until done;
    # a chat's erase is durable through its row (phase CLOSING, resumed by recover()), a handed-on
    # case room's through a meta row written before it starts (resumed at the next start).

    async def _erase(self, chat: Chat) -> None:
        """The erase recipe of docs/privacy.md for a closed chat."""
        try:
            await self._drain([r for r in (chat.case_room, chat.survivor_room) if r is not None])
            await self._wait_for_gateway(chat)  # the page has been told; the gateway leaves
            await self._until_done(f"erasing chat {chat.ref}", self._erase_survivor_side, chat)
            if chat.case_room is not None:
                await self._until_done(f"erasing the case room of chat {chat.ref}", self._erase_case_room,
                                       chat.case_room)
            log.info("chat %s erased", chat.ref)
            await self.handle(ChatErased(chat.ref))
        finally:
            self._erasing.discard(chat.ref)

    async def _erase_survivor_side(self, chat: Chat) -> None:
        room = chat.survivor_room
        if self.matrix.knows_room(room):
            await self.matrix.leave(room)
        assert self.admin is not None
        await self.admin.delete_room(room)
        self.matrix.forget_room_keys([room])
        await self.admin.deactivate(chat.survivor, erase=True)
        self.matrix.forget_users([chat.survivor])  # its device and trust entries too

    async def _erase_handed_on(self, room: RoomId) -> None:
        """A case room left behind by a transfer: recorded first, so a restart finishes it."""
        key = PENDING_ERASE + room
        await self.store.set_meta(key, "case_room")
        try:
            await self._drain([room])
            await self._until_done("erasing a handed-on case room", self._erase_case_room, room)
            await self.store.delete_meta(key)
        finally:
            self._erasing_rooms.discard(room)

    async def _resume_pending_erases(self) -> None:
        for key in await self.store.meta_with_prefix(PENDING_ERASE):
            room = RoomId(key[len(PENDING_ERASE):])
            if room not in self._erasing_rooms:
                self._erasing_rooms.add(room)
                self.spawn(self._erase_handed_on(room), "erase a handed-on case room")

    async def _erase_case_room(self, room: RoomId) -> None:
        if self.matrix.knows_room(room):
            redacted = await self._redact_if_member(room)
            log.info("redacted %d events of a case room; purging it in %.0f s", redacted,
                     self.settings.erase_redaction_grace_seconds if redacted else 0)
            if redacted:
                await asyncio.sleep(self.settings.erase_redaction_grace_seconds)  # staff clients sync them
            await self.matrix.leave(room)
        assert self.admin is not None
        await self.admin.delete_room(room)
        self.matrix.forget_room_keys([room])

    async def _until_done(self, what: str, step: Any, *args: Any) -> None:
        """Retry a step of an erase with capped backoff until it succeeds (a homeserver that is
        down for hours delays an erase; it never abandons it)."""
        delay = 1.0
        attempt = 0
        while True:
            attempt += 1
            try:
                await step(*args)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.error("incident %s: %s failed (attempt %d, next in %.0f s): %s", incident_id(), what, attempt,
                          delay, error if isinstance(error, HotlineError) else type(error).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.erase_retry_max_seconds)

    async def _redact_if_member(self, room: RoomId) -> int:
        """Redact a room's messages; a retry after the bot already left goes straight to the purge.
        Returns how many were redacted."""
        try:
            return await self.matrix.redact_all(room)
        except MatrixError as error:
            if error.status != "M_FORBIDDEN":
                raise
            log.info("not redacting a room the bot has already left; the purge removes it")
            return 0

    async def _wait_for_gateway(self, chat: Chat, timeout: float = 10.0) -> None:
        """Give the gateway a moment to read the closing signal and leave before redacting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and chat.survivor in self.matrix.room_members(chat.survivor_room):
            await asyncio.sleep(0.2)
