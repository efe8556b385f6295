"""Validate imported lines and commit them in batches (``plc import``).

Each op goes through :meth:`plc.service.Directory.prepare` in import mode: every did:plc rule
applies (signatures, prev chain, the 72-hour recovery window measured with the line's own
``createdAt``, nullification), admission policy does not, and legacy ``create`` genesis ops
are accepted. Ops already stored are counted as present, so an import can be run again, or
resumed, without harm. Accepted ops get this directory's own ``seq`` (plc-spec-notes.md §4.1:
"a mirror may assign its own") and leaves in its transparency log, in source order.

A batch holds each DID at most once (an op is validated against its DID's *stored* history,
read for the whole batch in one query: one round trip instead of one per op on PostgreSQL),
and commits in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from plc.errors import PlcError
from plc.importer.lines import ImportItem, parse_import_line
from plc.importer.sources import SourceLine
from plc.service import Directory, SubmitResult
from plc.store.sql import CommitStatus, PendingCommit, StoredOp


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
    item: ImportItem | None
    error: str | None


class Importer:
    """Feeds source lines to a :class:`Directory`.

    Lines are gathered into a batch of up to ``batch_size`` lines with distinct DIDs; the
    batch's histories are read in one query, each op is validated against its own, and the
    accepted ones commit in one transaction. Refusals are reported in source order.

    Args:
        directory: the directory to import into (its store's leaf hooks must include the
            transparency log's, as the app's do).
        batch_size: most lines per batch (and ops per transaction).
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

    def add(self, source: SourceLine) -> None:
        """Take one line; the batch it closes is validated and committed.

        Raises:
            Unavailable: the database failed (the batch is not committed).
        """
        self.stats.lines += 1
        try:
            item: ImportItem | None = parse_import_line(source.line)
        except PlcError as exc:
            self._batch.append(_Waiting(source, None, exc.message))
        else:
            assert item is not None
            if item.did in self._dids:
                self.flush()
            self._batch.append(_Waiting(source, item, None))
            self._dids.add(item.did)
        if len(self._batch) >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        """Validate the gathered lines and commit the accepted ops in one transaction.

        Raises:
            Unavailable: the database failed (nothing of the batch is stored).
        """
        batch, self._batch, self._dids = self._batch, [], set()
        if not batch:
            return
        store = self.directory.store
        histories = store.audit_rows_of([w.item.did for w in batch if w.item is not None])
        accepted: list[tuple[_Waiting, PendingCommit]] = []
        for waiting in batch:
            if waiting.item is None:
                self._refuse(waiting.source, None, None, waiting.error or "not an export line")
                continue
            pending = self._prepare(waiting, histories[waiting.item.did])
            if pending is not None:
                accepted.append((waiting, pending))
        if accepted:
            outcomes = store.commit_batch([pending for _, pending in accepted])
            for (waiting, _), outcome in zip(accepted, outcomes, strict=True):
                if outcome.status is CommitStatus.COMMITTED:
                    self.stats.imported += 1
                elif outcome.status is CommitStatus.DUPLICATE:
                    self.stats.present += 1
                else:
                    self._again(waiting)
        self.done_through = batch[-1].source.progress

    def _again(self, waiting: _Waiting) -> None:
        """An op whose DID moved between validation and commit (another writer, such as a
        running server): validated against a fresh read and committed again, alone."""
        pending = self._prepare(waiting, None)
        if pending is None:
            return
        outcome = self.directory.store.commit_batch([pending])[0]
        if outcome.status is CommitStatus.COMMITTED:
            self.stats.imported += 1
        elif outcome.status is CommitStatus.DUPLICATE:
            self.stats.present += 1
        else:
            assert waiting.item is not None
            cid = pending.prepared.operation.cid
            self._refuse(waiting.source, waiting.item.did, cid, "the DID changed during import")

    def _prepare(self, waiting: _Waiting, rows: Sequence[StoredOp] | None) -> PendingCommit | None:
        """The op validated for commit; None when it is refused or already present."""
        item, source = waiting.item, waiting.source
        assert item is not None
        try:
            result = self.directory.prepare(
                item.did, item.operation, created_at=item.created_at, imported=True, rows=rows
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
