"""Code words for ongoing advocacy: !codeword new | verify C-XXXX | rotate C-XXXX.

The survivor's page asks for the word; the answer goes to bot/codewords.py (``CheckCodeword``)
and never into a room, a log or the state. At most ``Rules.codeword_tries_per_chat`` checks a chat.
"""

from __future__ import annotations

from dataclasses import replace

from bot.commands import Codeword
from bot.conversation.common import Result
from bot.conversation.effects import AskSurvivor, CheckCodeword, Reply
from bot.conversation.events import CodewordChecked, CommandGiven, SurvivorAnswered
from bot.conversation.permissions import own_chat
from bot.conversation.state import Chat, CodewordAsk, CodewordMode, Hotline, Phase
from bot.conversation.team import on_interpreter_consent
from hotline_runtime.wire import CODEWORD_QUESTIONS, AskQuestion


def on_codeword(state: Hotline, event: CommandGiven, command: Codeword, now: float) -> Result:
    chat = own_chat(state, event)
    if not state.rules.codewords_enabled:
        return state, [Reply(event.room, "codeword_off")]
    if chat.phase is not Phase.ACTIVE:
        return state, [Reply(event.room, "not_active")]
    mode = CodewordMode(command.action)
    if mode is CodewordMode.VERIFY and chat.codeword_attempts >= state.rules.codeword_tries_per_chat:
        return state, [Reply(event.room, "codeword_chat_limit")]
    if mode is CodewordMode.ROTATE and chat.verified_case != command.case:
        return state, [Reply(event.room, "codeword_verify_first", (("case", command.case or ""),))]
    question = AskQuestion.CODEWORD_VERIFY if mode is CodewordMode.VERIFY else AskQuestion.CODEWORD_NEW
    chat = replace(chat, codeword_ask=CodewordAsk(mode, command.case))
    return state.with_chat(chat), [AskSurvivor(chat.survivor_room, question), Reply(event.room, "codeword_asking")]


def on_codeword_checked(state: Hotline, event: CodewordChecked, now: float) -> Result:
    chat = state.chats.get(event.ref)
    if chat is None or not event.matched:
        return state, []
    return state.with_chat(replace(chat, verified_case=event.case)), []


def on_survivor_answered(state: Hotline, event: SurvivorAnswered, now: float) -> Result:
    """The page's questions: a code word, or consent to an interpreter (bot/conversation/team.py)."""
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.case_room is None:
        return state, []
    if event.question in CODEWORD_QUESTIONS:
        return _codeword_answer(state, chat, event)
    if event.question == AskQuestion.INTERPRETER_CONSENT:
        return on_interpreter_consent(state, chat, event)
    return state, []


def _codeword_answer(state: Hotline, chat: Chat, event: SurvivorAnswered) -> Result:
    assert chat.case_room is not None
    ask = chat.codeword_ask
    if ask is None:
        return state, []
    verifying = ask.mode is CodewordMode.VERIFY
    if (event.question == AskQuestion.CODEWORD_VERIFY) != verifying:
        return state, []
    attempts = chat.codeword_attempts + (1 if verifying else 0)
    chat = replace(chat, codeword_ask=None, codeword_attempts=attempts)
    if not event.value.strip():
        return state.with_chat(chat), [Reply(chat.case_room, "codeword_skipped")]
    return state.with_chat(chat), [CheckCodeword(chat.ref, chat.survivor_room, chat.case_room, ask.mode, ask.case,
                                                 event.value, event.event_id)]
