"""A Synapse module that limits who may invite whom.

Loaded by Synapse (``modules:`` in homeserver.yaml), not by our processes. It replaces
``block_non_admin_invites``, which would also stop a survivor account from inviting the bot:

- a survivor account (the gateway's namespace) may invite the bot and nobody else;
- a server admin (the bot, the program's admins) may invite anyone;
- nobody else may invite anyone.
"""

from __future__ import annotations

from typing import Any

from synapse.api.errors import Codes
from synapse.module_api import NOT_SPAM, ModuleApi


class InvitePolicy:
    def __init__(self, config: dict[str, Any], api: ModuleApi) -> None:
        self._api = api
        self._survivor_prefix = "@" + config["survivor_prefix"]
        self._bot = config["bot_user_id"]
        api.register_spam_checker_callbacks(user_may_invite=self.user_may_invite)

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        for key in ("survivor_prefix", "bot_user_id"):
            if not isinstance(config.get(key), str) or not config[key]:
                raise ValueError(f"InvitePolicy needs the string setting {key!r}")
        return config

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Any:
        if inviter.startswith(self._survivor_prefix):
            return NOT_SPAM if invitee == self._bot else (Codes.FORBIDDEN, {})
        if await self._api.is_user_admin(inviter):
            return NOT_SPAM
        return (Codes.FORBIDDEN, {})
