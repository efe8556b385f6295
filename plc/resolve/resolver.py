"""The identity resolver: handles and DIDs, bidirectionally verified (issue 5; §9.2-§9.3).

:class:`IdentityResolver` ties the pieces together:

- handle -> DID with :class:`~plc.resolve.handle.HandleLookup` (DNS preferred, HTTPS too);
- DID -> document with the injected :class:`~plc.resolve.did.PlcDocumentSource` (did:plc,
  never cached: the server's store is authoritative) or
  :class:`~plc.resolve.did.DidWebLookup` (did:web, cached);
- a handle is *verified* only when the DID's document claims it back (first valid ``at://``
  entry of ``alsoKnownAs``, case-insensitive); otherwise it is reported as ``handle.invalid``;
- every public call has one wall-clock deadline, ``time_budget_s`` from its start. A handle
  that cannot be verified before it becomes ``handle.invalid``; it never turns a DID's
  identity into an error or a timeout.

Handle answers (positive and negative) and did:web documents are cached
(:class:`~plc.resolve.cache.ResolutionCache`); ``refresh=True`` bypasses the caches and
overwrites them. did:web documents are kept as compact JSON bytes, bounded in total
(``did_web_cache_max_bytes``), and parsed again on each hit.

Network lookups (:mod:`plc.resolve.lookups`):

- one per handle or did:web DID at a time: every request needing the same one while it runs
  waits for its outcome (answer, "no", or failure alike), each until its own deadline. The
  lookup runs until the latest deadline of those waiting (it moves later when a request with
  more time joins). A request whose own deadline comes first gets what the lookup would
  settle on at that moment, as it would alone: the HTTPS answer of a handle whose DNS is still
  pending, else a timeout. A request that gives up or is cancelled does not stop the lookup
  for the others; it is cancelled (and caches nothing) only when the last request still
  waiting for it is;
- ``refresh=True`` never gets an answer obtained before the call: it joins a running lookup
  only while nothing of it is in yet (for a handle, neither DNS nor HTTPS has answered or
  failed; a did:web fetch, until its document arrives), and otherwise starts a lookup of its
  own, which later requests join. The older lookup goes on for those already waiting for it
  but no longer writes the cache, so it cannot overwrite the refreshed answer;
- at most ``max_concurrent_lookups`` at once, and at most ``max_lookups_per_domain`` for one
  registrable domain (the host of a did:web DID counts for its domain; an IP literal is its
  own); the others wait within their deadline. Free slots go to the waiting domains in turn
  (:mod:`plc.resolve.slots`), so many slow domains cannot queue ahead of everyone else: a
  domain waits for at most one slot per domain that was waiting before it.

A lookup cut short by its deadline is cached only when it had at least ``request_timeout_s``
between getting its slot and that deadline: otherwise an earlier, slow step of the request that
started it (a did:web host anyone can run), or its wait for a slot, would make the resolver
remember "not found" for another identity, or the HTTPS answer of a handle whose preferred DNS
answer had not come yet (§9.2: on conflict DNS wins). A failed handle lookup is cached as its
kind only (``HandleNotFound.kind``, a few shared strings), so the negative entries of a
wildcard domain hold little more than their keys. Nothing here blocks the directory's write
path: it only reads documents.

did:plc documents are asked of the source with the call's deadline: a remote one
(``HttpPlcDocumentSource`` in ``plc resolve``) answers within it; the server's own store (one
database read) does not need it and is outside the time budget.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar

import orjson

from plc.errors import DidNotAvailable, NotFound, echo
from plc.resolve.cache import Clock, ResolutionCache
from plc.resolve.did import (
    DidWebLookup,
    PlcDocumentSource,
    claimed_handle,
    did_web_host,
    validate_document,
)
from plc.resolve.dnsclient import DnsClient
from plc.resolve.errors import DidDeactivated, DidNotFound, HandleNotFound, InvalidRequest
from plc.resolve.fetch import SafeFetcher
from plc.resolve.handle import HandleLookup
from plc.resolve.lookups import Deadline, LookupRun, SharedLookups, registrable_domain
from plc.resolve.safety import AddressPolicy
from plc.resolve.settings import ResolverSettings
from plc.resolve.slots import LookupSlots
from plc.resolve.syntax import (
    INVALID_HANDLE,
    ensure_valid_did,
    has_disallowed_tld,
    is_valid_handle,
    is_valid_plc_did,
    normalize_handle,
)

V = TypeVar("V")

_LOOKUP_FAILED = "lookup failed"
"""Cached for a failed handle lookup whose error has no kind (not expected: a safe default)."""


@dataclass(frozen=True, slots=True)
class _Outcome(Generic[V]):
    """What one shared lookup settled on: its ``value``, or (``None``) the ``reason`` it
    failed. Each waiting request raises its own exception from it."""

    value: V | None
    reason: str = ""


class IdentityInfo(TypedDict):
    """``com.atproto.identity.defs#identityInfo``: the DID, its verified handle (or
    ``handle.invalid``) and its DID document."""

    did: str
    handle: str
    didDoc: dict[str, Any]


class IdentityResolver:
    """Resolves handles and DIDs with verification, caching, safety limits and a time budget.

    Args:
        settings: limits, caches and network policy (:class:`ResolverSettings`).
        plc_source: where did:plc documents come from.
        clock: monotonic seconds for the caches (tests move it); deadlines use the event loop.
        ssl_context: TLS settings for HTTPS fetches (default: verification with certifi roots).
    """

    def __init__(
        self,
        settings: ResolverSettings,
        plc_source: PlcDocumentSource,
        *,
        clock: Clock = time.monotonic,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self._plc_source = plc_source
        dns = DnsClient(settings)
        fetcher = SafeFetcher(
            dns, AddressPolicy.from_settings(settings), settings.user_agent, ssl_context
        )
        self._handles = HandleLookup(dns, fetcher, settings)
        self._did_web = DidWebLookup(fetcher, settings)
        self._handle_cache: ResolutionCache[str, str] = ResolutionCache(
            settings.cache_ttl_s, settings.negative_cache_ttl_s, settings.cache_max_entries, clock
        )
        # Bound the sockets outbound lookups hold: a wildcard domain gives an attacker
        # unlimited distinct handles, so neither the caches nor the merging of identical
        # lookups do; the per-domain cap and the fair hand-out of free slots keep such
        # domains from taking every slot.
        self._slots = LookupSlots(settings.max_concurrent_lookups, settings.max_lookups_per_domain)
        self._handle_lookups: SharedLookups[str, _Outcome[str]] = SharedLookups()
        self._did_web_lookups: SharedLookups[str, _Outcome[bytes]] = SharedLookups()
        self._did_web_cache: ResolutionCache[str, bytes | str] = ResolutionCache(
            settings.cache_ttl_s,
            settings.negative_cache_ttl_s,
            settings.cache_max_entries,
            clock,
            weigh=len,
            max_weight=settings.did_web_cache_max_bytes,
        )

    async def resolve_handle(
        self, handle: str, *, refresh: bool = False, verify: bool = True
    ) -> str:
        """Return the DID of ``handle``.

        Args:
            handle: a handle in any case.
            refresh: bypass the caches (and refill them).
            verify: also require the DID's document to claim the handle back (default); the
                lexicon allows skipping this, but the directory always answers verified.

        Raises:
            InvalidRequest: not a syntactically valid handle.
            HandleNotFound: disallowed TLD, no DID within the budget, or (``verify``) the DID
                does not resolve or its document does not claim the handle.
        """
        normalized = normalize_handle(handle)
        deadline = self._deadline()
        did = await self._handle_to_did(normalized, deadline, refresh)
        if verify:
            try:
                document = await self._did_to_document(did, deadline, refresh)
            except NotFound as err:
                raise HandleNotFound(f"{did}: {err.message}") from err
            if claimed_handle(document) != normalized:
                raise HandleNotFound(f"the document of {did} does not claim the handle")
        return did

    async def resolve_did(self, did: str, *, refresh: bool = False) -> dict[str, Any]:
        """Return the DID document of ``did`` (handle not verified).

        Raises:
            InvalidRequest: not a syntactically valid DID.
            DidNotFound: unregistered, unsupported method or form, unreachable/invalid did:web.
            DidDeactivated: a tombstoned did:plc.
            plc.errors.Unavailable: the did:plc source cannot answer right now (a
                remote one: not within the time budget).
        """
        return await self._did_to_document(ensure_valid_did(did), self._deadline(), refresh)

    async def resolve_identity(self, identifier: str, *, refresh: bool = False) -> IdentityInfo:
        """Resolve a handle or DID to ``{"did", "handle", "didDoc"}``, the handle verified.

        For a DID, the document's claimed handle is resolved within what is left of the time
        budget; if that fails, times out or names another DID, ``handle`` is ``handle.invalid``.
        For a handle, its DID is resolved first (failure: ``HandleNotFound``), then the document;
        a document that does not claim the handle gives ``handle.invalid``.

        Raises:
            InvalidRequest: ``identifier`` is neither a valid handle nor a valid DID.
            HandleNotFound: the handle resolves to no DID.
            DidNotFound, DidDeactivated, plc.errors.Unavailable: as in :meth:`resolve_did`.
        """
        deadline = self._deadline()
        if identifier.startswith("did:"):
            did = ensure_valid_did(identifier)
            document = await self._did_to_document(did, deadline, refresh)
            handle = await self._verified_handle(did, document, deadline, refresh)
        elif is_valid_handle(identifier):
            normalized = identifier.lower()
            did = await self._handle_to_did(normalized, deadline, refresh)
            document = await self._did_to_document(did, deadline, refresh)
            handle = normalized if claimed_handle(document) == normalized else INVALID_HANDLE
        else:
            raise InvalidRequest(f"Invalid identifier: {echo(identifier)}")
        return {"did": did, "handle": handle, "didDoc": document}

    def clear_caches(self) -> None:
        """Forget every cached handle answer and did:web document."""
        self._handle_cache.clear()
        self._did_web_cache.clear()

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.settings.time_budget_s

    def _had_full_time(self, started: float, deadline: Deadline) -> bool:
        """Whether a lookup that got its slot at ``started`` had at least one request's timeout
        before its (final) deadline: if it was cut short, its own servers were too slow."""
        return deadline.when - started >= self.settings.request_timeout_s

    async def _handle_to_did(self, handle: str, deadline: float, refresh: bool) -> str:
        """Unverified handle -> DID through the cache and the shared lookup of ``handle``."""
        if has_disallowed_tld(handle):
            raise HandleNotFound("disallowed TLD")
        entry = self._handle_cache.get(handle, refresh=refresh)
        if entry is not None:
            if entry.negative:
                raise HandleNotFound(f"{entry.value} (cached)")
            return entry.value
        lookup = functools.partial(self._look_up_handle, handle)
        try:
            outcome = await self._handle_lookups.run(handle, deadline, lookup, fresh=refresh)
        except TimeoutError:
            # this request's budget is spent; the lookup, if any, goes on for the others
            raise HandleNotFound("time budget exhausted before the lookup answered") from None
        if outcome.value is None:
            raise HandleNotFound(outcome.reason)
        return outcome.value

    async def _look_up_handle(self, handle: str, run: LookupRun[_Outcome[str]]) -> _Outcome[str]:
        """The one lookup of ``handle`` the waiting requests share; fills the cache (failures
        negatively, as their short kind; neither a failure nor an HTTPS answer taken with DNS
        pending when cut short without full time; nothing if it never started, or once a
        refresh has started a newer lookup of ``handle``). Reports its progress to ``run``:
        the HTTPS answer while DNS is pending is the interim outcome of the waiters."""
        deadline = run.deadline
        domain = registrable_domain(handle)
        if not await self._slots.acquire(domain, deadline):
            return _Outcome(None, "time budget exhausted before the lookup")
        started = asyncio.get_running_loop().time()

        def progress(did: str | None) -> None:
            run.progress(None if did is None else _Outcome(did))

        try:
            answer = await self._handles.resolve(handle, deadline, progress)
        except HandleNotFound as err:
            if not run.superseded and (not err.cut_short or self._had_full_time(started, deadline)):
                # the kind, not the reason: a reason names the host (up to 200 characters)
                self._handle_cache.put(handle, err.kind or _LOOKUP_FAILED, negative=True)
            return _Outcome(None, err.reason)
        finally:
            self._slots.release(domain)
        # An HTTPS answer taken with DNS still pending is cached only if DNS had its own full
        # time: cut off by a deadline another step shortened (or the wait for a slot), DNS may
        # yet prefer another DID, and every later caller would get the HTTPS one (§9.2).
        if not run.superseded and (not answer.cut_short or self._had_full_time(started, deadline)):
            self._handle_cache.put(handle, answer.did)
        return _Outcome(answer.did)

    async def _verified_handle(
        self, did: str, document: dict[str, Any], deadline: float, refresh: bool
    ) -> str:
        """The handle ``document`` claims, if it resolves back to ``did`` before ``deadline``."""
        handle = claimed_handle(document)
        if handle is None or has_disallowed_tld(handle):
            return INVALID_HANDLE
        try:
            resolved = await self._handle_to_did(handle, deadline, refresh)
        except HandleNotFound:
            return INVALID_HANDLE
        return handle if resolved == did else INVALID_HANDLE

    async def _did_to_document(self, did: str, deadline: float, refresh: bool) -> dict[str, Any]:
        """Document of a syntactically valid DID, by method; did:web (and did:plc from
        a remote source) must arrive by ``deadline``."""
        if did.startswith("did:plc:"):
            return await self._plc_document(did, deadline)
        if did.startswith("did:web:"):
            return await self._web_document(did, deadline, refresh)
        raise DidNotFound(f"Unsupported DID method: {echo(did)}")

    async def _plc_document(self, did: str, deadline: float) -> dict[str, Any]:
        """The did:plc document from the source, asked to answer by ``deadline``.

        Raises:
            DidNotFound, DidDeactivated: as the source answers.
            plc.errors.Unavailable: the source cannot answer (for a remote one: not by
                ``deadline``).
        """
        if not is_valid_plc_did(did):
            raise DidNotFound(f"DID not registered: {echo(did)}")
        try:
            document = await self._plc_source.get_document(did, deadline)
        except DidDeactivated:
            raise
        except DidNotAvailable as err:
            raise DidDeactivated(f"DID has been deactivated: {echo(did)}") from err
        except NotFound as err:
            raise DidNotFound(f"DID not registered: {echo(did)}") from err
        return validate_document(did, document)

    async def _web_document(self, did: str, deadline: float, refresh: bool) -> dict[str, Any]:
        """did:web document through the cache and the shared fetch of ``did``; a new object
        each time (callers may modify it)."""
        entry = self._did_web_cache.get(did, refresh=refresh)
        if entry is not None:
            if isinstance(entry.value, str):
                raise DidNotFound(entry.value)
            document: dict[str, Any] = orjson.loads(entry.value)
            return document
        fetch = functools.partial(self._fetch_did_web, did)
        try:
            outcome = await self._did_web_lookups.run(did, deadline, fetch, fresh=refresh)
        except TimeoutError:
            raise DidNotFound(f"did:web document timed out: {echo(did)}") from None
        if outcome.value is None:
            raise DidNotFound(outcome.reason)
        document = orjson.loads(outcome.value)
        return document

    async def _fetch_did_web(self, did: str, run: LookupRun[_Outcome[bytes]]) -> _Outcome[bytes]:
        """The one fetch of ``did``'s document the waiting requests share (compact JSON);
        fills the cache as :meth:`_look_up_handle` does."""
        deadline = run.deadline
        domain = registrable_domain(did_web_host(did))
        if not await self._slots.acquire(domain, deadline):
            return _Outcome(None, f"time budget exhausted before fetching: {echo(did)}")
        started = asyncio.get_running_loop().time()
        try:
            async with deadline.scope():
                document = await self._did_web.fetch(did)
        except TimeoutError:
            message = f"did:web document timed out: {echo(did)}"
            if not run.superseded and self._had_full_time(started, deadline):
                self._did_web_cache.put(did, message, negative=True)
            return _Outcome(None, message)
        except DidNotFound as err:
            if not run.superseded:
                self._did_web_cache.put(did, err.message, negative=True)
            return _Outcome(None, err.message)
        finally:
            self._slots.release(domain)
        body = orjson.dumps(document)
        if not run.superseded:
            self._did_web_cache.put(did, body)
        return _Outcome(body)
