"""Survivor accounts opened ahead of time, so that "Start chat" does not wait for them.

An account in the pool is registered in the application service's namespace, its notifications
are off and its device keys are up; the bot's devices are fetched, decided and have an Olm
session with it (webchat/new_chat.py does all of this for a chat that finds the pool empty). It
has no room, no message, no profile: it carries nothing. Each is handed to one chat, once, and
never comes back: a chat's account is erased with the chat, as any other. An account that nobody
took is erased (deactivated with Synapse's erase, by the application service) when it reaches
``account_pool_max_age_seconds`` (below the ten minutes after which ``hotline admin sweep``
counts a survivor account that no chat references as left over), and when the gateway stops.
The pool is in memory only; what a crashed gateway leaves behind carries nothing and is erased
by ``hotline admin sweep``. Survivor accounts at once: at most ``max_open_chats`` plus the pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from nio import AsyncClient

from hotline_runtime.client_api import ClientApi, ClientApiError
from hotline_runtime.retry import Backoff
from webchat.bot_identity import PinnedBot
from webchat.new_chat import open_account, prepare_keys
from webchat.settings import GatewaySettings

log = logging.getLogger(__name__)

# A homeserver that refuses or is down: the pool tries again after 1, 2, 4 … 60 s.
REFILL_RETRY = Backoff(1.0, cap=60.0, jitter=0.1)
# Refilling waits this long after the last account was taken: while many survivors start at
# once, the homeserver's time goes to their chats, not to accounts for later ones.
REFILL_AFTER_TAKE_SECONDS = 3.0


@dataclass
class OpenedAccount:
    client: AsyncClient
    opened_at: float  # time.monotonic()


class AccountPool:
    def __init__(self, settings: GatewaySettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.size = settings.account_pool_size
        self._http = http
        self._ready: deque[OpenedAccount] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._erasing: set[asyncio.Task[None]] = set()
        self._taken_at = -REFILL_AFTER_TAKE_SECONDS

    def __len__(self) -> int:
        return len(self._ready)

    def waiting(self) -> list[str]:
        """The Matrix IDs of the accounts ready now (for the tests and the logs' counts)."""
        return [account.client.user_id for account in self._ready]

    def start(self) -> None:
        if self.size > 0 and self._task is None:
            self._task = asyncio.create_task(self._keep_filled(), name="survivor account pool")

    def take(self) -> AsyncClient | None:
        """An opened account for one chat, never handed out again; None if none is ready."""
        self._drop_expired()
        if not self._ready:
            self._taken_at = time.monotonic()
            self._wake.set()
            return None
        account = self._ready.popleft()
        self._taken_at = time.monotonic()
        self._wake.set()
        return account.client

    async def close(self) -> None:
        """Stop filling; erase every account nobody took."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while self._ready:
            self._erase(self._ready.popleft())
        await asyncio.gather(*self._erasing, return_exceptions=True)

    # ------------------------------------------------------------------ filling and expiry

    def _drop_expired(self) -> None:
        limit = time.monotonic() - self.settings.account_pool_max_age_seconds
        while self._ready and self._ready[0].opened_at <= limit:
            self._erase(self._ready.popleft())

    async def _keep_filled(self) -> None:
        failures = 0
        while True:
            self._drop_expired()
            quiet_in = self._taken_at + REFILL_AFTER_TAKE_SECONDS - time.monotonic()
            if len(self._ready) < self.size and quiet_in > 0:
                await asyncio.sleep(quiet_in)
                continue
            if len(self._ready) < self.size:
                try:
                    self._ready.append(await self._open())
                    failures = 0
                except Exception as error:
                    delay = REFILL_RETRY.delay(failures)
                    failures += 1
                    log.warning("a survivor account could not be opened ahead (%s); trying again in %.0f s",
                                type(error).__name__, delay)
                    await asyncio.sleep(delay)
                continue
            # Full: wake when an account is taken, or when the oldest is due to expire.
            oldest = self._ready[0].opened_at if self._ready else time.monotonic()
            due = oldest + self.settings.account_pool_max_age_seconds - time.monotonic()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(due, 0.01))
            except TimeoutError:
                pass

    async def _open(self) -> OpenedAccount:
        client = await open_account(self.settings, self._http)
        try:
            bot = PinnedBot(self.settings.bot_user_id, self.settings.bot_master_key)
            await prepare_keys(client, bot, self._http, self.settings.homeserver)
        except BaseException:
            self._erase(OpenedAccount(client, 0.0))
            raise
        return OpenedAccount(client, time.monotonic())

    def _erase(self, account: OpenedAccount) -> None:
        task = asyncio.ensure_future(self._erase_now(account.client))
        self._erasing.add(task)
        task.add_done_callback(self._erasing.discard)

    async def _erase_now(self, client: AsyncClient) -> None:
        """Deactivate the unused account with Synapse's erase; its keys go with the client."""
        user_id = client.user_id
        try:
            api = ClientApi(self._http, self.settings.homeserver, self.settings.as_token.get_secret_value(), timeout=30)
            await api.call("POST", "/_matrix/client/v3/account/deactivate?user_id=" + quote(user_id, safe=""),
                           {"erase": True})
        except ClientApiError as error:
            log.warning("an unused survivor account could not be erased (%s); `hotline admin sweep` erases it",
                        error.errcode or error.status or error.cause)
        finally:
            await client.close()
