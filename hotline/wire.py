"""What the gateway and the bot say to each other inside the (encrypted) survivor room.

Both sides import these names, so the contract lives in one place. Every field below travels
inside end-to-end-encrypted event content: the homeserver sees only ``m.room.encrypted``.
"""

from __future__ import annotations

from enum import StrEnum

# Custom event type for control signals between the gateway and the bot.
CONTROL_EVENT = "org.matrix_hotline.control"
# Content key of the bot's m.room.message events in the survivor room: who speaks.
ROLE_FIELD = "org.matrix_hotline.role"


class Control(StrEnum):
    # gateway → bot
    END = "end"  # the survivor pressed "End chat"
    DISCONNECTED = "disconnected"  # the page's connection dropped
    RECONNECTED = "reconnected"  # the page came back within the grace period
    # bot → gateway
    CLOSED = "closed"  # the chat is over; the gateway tells the page and drops the client


class Role(StrEnum):
    ADVOCATE = "advocate"
    INTERPRETER = "interpreter"
    SUPERVISOR = "supervisor"
    HOTLINE = "hotline"  # automatic notices
