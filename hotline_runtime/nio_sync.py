"""Old home of the runtime's matrix-nio helpers, kept only for ``bot/`` until it imports from the
modules these names live in now; delete this file then.

- ``hotline_runtime.matrix_sync``: the client settings, the sync loop, key upkeep, push off.
- ``hotline_runtime.e2ee``: the one encrypted send, device trust, who sent a decrypted event.
"""

from hotline_runtime.e2ee import KeysUnavailable, members_and_keys, olm_sessions, sending_device
from hotline_runtime.matrix_sync import (
    FATAL_SYNC_ERRORS,
    MUTE_PUSH_PATH,
    SYNC_FILTER,
    SessionGone,
    client_config,
    keep_keys,
    mute_push,
    note_one_time_keys,
    sync_loop,
)

__all__ = [
    "FATAL_SYNC_ERRORS", "MUTE_PUSH_PATH", "SYNC_FILTER", "KeysUnavailable", "SessionGone", "client_config",
    "keep_keys", "members_and_keys", "mute_push", "note_one_time_keys", "olm_sessions", "sending_device",
    "sync_loop",
]
