"""Where imported lines come from: a JSON-lines export file, a JSON array of audit-log entries
(a DID's ``/log/audit``, or an interop audit log as shipped), or a directory's ``/export``.

A directory is read in seq mode (``GET /export?after=<seq>&count=<n>``, plc-spec-notes.md
§4.1), page after page until a page comes back empty. Requests are spaced by ``interval_s``
(plc.directory allows 500 requests per 5 minutes per IP: 0.6 s apart); 429, 5xx and transport
errors are retried with backoff.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO, NamedTuple

import httpx
import orjson

from plc.content_coding import ACCEPT_ENCODING, ContentCodingError, decoded
from plc.deadline import TooSlow, call_with_client
from plc.retry_after import MAX_RETRY_AFTER_S as MAX_RETRY_AFTER_S
from plc.retry_after import retry_after_seconds

USER_AGENT = "plc-directory-import"
MAX_PAGE_BYTES = 64 * 1024 * 1024
"""Largest ``/export`` page read (1000 lines of at most 64 KiB each fit)."""
MAX_FILE_LINE_BYTES = 1024 * 1024
"""Longest line read from a file or a page; a longer one is refused without being parsed (an
export line is at most 64 KiB)."""
MAX_PAGE_LINES = 1000
"""Most lines a page may hold beyond the ``count`` asked for (a directory serves at most 1000
whatever ``count`` says); more is no export page, refused before the lines are parsed."""
MAX_ARRAY_FILE_BYTES = 32 * 1024 * 1024
"""Largest file read as one JSON array (it is parsed whole; a DID's ``/log/audit`` of 4,000
ops takes a few MiB); a larger one is refused: JSON lines are read one at a time."""
MAX_REDIRECTS = 20
"""Redirects followed for one page (httpx's own default)."""
PAGE_TIMEOUT_S = 300.0
"""Longest one ``/export`` request may take, its answer's head and body, whatever each read's
timeout (a head sent a byte a minute passed every read's timeout for weeks)."""
_LINE = re.compile(rb"[^\n]+")
_HOST_PORT = re.compile(r"[A-Za-z0-9.-]+:[0-9]+(/.*)?")
"""A source like ``127.0.0.1:2582``: meant as a URL, not a file."""


class SourceError(Exception):
    """The source cannot be read (missing file, HTTP error, a page that does not advance)."""


class SourceLine(NamedTuple):
    """One non-blank line and where it came from.

    Attributes:
        where: ``line N`` (1-based, of a file), ``entry N`` (1-based, of a JSON array file)
            or ``seq N`` (of a directory).
        line: the line's bytes, without the newline.
        progress: bytes of the file read so far, or the directory's cursor (its ``seq``).
        error: why the line could not be read whole (then ``line`` holds its start).
    """

    where: str
    line: bytes
    progress: int
    error: str | None = None


def file_lines(path: str) -> Iterator[SourceLine]:
    """The non-blank lines of an export file (``-``: standard input). ``\\r\\n`` endings are
    read as ``\\n``. A file whose first non-blank byte is ``[`` is one JSON array instead
    (``GET /{did}/log/audit``'s body, or an interop audit log, pretty-printed or not): each of
    its elements is given as a line of its own (``where``: ``entry N``), or one line with
    ``error`` set when the file is not a JSON array or is over :data:`MAX_ARRAY_FILE_BYTES`.
    The file is opened at once (before the first line is asked for), so a file that cannot
    be read is said before anything else is done.

    Raises:
        SourceError: the file cannot be opened.
    """
    stream: BinaryIO
    if path == "-":
        if sys.stdin is None:  # started with standard input closed (<&-)
            raise SourceError("cannot read -: there is no standard input")
        stream = sys.stdin.buffer
    else:
        try:
            stream = Path(path).open("rb")  # noqa: SIM115 - closed by _lines
        except OSError as exc:
            hint = ""
            if _HOST_PORT.fullmatch(path) and not os.path.exists(path):
                hint = " (a directory URL starts with http:// or https://)"
            raise SourceError(f"cannot read {path}: {exc.strerror}{hint}") from exc
    return _lines(stream)


def _lines(stream: BinaryIO) -> Iterator[SourceLine]:
    read = 0
    number = 0
    begun = False  # a non-blank line was read
    try:
        while raw := stream.readline(MAX_FILE_LINE_BYTES):
            number += 1
            read += len(raw)
            if not begun and raw.strip():
                begun = True
                if raw.lstrip()[:1] == b"[":
                    yield from _array_entries(stream, raw, read, number)
                    return
            if len(raw) == MAX_FILE_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := stream.readline(MAX_FILE_LINE_BYTES)) and not rest.endswith(b"\n"):
                    read += len(rest)
                read += len(rest)
                error = f"line longer than {MAX_FILE_LINE_BYTES} bytes"
                yield SourceLine(f"line {number}", raw[:200], read, error)
                continue
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield SourceLine(f"line {number}", line, read)
    finally:
        if sys.stdin is None or stream is not sys.stdin.buffer:
            stream.close()


def _array_entries(stream: BinaryIO, first: bytes, read: int, number: int) -> Iterator[SourceLine]:
    """The elements of the JSON array that starts with ``first`` (line ``number`` of the file,
    ``read`` bytes read so far), each as compact JSON; the rest of the file is read whole."""
    data = first + stream.read(max(0, MAX_ARRAY_FILE_BYTES + 1 - len(first)))
    read += len(data) - len(first)
    where = f"line {number}"
    if len(data) > MAX_ARRAY_FILE_BYTES:
        error = (
            f"a JSON array over {MAX_ARRAY_FILE_BYTES} bytes is not read whole: give the "
            "entries as JSON lines (jq -c '.[]')"
        )
        yield SourceLine(where, first[:200], read, error)
        return
    try:
        entries = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson refuses the whole text for one bad value (a lone surrogate, a number past a
        # double); the standard parser reads those, so each entry is refused on its own, as
        # its line of a JSON-lines file would be.
        try:
            # Numbers that are not integers stay text (Decimal), which no line is written
            # from: a float read as inf would come back as null.
            entries = json.loads(data, parse_float=Decimal, parse_constant=Decimal)
        except (ValueError, RecursionError):
            yield SourceLine(where, first[:200], read, f"not a JSON array: {str(exc)[:120]}")
            return
    for index, entry in enumerate(entries, 1):
        try:
            line = orjson.dumps(entry)
        except TypeError as exc:  # orjson.JSONEncodeError, or a Decimal
            text = f"entry cannot be read: {str(exc)[:120]}"
            yield SourceLine(f"entry {index}", b"", read, text)
            continue
        yield SourceLine(f"entry {index}", line, read)


class ExportPages:
    """The lines of a directory's seq-mode ``/export``, from ``after`` on.

    Args:
        base_url: the directory, e.g. ``https://plc.directory``.
        after: start after this ``seq`` (0: from the beginning).
        count: lines per page (1-1000).
        interval_s: least time between two requests, seconds.
        retries: attempts per page after the first, on 429, 5xx or a transport error.
        timeout_s: per request, seconds.
        transport: an httpx transport (tests); default: the network.
        on_retry: told ``(problem, seconds until the retry, retries left)`` before each
            retry, so that a user sees why nothing moves.
    """

    def __init__(
        self,
        base_url: str,
        *,
        after: int = 0,
        count: int = 1000,
        interval_s: float = 0.6,
        retries: int = 6,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        on_retry: Callable[[str, float, int], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._on_retry = on_retry
        self.cursor = after
        self._count = count
        self._interval_s = interval_s
        self._retries = retries
        self._timeout_s = timeout_s
        self._transport = transport
        self._client = self._new_client()
        self._last_request = 0.0

    def _new_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=self._timeout_s,
            headers={"user-agent": USER_AGENT, "accept-encoding": ACCEPT_ENCODING},
            transport=self._transport,
        )

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __iter__(self) -> Iterator[SourceLine]:
        """Every line, page by page; ``cursor`` is the highest ``seq`` read so far.

        Raises:
            SourceError: an HTTP error that retries did not cure, a line without an integer
                ``seq`` on a page that gives none (no seq mode), or a page that does not move
                the cursor.
        """
        while True:
            lines = self._page()
            if not lines:
                return
            start = self.cursor
            for line in lines:
                if len(line) > MAX_FILE_LINE_BYTES:  # not parsed: 60 MB of [] took 3.5 GB
                    error = f"line longer than {MAX_FILE_LINE_BYTES} bytes"
                    yield SourceLine(
                        f"a line after seq {self.cursor}", line[:200], self.cursor, error
                    )
                    continue
                seq = _seq_of(line)
                if seq is not None and seq > self.cursor:
                    self.cursor = seq
                where = f"seq {seq}" if seq is not None else f"a line after seq {start}"
                yield SourceLine(where, line, self.cursor)
            if self.cursor == start:
                raise SourceError(
                    f"{self.base_url}/export?after={start} gave {len(lines)} lines and no "
                    "higher seq: the directory does not serve seq-mode export pages"
                )

    def _page(self) -> list[bytes]:
        url = f"{self.base_url}/export"
        params = {"after": str(self.cursor), "count": str(self._count)}
        delay = 1.0
        for attempt in range(self._retries + 1):
            wait = self._last_request + self._interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_request = time.monotonic()
            retry_after = None
            try:
                status, body, retry_after = self._get_within(url, params)
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                raise SourceError(f"{self.base_url}: {exc}") from exc
            except (httpx.HTTPError, _SlowPage) as exc:
                problem = f"{exc.__class__.__name__}: {str(exc)[:200]}"
            else:
                if status == 200:
                    return _page_lines(body, max(self._count, MAX_PAGE_LINES), url)
                problem = f"HTTP {status}"
                if status == 404 and self.base_url.endswith("/export"):
                    problem += " (give the directory's base URL, without /export)"
                if status != 429 and status < 500:
                    raise SourceError(f"{url}?after={self.cursor}: {problem}")
            if attempt == self._retries:
                raise SourceError(f"{url}?after={self.cursor}: {problem}; gave up")
            pause = retry_after if retry_after is not None else delay
            if self._on_retry is not None:
                self._on_retry(
                    f"{url}?after={self.cursor}: {problem}", pause, self._retries - attempt
                )
            time.sleep(pause)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def _get_within(self, url: str, params: dict[str, str]) -> tuple[int, bytes, float | None]:
        """:meth:`_get` bounded by :data:`PAGE_TIMEOUT_S` as a whole (httpx bounds each
        read, not the answer's head); a page too slow is left to its thread, with the
        client it uses, and the next request takes a new client.

        Raises:
            _SlowPage: no whole answer within the time.
            As :meth:`_get`.
        """
        try:
            return call_with_client(
                self._client, lambda client: self._get(client, url, params), PAGE_TIMEOUT_S
            )
        except TooSlow:
            self._client = self._new_client()
            raise _SlowPage(f"the answer took over {PAGE_TIMEOUT_S:g} s") from None

    @staticmethod
    def _get(
        client: httpx.Client, url: str, params: dict[str, str]
    ) -> tuple[int, bytes, float | None]:
        """Status, body (read only for a 200, at most MAX_PAGE_BYTES of it once decoded,
        checked every :data:`plc.content_coding.DECODE_STEP` bytes) and the ``Retry-After``
        seconds of a 429 or 503 (capped).

        Raises:
            SourceError: a page over MAX_PAGE_BYTES.
            httpx.HTTPError: a transport failure, or a body that cannot be decoded.
        """
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        request = client.build_request("GET", url, params=params)
        # Redirects followed here, their bodies unread: httpx reads a redirect's whole body
        # with its own decoders (zstd too) before following it, past every bound.
        for _ in range(MAX_REDIRECTS):
            response = client.send(request, stream=True)
            if response.next_request is None:
                break
            response.close()
            request = response.next_request
        else:
            response.close()
            raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")
        try:
            if response.status_code != 200:
                return response.status_code, b"", _retry_after(response)
            body = bytearray()
            coding = response.headers.get("content-encoding", "")
            try:
                for chunk in decoded(response.iter_raw(), coding):
                    body += chunk
                    if len(body) > MAX_PAGE_BYTES:
                        raise SourceError(f"{url}: a page of over {MAX_PAGE_BYTES} bytes")
                    if time.monotonic() > deadline:  # a page given up on ends here too
                        raise _SlowPage(f"the answer took over {PAGE_TIMEOUT_S:g} s")
            except ContentCodingError as exc:
                raise httpx.DecodingError(str(exc)) from exc
            return 200, bytes(body), None
        finally:
            response.close()


class _SlowPage(Exception):
    """A page that trickles in (retried like a timeout)."""


def _page_lines(body: bytes, most: int, url: str) -> list[bytes]:
    """The non-blank lines of a page, without their newlines.

    Raises:
        SourceError: more than ``most`` of them (a page of 32 million one-byte lines took
            minutes and gigabytes as lines to refuse one by one).
    """
    lines: list[bytes] = []
    for match in _LINE.finditer(body):  # empty lines are skipped in C, not one by one here
        line = match.group()
        if line.strip():
            if len(lines) == most:
                raise SourceError(f"{url}: a page of more than {most} lines")
            lines.append(line)
    return lines


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delay form) for a 429 or 503, capped at
    MAX_RETRY_AFTER_S; None when absent or not a number of seconds."""
    return retry_after_seconds(response.status_code, response.headers.get("retry-after"))


def _seq_of(line: bytes) -> int | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    seq = value.get("seq") if isinstance(value, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None
