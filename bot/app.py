"""The bot's composition root: settings → rules, trust policy, the service's parts, the service.

Nothing else builds these: bot/__main__.py opens the store and the Matrix adapter and calls
``build``.
"""

from __future__ import annotations

import aiohttp

from bot.codewords import Codewords
from bot.conversation import Hotline, Practice, Rules
from bot.effects import Effects
from bot.erase import Eraser
from bot.ids import RoomId, UserId, server_name
from bot.inbound import Inbound
from bot.matrix import BotMatrix
from bot.messages import Catalog
from bot.outbox import Outbox
from bot.sender import Sender
from bot.service import HotlineBot
from bot.settings import BotSettings
from bot.staff import Staff
from bot.store import Store
from bot.tasks import Tasks
from bot.trust import TrustPolicy
from bot.verification import Verification


def rules_from(settings: BotSettings, catalog: Catalog) -> Rules:
    """The conversation rules as this program configured them."""
    return Rules(
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
            ready_max_age=settings.ready_max_age_minutes * 60,
        ),
    )


def codewords_from(settings: BotSettings, store: Store) -> Codewords:
    return Codewords(
        store,
        (settings.codeword_pepper.get_secret_value() if settings.codeword_pepper else "").encode(),
        settings.codeword_valid_days,
        settings.codeword_max_failures,
        settings.codeword_lock_hours * 3600,
    )


def build(settings: BotSettings, store: Store, matrix: BotMatrix, http: aiohttp.ClientSession,
          catalog: Catalog) -> HotlineBot:
    """Every part of the bot, wired together."""
    rules = rules_from(settings, catalog)
    tasks = Tasks()
    bot = HotlineBot(settings, store, matrix, http, Hotline(rules=rules), tasks)
    staff = Staff(settings, matrix)
    trust = TrustPolicy(store, rules.is_survivor_account, settings.trust_new_staff_devices,
                        strict=settings.staff_device_verification, is_admin=staff.is_admin)
    sender = Sender(matrix, trust)
    verification = Verification(matrix, staff, sender, tasks, trust, rules.is_survivor_account)
    trust.on_held_back = verification.held_back
    outbox = Outbox(store, tasks, bot.perform_and_follow)
    eraser = Eraser(settings, store, matrix, outbox, tasks, bot.handle)
    effects = Effects(settings, catalog, store, matrix, sender, staff, trust, verification, eraser,
                      codewords_from(settings, store))
    inbound = Inbound(settings, store, matrix, staff, trust, verification, sender, tasks,
                      lambda: bot.state, bot.handle)
    bot.attach(trust=trust, inbound=inbound, effects=effects, outbox=outbox, eraser=eraser)
    return bot
