"""Outbound lookups shared between callers, and the registrable domain they count against.

Defences against bursts of hostile or merely popular traffic (issue 5, "safety limits"):

- :class:`SharedLookups`: one network lookup per key (a handle, a did:web DID) at a time.
  Every caller asking for the key while it runs waits for that lookup's outcome, each until
  its own deadline. A caller that gives up (its deadline, or its client went away) does not
  stop the lookup for the others; the lookup is cancelled only when the last caller still
  waiting for it is cancelled.
- :class:`~plc.resolve.slots.LookupSlots` bounds how many lookups run at once, in the process
  and per registrable domain (:func:`registrable_domain`).

A shared lookup runs under a :class:`Deadline`: the latest deadline of the callers waiting
for it, moved later when a caller with more time joins. Through its :class:`LookupRun` it
reports progress: that part of its outcome is in (callers that must not get an answer older
than their call then start their own lookup), and its best answer so far (what a caller whose
own, earlier deadline passes gets instead of nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from publicsuffixlist import PublicSuffixList

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

_log = logging.getLogger(__name__)

Lookup = Callable[["LookupRun[T]"], Coroutine[Any, Any, T]]
"""Starts one lookup; it must respect ``run.deadline`` as it moves (:class:`LookupRun`)."""

_IPV6_DOMAIN_PREFIX = 48
"""IPv6 literals count per /48: one site is commonly given a /48 to a /56, so per address (or
per /64) one attacker would have unlimited "domains"."""


@functools.cache
def icann_suffixes() -> PublicSuffixList:
    """The ICANN section of the bundled Public Suffix List, parsed once per process (about
    0.1 s: call it at start-up rather than inside a request)."""
    return PublicSuffixList(only_icann=True)


def registrable_domain(host: str) -> str:
    """The registrable domain of ``host`` under the ICANN section of the Public Suffix List.

    ``alice.example.co.uk`` -> ``example.co.uk``; ``h1.evil.test`` -> ``evil.test`` (an
    unlisted TLD counts as a public suffix, the list's default rule). A host that is itself a
    public suffix (``co.uk``) or a single label (``localhost``) is its own domain. An IP
    literal is no DNS name: an IPv4 address is its own domain (``127.0.0.1``), an IPv6 one
    (brackets optional) counts as its /48 network (``2001:db8:1::/48``).

    The list's private section (``github.io``, dynamic-DNS providers) is ignored on purpose:
    many of its suffixes hand out subdomains free of charge, which would give an attacker
    unlimited "registrable domains" and so unlimited per-domain caps; under the ICANN
    section each domain costs a registration.

    Args:
        host: a DNS name, any case, without trailing dot (a handle, a did:web host), or an
            IP literal.

    Returns:
        The registrable domain, lower-case (the list is the snapshot bundled with the
        ``publicsuffixlist`` package: nothing is fetched at run time).
    """
    host = host.lower()
    try:
        address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return icann_suffixes().privatesuffix(host) or host
    if address.version == 4:
        return str(address)
    return str(ipaddress.ip_network(f"{address}/{_IPV6_DOMAIN_PREFIX}", strict=False))


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
class LookupRun(Generic[T]):
    """What one shared lookup and the callers waiting for it know about it while it runs.

    The lookup function reads :attr:`deadline` and reports through :meth:`progress`.
    """

    deadline: Deadline
    """When the lookup must end (it moves later as callers with more time join)."""
    interim: T | None = None
    """The outcome the lookup would settle on if its deadline came now (e.g. the HTTPS answer
    of a handle while DNS is still pending); ``None`` while it has none."""
    heard: bool = False
    """Whether part of the outcome is already in (one of several methods answered or failed)."""
    superseded: bool = False
    """Whether a newer lookup of the same key has started (``fresh=True``); the newer one's
    outcome is the more recent, so this one should not overwrite what the newer one stores."""

    def progress(self, interim: T | None = None) -> None:
        """Report that part of the outcome is in and, if given, the best outcome so far.

        Args:
            interim: what a caller whose own deadline passes before the lookup ends gets
                instead of a :class:`TimeoutError`; ``None`` keeps the previous one.
        """
        self.heard = True
        if interim is not None:
            self.interim = interim


@dataclass(slots=True)
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    run: LookupRun[T]
    waiters: int = 0


class SharedLookups(Generic[K, T]):
    """Runs at most one lookup per key at a time and hands its outcome to every caller.

    A lookup should report failures as values (each caller then raises its own exception);
    an exception it raises anyway reaches every caller waiting for it.
    """

    def __init__(self) -> None:
        self._flights: dict[K, _Flight[T]] = {}

    def __len__(self) -> int:
        """Lookups running now (and joinable)."""
        return len(self._flights)

    async def run(self, key: K, deadline: float, lookup: Lookup[T], *, fresh: bool = False) -> T:
        """The outcome of the lookup of ``key``: the one running, or ``lookup(LookupRun)``.

        A lookup running for ``key`` is joined and its deadline moved to ``deadline`` if that
        is later; one whose deadline has passed is not joined (it can only end cut short).

        Args:
            key: what is looked up.
            deadline: ``loop.time()`` by which this caller wants the outcome.
            lookup: starts the lookup; it must end by its :class:`Deadline` (as it moves).
            fresh: the outcome must not include anything obtained before this call: join
                only a lookup that has heard nothing yet (:attr:`LookupRun.heard`), else start
                a new one (later callers join the new one; the old one goes on for its own).

        Returns:
            The lookup's outcome; or, when ``deadline`` comes first, the lookup's interim
            outcome (:attr:`LookupRun.interim`) if it has one.

        Raises:
            TimeoutError: ``deadline`` came first and the lookup had no interim outcome; the
                lookup goes on for the others.
            asyncio.CancelledError: this caller was cancelled; the lookup goes on while
                anyone else waits for it.
        """
        loop = asyncio.get_running_loop()
        if loop.time() >= deadline:
            raise TimeoutError
        flight = self._flights.get(key)
        if flight is None or flight.run.deadline.passed():
            flight = self._start(key, Deadline(deadline), lookup)
        elif fresh and (flight.run.heard or flight.task.done()):
            flight.run.superseded = True
            flight = self._start(key, Deadline(deadline), lookup)
        else:
            flight.run.deadline.extend(deadline)
        flight.waiters += 1
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    return await asyncio.shield(flight.task)
            except TimeoutError:
                if flight.run.deadline.when > deadline:
                    # The lookup goes on for a caller with more time; this one takes what the
                    # lookup would settle on now (as it would have, had it run alone).
                    if flight.task.done() and not flight.task.cancelled():
                        return flight.task.result()
                    if flight.run.interim is not None:
                        return flight.run.interim
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
        run: LookupRun[T] = LookupRun(deadline)
        task = asyncio.create_task(lookup(run))
        flight = _Flight(task, run)
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
