"""Handle -> DID, without verification: DNS TXT and HTTPS well-known (plc-spec-notes.md §9.2).

Two methods run concurrently for one handle:

- **DNS**: TXT records of ``_atproto.<handle>``; each record's character-strings are joined;
  only values starting ``did=`` count. Exactly one such record, holding a valid DID, is an
  answer; none, or more than one (even identical), is a failure of this method, as in the
  reference resolver (:func:`did_from_txt_records`).
- **HTTPS**: ``GET https://<handle>/.well-known/atproto-did`` through the
  :class:`~plc.resolve.fetch.SafeFetcher`; a 2xx body is UTF-8, its first line with surrounding
  whitespace removed must be a valid DID.

DNS is preferred: its answer wins whenever it has one, even if HTTPS answered a different DID
first. The HTTPS answer is used when DNS has failed, or is still pending when the deadline
comes (:attr:`HandleAnswer.cut_short`: DNS might still have said otherwise, so the resolver
caches such an answer only as it caches a failure cut short). The bidirectional check (the DID
document claims the handle back) is the resolver's job.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from plc.resolve.dnsclient import DnsClient
from plc.resolve.errors import (
    AmbiguousRecords,
    BadResponse,
    FetchError,
    HandleNotFound,
    NoValidRecord,
)
from plc.resolve.fetch import FetchLimits, SafeFetcher, production_ports
from plc.resolve.settings import ResolverSettings
from plc.resolve.syntax import is_valid_did

WELL_KNOWN_PATH = "/.well-known/atproto-did"
"""Path of the HTTPS method (§9.2)."""

TXT_PREFIX = "_atproto."
"""Label prepended to the handle for the DNS method (§9.2)."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HandleAnswer:
    """The DID :meth:`HandleLookup.resolve` chose for a handle, and how it was chosen."""

    did: str
    cut_short: bool = False
    """The deadline came while DNS was still pending, so this is the HTTPS answer taken
    without knowing DNS's (which, when there is one, is preferred: §9.2)."""


def did_from_txt_records(records: Iterable[str]) -> str:
    """Pick the DID out of the (joined) TXT records of ``_atproto.<handle>``.

    The reference resolver's rule (``@atproto/identity`` ``handle/index.ts``,
    ``parseDnsResult``): keep the values starting ``did=``; exactly one must remain, else DNS
    gives no DID. Two identical ``did=`` records, or ``did=garbage`` beside a valid one, are
    therefore not an answer (plc-spec-notes.md §9.2: the reference "requires exactly one
    ``did=`` record"). That value must also be a valid DID (which the reference leaves to its
    caller).

    Args:
        records: one string per TXT record, character-strings already joined.

    Returns:
        The DID of the only ``did=`` record.

    Raises:
        NoValidRecord: no ``did=`` record, or the only one is not a valid DID.
        AmbiguousRecords: more than one ``did=`` record (even identical, even if only one of
            them is a valid DID).
    """
    values = [value[len("did=") :] for value in records if value.startswith("did=")]
    if not values:
        raise NoValidRecord("no did= TXT record")
    if len(values) > 1:
        raise AmbiguousRecords(f"{len(values)} did= TXT records")
    if not is_valid_did(values[0]):
        raise NoValidRecord("the did= TXT record is not a valid DID")
    return values[0]


def did_from_well_known(body: bytes) -> str:
    """Parse the body of ``/.well-known/atproto-did``: first line, whitespace-trimmed, a DID.

    Read as the reference client reads ``fetch().text()``: a leading UTF-8 byte order mark is
    dropped, and lines end at ``\n`` only.

    Raises:
        BadResponse: not UTF-8.
        NoValidRecord: the first line is not a valid DID.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadResponse("well-known body is not UTF-8") from err
    first = text.removeprefix("\ufeff").split("\n", 1)[0].strip()
    if not is_valid_did(first):
        raise NoValidRecord("well-known body is not a DID")
    return first


class HandleLookup:
    """Runs the DNS and HTTPS methods for a handle under a deadline.

    Args:
        dns: DNS client for TXT records.
        fetcher: checked HTTP client for the well-known URL.
        settings: ``handle_http_scheme``/``handle_http_port`` (tests only), time and size limits.
    """

    def __init__(self, dns: DnsClient, fetcher: SafeFetcher, settings: ResolverSettings) -> None:
        self._dns = dns
        self._fetcher = fetcher
        self._scheme = settings.handle_http_scheme
        self._port = settings.handle_http_port
        self._limits = FetchLimits(
            allowed_schemes=frozenset({"https", settings.handle_http_scheme}),
            allowed_ports=production_ports(settings.handle_http_scheme, settings.handle_http_port),
            max_redirects=settings.max_redirects,
            max_body_bytes=settings.max_body_bytes,
            timeout_s=settings.request_timeout_s,
        )

    def well_known_url(self, handle: str) -> str:
        """The URL of the HTTPS method for ``handle`` (port only when overridden for tests)."""
        port = f":{self._port}" if self._port is not None else ""
        return f"{self._scheme}://{handle}{port}{WELL_KNOWN_PATH}"

    async def via_dns(self, handle: str) -> str:
        """DNS method: the DID of ``_atproto.<handle>`` TXT records.

        Raises:
            FetchError: NoValidRecord, AmbiguousRecords or TransportFailure.
        """
        return did_from_txt_records(await self._dns.txt(TXT_PREFIX + handle))

    async def via_https(self, handle: str) -> str:
        """HTTPS method: the DID served at ``/.well-known/atproto-did``.

        Raises:
            FetchError: any refusal or failure of the fetch, or a body that is not a DID.
        """
        result = await self._fetcher.get(
            self.well_known_url(handle), self._limits, accept="text/plain"
        )
        return did_from_well_known(result.body)

    async def resolve(
        self,
        handle: str,
        deadline: Callable[[], float],
        on_progress: Callable[[str | None], None] | None = None,
    ) -> HandleAnswer:
        """Resolve ``handle`` (lower-case, valid, resolvable TLD) with both methods concurrently.

        Args:
            handle: normalised handle.
            deadline: returns the ``loop.time()`` by which an answer must be chosen (pending
                lookups are cancelled then); read again at every wait, as it may move later
                meanwhile (a caller with more time joined the lookup).
            on_progress: called once, when the first method ends while the other still runs,
                with the DID this call would return if the deadline came now (the HTTPS
                answer while DNS is pending), else ``None`` (DNS failed, or HTTPS failed).

        Returns:
            The DNS answer if there is one, else the HTTPS answer; ``cut_short`` when that
            HTTPS answer was taken at the deadline with DNS still pending.

        Raises:
            HandleNotFound: neither method produced a DID in time; ``reason`` names both
                outcomes, ``kind`` only the kinds of failure (short, from a small set),
                ``cut_short`` whether one was still running at the deadline.
        """
        loop = asyncio.get_running_loop()
        dns_task = asyncio.create_task(self.via_dns(handle))
        http_task = asyncio.create_task(self.via_https(handle))
        tasks = (dns_task, http_task)
        reported = False
        try:
            pending: set[asyncio.Task[str]] = set(tasks)
            while pending:
                remaining = deadline() - loop.time()
                if remaining <= 0:
                    break
                _done, pending = await asyncio.wait(
                    pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if _succeeded(dns_task):
                    return HandleAnswer(dns_task.result())
                if dns_task.done() and _succeeded(http_task):
                    return HandleAnswer(http_task.result())
                if on_progress is not None and not reported and len(pending) == 1:
                    # one method is in, the other still runs (the other's end ends the loop)
                    reported = True
                    on_progress(http_task.result() if _succeeded(http_task) else None)
            if _succeeded(http_task):  # DNS failed or is still pending at the deadline
                return HandleAnswer(http_task.result(), cut_short=not dns_task.done())
            error = HandleNotFound(f"dns: {_outcome(dns_task)}; https: {_outcome(http_task)}")
            error.kind = failure_kind(_kind(dns_task), _kind(http_task))
            error.cut_short = not (dns_task.done() and http_task.done())
            raise error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _succeeded(task: asyncio.Task[str]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


def failure_kind(dns: str, https: str) -> str:
    """``"dns: <kind>; https: <kind>"``: the kinds of a failed handle lookup, without details.

    The resolver keeps this, not the full reason, in its negative cache. Its length does not
    depend on the handle (kinds are class names or fixed words), and each distinct value is
    one shared string (:func:`sys.intern`): a cache full of failures of a wildcard domain
    holds its keys and a few strings, not 100,000 copies of messages naming each host.
    """
    return sys.intern(f"dns: {dns}; https: {https}")


def _kind(task: asyncio.Task[str]) -> str:
    """How a lookup ended, in one word (a class name or a fixed word)."""
    if not task.done():
        return "timed out"
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    if error is None:
        return "answered"
    if not isinstance(error, FetchError):
        return "internal error"
    return type(error).__name__


def _outcome(task: asyncio.Task[str]) -> str:
    """A short description of how a lookup ended, for ``HandleNotFound.reason``."""
    error = task.exception() if task.done() and not task.cancelled() else None
    if error is None:
        return _kind(task)
    if not isinstance(error, FetchError):
        _log.warning("handle lookup failed unexpectedly", exc_info=error)
        return f"internal error ({type(error).__name__})"
    return f"{type(error).__name__}: {error}"
