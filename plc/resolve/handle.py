"""Handle -> DID, without verification: DNS TXT and HTTPS well-known (plc-spec-notes.md §9.2).

Two methods run concurrently for one handle:

- **DNS**: TXT records of ``_atproto.<handle>``; each record's character-strings are joined;
  only values starting ``did=`` count; the rest must be a valid DID. Exactly one distinct
  valid DID is an answer; none, or several distinct ones, is a failure of this method.
- **HTTPS**: ``GET https://<handle>/.well-known/atproto-did`` through the
  :class:`~plc.resolve.fetch.SafeFetcher`; a 2xx body is UTF-8, its first line with surrounding
  whitespace removed must be a valid DID.

DNS is preferred: its answer wins whenever it has one, even if HTTPS answered a different DID
first. The HTTPS answer is used when DNS has failed, or is still pending when the deadline
comes. The bidirectional check (the DID document claims the handle back) is the resolver's job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

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


def did_from_txt_records(records: Iterable[str]) -> str:
    """Pick the DID out of the (joined) TXT records of ``_atproto.<handle>``.

    Args:
        records: one string per TXT record, character-strings already joined.

    Returns:
        The one distinct valid DID among the ``did=`` values (duplicates count once; values
        that are not valid DIDs are ignored).

    Raises:
        NoValidRecord: no ``did=`` record holds a valid DID.
        AmbiguousRecords: several distinct valid DIDs.
    """
    dids = {
        value[len("did=") :]
        for value in records
        if value.startswith("did=") and is_valid_did(value[len("did=") :])
    }
    if not dids:
        raise NoValidRecord("no valid did= TXT record")
    if len(dids) > 1:
        raise AmbiguousRecords(f"{len(dids)} distinct did= TXT records")
    return dids.pop()


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
    ) -> str:
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
            The DNS answer if there is one, else the HTTPS answer.

        Raises:
            HandleNotFound: neither method produced a DID in time; ``reason`` names both
                outcomes, ``cut_short`` whether one was still running at the deadline.
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
                    return dns_task.result()
                if dns_task.done() and _succeeded(http_task):
                    return http_task.result()
                if on_progress is not None and not reported and len(pending) == 1:
                    # one method is in, the other still runs (the other's end ends the loop)
                    reported = True
                    on_progress(http_task.result() if _succeeded(http_task) else None)
            if _succeeded(http_task):  # DNS failed or is still pending at the deadline
                return http_task.result()
            error = HandleNotFound(f"dns: {_outcome(dns_task)}; https: {_outcome(http_task)}")
            error.cut_short = not (dns_task.done() and http_task.done())
            raise error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _succeeded(task: asyncio.Task[str]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


def _outcome(task: asyncio.Task[str]) -> str:
    """A short description of how a lookup ended, for ``HandleNotFound.reason``."""
    if not task.done():
        return "timed out"
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    if error is None:
        return "answered"
    if not isinstance(error, FetchError):
        _log.warning("handle lookup failed unexpectedly", exc_info=error)
        return f"internal error ({type(error).__name__})"
    return f"{type(error).__name__}: {error}"
