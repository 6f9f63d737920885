"""What the gateway and the bot say to each other: the contract between the two processes.

Both sides import these names, so the contract lives in one place.

In the survivor room (end-to-end encrypted; the homeserver sees only ``m.room.encrypted``):
- ``m.room.message`` from the survivor's account: the survivor's text.
- ``m.room.message`` from the bot with ``ROLE_FIELD``: a message for the page, labelled by role.
- ``CONTROL_EVENT`` with ``{"action": Control…}``, plus for ``PROFILE``
  ``{"language": "<BCP 47 tag or empty>"}`` (the survivor's preferred language, if given).
  ``PROFILE`` is the start: a chat's room may be made and joined ahead of any survivor (the bot
  then shows it to no one); the survivor pressing "Start chat" is the profile, always sent.
- ``Control.ASK`` from the bot ``{"question": AskQuestion…}``: the page asks the survivor with its own
  controls. ``AskQuestion.INTERPRETER_CONSENT``: Yes / No, with one sentence on confidentiality.
  ``AskQuestion.CODEWORD_NEW`` / ``CODEWORD_VERIFY``: a masked code word field. The gateway answers
  with ``Control.ANSWER`` ``{"question": …, "value": …}``: ``"yes"`` or ``"no"`` for consent; the
  code word (at most ``MAX_CODEWORD_CHARS`` characters, ``""`` to skip) for the others, which the
  bot redacts at once. Any other question is ignored by both sides.
- The bot's typing notifications (``m.typing``, ephemeral) mean "an advocate is typing".

In the service room (members: the bot and the gateway's application-service user):
- state event ``SERVICE_STATE`` (state key ``""``) set by the bot:
  ``{"closed": bool, "message": str}`` — an emergency closure by an admin (``!service close``).
  Absent means open. Not encrypted (state never is): it holds only the program's notice.
- message event ``ANSWERS_EVENT`` sent by the gateway (encrypted like every message):
  ``{"day": "YYYY-MM-DD", "submissions": int, "counts": {question: {answer: int}}}`` —
  aggregate counts of optional answers, pooled over many chats and never tied to one.
"""

from __future__ import annotations

from enum import StrEnum

# The localpart of the gateway's application-service user, the one that shares the service room with
# the bot (hotline/homeserver.py registers it with Synapse).
GATEWAY_SENDER_LOCALPART = "hotline-webchat"

# Custom event type for control signals between the gateway and the bot.
CONTROL_EVENT = "org.matrix_hotline.control"
# Content key of the bot's m.room.message events in the survivor room: who speaks.
ROLE_FIELD = "org.matrix_hotline.role"
# Service room: emergency closure (state) and pooled optional answers (messages).
SERVICE_STATE = "org.matrix_hotline.service"
ANSWERS_EVENT = "org.matrix_hotline.answers"


class Control(StrEnum):
    # gateway → bot
    PROFILE = "profile"  # the chat starts: sent once, before the page hears "started": {"language": …}
    END = "end"  # the survivor pressed "End chat"
    DISCONNECTED = "disconnected"  # the page's connection dropped
    RECONNECTED = "reconnected"  # the page came back within the grace period
    ANSWER = "answer"  # the survivor answered an ASK: {"question": AskQuestion, "value": …}
    # bot → gateway
    CLOSED = "closed"  # the chat is over; the gateway tells the page and drops the client
    ASK = "ask"  # the page should ask the survivor: {"question": AskQuestion}


class AskQuestion(StrEnum):
    """What the bot may ask the survivor through the page (``Control.ASK``)."""

    INTERPRETER_CONSENT = "interpreter_consent"  # answered "yes" or "no"
    CODEWORD_NEW = "codeword_new"  # answered with a new code word ("" skips)
    CODEWORD_VERIFY = "codeword_verify"  # answered with the code word to check ("" skips)


CODEWORD_QUESTIONS = frozenset({AskQuestion.CODEWORD_NEW, AskQuestion.CODEWORD_VERIFY})
MAX_CODEWORD_CHARS = 200  # the longest code word answer either side takes


class Role(StrEnum):
    ADVOCATE = "advocate"
    INTERPRETER = "interpreter"
    SUPERVISOR = "supervisor"
    HOTLINE = "hotline"  # automatic notices
