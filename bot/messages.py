"""Every sentence the bot writes, in one place, and the program's own texts on top.

SURVIVOR texts reach the survivor's page as automatic notices ("Hotline"); CANNED texts are the
advocates' library for ``!say KEY`` (sent as the advocate's words); STAFF texts are notices in
the staff rooms. A program replaces or adds texts with a JSON file (``HOTLINE_MESSAGES_FILE``):
``{"survivor": {"rights": "…"}, "canned": {"greeting": "…", "my_key": "…"}}``.

Placeholders are ``str.format`` fields: ``{phone}`` (the hotline number), ``{rights_url}`` (the
full rights text; a program without one gets "rights_no_link" in place of "rights"),
``{place}``, ``{minutes}``, ``{case}``, ``{excerpt}`` (the start of the survivor's own message, in
"not_passed_on"). Plain language; nothing that blames, pressures or
promises what the system cannot keep.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.conversation.permissions import help_lines

SURVIVOR: dict[str, str] = {
    "rights": (
        "Before you share anything: what you write here is confidential, with limits. "
        "An advocate may have to report some things by law, for example if a child is being "
        "harmed or someone's life is in immediate danger. You can ask the advocate about this "
        "at any time. The full text is at {rights_url}"
    ),
    # The same without a link (no HOTLINE_RIGHTS_URL): sent instead of "rights".
    "rights_no_link": (
        "Before you share anything: what you write here is confidential, with limits. "
        "An advocate may have to report some things by law, for example if a child is being "
        "harmed or someone's life is in immediate danger. You can ask the advocate about this, "
        "and for the full text, at any time."
    ),
    "welcome": (
        "Thank you for reaching out. An advocate will join this chat as soon as one is free; "
        "you are number {place} in line. You can write here while you wait. "
        "If you are in danger right now, call {phone}."
    ),
    "still_waiting": (
        "You are still in line (number {place}). An advocate will be with you as soon as "
        "possible. If you would rather talk now, you can call {phone}."
    ),
    "advocate_joined": "An advocate has joined the chat.",
    "inactivity_warning": (
        "We have not heard from you for a while. This chat will close in {minutes} minutes "
        "unless you write something. You can start a new chat at any time, or call {phone}."
    ),
    "transfer_waiting": (
        "Another advocate will continue this chat with you shortly. They will be able to read "
        "what has been written so far. You can keep writing."
    ),
    "shift_change": (
        "The advocate's shift is ending. Another advocate will continue this chat with you "
        "shortly and will be able to read what has been written so far."
    ),
    "new_advocate": "You are now chatting with a different advocate.",
    "advocate_gone": (
        "The advocate is no longer in this chat. Another advocate will continue with you as soon "
        "as one is free and will be able to read what has been written so far. You can keep "
        "writing. If you are in danger right now, call {phone}."
    ),
    "same_advocate": "The advocate you were chatting with is back in the chat.",
    "supervisor_joined": "A supervisor has joined the chat.",
    "supervisor_left": "The supervisor has left the chat.",
    "interpreter_joined": "An interpreter has joined the chat. Their messages are marked «Interpreter».",
    "interpreter_left": "The interpreter has left the chat.",
    "codeword_set": (
        "Your code word is saved. Your case reference is {case}. An advocate may ask for your "
        "code word at any time to know it is you; you can also ask to change it."
    ),
    "codeword_rotated": "Your new code word is saved for case {case}.",
    "wait_expired": (
        "We are sorry: no advocate has been free to answer in the {minutes} minutes you have waited. "
        "This chat is closing now, and what you wrote is being erased. Please call {phone} to talk "
        "with someone now, or start a new chat later."
    ),
    "chat_ended": (
        "This chat has ended, and the conversation is being erased. "
        "You can start a new chat at any time, or call {phone}."
    ),
    # A line the survivor wrote that could not be passed on to the case room; {excerpt} is its start.
    "not_passed_on": (
        "Because of a technical problem, this message did not reach the advocate: \u201c{excerpt}\u201d. "
        "Please send it again. If you are in danger right now, call {phone}."
    ),
}

CANNED: dict[str, str] = {
    "greeting": "Hello, I'm an advocate. Thank you for reaching out. What would you like to talk about?",
    "safety": (
        "Before we go on: are you safe right now? And do you worry that someone can see this "
        "device or what you type? You can skip this question."
    ),
    "device": (
        "If someone might be watching this device, it can be safer to chat from another device, "
        "such as a friend's or a library computer, or to call {phone}. The \"Leave quickly\" "
        "button takes you away from this page at once."
    ),
    "inactivity": "Are you still there? Take your time; write when you are ready.",
    "closing": (
        "Thank you for talking with me today. You can start a new chat or call {phone} any time."
    ),
    "shift_change": (
        "My shift is ending soon. Another advocate will continue with you, and they will be able "
        "to read what we have written so far."
    ),
    "interpreter_consent": (
        "Would you like an interpreter to join this chat? Interpreters keep what they hear "
        "confidential. You can say no."
    ),
    "transfer": (
        "I am going to connect you with another advocate who can help with this. They will be "
        "able to read what we have written so far."
    ),
    "closing_soon": (
        "Chat is closing for today soon. If you need more time, you can call {phone}."
    ),
}

STAFF: dict[str, str] = {
    "alert": "Chat waiting · ref {ref} · type !claim {ref} to take it",
    "alert_repeat": "Still waiting ({minutes} min) · ref {ref} · type !claim {ref} to take it",
    "alert_language": "Ref {ref} · preferred language: {language}",
    "alert_group": (
        "{count} chats waiting (longest {minutes} min) · refs {refs} · type !claim REF to take one, "
        "or !claim for the one waiting longest"
    ),
    "escalation_group": (
        "{count} chats have waited up to {minutes} min with no advocate · refs {refs} · can someone take "
        "them? (!claim REF, or !claim for the one waiting longest)"
    ),
    "closed_unanswered": (
        "No advocate took these chats within {minutes} min; each survivor was given the hotline "
        "number and the chat is closed and being erased: {refs}"
    ),
    "escalation": "A chat has waited {minutes} min with no advocate · ref {ref} · can someone take it? (!claim {ref})",
    "claimed": "Ref {ref} is taken. A case room is being opened.",
    "already_taken": "Ref {ref} is already taken by another advocate.",
    "unknown_ref": "There is no waiting chat with ref {ref}.",
    "nothing_waiting": "No chat is waiting right now.",
    "not_advocate": "Only advocates (members of the dispatch room) can claim chats.",
    "not_admin": "Only admins can do that, in the admin room.",
    "not_your_chat": "Only the advocate assigned to this chat can do that.",
    "not_active": "The survivor is not in the chat right now.",
    "in_case_room": "That works in the case room of the chat you mean.",
    "case_intro": (
        "Case room for ref {ref}. Preferred language: {language}. Rights notice shown to the "
        "survivor: {rights}. Messages from the survivor appear here marked «Survivor». What you "
        "write here goes to the survivor, except commands: a message that starts with ! is one "
        "command and is never sent to them (a message with a ! line further down is not sent "
        "either). Edits are not sent. !say lists ready-made messages; !close ends the chat and "
        "erases it."
    ),
    "safety_prompt": (
        "Safety check-in: early on, ask whether they are safe right now and whether someone "
        "might be watching their device. Suggested: !say safety, then !say device if needed."
    ),
    "survivor_label": "Survivor: {text}",
    "canned_sent": "Sent to the survivor: {text}",
    "canned_list": "Ready-made messages (!say KEY):\n{items}",
    "unknown_canned": "There is no ready-made message called {key}. Type !say for the list.",
    "survivor_disconnected": (
        "The survivor's connection dropped. The chat waits {minutes} min for them to come back, "
        "then it closes and is erased."
    ),
    "survivor_reconnected": "The survivor is connected again.",
    "inactivity_warned": (
        "The survivor has been quiet for a while and was told the chat closes in {minutes} min "
        "unless they write."
    ),
    "advocate_reminder": "The survivor wrote {minutes} min ago and is waiting for an answer.",
    "closed_advocate": "Chat {ref} closed. Erasing the conversation now.",
    "closed_survivor": "The survivor ended chat {ref}. Erasing the conversation now.",
    "closed_connection_lost": (
        "The survivor did not come back after the connection dropped. Chat {ref} is closed; "
        "erasing the conversation now."
    ),
    "closed_inactivity": "Chat {ref} closed after a long silence. Erasing the conversation now.",
    "alert_transfer": "Chat waiting (transferred, first in line) · ref {ref} · type !claim {ref}",
    "alert_transfer_note": (
        "Chat waiting (transferred, first in line) · ref {ref} · a handoff note is shown to whoever "
        "claims it · type !claim {ref}"
    ),
    "alert_returned": "Chat waiting (its advocate left the chat, first in line) · ref {ref} · type !claim {ref}",
    "advocate_gone": (
        "The advocate left this chat. Chat {ref} is back in the queue, first in line, and the "
        "survivor was told. This room will be erased."
    ),
    "command_not_alone": (
        "Not sent to the survivor: a line of that message starts with ! (a command). Send the "
        "command on its own, as a message that starts with !, and the rest as another message."
    ),
    "edit_not_relayed": (
        "Edits do not reach the survivor: they still see the first version. To correct it, send "
        "the correction as a new message."
    ),
    "transferred_out": "Chat {ref} is handed on. This room will be erased; thank you.",
    "transfer_self": "The chat is already yours.",
    "transfer_target": "{user} is not an advocate or supervisor here.",
    "handoff_note": "Handoff note from the previous advocate: {note}",
    "supervisor_wanted": "An advocate asks for a supervisor in chat {ref}. Type !join {ref} to join.",
    "supervisor_asked": "The supervisors have been asked to join.",
    "unknown_active_ref": "There is no active chat with ref {ref}.",
    "join_refused": "Only supervisors, or interpreters for a chat that asked for one, can join a chat.",
    "already_in": "You are already in chat {ref}.",
    "already_joining": (
        "{user} is already joining chat {ref}. One at a time: try again once they have joined or declined."
    ),
    "supervisor_present": "Supervisor {user} is already in chat {ref}.",
    "interpreter_present": "Interpreter {user} is already in this chat.",
    "invitation_declined": "{user} declined the invitation to this chat.",
    "removed_uninvited": "{user} joined this room without the bot's invitation and was removed.",
    "joining": "You are invited to the case room of chat {ref}.",
    "staff_supervisor_joined": "Supervisor {user} joined. The survivor was told that a supervisor joined.",
    "staff_interpreter_joined": (
        "Interpreter {user} joined. The survivor was told; the interpreter's messages reach them marked «Interpreter»."
    ),
    "not_an_interpreter": "{user} is not in the interpreters room.",
    "not_interpreter": "Only interpreters (members of the interpreters room) can do that.",
    "interpreter_asking": "The survivor is being asked whether an interpreter may join.",
    "interpreter_declined": "The survivor said no to an interpreter. Please respect that.",
    "interpreter_consented": "The survivor agreed to an interpreter joining.",
    "interpreter_wanted": "An interpreter for {language} is needed in chat {ref}. {who}Type !join {ref} to join.",
    "languages_set": "Noted: you interpret {languages}.",
    "shift_set": "Your shift ends at {until}. New claims are refused in the last minutes unless you add force.",
    "shift_cleared": "Your shift end is cleared.",
    "shift_ending_claim": (
        "Your shift ends in {minutes} min, so this claim is refused to keep chats from being cut short. "
        "Use !claim REF force to take it anyway."
    ),
    "shift_reminder": "Your shift ends in {minutes} min. Please hand off this chat (!handoff NOTE) or close it.",
    "too_many_chats": "You already have {max} open chats, the most allowed. Close or hand one on first.",
    "no_chats": "You have no open chats.",
    "chats_list": "Your open chats:\n{items}",
    "devices_list": "Staff devices held back (no keys until approved):\n{items}",
    "device_not_cross_signed": (
        "Device {device} of {user} is not verified by its owner (not cross-signed), so it gets no chat keys. "
        "{user} can verify it in their Matrix client (Settings → Sessions) with their recovery key or another "
        "session. An admin who has checked with them can also type !approve {user} {device}."
    ),
    "device_identity_changed": (
        "The identity of {user} changed (their cross-signing keys were reset), so none of their devices gets chat "
        "keys, device {device} included. Check with {user} in person or by phone; if they reset it themselves, "
        "type !trust {user}. New key: {fingerprint}."
    ),
    "device_identity_unverified": (
        "{user} has not been confirmed by an admin yet, so device {device} gets no chat keys. Check with them "
        "in person or by phone that their key is {fingerprint}, then type !trust {user} (or, for this device only, "
        "!approve {user} {device})."
    ),
    "identity_trusted": "The identity of {user} ({fingerprint}) is trusted now: their verified devices get keys.",
    "identity_none": "{user} has no cross-signing identity yet: they should sign in with Element and set up "
                     "secure backup or verify a session.",
    "trust_usage": "Use !trust @user:server after checking their identity with them.",
    "bot_identity_restored": (
        "The bot's identity on the homeserver had been replaced by someone without the bot's keys; the bot put "
        "its own back. Staff clients may show a warning about the bot once. Tell the homeserver's admin."
    ),
    "staff_undecryptable": (
        "I could not read a message from {user}'s session {device}. Verify this session in your Matrix client "
        "(Settings → Sessions) and send it again."
    ),
    "staff_device_untrusted": (
        "I did not act on a message from {user}'s session {device}: that session is not verified, so it is not "
        "trusted with chats. Verify it in your Matrix client (Settings → Sessions) and send it again."
    ),
    "verification_emojis": (
        "Emoji verification of device {device} of {user}: {emojis}. Check with them (in person or by phone) "
        "that their device shows the same, then type !verify {user} {device}. Otherwise ignore this."
    ),
    "verification_waiting": "Confirmed. Waiting for {user} to confirm on device {device}.",
    "verification_done": "Device {device} of {user} is verified and will get keys.",
    "verification_none": "There is no emoji verification under way with device {device} of {user}.",
    "verification_cancelled": "The emoji verification of device {device} of {user} was cancelled.",
    "verify_usage": "Use !verify @user:server DEVICE after comparing the emojis.",
    "device_approved": "Device {device} of {user} is approved and will get keys.",
    "device_revoked": "Device {device} of {user} is revoked and gets no more keys.",
    "device_unknown": "{user} has no device {device}.",
    "codeword_asking": "The survivor's page is asking them for it. You will not see it; only the result.",
    "codeword_skipped": "The survivor chose not to enter a code word.",
    "codeword_set": "Code word set for case {case} on {set_on}. The survivor was shown the case reference.",
    "codeword_rotated": "New code word saved for case {case}.",
    "codeword_match": "Matches case {case}, set on {set_on}.",
    "codeword_nomatch": "Does not match.",
    "codeword_expired": (
        "Matches case {case}, but it expired on {until}: ask them to choose a new one (!codeword rotate {case})."
    ),
    "codeword_locked": "Case {case} is locked after too many wrong code words, until {until}.",
    "codeword_locked_now": "Does not match. Too many wrong tries: case {case} is locked until {until}.",
    "codeword_chat_limit": "No more code word checks in this chat.",
    "codeword_verify_first": "Verify the code word of {case} in this chat first (!codeword verify {case}).",
    "codeword_off": "Code words are not set up on this hotline (an admin sets HOTLINE_CODEWORD_PEPPER).",
    "codeword_usage": "Use !codeword new, !codeword verify C-XXXX or !codeword rotate C-XXXX.",
    "service_closed": "Chat intake is closed. The page now says: {message}",
    "service_opened": "Chat intake is open again (within the opening hours).",
    "stats": "Statistics, last {days} days (no personal data):\n{table}",
    "survivor_relay_failed": (
        "A message from the survivor could not be shown here (reference {incident}). "
        "They have been asked to send it again."
    ),
    "relay_failed": (
        "A message could not be delivered (reference {incident}). "
        "Please send it again; if this keeps happening, tell an admin."
    ),
    "undecryptable": (
        "A message from the survivor could not be decrypted yet (reference {incident}). "
        "It is shown here if its key arrives."
    ),
    "command_failed": "That command did not work (reference {incident}). Please tell an admin.",
    "unknown_command": "Unknown command !{name}. Type !help for the list.",
    "bad_ref": "That does not look like a chat ref. Use it as shown in the alert, e.g. !claim K7Q3.",
    "no_arguments": "!{name} takes no arguments.",
    "say_one_key": "Use !say KEY with one key, or !say for the list.",
    "bad_period": "Use !stats, !stats today, !stats week (7d), !stats month (30d), !stats 90d or !stats year.",
    "interpreter_usage": "Use !interpreter LANGUAGE (e.g. es) or !interpreter @user:server.",
    "device_usage": "Use !approve @user:server DEVICE or !revoke @user:server DEVICE.",
    "languages_usage": "Use !languages with language codes, e.g. !languages es fr.",
    "shift_usage": "Use !shift until HH:MM (e.g. !shift until 17:30), or !shift end.",
    "note_too_long": "That handoff note is too long; keep it under 1000 characters.",
    "service_usage": "Use !service close MESSAGE (the page shows MESSAGE) or !service open.",
    "service_message_long": "That message is too long for the page; keep it under 500 characters.",
}

def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


ALLOWED_FIELDS = {"phone", "rights_url", "place", "minutes", "case", "excerpt"}


@dataclass(frozen=True)
class Catalog:
    """The texts in force: the defaults with the program's file on top."""

    survivor: Mapping[str, str] = field(default_factory=lambda: dict(SURVIVOR))
    canned: Mapping[str, str] = field(default_factory=lambda: dict(CANNED))
    phone: str = "your local hotline"
    rights_url: str = ""  # none: the rights notice is "rights_no_link"

    @classmethod
    def load(cls, path: Path | None, phone: str, rights_url: str) -> Catalog:
        survivor, canned = dict(SURVIVOR), dict(CANNED)
        if path is not None:
            try:
                data = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError) as error:
                raise ValueError(f"cannot read {path}: {error}") from error
            if not isinstance(data, dict) or set(data) - {"survivor", "canned"}:
                raise ValueError(f"{path}: expected an object with \"survivor\" and/or \"canned\"")
            for section, target in (("survivor", survivor), ("canned", canned)):
                items = data.get(section, {})
                if not isinstance(items, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in items.items()
                ):
                    raise ValueError(f"{path}: \"{section}\" must map names to non-empty texts")
                target.update(items)
        for name, text in [*survivor.items(), *canned.items()]:
            unknown = _fields(text) - ALLOWED_FIELDS
            if unknown:
                raise ValueError(f"text {name!r} uses unknown placeholders {sorted(unknown)}")
        for key in canned:
            if not key.isidentifier() or key != key.lower() or len(key) > 32:
                raise ValueError(f"canned message key {key!r} must be a short lower-case word")
        return cls(survivor, canned, phone, rights_url)

    def _fill(self, text: str, params: Mapping[str, str]) -> str:
        return text.format(phone=self.phone, rights_url=self.rights_url,
                           **{"place": "", "minutes": "", "case": "", "excerpt": "", **params})

    def survivor_text(self, key: str, params: Iterable[tuple[str, str]] = ()) -> str:
        if key == "rights" and not self.rights_url:
            key = "rights_no_link"
        return self._fill(self.survivor[key], dict(params))

    def canned_text(self, key: str) -> str:
        return self._fill(self.canned[key], {})


def staff_text(name: str, /, **params: str) -> str:
    return STAFF[name].format(**params)


def help_text(roles: Iterable[str]) -> str:
    """``!help``: the commands of these roles, written from the permission table."""
    return "\n".join(["Commands you can use:", *help_lines(frozenset(roles))])
