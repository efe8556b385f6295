"""Outbound lookups shared between callers and bounded per process and per domain.

Two defences against bursts of hostile or merely popular traffic (issue 5, "safety limits"):

- :class:`SharedLookups`: one network lookup per key (a handle, a did:web DID) at a time.
  Every caller asking for the key while it runs waits for that lookup's outcome, each until
  its own deadline. A caller that gives up (its deadline, or its client went away) does not
  stop the lookup for the others; the lookup is cancelled only when the last caller still
  waiting for it is cancelled.
- :class:`LookupSlots`: at most ``total`` lookups at once in the process, and at most
  ``per_domain`` for one registrable domain (:func:`registrable_domain`), so that the
  unlimited distinct names of one wildcard domain cannot hold every slot.

A shared lookup runs under a :class:`Deadline`: the latest deadline of the callers waiting
for it, moved later when a caller with more time joins.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from publicsuffixlist import PublicSuffixList

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

_log = logging.getLogger(__name__)

Lookup = Callable[["Deadline"], Coroutine[Any, Any, T]]
"""Starts one lookup under a :class:`Deadline` it must respect as the deadline moves."""


@functools.cache
def _icann_suffixes() -> PublicSuffixList:
    # Parsing the bundled list takes about 0.1 s: once per process, on first use.
    return PublicSuffixList(only_icann=True)


def registrable_domain(host: str) -> str:
    """The registrable domain of ``host`` under the ICANN section of the Public Suffix List.

    ``alice.example.co.uk`` -> ``example.co.uk``; ``h1.evil.test`` -> ``evil.test`` (an
    unlisted TLD counts as a public suffix, the list's default rule). A host that is itself a
    public suffix (``co.uk``) or a single label (``localhost``) is its own domain.

    The list's private section (``github.io``, dynamic-DNS providers) is ignored on purpose:
    many of its suffixes hand out subdomains free of charge, which would give an attacker
    unlimited "registrable domains" and so unlimited per-domain caps; under the ICANN
    section each domain costs a registration.

    Args:
        host: a DNS name, any case, without trailing dot (a handle, a did:web host).

    Returns:
        The registrable domain, lower-case (the list is the snapshot bundled with the
        ``publicsuffixlist`` package: nothing is fetched at run time).
    """
    host = host.lower()
    return _icann_suffixes().privatesuffix(host) or host


class Deadline:
    """A ``loop.time()`` deadline (seconds) that can move later while work runs under it.

    Work reads it through ``deadline()`` whenever it waits again, or waits inside
    :meth:`scope`, whose timeout follows every :meth:`extend`.
    """

    def __init__(self, when: float) -> None:
        self.when = when
        self._scopes: set[asyncio.Timeout] = set()

    def __call__(self) -> float:
        """The current deadline (``loop.time()`` seconds)."""
        return self.when

    def passed(self) -> bool:
        """Whether the event loop's clock has reached the deadline."""
        return asyncio.get_running_loop().time() >= self.when

    def extend(self, when: float) -> None:
        """Move the deadline to ``when`` if that is later (never earlier)."""
        if when <= self.when:
            return
        self.when = when
        for scope in self._scopes:
            if not scope.expired():
                scope.reschedule(when)

    @contextlib.asynccontextmanager
    async def scope(self) -> AsyncIterator[None]:
        """Run the block until the deadline (as it moves).

        Raises:
            TimeoutError: the deadline came first (the block was cancelled).
        """
        async with asyncio.timeout_at(self.when) as scope:
            self._scopes.add(scope)
            try:
                yield
            finally:
                self._scopes.discard(scope)


@dataclass(slots=True)
class _DomainSlots:
    semaphore: asyncio.Semaphore
    users: int = 0
    """Lookups holding or waiting for one of the domain's slots (the entry goes at 0)."""


class LookupSlots:
    """At most ``total`` lookups at once, at most ``per_domain`` of them for one domain.

    Args:
        total: the process-wide cap (``max_concurrent_lookups``).
        per_domain: the cap for one registrable domain (``max_lookups_per_domain``).
    """

    def __init__(self, total: int, per_domain: int) -> None:
        _icann_suffixes()  # parsed here, at start-up, rather than inside a request
        self._total = asyncio.Semaphore(total)
        self._per_domain = per_domain
        self._domains: dict[str, _DomainSlots] = {}

    async def acquire(self, domain: str, deadline: Deadline) -> bool:
        """Wait for a slot of ``domain`` and one of the process until ``deadline``.

        Returns:
            True with both held (give them back with :meth:`release`); False if the deadline
            came (or had passed) first, nothing held.
        """
        if deadline.passed():
            return False
        entry = self._domains.get(domain)
        if entry is None:
            entry = self._domains[domain] = _DomainSlots(asyncio.Semaphore(self._per_domain))
        entry.users += 1
        got_domain = got_total = False
        try:
            async with deadline.scope():
                # The domain's slot first: a lookup queued behind its own domain's cap must not
                # hold one of the process's slots while it waits.
                await entry.semaphore.acquire()
                got_domain = True
                await self._total.acquire()
                got_total = True
        except TimeoutError:
            pass
        finally:
            if not got_total:
                if got_domain:
                    entry.semaphore.release()
                self._leave(domain, entry)
        return got_total

    def release(self, domain: str) -> None:
        """Give back the slots :meth:`acquire` took for ``domain``."""
        self._total.release()
        entry = self._domains[domain]
        entry.semaphore.release()
        self._leave(domain, entry)

    def domains(self) -> int:
        """How many domains hold or wait for slots (the bookkeeping kept)."""
        return len(self._domains)

    def _leave(self, domain: str, entry: _DomainSlots) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self._domains[domain]  # an attacker's many domains leave nothing behind


@dataclass(slots=True)
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    deadline: Deadline
    waiters: int = 0


class SharedLookups(Generic[K, T]):
    """Runs at most one lookup per key at a time and hands its outcome to every caller.

    A lookup should report failures as values (each caller then raises its own exception);
    an exception it raises anyway reaches every caller waiting for it.
    """

    def __init__(self) -> None:
        self._flights: dict[K, _Flight[T]] = {}

    def __len__(self) -> int:
        """Lookups running now."""
        return len(self._flights)

    async def run(self, key: K, deadline: float, lookup: Lookup[T]) -> T:
        """The outcome of the lookup of ``key``: the one running, or ``lookup(Deadline)``.

        A lookup running for ``key`` is joined and its deadline moved to ``deadline`` if that
        is later; one whose deadline has passed is not joined (it can only end cut short).

        Args:
            key: what is looked up.
            deadline: ``loop.time()`` by which this caller wants the outcome.
            lookup: starts the lookup; it must end by its :class:`Deadline` (as it moves).

        Raises:
            TimeoutError: ``deadline`` came first; the lookup goes on for the others.
            asyncio.CancelledError: this caller was cancelled; the lookup goes on while
                anyone else waits for it.
        """
        loop = asyncio.get_running_loop()
        if loop.time() >= deadline:
            raise TimeoutError
        flight = self._flights.get(key)
        if flight is None or flight.deadline.passed():
            flight = self._start(key, Deadline(deadline), lookup)
        else:
            flight.deadline.extend(deadline)
        flight.waiters += 1
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    return await asyncio.shield(flight.task)
            except TimeoutError:
                if flight.deadline.when > deadline:
                    raise
            # The lookup ends on this very deadline: what it settles on then (an HTTPS answer
            # while DNS is pending, a cut-short failure) is this caller's outcome too.
            return await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            if flight.waiters == 1 and not flight.task.done():
                self._forget(key, flight)
                flight.task.cancel()  # no one is left to want it
            raise
        finally:
            flight.waiters -= 1

    def _start(self, key: K, deadline: Deadline, lookup: Lookup[T]) -> _Flight[T]:
        task = asyncio.create_task(lookup(deadline))
        flight = _Flight(task, deadline)
        self._flights[key] = flight
        task.add_done_callback(functools.partial(self._finished, key, flight))
        return flight

    def _finished(self, key: K, flight: _Flight[T], task: asyncio.Task[T]) -> None:
        self._forget(key, flight)
        if task.cancelled():
            return
        error = task.exception()  # retrieved, so asyncio does not report it at collection
        if error is not None and flight.waiters == 0:
            _log.warning("shared lookup failed unexpectedly", exc_info=error)

    def _forget(self, key: K, flight: _Flight[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
