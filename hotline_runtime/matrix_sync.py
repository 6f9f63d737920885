"""A matrix-nio client as both processes run it: its settings, the sync loop, key upkeep, push off.

matrix-nio runs its own callbacks inside ``sync()``; we do not register any. Instead each
response goes to ``on_response`` after nio has decrypted it, and only then does the loop move
its position forward, so a crash while handling a response replays it instead of losing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nio import AsyncClient, AsyncClientConfig, EnablePushRuleError, PushRuleKind, SyncError, SyncResponse

from hotline_runtime.retry import Backoff

log = logging.getLogger(__name__)

# Enough for a restart to catch up on what happened while a process was down. Of the rooms'
# ephemeral events only typing is read (the bot mirrors an advocate's typing, the gateway shows
# it): staff clients' read receipts are not sent to the bot (issue 15).
SYNC_FILTER: dict[str, Any] = {
    "room": {
        "timeline": {"limit": 500},
        "state": {"lazy_load_members": False},
        "ephemeral": {"types": ["m.typing"]},
        "account_data": {"not_types": ["*"]},
    },
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}


def without_own_events(user_id: str) -> dict[str, Any]:
    """SYNC_FILTER, less this account's own events in the timeline: a client that never reads
    back what it sent (a survivor's account in the gateway) is then not answered a /sync for each
    of its own messages. Its own state events still come in a sync's state section."""
    room = {**SYNC_FILTER["room"], "timeline": {**SYNC_FILTER["room"]["timeline"], "not_senders": [user_id]}}
    return {**SYNC_FILTER, "room": room}


# A homeserver that is down is asked again after 1, 2, 4 … 30 s, spread a little so that many
# clients (one per chat in the gateway) do not all come back at the same moment.
SYNC_RETRY = Backoff(1.0, cap=30.0, jitter=0.1)

# Errors after which the account can no longer sync: stop instead of retrying.
FATAL_SYNC_ERRORS = {"M_UNKNOWN_TOKEN", "M_USER_DEACTIVATED", "M_FORBIDDEN"}


class SessionGone(Exception):
    """The homeserver no longer accepts this login (logged out, deactivated, erased)."""


def client_config(**overrides: Any) -> AsyncClientConfig:
    """nio settings shared by the bot and the gateway."""
    values: dict[str, Any] = {
        "encryption_enabled": True,
        "store_sync_tokens": False,  # we save the position after handling a response
        "max_timeouts": 3,  # a homeserver that is down fails a request instead of hanging it
        "max_limit_exceeded": 3,
        "request_timeout": 30,
    }
    values.update(overrides)
    return AsyncClientConfig(**values)


def note_one_time_keys(client: AsyncClient, response: SyncResponse) -> None:
    """Take the homeserver's count of this device's one-time keys, zero included.

    matrix-nio keeps the count only when it is not zero, so a device whose keys were all claimed
    between two syncs would go on believing it has plenty and never upload more: every new
    device would then fail to start an Olm session with it (the bot, after a burst of chats)."""
    if client.olm is not None and not response.device_key_count.signed_curve25519:
        client.olm.uploaded_key_count = 0


async def keep_keys(client: AsyncClient) -> None:
    """Upload, query and claim keys as nio's own sync_forever would."""
    await query_keys(client)
    await keep_own_keys(client)


async def query_keys(client: AsyncClient) -> None:
    """Fetch the device keys of users whose devices changed (before their events are handled:
    the trust decisions and the sends to them need the new devices)."""
    if client.should_query_keys:
        await client.keys_query()


async def keep_own_keys(client: AsyncClient) -> None:
    """Upload this device's keys, claim one-time keys, send queued to-device messages."""
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_claim_keys:
        users = client.get_users_for_key_claiming()
        if users:
            await client.keys_claim(users)
    if client.outgoing_to_device_messages:  # e.g. the steps of an emoji verification
        await client.send_to_device_messages()


async def _logged(step: Callable[[AsyncClient], Awaitable[None]], client: AsyncClient) -> None:
    try:
        await step(client)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        log.warning("key upkeep failed (%s)", type(error).__name__)


# The request behind mute_push, for the set-up code that has only a token (devstack, hotline admin).
MUTE_PUSH_PATH = "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled"


async def mute_push(client: AsyncClient) -> bool:
    """Turn on the master push rule of an account that is a program, not a person (the bot, a
    survivor's account). The homeserver then computes and stores no notifications for it: no
    ``event_push_actions`` rows tying the account to events, no unread counts to work out on every
    sync. Staff accounts keep their notifications. Returns False if the homeserver refused."""
    response = await client.enable_pushrule("global", PushRuleKind.override, ".m.rule.master", True)
    if isinstance(response, EnablePushRuleError):
        log.warning("the master push rule could not be turned on (%s)", response.status_code)
        return False
    return True


async def sync_loop(
    client: AsyncClient,
    on_response: Callable[[SyncResponse], Awaitable[None]],
    *,
    since: str | None,
    save_position: Callable[[str], Awaitable[None]] | None = None,
    timeout_ms: int = 30_000,
    retry: Backoff = SYNC_RETRY,
    sync_filter: dict[str, Any] | None = None,
) -> None:
    """Sync until cancelled; raises SessionGone when the login is refused."""
    failures = 0
    full_state = since is not None  # after a restart nio needs the rooms' full state again
    while True:
        try:
            response = await client.sync(
                timeout=timeout_ms, since=since, full_state=full_state,
                sync_filter=SYNC_FILTER if sync_filter is None else sync_filter,
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # connection refused, timeouts after nio's own retries
            delay = retry.delay(failures)
            log.warning("sync failed (%s); retrying in %.0f s", type(error).__name__, delay)
            await asyncio.sleep(delay)
            failures += 1
            continue
        if isinstance(response, SyncError):
            if response.status_code in FATAL_SYNC_ERRORS:
                raise SessionGone(response.status_code)
            delay = retry.delay(failures)
            log.warning("sync refused (%s); retrying in %.0f s", response.status_code, delay)
            await asyncio.sleep(delay)
            failures += 1
            continue
        failures = 0
        full_state = False
        note_one_time_keys(client, response)
        # Changed devices' keys are fetched first (the trust decisions need them); this device's
        # own key upkeep (a one-time-key upload after a burst of claims, a claim) runs while the
        # response is handled, so that a new chat's first events do not wait behind it. The next
        # sync starts when both are done.
        await _logged(query_keys, client)
        upkeep = asyncio.ensure_future(_logged(keep_own_keys, client))
        try:
            await on_response(response)
        except BaseException:
            upkeep.cancel()
            await asyncio.gather(upkeep, return_exceptions=True)
            raise
        await upkeep
        since = response.next_batch
        if save_position is not None:
            await save_position(since)
