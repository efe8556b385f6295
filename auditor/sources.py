"""Where export lines come from: a JSON-lines file or a directory's ``/export`` pages.

A source yields batches of :class:`RawLine` in the order the lines were published, each with
the exact bytes (without the ``\\n``); blank lines are skipped. :class:`SourceSpec` is the
picklable description worker processes use to fetch single lines again for evidence
(:class:`LineFetcher`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import orjson

from auditor.errors import AuditFailed
from auditor.lines import MalformedLine, is_legacy_line, parse_header
from auditor.options import HttpLimits
from auditor.sequence import MAX_SEQ

if TYPE_CHECKING:  # httpx is imported only where HTTP is used: workers start ~0.15 s sooner
    from auditor.client import DirectoryClient

FILE_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class RawLine:
    """One export line as read.

    Attributes:
        line: its exact bytes, without the line feed.
        position: byte offset of its first byte in a file source; None for HTTP.
        reread: for a stream message, the line ``/export`` serves with its ``seq`` when
            that line holds other content (:mod:`auditor.streambytes`); else None.
    """

    line: bytes
    position: int | None
    reread: bytes | None = None


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What is audited: ``kind`` ``"file"`` (``location`` = absolute path) or ``"http"``
    (``location`` = directory URL without a trailing ``/``)."""

    kind: str
    location: str

    @classmethod
    def for_file(cls, path: Path | str) -> SourceSpec:
        """The spec of a file (its absolute path)."""
        return cls("file", str(Path(path).resolve()))

    @classmethod
    def for_url(cls, url: str) -> SourceSpec:
        """The spec of a directory URL (``http://`` or ``https://``, with a host).

        Raises:
            AuditFailed: not such a URL (checked before any state file is made for it).
        """
        import httpx  # here: workers of a file never load it (see the imports above)

        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise AuditFailed(f"invalid directory URL {url!r}: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise AuditFailed(f"invalid directory URL {url!r}: give http(s)://host[:port]")
        return cls("http", url.rstrip("/"))


class FileSource:
    """Lines of a JSON-lines export file, from byte ``start_offset`` on.

    Attributes:
        offset: byte offset just after the last line yielded.
        total_bytes: the file's size when opened.

    Raises:
        AuditFailed: the file cannot be opened.
    """

    def __init__(self, path: Path | str, start_offset: int = 0) -> None:
        try:
            self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise AuditFailed(f"cannot read {path}: {exc}") from exc
        self.total_bytes = Path(path).stat().st_size
        self.offset = start_offset
        self._file.seek(start_offset)

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def batches(self, max_lines: int) -> Iterator[list[RawLine]]:
        """Yield batches of at most ``max_lines`` lines until the end of the file; after
        each yield :attr:`offset` is the byte offset just past the batch's last line."""
        buf = b""
        buf_start = self.offset
        batch: list[RawLine] = []
        while True:
            block = self._file.read(FILE_BLOCK_BYTES)
            buf += block
            if block:
                cut = buf.rfind(b"\n")
                if cut < 0:
                    continue
                complete, rest = buf[:cut], buf[cut + 1 :]
            else:
                complete, rest = buf, b""
            pos = buf_start
            for piece in complete.split(b"\n"):
                here = pos
                pos += len(piece) + 1
                if piece.strip():
                    batch.append(RawLine(piece, here))
                    if len(batch) >= max_lines:
                        self.offset = min(pos, self.total_bytes)
                        yield batch
                        batch = []
            buf_start += len(complete) + (1 if block else 0)
            buf = rest
            if not block:
                break
        self.offset = min(buf_start, self.total_bytes)
        if batch:
            yield batch


def _first_line(path: Path | str) -> bytes | None:
    """The first non-blank line of the file at ``path`` (line ending dropped), or None for an
    unreadable or empty file (reading it later says why)."""
    try:
        with open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    return line.rstrip(b"\r\n")
    except OSError:
        return None
    return None


def refuse_unauditable_file(path: Path | str) -> None:
    """Refuse, before any state is touched, a file whose first non-blank line is a legacy
    export line (:func:`auditor.lines.is_legacy_line`: no ``seq`` to audit by) or no export
    line at all (not a JSON object with a ``did``: auditing it would report every line as
    misbehaviour). An unreadable or empty file passes (reading it later says why).

    Raises:
        AuditFailed: either of the two, with what was found.
    """
    first = _first_line(path)
    if first is None:
        return
    if is_legacy_line(first):
        raise AuditFailed(
            f"{path} holds legacy export lines without seq (the timestamp-cursor form): it "
            "cannot be audited by seq; nothing was stored"
        )
    try:
        value = orjson.loads(first)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or "did" not in value:
        raise AuditFailed(
            f"{path} is not a did:plc export: its first line is not a JSON export line; "
            "nothing was stored"
        )


def _legacy_page(lines: list[bytes]) -> bool:
    """A first page in the legacy form: its first line is a legacy line and no line has a
    ``seq``. (A legacy-looking line among ``seq`` lines is a malformed entry of a seq log,
    reported as such; only a page with no ``seq`` at all is no seq log.)"""
    if not is_legacy_line(lines[0]):
        return False
    for line in lines:
        try:
            parse_header(line)
        except MalformedLine:
            continue
        return False
    return True


class HttpExportSource:
    """``/export`` pages from ``after`` on, until an empty page or a page that does not
    advance the cursor.

    Attributes:
        after: the cursor: the largest ``seq`` read so far.
        stalled_after: the cursor a page failed to advance (its lines are still yielded, so
            their ``seq`` findings are recorded), or None.
    """

    def __init__(
        self,
        client: DirectoryClient,
        after: int,
        page: int | None = None,
        known_stall: str | None = None,
    ) -> None:
        from auditor.client import EXPORT_PAGE

        self._client = client
        self.after = after
        self.stalled_after: int | None = None
        self.stall: str | None = None
        """``"<cursor>:<sha256 of the page>"`` of the page that did not advance, to keep."""
        self.stall_repeated = False
        """The stalled page is ``known_stall``, read in an earlier run: it was not yielded."""
        self._known_stall = known_stall
        self._page = EXPORT_PAGE if page is None else page

    def batches(self) -> Iterator[list[RawLine]]:
        """Yield one batch per non-empty page; stop after a page whose ``seq`` values are all
        at or below the cursor (or unreadable): asking again would get the same page. A
        ``seq`` above :data:`auditor.sequence.MAX_SEQ` never moves the cursor; a page of
        nothing else is the end of the export (not a stall).

        Raises:
            AuditFailed: network failure, or a first page in the legacy form (lines without
                ``seq``: the directory has no seq mode), refused before any line is yielded.
        """
        first = True
        while True:
            lines = self._client.export_page(self.after, self._page)
            if not lines:
                return
            if first and _legacy_page(lines):
                # Its lines would all be malformed entries and the cursor could never move:
                # that is a directory the auditor cannot read, not one that misbehaved.
                raise AuditFailed(
                    f"{self._client.base_url}/export serves legacy lines without seq (a "
                    "timestamp cursor): this directory cannot be audited by seq; nothing "
                    "was stored"
                )
            first = False
            highest = self.after
            beyond_any_log = 0  # lines whose seq no log can hold (auditor.sequence.MAX_SEQ)
            for line in lines:
                try:
                    seq = parse_header(line).seq
                except MalformedLine:
                    continue
                if seq > MAX_SEQ:
                    beyond_any_log += 1
                else:
                    highest = max(highest, seq)
            stalled, previous = highest <= self.after, self.after
            self.after = highest
            if stalled and beyond_any_log < len(lines):
                # A stall: record it, and yield its lines only the first time they are seen,
                # so that a directory serving the same old page again does not make every
                # later run add its lines to the tree once more.
                self.stalled_after = previous
                self.stall = f"{previous}:{hashlib.sha256(b''.join(lines)).hexdigest()}"
                self.stall_repeated = self.stall == self._known_stall
                if not self.stall_repeated:
                    yield [RawLine(line, None) for line in lines]
                return
            yield [RawLine(line, None) for line in lines]
            if stalled:
                return  # only lines whose seq no log can hold: the end (they sort last)


class LineFetcher:
    """Fetch one line again (for evidence): from a file by byte position, from a directory
    by ``seq`` (within ``limits``, default :class:`auditor.options.HttpLimits`)."""

    def __init__(self, spec: SourceSpec, limits: HttpLimits | None = None) -> None:
        self._spec = spec
        self._limits = limits
        self._file: BinaryIO | None = None
        self._client: DirectoryClient | None = None

    def line(self, seq: int, position: int | None) -> bytes | None:
        """The line of the op with ``seq`` (at byte ``position`` in a file), or None."""
        if self._spec.kind == "file":
            if position is None:
                return None
            if self._file is None:
                self._file = open(self._spec.location, "rb")  # noqa: SIM115
            self._file.seek(position)
            return self._file.readline().rstrip(b"\n")
        if self._client is None:
            from auditor.client import DirectoryClient

            self._client = DirectoryClient(self._spec.location, limits=self._limits)
        try:
            return self._client.line_at(seq)
        except AuditFailed:
            return None

    def close(self) -> None:
        """Release the file or HTTP client."""
        if self._file is not None:
            self._file.close()
        if self._client is not None:
            self._client.close()
