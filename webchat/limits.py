"""Limits per client address: open sockets, chat starts and answer submissions.

The address is known only for the moment it is needed: it keys a counter and a leaky bucket
(aiolimiter) in memory, is never logged, never written, and the entry is dropped once its bucket
has drained. Behind the reverse proxy every connection comes from the proxy, so the address is
taken from the proxy's ``X-Real-IP`` header, and only when the connection comes from one of
``trusted_proxies`` (a client cannot choose its own address). A connection from a trusted proxy
without the header has no known address: the proxy's own limits apply, not these. An IPv6
address counts by its /64 (one home or phone usually has a whole /64).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from aiohttp import web
from aiolimiter import AsyncLimiter

log = logging.getLogger(__name__)

ADDRESS_HEADER = "X-Real-IP"
PRUNE_AT = 10_000  # entries; idle ones are dropped when there are this many
MAX_ENTRIES = 100_000  # beyond this (after pruning), new addresses are not tracked: the global limits hold


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str) -> list[Network]:
    """``"127.0.0.1, ::1, 10.0.0.0/8"`` → networks; raises ValueError naming the bad entry."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return networks


def client_key(peer: str | None, header: str | None, trusted: list[Network]) -> str | None:
    """The key that limits count under: the client's address (IPv6: its /64), or None if unknown.

    ``peer`` is the connecting address, ``header`` the proxy's ``X-Real-IP`` value (if any). Pure.
    """
    address = _address(peer)
    if address is None:
        return None
    if any(address in network for network in trusted):
        address = _address(header.strip()) if header else None
        if address is None:
            return None  # the proxy did not say (or said nonsense): its own limits apply
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass
class _Entry:
    starts: AsyncLimiter
    answers: AsyncLimiter
    sockets: int = 0

    def is_idle(self) -> bool:
        return (self.sockets == 0 and self.starts.has_capacity(self.starts.max_rate)
                and self.answers.has_capacity(self.answers.max_rate))


class AddressLimits:
    """Per-address sockets (at once), chat starts and answers (leaky buckets over ``period``)."""

    def __init__(self, trusted: list[Network], max_sockets: int, max_starts: int, max_answers: int,
                 period: float) -> None:
        self._trusted = trusted
        self._max_sockets = max_sockets
        self._max_starts = max_starts
        self._max_answers = max_answers
        self._period = period
        self._entries: dict[str, _Entry] = {}
        self._full_warned = False

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, request: web.Request) -> str | None:
        return client_key(request.remote, request.headers.get(ADDRESS_HEADER), self._trusted)

    def _entry(self, key: str | None) -> _Entry | None:
        if key is None:
            return None
        entry = self._entries.get(key)
        if entry is not None:
            return entry
        if len(self._entries) >= PRUNE_AT:
            self._prune()
        if len(self._entries) >= MAX_ENTRIES:
            if not self._full_warned:
                log.warning("the per-address limit table is full; new addresses are not limited until it drains")
                self._full_warned = True
            return None
        self._full_warned = False
        entry = self._entries[key] = _Entry(AsyncLimiter(self._max_starts, self._period),
                                            AsyncLimiter(self._max_answers, self._period))
        return entry

    def _prune(self) -> None:
        for key in [k for k, e in self._entries.items() if e.is_idle()]:
            del self._entries[key]

    def open_socket(self, key: str | None) -> bool:
        """A socket from this address may open (then call ``close_socket``); False at the limit."""
        entry = self._entry(key)
        if entry is None:
            return True
        if entry.sockets >= self._max_sockets:
            return False
        entry.sockets += 1
        return True

    def close_socket(self, key: str | None) -> None:
        entry = self._entries.get(key) if key is not None else None
        if entry is not None:
            entry.sockets = max(0, entry.sockets - 1)
            if entry.is_idle():
                del self._entries[key]  # type: ignore[arg-type]

    async def take_start(self, key: str | None) -> bool:
        """One chat start from this address; False if its bucket is full (nothing is taken)."""
        entry = self._entry(key)
        return True if entry is None else await _take(entry.starts)

    async def take_answers(self, key: str | None) -> bool:
        entry = self._entry(key)
        return True if entry is None else await _take(entry.answers)


async def _take(limiter: AsyncLimiter) -> bool:
    if not limiter.has_capacity():
        return False
    await limiter.acquire()  # does not wait: there is capacity, and nothing awaits in between
    return True
