"""The homeserver's floor: what Synapse and PostgreSQL spend (CPU) to persist the two events of one
relayed message and nothing else (issue 15). A fresh account, alone in its own encrypted room and
with no client syncing it, sends opaque ``m.room.encrypted`` events through the client API, one
after the other; ``bench/capacity.py`` measures it before and after its ramp, on the same stack.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import statistics

import aiohttp

from bench.common import ProcessMeter, log, now
from hotline_runtime.synapse_admin import SynapseAdmin

HOMESERVER = ("synapse", "postgres")


async def server_floor(stack, meter: ProcessMeter, *, rounds: int, pairs: int) -> dict:
    """Synapse + PostgreSQL CPU per relayed message at the floor: a fresh user, alone in its own
    room and with no client syncing, sends ``2 × pairs`` opaque ``m.room.encrypted`` events through
    the client API, one after the other, in each of ``rounds`` rounds; the median round is kept."""
    async with aiohttp.ClientSession() as http:
        sender = await SoloSender.open(stack, http)
        for _ in range(2):  # warm-up: the room's first events and the account's first sends
            await sender.send()
        per_round = await measured_rounds(sender, meter, rounds=rounds, events=2 * pairs)
    ms = [r["cpu_s"] / pairs * 1000 for r in per_round]
    floor = {"ms_per_relayed_message": statistics.median(ms), "rounds_ms": ms, "events_per_round": 2 * pairs,
             "rounds": per_round}
    log(f"capacity: homeserver floor {floor['ms_per_relayed_message']:.0f} ms of Synapse + PostgreSQL CPU "
        f"per relayed message (two events; rounds {', '.join(f'{m:.0f}' for m in ms)} ms)")
    return floor


async def measured_rounds(sender: SoloSender, meter: ProcessMeter, *, rounds: int, events: int,
                          settle_s: float = 0.0) -> list[dict[str, float]]:
    """Synapse + PostgreSQL CPU seconds (and the time taken) of each of ``rounds`` rounds of
    ``events`` sends, one after the other; ``settle_s`` waits inside each round after its last send,
    so that work the sends cause (woken /sync long-polls, pushes) is counted in the round."""
    per_round = []
    for _ in range(rounds):
        meter.mark()
        t0 = now()
        for _ in range(events):
            await sender.send()
        if settle_s:
            await asyncio.sleep(settle_s)
        per_round.append({"cpu_s": meter.cpu_seconds(homeserver_processes(meter)), "elapsed_s": now() - t0})
    return per_round


def homeserver_processes(meter: ProcessMeter) -> list[str]:
    """PostgreSQL and every Synapse process (the main one, and its workers in the worker layout)."""
    return [n for n in meter.pids if n in HOMESERVER or n.startswith("synapse:")]


class SoloSender:
    """A fresh account alone in its own encrypted room, with no client syncing: each ``send`` is one
    ``m.room.encrypted`` event of a typical short message's size, persisted and nothing else."""

    def __init__(self, http: aiohttp.ClientSession, base: str, user_id: str, token: str, device: str,
                 room: str) -> None:
        self.http, self.base, self.user_id, self.device, self.room = http, base, user_id, device, room
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}
        self.sender_key, self.session_id = _b64(32), _b64(32)

    @classmethod
    async def open(cls, stack, http: aiohttp.ClientSession, *, invite: tuple[str, ...] = ()) -> SoloSender:
        """``stack`` needs only ``.homeserver`` (an EmbeddedHomeserver). ``invite``: others to invite
        (bench/wakes.py: a room with a member that syncs); the sender is then a server admin, whom
        the hotline's invite policy lets invite anyone."""
        secret = stack.homeserver.secrets()["registration_shared_secret"]
        localpart = f"floor_solo_{secrets.token_hex(4)}"
        account = await SynapseAdmin(http, stack.homeserver.url, None).register(
            secret, localpart, secrets.token_urlsafe(12), admin=bool(invite))
        base = f"{stack.homeserver.url}/_matrix/client/v3"
        headers = {"Authorization": f"Bearer {account['access_token']}"}
        body = {"preset": "private_chat", "invite": list(invite), "initial_state": [
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]}
        async with http.post(f"{base}/createRoom", json=body, headers=headers) as response:
            response.raise_for_status()
            room = (await response.json())["room_id"]
        return cls(http, base, account["user_id"], account["access_token"], account["device_id"], room)

    async def send(self) -> None:
        content = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": _b64(240), "device_id": self.device,
                   "sender_key": self.sender_key, "session_id": self.session_id}
        url = f"{self.base}/rooms/{self.room}/send/m.room.encrypted/{secrets.token_hex(8)}"
        async with self.http.put(url, json=content, headers=self.headers) as response:
            response.raise_for_status()


def _b64(n: int) -> str:
    """``n`` random bytes in unpadded base64, as Matrix writes keys and ciphertext."""
    return base64.b64encode(os.urandom(n)).decode().rstrip("=")
