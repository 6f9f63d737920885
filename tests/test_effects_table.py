"""The bot's one table of effects (bot/effects.py HANDLERS): every effect the rules can decide has
exactly one handler, and each goes through the outbox of the room it was always sent into (order
within a room) or is carried out at once."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from bot import conversation
from bot.effects import HANDLERS, Effects
from bot.settings import BotSettings

EFFECT_TYPES = typing.get_args(conversation.Effect)

# Where each effect is sent: "room"/"survivor_room"/"case_room" is the effect's own field of that
# name; "dispatch"/"supervisors" the configured staff room; None: carried out at once.
ROUTE = {
    "AcceptInvite": "room", "RelayToCase": "room", "RelayToSurvivor": "room", "Reply": "room",
    "NotifySurvivor": "room", "SignalClosed": "room", "AskSurvivor": "room", "ListCanned": "room",
    "ShowHelp": "room", "ShowStats": "room", "ShowDevices": "room",
    "SendCanned": "survivor_room", "CheckCodeword": "survivor_room",
    "RelayBacklog": "case_room",
    "PostAlert": "dispatch", "PostAlertGroup": "dispatch",
    "Escalate": "supervisors", "EscalateGroup": "supervisors",
    "OpenCaseRoom": None, "EraseChat": None, "Count": None, "SetService": None, "InviteToCase": None,
    "RemoveFromCase": None, "EraseCaseRoom": None, "DecideDevice": None, "PinIdentity": None,
    "ConfirmVerification": None, "SetLanguages": None, "AskInterpreters": None,
}


def test_every_effect_of_the_rules_has_one_handler_and_nothing_else_does():
    assert set(HANDLERS) == set(EFFECT_TYPES)
    assert {kind.__name__ for kind in EFFECT_TYPES} == set(ROUTE)


def _example(kind: type) -> object:
    """An instance whose fields name themselves, so the route is visible in the answer."""
    effect = kind.__new__(kind)
    for field in dataclasses.fields(kind):
        object.__setattr__(effect, field.name, f"!{field.name}:hs")
    return effect


@pytest.mark.parametrize("supervisors", [None, "!sup:hs"])
@pytest.mark.parametrize("kind", EFFECT_TYPES, ids=lambda kind: kind.__name__)
def test_an_effect_goes_through_the_outbox_of_its_room_or_runs_at_once(kind, supervisors, tmp_path):
    settings = BotSettings(homeserver_url="http://127.0.0.1:1", bot_user_id="@hotline:hs", bot_password="x",
                           data_dir=tmp_path, dispatch_room="!dispatch:hs", supervisors_room=supervisors)
    effects = Effects(settings, *([None] * 9))  # routing reads the settings only
    expected = {
        None: None,
        "dispatch": "!dispatch:hs",
        "supervisors": supervisors or "!dispatch:hs",  # no supervisors room: escalations go to dispatch
    }.get(ROUTE[kind.__name__], f"!{ROUTE[kind.__name__]}:hs")
    assert effects.sends_to(_example(kind)) == expected
