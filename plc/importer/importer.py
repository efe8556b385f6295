"""Validate imported lines and commit them in batches (``plc import``).

Each op goes through :meth:`plc.service.Directory.prepare` in import mode: every did:plc rule
applies (signatures, prev chain, the 72-hour recovery window measured with the line's own
``createdAt``, nullification), admission policy does not, and legacy ``create`` genesis ops
are accepted. Ops already stored are counted as present, so an import can be run again, or
resumed, without harm. Accepted ops get this directory's own ``seq`` (plc-spec-notes.md §4.1:
"a mirror may assign its own") and leaves in its transparency log, in source order.

A batch holds each DID at most once (an op is validated against its DID's *stored* history),
and commits in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from plc.errors import PlcError
from plc.importer.lines import ImportItem, parse_import_line
from plc.importer.sources import SourceLine
from plc.service import Directory, SubmitResult
from plc.store.sql import CommitStatus, PendingCommit


class Refusal(NamedTuple):
    """A line that was not imported.

    Attributes:
        where: ``line N`` or ``seq N`` of the source.
        did, cid: the op's DID and computed CID, when the line got that far.
        message: why (the same text the HTTP API would answer with).
        line: the line's bytes.
    """

    where: str
    did: str | None
    cid: str | None
    message: str
    line: bytes


@dataclass
class ImportStats:
    """Counts of one import run: lines read, ops imported, ops already present, refusals."""

    lines: int = 0
    imported: int = 0
    present: int = 0
    refused: int = 0


class _Waiting(NamedTuple):
    source: SourceLine
    item: ImportItem
    pending: PendingCommit


class Importer:
    """Feeds source lines to a :class:`Directory`.

    Args:
        directory: the directory to import into (its store's leaf hooks must include the
            transparency log's, as the app's do).
        batch_size: most ops per transaction.
        on_refused: called with each refused line, in source order.
    """

    def __init__(
        self,
        directory: Directory,
        *,
        batch_size: int = 500,
        on_refused: Callable[[Refusal], None] = lambda _: None,
    ) -> None:
        self.directory = directory
        self.stats = ImportStats()
        self.done_through = 0
        """``progress`` of the last source line whose fate is durable (committed, present or
        refused), with every line before it: where a later run can resume."""
        self._batch_size = batch_size
        self._on_refused = on_refused
        self._batch: list[_Waiting] = []
        self._dids: set[str] = set()
        self._seen = 0

    def add(self, source: SourceLine) -> None:
        """Handle one line: refuse it, count it as present, or queue it for the next commit.

        Raises:
            Unavailable: the database failed (the queued batch is not committed).
        """
        self.stats.lines += 1
        self._add(source)
        self._seen = source.progress
        if not self._batch:
            self.done_through = source.progress

    def _add(self, source: SourceLine) -> None:
        try:
            item = parse_import_line(source.line)
        except PlcError as exc:
            self._refuse(source, None, None, exc.message)
            return
        if item.did in self._dids:
            self.flush()
        prepared = self._prepare(source, item)
        if prepared is not None:
            self._batch.append(_Waiting(source, item, prepared))
            self._dids.add(item.did)
            if len(self._batch) >= self._batch_size:
                self.flush()

    def flush(self) -> None:
        """Commit the queued ops in one transaction.

        Raises:
            Unavailable: the database failed (nothing of the batch is stored).
        """
        batch, self._batch, self._dids = self._batch, [], set()
        if not batch:
            return
        outcomes = self.directory.store.commit_batch([w.pending for w in batch])
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if outcome.status is CommitStatus.COMMITTED:
                self.stats.imported += 1
            elif outcome.status is CommitStatus.DUPLICATE:
                self.stats.present += 1
            else:
                self._again(waiting)
        self.done_through = self._seen

    def _again(self, waiting: _Waiting) -> None:
        """An op whose DID moved between validation and commit (another writer, such as a
        running server): validated and committed again, alone."""
        prepared = self._prepare(waiting.source, waiting.item)
        if prepared is None:
            return
        outcome = self.directory.store.commit_batch([prepared])[0]
        if outcome.status is CommitStatus.COMMITTED:
            self.stats.imported += 1
        elif outcome.status is CommitStatus.DUPLICATE:
            self.stats.present += 1
        else:
            cid = prepared.prepared.operation.cid
            self._refuse(waiting.source, waiting.item.did, cid, "the DID changed during import")

    def _prepare(self, source: SourceLine, item: ImportItem) -> PendingCommit | None:
        """The op validated for commit; None when it is refused or already present."""
        try:
            result = self.directory.prepare(
                item.did, item.operation, created_at=item.created_at, imported=True
            )
        except PlcError as exc:
            self._refuse(source, item.did, None, exc.message)
            return None
        cid = result.cid if isinstance(result, SubmitResult) else result.prepared.operation.cid
        if item.cid is not None and item.cid != cid:
            self._refuse(source, item.did, cid, f"the line claims cid {item.cid[:80]}")
            return None
        if isinstance(result, SubmitResult):
            self.stats.present += 1
            return None
        return result

    def _refuse(self, source: SourceLine, did: str | None, cid: str | None, message: str) -> None:
        self.stats.refused += 1
        self._on_refused(Refusal(source.where, did, cid, message, source.line))
