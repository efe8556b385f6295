"""Lookup slots: at most ``total`` outbound lookups at once, ``per_domain`` for one domain, and
the free slots handed out in turn between domains.

A wildcard domain gives an attacker any number of distinct names, so neither caches nor the
merging of identical lookups bound the sockets the resolver opens; these slots do. The
per-domain cap alone is not enough: were the process's slots handed out first come, first
served, a few more slow domains than ``total / per_domain`` would queue ahead of everyone
(each with up to ``per_domain`` waiters) and take every slot as it frees. So the domains with
waiters take turns (round robin): a free slot goes to the first domain in the rotation below
its cap, which then moves to the back. A domain that starts waiting gets a slot after at most
one slot for each domain that was waiting before it, however many lookups those have queued.

What turns cannot do is make a slot free: while every slot is held, everyone waits (within
their deadline) for one of them to end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

from plc.resolve.lookups import Deadline, icann_suffixes


@dataclass(slots=True)
class _Domain:
    held: int = 0
    queue: deque[asyncio.Future[None]] = field(default_factory=deque)
    """Waiters in arrival order (the entry is dropped when both are empty)."""


class LookupSlots:
    """At most ``total`` lookups at once, at most ``per_domain`` of them for one domain, the
    free ones handed to the waiting domains in turn (module docstring).

    Meant for one event loop; no method awaits while it changes the bookkeeping.

    Args:
        total: the process-wide cap (``max_concurrent_lookups``).
        per_domain: the cap for one registrable domain (``max_lookups_per_domain``).
    """

    def __init__(self, total: int, per_domain: int) -> None:
        icann_suffixes()  # parsed here, at start-up, rather than inside a request
        self._free = total
        self._per_domain = per_domain
        self._domains: dict[str, _Domain] = {}
        # The domains with waiters, in turn order (a dict keeps insertion order): the next
        # free slot goes to the first one below its cap.
        self._turns: dict[str, _Domain] = {}

    async def acquire(self, domain: str, deadline: Deadline) -> bool:
        """Wait for a slot for ``domain`` until ``deadline``.

        Returns:
            True with the slot held (give it back with :meth:`release`); False if the
            deadline came (or had passed) first, nothing held.

        Raises:
            asyncio.CancelledError: the caller was cancelled; nothing held.
        """
        if deadline.passed():
            return False
        entry = self._domains.get(domain)
        if entry is None:
            entry = self._domains[domain] = _Domain()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry.queue.append(waiter)
        if domain not in self._turns:
            self._turns[domain] = entry  # a domain new to the rotation starts at its back
        self._dispatch()
        granted = False
        try:
            async with deadline.scope():
                await waiter
            granted = True
        except TimeoutError:
            pass
        finally:
            if not granted:
                if waiter.done() and not waiter.cancelled():
                    # Handed a slot in the same turn as the deadline or cancellation came:
                    # pass it on rather than lose it.
                    self._give_back(domain, entry)
                else:
                    waiter.cancel()
                    self._unqueue(domain, entry, waiter)
        return granted

    def release(self, domain: str) -> None:
        """Give back the slot :meth:`acquire` took for ``domain``."""
        self._give_back(domain, self._domains[domain])

    def domains(self) -> int:
        """How many domains hold or wait for slots (the bookkeeping kept)."""
        return len(self._domains)

    def _give_back(self, domain: str, entry: _Domain) -> None:
        entry.held -= 1
        self._free += 1
        self._drop_if_idle(domain, entry)
        self._dispatch()

    def _unqueue(self, domain: str, entry: _Domain, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # :meth:`_dispatch` may have dropped it already
            entry.queue.remove(waiter)
        if not entry.queue and self._turns.get(domain) is entry:
            del self._turns[domain]
        self._drop_if_idle(domain, entry)

    def _drop_if_idle(self, domain: str, entry: _Domain) -> None:
        if entry.held == 0 and not entry.queue and self._domains.get(domain) is entry:
            del self._domains[domain]  # an attacker's many domains leave nothing behind

    def _dispatch(self) -> None:
        """Hand free slots to waiters: each to the head of the first domain in the rotation
        below its cap, the domain then moving to the back (or out, with no one left)."""
        while self._free > 0:
            # Domains at their cap are passed over in place (first in line once below it):
            # there are at most total / per_domain of them.
            name = next((n for n, e in self._turns.items() if e.held < self._per_domain), None)
            if name is None:
                return
            entry = self._turns[name]
            waiter = entry.queue.popleft()
            if waiter.done():
                # Cancelled, its task not yet through its clean-up: no turn taken, the domain
                # keeps its place.
                if not entry.queue:
                    del self._turns[name]
                continue
            del self._turns[name]
            if entry.queue:
                self._turns[name] = entry  # its turn taken: to the back
            waiter.set_result(None)
            entry.held += 1
            self._free -= 1
