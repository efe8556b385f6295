"""The replay loop: lines in, state out.

For each batch of lines (file blocks, ``/export`` pages or stream messages), in this process:
read ``seq`` and ``did`` (:func:`auditor.lines.parse_header`, which also reads ``createdAt``
from a canonical head), check ``seq`` (:class:`auditor.sequence.SeqTracker`) and ``createdAt``
(:class:`auditor.backdating.CreatedAtTracker`), hash the line into the entries' tree (leaf =
exact line bytes, RFC 6962 §2.1) — then hand the lines to the per-DID workers
(:class:`auditor.worker.WorkerPool`). Up to :data:`PIPELINE_DEPTH` batches are in flight so
reading overlaps validation; a batch is *committed* (``meta`` cursor, tree, this process's
findings, pending checkpoints) only once every worker has committed its part, so a run
killed at any point resumes from the last committed batch and replays the rest harmlessly.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from auditor import state
from auditor.backdating import HIGH_WATER_KEY, CreatedAtTracker
from auditor.errors import AuditFailed
from auditor.findings import Finding, line_text
from auditor.lines import MalformedLine, parse_header
from auditor.progress import ReplayProgress
from auditor.sequence import SeqTracker
from auditor.sources import RawLine
from auditor.streambytes import rewritten
from auditor.tlogcheck import TlogChecker
from auditor.treestore import TreeStore
from auditor.worker import PIPELINE_DEPTH, Item, WorkerPool
from plc.tlog.hashing import leaf_hash

"""Batches handed to the workers and not yet committed, at most."""


@dataclass
class _InFlight:
    """A batch handed to the workers: what to commit once they are done with it."""

    batch_id: int
    findings: list[Finding]
    cursor_seq: int
    last_line: bytes | None
    offset: int | None
    tree_size: int
    ops: int
    breaks: list[tuple[int, int]]
    high_water: bytes | None


@dataclass
class ReplayCounters:
    """What this run did so far.

    Attributes:
        ops: lines committed this run.
        suspects: DIDs with refused ops (for targeted spot checks).
    """

    ops: int = 0
    suspects: set[str] = field(default_factory=set)


class Replayer:
    """Feeds batches through the checks into the state.

    Args:
        conn: the coordinator's state connection.
        tree: the entries' tree (committed size = ``meta.tree_size``).
        tracker: ``seq`` checks, positioned after the last committed line.
        pool: the per-DID workers.
        tlog: log checks, for checkpoints pending on the entries (None without a tlog).
        progress: the progress display.
        created: the ``createdAt`` high-water check (:mod:`auditor.backdating`),
            positioned after the last committed line.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        tree: TreeStore,
        tracker: SeqTracker,
        pool: WorkerPool,
        tlog: TlogChecker | None,
        progress: ReplayProgress,
        created: CreatedAtTracker,
    ) -> None:
        self._conn = conn
        self._tree = tree
        self._tracker = tracker
        self._pool = pool
        self._tlog = tlog
        self._progress = progress
        self._created = created
        self._inflight: deque[_InFlight] = deque()
        self._batch_id = 0
        self._broken = False
        self.committed_tree_size = tree.tree_size
        self.counters = ReplayCounters()
        # The seq the next leaf has unless it breaks the run (see state.seq_of_leaf).
        size = tree.tree_size
        self._next_seq = state.seq_of_leaf(conn, size - 1) + 1 if size else 1

    @property
    def read_size(self) -> int:
        """Leaves read so far (committed or in flight)."""
        return self._tree.tree_size

    @property
    def last_seq(self) -> int:
        """The largest ``seq`` read so far (committed or in flight)."""
        return self._tracker.last_seq

    def ingest(self, batch: Sequence[RawLine], offset: int | None = None) -> None:
        """Check and hand over one batch; ``offset`` is the file offset after it.

        Raises:
            AuditFailed: a worker failed, or an earlier commit was interrupted (the replay
                cannot go on: the state keeps the batches committed before it).
        """
        if self._broken:
            raise AuditFailed("a batch commit was interrupted: the run cannot go on")
        items: list[Item] = []
        leaves: list[bytes] = []
        findings: list[Finding] = []
        breaks: list[tuple[int, int]] = []
        for raw in batch:
            index = self._tree.tree_size + len(leaves)
            try:
                header = parse_header(raw.line)
            except MalformedLine as exc:
                self._next_seq += 1  # a line without a seq is taken to have the next one
                findings.append(
                    Finding(
                        "malformed-entry",
                        str(exc),
                        {**line_text(raw.line), "error": str(exc)},
                        scope=f"leaf:{index}",
                    )
                )
                leaves.append(leaf_hash(raw.line))
                continue
            keep, seq_findings = self._tracker.observe(header.seq, raw.line)
            findings.extend(seq_findings)
            if not keep:
                continue
            backdated = self._created.observe(header.seq, raw.line, header)
            if backdated is not None:
                findings.append(backdated)
            if header.seq != self._next_seq:
                breaks.append((index, header.seq))
            self._next_seq = header.seq + 1
            leaves.append(leaf_hash(raw.line))
            items.append((header.seq, header.did, raw.line, raw.position))
            if raw.reread is not None:
                findings.append(rewritten(index, header.seq, raw.line, raw.reread))
        self._tree.append(leaves)
        high_water = self._created.mark  # once per batch: settles the tracker's candidates
        self._batch_id += 1
        self._pool.submit(self._batch_id, items)
        self._inflight.append(
            _InFlight(
                self._batch_id,
                findings,
                self._tracker.last_seq,
                self._tracker.last_line,
                offset,
                self._tree.tree_size,
                len(leaves),
                breaks,
                None if high_water is None else high_water.line,
            )
        )
        while self._pool.outstanding > PIPELINE_DEPTH:
            self._commit_oldest()

    def drain(self) -> None:
        """Commit every batch in flight."""
        while self._pool.outstanding:
            self._commit_oldest()

    def _commit_oldest(self) -> None:
        if self._broken:
            raise AuditFailed("a batch commit was interrupted: the run cannot go on")
        # Broken until this commit is through: its worker result is consumed, and what is
        # in memory (tree, in-flight queue) is ahead of what was committed.
        self._broken = True
        result = self._pool.wait()
        done = self._inflight[0]
        assert done.batch_id == result.batch_id
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._tree.flush()
            state.set_meta(conn, "cursor_seq", done.cursor_seq)
            if done.last_line is not None:
                state.set_meta(conn, "last_line", done.last_line.decode("utf-8", "replace"))
            if done.offset is not None:
                state.set_meta(conn, "cursor_offset", done.offset)
            if done.high_water is not None:
                state.set_meta(conn, HIGH_WATER_KEY, done.high_water.decode("utf-8"))
            state.add_leaf_seqs(conn, done.breaks)
            state.set_meta(conn, "tree_size", done.tree_size)
            state.set_meta(conn, "root_hash", self._tree.root(done.tree_size).hex())
            ops_read = state.get_meta_int(conn, "ops_read") + done.ops
            state.set_meta(conn, "ops_read", ops_read)
            findings = list(done.findings)
            if self._tlog is not None:
                findings.extend(self._tlog.check_pending(done.tree_size, done.cursor_seq))
            state.store_findings(conn, findings)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # not if it was interrupted right after COMMIT
                conn.execute("ROLLBACK")
            raise
        self._tree.committed()
        self._inflight.popleft()
        self._broken = False
        self.committed_tree_size = done.tree_size
        self.counters.ops += done.ops
        self.counters.suspects.update(result.suspects)
        self._progress.advance(done.ops, done.offset)
