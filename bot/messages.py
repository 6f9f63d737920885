"""Every sentence the bot writes, in one place.

SURVIVOR texts reach the survivor's page as automatic notices ("Hotline"); STAFF texts are
notices in the staff rooms. Placeholders are ``str.format`` fields; ``{phone}`` is the program's
hotline number from the settings. Plain language; nothing that blames, pressures or promises
what the system cannot keep.
"""

from __future__ import annotations

SURVIVOR: dict[str, str] = {
    "welcome": (
        "Thank you for reaching out. An advocate will join this chat as soon as one is free. "
        "You can write here while you wait. If you are in danger right now, call {phone}."
    ),
    "advocate_joined": "An advocate has joined the chat.",
    "chat_ended": (
        "This chat has ended, and the conversation is being erased. "
        "You can start a new chat at any time, or call {phone}."
    ),
}

STAFF: dict[str, str] = {
    "alert": "Chat waiting · ref {ref} · type !claim {ref} to take it",
    "claimed": "Ref {ref} is taken. A case room is being opened.",
    "already_taken": "Ref {ref} is already taken by another advocate.",
    "unknown_ref": "There is no waiting chat with ref {ref}.",
    "nothing_waiting": "No chat is waiting right now.",
    "not_advocate": "Only advocates (members of the dispatch room) can claim chats.",
    "not_your_chat": "Only the advocate assigned to this chat can do that.",
    "close_in_case_room": "!close works in the case room of the chat you want to close.",
    "case_intro": (
        "Case room for ref {ref}. Messages from the survivor appear here marked «Survivor». "
        "What you write here goes to the survivor, except lines that start with ! "
        "(commands). Type !close to end the chat; everything is then erased."
    ),
    "survivor_label": "Survivor: {text}",
    "survivor_disconnected": (
        "The survivor's connection dropped. The chat waits {minutes} min for them to come back, "
        "then it closes and is erased."
    ),
    "survivor_reconnected": "The survivor is connected again.",
    "closed_advocate": "Chat {ref} closed. Erasing the conversation now.",
    "closed_survivor": "The survivor ended chat {ref}. Erasing the conversation now.",
    "closed_connection_lost": (
        "The survivor did not come back after the connection dropped. Chat {ref} is closed; "
        "erasing the conversation now."
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
    "bad_ref": "That does not look like a chat ref. Use it as shown in the alert, e.g. !claim K7Q2.",
    "no_arguments": "!{name} takes no arguments.",
    "help": (
        "Commands:\n"
        "!claim REF — take the waiting chat with that ref (dispatch room)\n"
        "!claim — take the chat that has waited longest\n"
        "!close — end this chat and erase it (case room)\n"
        "!help — this list"
    ),
}


def survivor_text(key: str, phone: str) -> str:
    return SURVIVOR[key].format(phone=phone)


def staff_text(key: str, **params: str) -> str:
    return STAFF[key].format(**params)
