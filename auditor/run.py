"""The machinery one ``sync`` or ``verify`` run shares (:class:`Run`): its state connection,
the entries' tree, the log checks, the replay loop, and how a failure is told.

A state file that is damaged (a tree chunk short or missing, a stored root the tree does not
give) fails the run with one line (:class:`auditor.errors.AuditFailed`), never a traceback.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from auditor import state
from auditor.backdating import resumed_tracker
from auditor.client import DirectoryClient
from auditor.errors import AuditFailed
from auditor.findings import Finding
from auditor.options import AuditOptions, AuditOutcome
from auditor.progress import ReplayProgress
from auditor.recheck import PrefixChecker, RecheckResult
from auditor.replay import Replayer
from auditor.sequence import SeqTracker
from auditor.sources import LineFetcher, SourceSpec
from auditor.tlogcheck import TlogChecker
from auditor.treestore import TreeStore, check_line
from auditor.worker import WorkerConfig, WorkerPool
from plc.errors import VerificationError
from plc.tlog.checkpoint import Checkpoint, parse_checkpoint_unsafe


def parsed_checkpoint(note: str) -> Checkpoint | None:
    """The checkpoint of a note, unverified, or None if it does not parse (the log checks
    report it)."""
    try:
        return parse_checkpoint_unsafe(note)
    except VerificationError:
        return None


def _bind_source(conn: sqlite3.Connection, spec: SourceSpec) -> None:
    bound = state.get_meta(conn, "source")
    if bound is None:
        state.set_meta(conn, "source", spec.location)
        state.set_meta(conn, "source_kind", spec.kind)
    elif bound != spec.location:
        raise AuditFailed(f"the state file belongs to {bound}, not {spec.location}")


class Run:
    """The shared machinery of ``sync`` and ``verify`` for one run."""

    def __init__(self, spec: SourceSpec, state_path: Path, options: AuditOptions) -> None:
        self.spec = spec
        self.options = options
        self.pool: WorkerPool | None = None
        self.progress: ReplayProgress | None = None
        try:
            self.conn = state.connect(state_path)
        except sqlite3.DatabaseError as exc:
            raise AuditFailed(f"{state_path} is not a usable auditor state file: {exc}") from exc
        try:
            _bind_source(self.conn, spec)
            self.outcome = AuditOutcome(state_path, state.max_finding_id(self.conn))
            tree_size = state.get_meta_int(self.conn, "tree_size")
            self.tree = TreeStore(self.conn, tree_size)
            stored_root = state.get_meta(self.conn, "root_hash")
            if tree_size and stored_root != self.tree.root().hex():
                raise AuditFailed("the state file's tree does not give its stored root (corrupt)")
        except (sqlite3.DatabaseError, IndexError, ValueError) as exc:
            # A damaged state (a tree chunk short or missing, a meta value not a number).
            self.conn.close()
            raise AuditFailed(f"{state_path} is a damaged auditor state file: {exc}") from exc
        except BaseException:
            self.conn.close()
            raise
        limits = options.http_limits
        self.client = DirectoryClient(spec.location, limits=limits) if spec.kind == "http" else None
        self.fetcher = LineFetcher(spec, limits)
        self.tlog = TlogChecker(self.conn, self.tree, options.verifiers, self.client, self.fetcher)
        last_line = state.get_meta(self.conn, "last_line")
        self.tracker = SeqTracker(
            state.get_meta_int(self.conn, "cursor_seq"),
            None if last_line is None else last_line.encode("utf-8"),
            allow_gaps=options.allow_seq_gaps,
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT around the block, rolled back if it fails."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # not if it was interrupted right after COMMIT
                self.conn.execute("ROLLBACK")
            raise

    def write(self, findings: list[Finding]) -> None:
        """Store findings (and whatever the caller changed) in one transaction."""
        with self._transaction():
            state.store_findings(self.conn, findings)

    def observe_checkpoint(self, note: str | None) -> None:
        """Log checks on one checkpoint note (None: only those kept from earlier runs, whose
        signatures are checked now if keys were given), committed at once.

        Raises:
            AuditFailed: ``--vkey`` is evidently another log's key (nothing is stored).
        """
        if note is not None:
            foreign = self.tlog.foreign_key_names(note)
            if foreign is not None:
                raise AuditFailed(foreign)
            self._note_older(note)
        with self._transaction():
            findings = self.tlog.verify_stored()
            if note is not None:
                findings += self.tlog.observe(note)
            findings += self.tlog.check_pending(
                state.get_meta_int(self.conn, "tree_size"),
                state.get_meta_int(self.conn, "cursor_seq"),
            )
            state.store_findings(self.conn, findings)

    def _note_older(self, note: str) -> None:
        """Note a checkpoint smaller than one of the same origin served before (a stale
        cache, a lagging replica or a log rolled back; its consistency and root are checked
        like any other's)."""
        checkpoint = parsed_checkpoint(note)
        if checkpoint is None:
            return
        row = self.conn.execute(
            "SELECT MAX(tree_size) FROM checkpoints WHERE origin = ? AND note != ?",
            (checkpoint.origin, note),
        ).fetchone()
        if row[0] is None or checkpoint.tree_size >= int(row[0]):
            return
        text = (
            f"the directory served a checkpoint of size {checkpoint.tree_size}, older than "
            f"the one of size {int(row[0])} it served before (stale, or rolled back)"
        )
        if text not in self.outcome.notes:
            self.outcome.notes.append(text)

    def last_entry_served(self, client: DirectoryClient) -> bool:
        """True if the directory still serves the last entry verified with the bytes read
        (one ``/export`` request).

        Raises:
            AuditFailed: network failure.
        """
        last = self.tree.tree_size - 1
        seq = state.seq_of_leaf(self.conn, last)
        line = client.line_at(seq)
        # Any leaf read with that seq will do: a repeated seq serves its first line.
        return line is not None and bool(check_line(self.conn, seq, line))

    def recheck(self, lines: Iterator[tuple[int, bytes]], full: bool) -> None:
        """Compare a re-read of the prefix with the stored leaves; store the findings."""
        checker = PrefixChecker(self.conn, self.tree)
        result: RecheckResult = checker.check(lines, whole=full)
        if result.differing or result.shifted:
            text = (
                f"second read of the export: {result.differing} of {self.tree.tree_size} "
                f"leaves differ ({len(result.findings)} reported)"
            )
            if result.shifted:
                text += f"; {result.shifted} more only moved (the same ops, shifted by them)"
            self.outcome.notes.append(text)
        self.write(result.findings)

    def replayer(self, canonical: bool, total: int | None, label: str) -> Replayer:
        """Start the workers and the replay loop."""
        config = WorkerConfig(
            str(self.outcome.state_path),
            self.spec,
            self.options.removed_cids,
            canonical,
            self.options.http_limits,
        )
        self.pool = WorkerPool(config, self.options.workers)
        # A resumed run's bar starts where the last one stopped (bytes for a file, ops else).
        if self.spec.kind == "file":
            start = state.get_meta_int(self.conn, "cursor_offset")
        else:
            start = self.tree.tree_size
        self.progress = ReplayProgress(label, total, self.options.progress, start=start)
        created = resumed_tracker(
            self.conn,
            self.options.created_at_tolerance_ms,
            allow_backdated=self.options.allow_backdated,
        )
        return Replayer(
            self.conn, self.tree, self.tracker, self.pool, self.tlog, self.progress, created
        )

    def finish(self, replayer: Replayer | None, started: float) -> AuditOutcome:
        """Drain, stop the workers, mark the run finished."""
        if replayer is not None:
            replayer.drain()
            self.outcome.ops = replayer.counters.ops
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        state.set_meta(self.conn, "finished", 1)
        self.outcome.elapsed_s = time.monotonic() - started
        return self.outcome

    def failure(self, exc: AuditFailed) -> AuditFailed:
        """``exc`` with the findings this run stored before it failed, if any: the failure
        is what the user sees (exit code 1, no summary), so it must not hide them."""
        try:
            row = self.conn.execute(
                "SELECT COUNT(*) FROM findings WHERE id > ?", (self.outcome.first_finding_id,)
            ).fetchone()
        except sqlite3.Error:  # the state may be what failed: keep the first error
            return exc
        stored = int(row[0])
        if not stored:
            return exc
        noun = "finding" if stored == 1 else "findings"
        return AuditFailed(
            f"{exc}; this run stored {stored} {noun} before failing: "
            f"plc-audit report --state {self.outcome.state_path}"
        )

    def carry_out(self, body: Callable[[], AuditOutcome]) -> AuditOutcome:
        """``body()``'s outcome; a failure is told with the findings stored before it
        (:meth:`failure`), and the run is closed either way.

        Raises:
            AuditFailed: ``body`` failed.
        """
        try:
            return body()
        except AuditFailed as exc:
            told = self.failure(exc)
            if told is exc:
                raise
            raise told from exc
        finally:
            self.close()

    def close(self) -> None:
        """Release connections (and stop the workers if a failure left them running)."""
        if self.pool is not None:
            self.pool.terminate()
            self.pool = None
        if self.progress is not None:
            self.progress.close()
        self.fetcher.close()
        if self.client is not None:
            self.client.close()
        self.conn.close()
