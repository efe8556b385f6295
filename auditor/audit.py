"""One audit run: ``sync`` a directory or ``verify`` a file, into a state file.

Steps (each step's checks live in their own module):

1. Open the state (:mod:`auditor.state`); a state made for another source is refused. A
   resumed state first proves itself: its stored tree must give the stored root.
2. Re-read the prefix verified before (:mod:`auditor.recheck`, ``--recheck``). With
   ``tail`` or ``none``, a directory is still asked for the last entry verified (one
   request): if it no longer serves it as read (an export cut back or rewritten), the whole
   prefix is re-read, so the entries it stopped serving are reported.
3. Log checks (:mod:`auditor.tlogcheck`): the directory's current checkpoint, or the
   checkpoint files given for a file. A checkpoint smaller than one the directory served
   before is not inconsistent by itself (any size may be signed and served); it is checked
   like any other and noted in the summary.
4. Replay the rest (:mod:`auditor.replay`, :mod:`auditor.worker`) until the end of the file
   or an empty ``/export`` page; fetch the checkpoint again.
5. ``--follow``: the stream (:mod:`auditor.follow`), with a checkpoint check every few seconds.
6. Spot checks of served DID documents (:mod:`auditor.spotcheck`).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from auditor import state
from auditor.backdating import resumed_tracker
from auditor.client import DirectoryClient
from auditor.errors import AuditFailed
from auditor.findings import MISBEHAVIOUR, Finding
from auditor.follow import follow_stream
from auditor.options import BATCH_LINES as BATCH_LINES  # re-exported: callers import them here
from auditor.options import AuditOptions as AuditOptions
from auditor.options import AuditOutcome as AuditOutcome
from auditor.progress import ReplayProgress
from auditor.recheck import PrefixChecker, RecheckResult
from auditor.replay import Replayer
from auditor.sequence import SeqTracker
from auditor.sources import (
    FileSource,
    HttpExportSource,
    LineFetcher,
    SourceSpec,
    refuse_unauditable_file,
)
from auditor.spotcheck import ExportTail, SpotChecker, sample_dids
from auditor.statefiles import delete_state_files, holds_nothing, remove_state
from auditor.tlogcheck import TlogChecker, stored_checkpoints
from auditor.treestore import TreeStore, check_line
from auditor.worker import WorkerConfig, WorkerPool
from plc.errors import VerificationError
from plc.tlog.checkpoint import Checkpoint, parse_checkpoint_unsafe

MAX_SUSPECT_CHECKS = 100


def _parsed(note: str) -> Checkpoint | None:
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


class _Run:
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
        _bind_source(self.conn, spec)
        self.outcome = AuditOutcome(state_path, state.max_finding_id(self.conn))
        tree_size = state.get_meta_int(self.conn, "tree_size")
        self.tree = TreeStore(self.conn, tree_size)
        stored_root = state.get_meta(self.conn, "root_hash")
        if tree_size and stored_root != self.tree.root().hex():
            raise AuditFailed("the state file's tree does not give its stored root (corrupt)")
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

    def write(self, findings: list[Finding]) -> None:
        """Store findings (and whatever the caller changed) in one transaction."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            state.store_findings(self.conn, findings)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

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
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            findings = self.tlog.verify_stored()
            if note is not None:
                findings += self.tlog.observe(note)
            findings += self.tlog.check_pending(
                state.get_meta_int(self.conn, "tree_size"),
                state.get_meta_int(self.conn, "cursor_seq"),
            )
            state.store_findings(self.conn, findings)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _note_older(self, note: str) -> None:
        """Note a checkpoint smaller than one of the same origin served before (a stale
        cache, a lagging replica or a log rolled back; its consistency and root are checked
        like any other's)."""
        checkpoint = _parsed(note)
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


def _file_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """``(position, line)`` of a file from the start (the consumer stops reading)."""
    source = FileSource(path)
    index = 0
    try:
        for batch in source.batches(4096):
            for raw in batch:
                yield index, raw.line
                index += 1
    finally:
        source.close()


def verify_file(
    path: Path, state_path: Path, options: AuditOptions, *, resume: bool = False
) -> AuditOutcome:
    """Audit a JSON-lines export file (``plc-audit verify``); fresh unless ``resume``.

    Raises:
        AuditFailed: unreadable file, a file in the legacy export form or one that is no
            export at all (both refused before the state is touched), foreign state, corrupt
            state, worker failure.
    """
    started = time.monotonic()
    spec = SourceSpec.for_file(path)
    refuse_unauditable_file(spec.location)
    if not resume:
        remove_state(state_path, spec)
    run = _Run(spec, state_path, options)
    replayer = None
    try:
        offset = state.get_meta_int(run.conn, "cursor_offset")
        if run.tree.tree_size and options.recheck != "none":
            run.recheck(_file_lines(spec.location), full=True)
        for note in options.checkpoint_notes or (None,):
            run.observe_checkpoint(note)
        canonical = (
            options.canonical_lines
            if options.canonical_lines is not None
            else bool(options.checkpoint_notes)
        )
        source = FileSource(spec.location, offset)
        replayer = run.replayer(canonical, source.total_bytes, f"verify {path.name}")
        try:
            for batch in source.batches(options.batch_lines):
                replayer.ingest(batch, source.offset)
        finally:
            source.close()
        outcome = run.finish(replayer, started)  # commits the last batches' checks
        for cp in stored_checkpoints(run.conn):
            if cp.status == "pending":
                outcome.notes.append(
                    f"checkpoint of size {cp.tree_size} is larger than the file: not checked"
                )
        return outcome
    except AuditFailed as exc:
        told = run.failure(exc)
        if told is exc:
            raise
        raise told from exc
    finally:
        run.close()


def _http_lines(client: DirectoryClient, after: int) -> Iterator[tuple[int, bytes]]:
    """``(n, line)`` of ``/export`` pages from ``after`` on (the consumer stops reading)."""
    index = 0
    for batch in HttpExportSource(client, after).batches():
        for raw in batch:
            yield index, raw.line
            index += 1


def sync_directory(
    url: str, state_path: Path, options: AuditOptions, *, fresh: bool = False
) -> AuditOutcome:
    """Audit a directory over HTTP (``plc-audit sync``), resuming from the state. A state
    file this run created is removed again if the run fails before anything was stored in it
    (an unreachable or mistyped URL leaves nothing behind).

    Raises:
        AuditFailed: network failure, foreign or corrupt state, worker failure.
    """
    created = fresh or not state_path.exists()
    try:
        return _sync_directory(url, state_path, options, fresh=fresh)
    except AuditFailed:
        if created and holds_nothing(state_path):
            delete_state_files(state_path)
        raise


def _sync_directory(
    url: str, state_path: Path, options: AuditOptions, *, fresh: bool
) -> AuditOutcome:
    started = time.monotonic()
    spec = SourceSpec.for_url(url)
    if fresh:
        remove_state(state_path, spec)
    run = _Run(spec, state_path, options)
    assert run.client is not None
    client = run.client
    replayer = None
    try:
        if not run.tree.tree_size and not stored_checkpoints(run.conn):
            # Nothing kept yet: make sure this is a directory before its answers can be
            # findings (a mistyped URL is the user's mistake, reported with exit 1).
            client.probe_export()
        if run.tree.tree_size and options.recheck != "full" and not run.last_entry_served(client):
            run.outcome.notes.append(
                "the last entry verified before is no longer served as it was read: the "
                "whole export was read again"
            )
            run.recheck(_http_lines(client, 0), full=True)
        elif run.tree.tree_size and options.recheck == "full":
            run.recheck(_http_lines(client, 0), full=True)
        elif run.tree.tree_size and options.recheck == "tail":
            first = max(0, run.tree.tree_size - 1000)
            after = state.seq_of_leaf(run.conn, first) - 1
            tail = ((first + i, line) for i, line in _http_lines(client, after))
            run.recheck(tail, full=False)
        note = client.checkpoint()
        has_tlog = note is not None
        if not has_tlog and state.get_meta(run.conn, "tlog") == "1":
            # A directory must not be able to switch the log checks off by no longer
            # answering: what served a log once is audited as a log.
            raise AuditFailed(
                "the directory served /tlog/ in an earlier run and now serves no checkpoint; "
                "its log checks cannot be skipped (try again later)"
            )
        state.set_meta(run.conn, "tlog", int(has_tlog))
        # A log's seq has no gaps: --allow-seq-gaps is for directories without /tlog/.
        run.tracker.allow_gaps = options.allow_seq_gaps and not has_tlog
        if options.allow_seq_gaps and has_tlog:
            run.outcome.notes.append("--allow-seq-gaps ignored: the directory serves /tlog/")
        if options.verifiers and not has_tlog:
            run.outcome.notes.append(
                "--vkey unused: the directory serves no /tlog/, so no checkpoint was signed with it"
            )
        run.observe_checkpoint(note)
        canonical = options.canonical_lines if options.canonical_lines is not None else has_tlog
        parsed = None if note is None else _parsed(note)
        total = None if parsed is None else parsed.tree_size
        replayer = run.replayer(canonical, total, "sync")

        def catch_up() -> None:
            assert replayer is not None
            known = state.get_meta(run.conn, _STALL_KEY)
            source = HttpExportSource(client, replayer.last_seq, known_stall=known)
            for batch in source.batches():
                replayer.ingest(batch)
            replayer.drain()
            if source.stalled_after is not None:
                # Its lines' seq findings are committed; asking again gets the same page.
                with run.conn:
                    state.set_meta(run.conn, _STALL_KEY, source.stall or "")
                again = "; it is the same page as before, not read again"
                raise AuditFailed(
                    f"/export?after={source.stalled_after} did not advance the cursor"
                    + (again if source.stall_repeated else "")
                )

        def tick() -> None:
            latest = client.checkpoint()
            if latest is not None:
                run.observe_checkpoint(latest)

        catch_up()
        if has_tlog:
            tick()
        if options.follow:
            run.tracker.dedup_redelivery = True
            try:
                stopped = follow_stream(
                    spec.location,
                    replayer,
                    catch_up=catch_up,
                    tick=tick if has_tlog else lambda: None,
                    seconds=options.follow_seconds,
                )
                if stopped is not None:
                    run.outcome.notes.append(stopped)
            except KeyboardInterrupt:
                run.outcome.notes.append("stopped following (interrupted)")
            replayer.drain()
            if has_tlog:
                tick()
        run.finish(replayer, started)
        _spot_checks(run, replayer.counters.suspects, replayer.last_seq)
        for cp in stored_checkpoints(run.conn):
            if cp.status == "pending":
                run.outcome.notes.append(
                    f"checkpoint of size {cp.tree_size} is ahead of the {run.tree.tree_size} "
                    "entries read: it is checked when they arrive (next run)"
                )
        run.outcome.elapsed_s = time.monotonic() - started
        return run.outcome
    except AuditFailed as exc:
        told = run.failure(exc)
        if told is exc:
            raise
        raise told from exc
    finally:
        run.close()


_STALL_KEY = "export_stall"
"""``meta`` key of the last ``/export`` page that did not advance the cursor (cursor and
hash), so that the same page is not replayed into the tree on every later run."""


def _spot_checks(run: _Run, suspects: set[str], synced_seq: int) -> None:
    if run.client is None or run.options.spot_checks < 0:
        return
    rng = random.Random(run.options.seed)
    dids = sample_dids(run.conn, run.options.spot_checks, rng)
    dids += sorted(suspects - set(dids))[:MAX_SUSPECT_CHECKS]
    tail = ExportTail(run.client, synced_seq)
    checker = SpotChecker(run.conn, run.client, run.fetcher, tail)
    findings: list[Finding] = []
    for did in dids:
        findings.extend(checker.check(did))
    run.write(findings)
    checked = len(dids) - len(checker.unserved)
    run.outcome.notes.append(f"spot-checked {checked} DIDs")
    if checker.unserved:
        run.outcome.notes.append(
            f"{len(checker.unserved)} DIDs not spot-checked: a line of theirs was no longer "
            "served as it was read (sync --recheck full compares every line)"
        )


def has_misbehaviour(conn: sqlite3.Connection) -> bool:
    """True if the state holds any misbehaviour finding."""
    row = conn.execute(
        "SELECT 1 FROM findings WHERE severity = ? LIMIT 1", (MISBEHAVIOUR,)
    ).fetchone()
    return row is not None
