"""Validate imported lines and commit them in batches (``plc import``).

Each op goes through :meth:`plc.service.Directory.prepare` in import mode: every did:plc rule
applies (signatures, prev chain, the 72-hour recovery window measured with the line's own
``createdAt``, nullification), admission policy does not, and legacy ``create`` genesis ops
are accepted. Ops already stored are counted as present, so an import can be run again, or
resumed, without harm. Accepted ops get this directory's own ``seq`` (plc-spec-notes.md §4.1:
"a mirror may assign its own") and leaves in its transparency log, in source order.

A batch holds each DID at most once (an op is validated against its DID's *stored* history,
read for the whole batch in one query: one round trip instead of one per op on PostgreSQL),
and commits in one transaction. The histories of the DIDs seen last are kept, parsed, and
extended with what each commit adds, so a DID with thousands of ops costs thousands of
validations, not a re-read and re-parse of its history for each (that was quadratic: a DID of
4,000 ops took two minutes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

from plc.errors import PlcError, echo
from plc.importer.lines import MAX_FUTURE, ImportItem, parse_import_line
from plc.importer.sources import SourceLine
from plc.operation import parse_operation
from plc.rules import LogEntry
from plc.service import Directory, SubmitResult, history_of
from plc.store.records import CommitStatus, PendingCommit


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


KEPT_HISTORIES = 10_000
"""DIDs whose parsed histories an import keeps between their ops (least recently used go)."""


class Importer:
    """Feeds source lines to a :class:`Directory`.

    Lines are gathered into a batch of up to ``batch_size`` lines with distinct DIDs; the
    histories the batch needs and does not keep are read in one query, each op is validated
    against its DID's, and the accepted ones commit in one transaction. Refusals are reported
    in source order.

    Args:
        directory: the directory to import into (its store's leaf hooks must include the
            transparency log's, as the app's do).
        batch_size: most lines per batch (and ops per transaction).
        on_refused: called with each refused line, in source order.
        start: ``progress`` before the first line (a URL source's ``--after``).
    """

    def __init__(
        self,
        directory: Directory,
        *,
        batch_size: int = 500,
        on_refused: Callable[[Refusal], None] = lambda _: None,
        start: int = 0,
    ) -> None:
        self.directory = directory
        self.stats = ImportStats()
        self.done_through = start
        """``progress`` of the last source line whose fate is durable (committed, present or
        refused), with every line before it: where a later run can resume."""
        self._batch_size = batch_size
        self._on_refused = on_refused
        self._batch: list[_Waiting] = []
        self._dids: set[str] = set()
        self._histories: OrderedDict[str, list[LogEntry]] = OrderedDict()

    def add(self, source: SourceLine) -> None:
        """Take one line; the batch it closes is validated and committed.

        Raises:
            Unavailable: the database failed (the batch is not committed).
        """
        self.stats.lines += 1
        if source.error is not None:
            self._batch.append(_Waiting(source, None, source.error))
        else:
            try:
                latest = self.directory.clock() + MAX_FUTURE
                item: ImportItem | None = parse_import_line(source.line, latest)
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
        fresh = self._read_histories([w.item.did for w in batch if w.item is not None])
        accepted: list[tuple[_Waiting, PendingCommit]] = []
        for waiting in batch:
            if waiting.item is None:
                self._refuse(waiting.source, None, None, waiting.error or "not an export line")
                continue
            pending = self._prepare(waiting, kept=waiting.item.did not in fresh)
            if pending is not None:
                accepted.append((waiting, pending))
        if accepted:
            outcomes = self.directory.store.commit_batch([pending for _, pending in accepted])
            moved = []
            for (waiting, pending), outcome in zip(accepted, outcomes, strict=True):
                if outcome.status is CommitStatus.CONFLICT:
                    moved.append(waiting)
                else:
                    self._settle(waiting, pending, outcome.status)
            # after every op the batch committed is counted and kept, in case these fail
            for waiting in moved:
                self._again(waiting)
        self.done_through = batch[-1].source.progress

    def _read_histories(self, dids: list[str]) -> set[str]:
        """Have the histories of ``dids`` at hand: kept ones, the rest read in one query;
        returns the DIDs read now."""
        missing = [did for did in dids if did not in self._histories]
        for did, rows in self.directory.store.audit_rows_of(missing).items():
            self._histories[did] = history_of(did, rows)
        for did in dids:
            self._histories.move_to_end(did)
        while len(self._histories) > max(KEPT_HISTORIES, len(dids)):
            self._histories.popitem(last=False)
        return set(missing)

    def _settle(self, waiting: _Waiting, pending: PendingCommit, status: CommitStatus) -> None:
        """Count a committed op (keeping its DID's history current) or one found present."""
        assert waiting.item is not None
        did = waiting.item.did
        if status is CommitStatus.COMMITTED:
            self.stats.imported += 1
            prepared = pending.prepared
            history = self._histories.get(did)
            if history is not None:
                if prepared.nullified:
                    gone = set(prepared.nullified)
                    history[:] = [
                        replace(e, nullified=True) if e.cid in gone else e for e in history
                    ]
                history.append(LogEntry(did, prepared.operation, prepared.created_at))
            return
        self._histories.pop(did, None)  # another writer stored it: read the DID afresh
        self.stats.present += 1

    def _again(self, waiting: _Waiting) -> None:
        """An op whose DID moved between validation and commit (another writer, such as a
        running server): validated against a fresh read and committed again, alone."""
        assert waiting.item is not None
        did = waiting.item.did
        self._histories.pop(did, None)
        self._read_histories([did])
        pending = self._prepare(waiting, kept=False)
        if pending is None:
            return
        status = self.directory.store.commit_batch([pending])[0].status
        if status is CommitStatus.CONFLICT:
            self._histories.pop(did, None)
            cid = pending.prepared.operation.cid
            self._refuse(waiting.source, did, cid, "the DID changed during import")
        else:
            self._settle(waiting, pending, status)

    def _prepare(self, waiting: _Waiting, *, kept: bool) -> PendingCommit | None:
        """The op validated for commit; None when it is refused or already present. A
        refusal against a history kept from earlier batches is checked once more against a
        fresh read: another writer may have extended the DID since."""
        item, source = waiting.item, waiting.source
        assert item is not None
        try:
            result = self.directory.prepare(
                item.did,
                item.operation,
                created_at=item.created_at,
                imported=True,
                history=self._histories[item.did],
            )
        except PlcError as exc:
            if kept:
                self._histories.pop(item.did, None)
                self._read_histories([item.did])
                return self._prepare(waiting, kept=False)
            self._refuse(source, item.did, _cid_of(item), exc.message)
            return None
        cid = result.cid if isinstance(result, SubmitResult) else result.prepared.operation.cid
        if item.cid is not None and item.cid != cid:
            self._refuse(source, item.did, cid, f"the line claims cid {echo(item.cid)}")
            return None
        if isinstance(result, SubmitResult):
            self.stats.present += 1
            return None
        return result

    def _refuse(self, source: SourceLine, did: str | None, cid: str | None, message: str) -> None:
        self.stats.refused += 1
        self._on_refused(Refusal(source.where, did, cid, message, source.line))


def _cid_of(item: ImportItem) -> str | None:
    """The op's CID for a refusal record, when the op parses (a bad signature, a broken
    chain), else None."""
    try:
        return parse_operation(item.operation).cid
    except PlcError:
        return None
