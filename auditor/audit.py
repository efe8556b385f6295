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

Ctrl-C (:mod:`auditor.interrupt`) stops a run between batches: ``--follow`` then stops
following and finishes (log checks, spot checks, summary; a directory that does not answer
them then is noted, not a failure); any other step ends with ``KeyboardInterrupt`` (exit code
130), the state keeping every batch committed.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from auditor import state
from auditor.client import DirectoryClient
from auditor.errors import AuditFailed, DirectoryUnreachable
from auditor.findings import MISBEHAVIOUR, Finding
from auditor.follow import follow_stream
from auditor.interrupt import StopRequest, StopRequested
from auditor.options import BATCH_LINES as BATCH_LINES  # re-exported: callers import them here
from auditor.options import AuditOptions as AuditOptions
from auditor.options import AuditOutcome as AuditOutcome
from auditor.run import Run, parsed_checkpoint
from auditor.sources import FileSource, HttpExportSource, SourceSpec, refuse_unauditable_file
from auditor.spotcheck import ExportTail, SpotChecker, sample_dids
from auditor.statefiles import delete_state_files, holds_nothing, remove_state
from auditor.statelock import state_lock
from auditor.streambytes import ExportLines
from auditor.tlogcheck import stored_checkpoints
from auditor.treestore import check_line

MAX_SUSPECT_CHECKS = 100


def _file_lines(path: str, stop: StopRequest) -> Iterator[tuple[int, bytes]]:
    """``(position, line)`` of a file from the start (the consumer stops reading).

    Raises:
        StopRequested: Ctrl-C (checked between blocks of lines).
    """
    source = FileSource(path)
    index = 0
    try:
        for batch in source.batches(4096):
            stop.check()
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
        KeyboardInterrupt: Ctrl-C (:class:`StopRequested` between batches; the state keeps
            every committed batch).
    """
    started = time.monotonic()
    spec = SourceSpec.for_file(path)
    refuse_unauditable_file(spec.location)
    with state_lock(state_path), StopRequest() as stop:
        if not resume:
            remove_state(state_path, spec)
        run = Run(spec, state_path, options)
        return run.carry_out(lambda: _verify(run, path, options, stop, started))


def _verify(
    run: Run, path: Path, options: AuditOptions, stop: StopRequest, started: float
) -> AuditOutcome:
    location = run.spec.location
    offset = state.get_meta_int(run.conn, "cursor_offset")
    if run.tree.tree_size and options.recheck != "none":
        run.recheck(_file_lines(location, stop), full=True)
    for note in options.checkpoint_notes or (None,):
        run.observe_checkpoint(note)
    canonical = (
        options.canonical_lines
        if options.canonical_lines is not None
        else bool(options.checkpoint_notes)
    )
    source = FileSource(location, offset)
    replayer = run.replayer(canonical, source.total_bytes, f"verify {path.name}")
    try:
        for batch in source.batches(options.batch_lines):
            stop.check()
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


def _http_lines(
    client: DirectoryClient, after: int, stop: StopRequest
) -> Iterator[tuple[int, bytes]]:
    """``(n, line)`` of ``/export`` pages from ``after`` on (the consumer stops reading).

    Raises:
        StopRequested: Ctrl-C (checked between pages).
    """
    index = 0
    for batch in HttpExportSource(client, after).batches():
        stop.check()
        for raw in batch:
            yield index, raw.line
            index += 1


def sync_directory(
    url: str, state_path: Path, options: AuditOptions, *, fresh: bool = False
) -> AuditOutcome:
    """Audit a directory over HTTP (``plc-audit sync``), resuming from the state. A state
    file this run created is removed again if the run fails before anything was stored in it
    (an unreachable or mistyped URL leaves nothing behind); a file that was there before is
    never removed.

    Raises:
        AuditFailed: an invalid URL, network failure, foreign or corrupt state, worker
            failure.
        KeyboardInterrupt: Ctrl-C outside ``--follow`` (:class:`StopRequested` between
            batches; the state keeps every committed batch).
    """
    spec = SourceSpec.for_url(url)  # a URL that cannot be one fails before any file exists
    with state_lock(state_path):
        if fresh:
            remove_state(state_path, spec)  # refuses (and keeps) anything but spec's own state
        # Only a file this run makes may be removed again: never one that was there before.
        created = not state_path.exists()
        try:
            with StopRequest() as stop:
                run = Run(spec, state_path, options)
                return run.carry_out(lambda: _sync(run, options, stop))
        except AuditFailed:
            if created and holds_nothing(state_path):
                delete_state_files(state_path)
            raise


def _sync(run: Run, options: AuditOptions, stop: StopRequest) -> AuditOutcome:
    started = time.monotonic()
    spec = run.spec
    assert run.client is not None
    client = run.client
    if not run.tree.tree_size and not stored_checkpoints(run.conn):
        # Nothing kept yet: make sure this is a directory before its answers can be
        # findings (a mistyped URL is the user's mistake, reported with exit 1).
        client.probe_export()
    if run.tree.tree_size and options.recheck != "full" and not run.last_entry_served(client):
        run.outcome.notes.append(
            "the last entry verified before is no longer served as it was read: the "
            "whole export was read again"
        )
        run.recheck(_http_lines(client, 0, stop), full=True)
    elif run.tree.tree_size and options.recheck == "full":
        run.recheck(_http_lines(client, 0, stop), full=True)
    elif run.tree.tree_size and options.recheck == "tail":
        first = max(0, run.tree.tree_size - 1000)
        after = state.seq_of_leaf(run.conn, first) - 1
        tail = ((first + i, line) for i, line in _http_lines(client, after, stop))
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
    parsed = None if note is None else parsed_checkpoint(note)
    total = None if parsed is None else parsed.tree_size
    replayer = run.replayer(canonical, total, "sync")

    def catch_up() -> None:
        assert replayer is not None
        known = state.get_meta(run.conn, _STALL_KEY)
        source = HttpExportSource(client, replayer.last_seq, known_stall=known)
        for batch in source.batches():
            stop.check()
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

    def tick() -> int | None:
        """Log checks on the newest checkpoint; its size (None: none served)."""
        latest = client.checkpoint()
        if latest is None:
            return None
        run.observe_checkpoint(latest)
        checked = parsed_checkpoint(latest)
        if checked is None:
            return None
        if run.progress is not None:
            run.progress.set_total(checked.tree_size)  # the log grew: the bar's end moves
        return checked.tree_size

    catch_up()
    if has_tlog:
        tick()
    interrupted = False
    if options.follow:
        run.tracker.dedup_redelivery = True
        # A redelivery may reach back past this run's lines (a stream resumed from an
        # older cursor): compare it with the committed leaves of its seq.
        run.tracker.committed = lambda seq, line: check_line(run.conn, seq, line)
        try:
            stopped = follow_stream(
                spec.location,
                replayer,
                catch_up=catch_up,
                tick=tick if has_tlog else lambda: None,
                seconds=options.follow_seconds,
                stop=stop,
                # Leaves are the bytes /export serves; a directory with /tlog/ sends them on
                # the stream as well (ours does), one without may not (plc.directory).
                lines=None if has_tlog else ExportLines(client),
                silence_s=None if has_tlog else options.stream_silence_s,
            )
            if stopped is not None:
                run.outcome.notes.append(stopped)
        except StopRequested:  # between batches: the replay is consistent, finish it
            interrupted = True
            run.outcome.notes.append("stopped following (interrupted)")
        replayer.drain()
        if has_tlog:
            _unless_unreachable(run, interrupted, "the last log check", tick)
    run.finish(replayer, started)
    _unless_unreachable(
        run,
        interrupted,
        "spot checks",
        # A Ctrl-C that stopped following asked for these; any other stops them too.
        lambda: _spot_checks(
            run, replayer.counters.suspects, replayer.last_seq, None if interrupted else stop
        ),
    )
    for cp in stored_checkpoints(run.conn):
        if cp.status == "pending":
            run.outcome.notes.append(
                f"checkpoint of size {cp.tree_size} is ahead of the {run.tree.tree_size} "
                "entries read: it is checked when they arrive (next run)"
            )
    run.outcome.elapsed_s = time.monotonic() - started
    return run.outcome


def _unless_unreachable(run: Run, interrupted: bool, what: str, step: Callable[[], object]) -> None:
    """Run ``step``; after Ctrl-C stopped following, a directory that does not answer it
    (the reason one stops a monitor, often) is noted instead of failing the run, so the
    summary of what was read is still shown.

    Raises:
        AuditFailed: ``step`` failed, and following was not interrupted (or not only for
            want of an answer).
    """
    if not interrupted:
        step()
        return
    try:
        step()
    except DirectoryUnreachable as exc:
        run.outcome.notes.append(f"{what} skipped after the interrupt: {exc}")


_STALL_KEY = "export_stall"
"""``meta`` key of the last ``/export`` page that did not advance the cursor (cursor and
hash), so that the same page is not replayed into the tree on every later run."""


def _spot_checks(
    run: Run, suspects: set[str], synced_seq: int, stop: StopRequest | None = None
) -> None:
    """Spot-check sampled and suspect DIDs; findings stored at the end, or at a Ctrl-C
    (``stop``), which then raises :class:`StopRequested` between two DIDs."""
    if run.client is None or run.options.spot_checks < 0:
        return
    rng = random.Random(run.options.seed)
    dids = sample_dids(run.conn, run.options.spot_checks, rng)
    dids += sorted(suspects - set(dids))[:MAX_SUSPECT_CHECKS]
    tail = ExportTail(run.client, synced_seq)
    checker = SpotChecker(run.conn, run.client, run.fetcher, tail)
    findings: list[Finding] = []
    for did in dids:
        if stop is not None and stop.requested:
            run.write(findings)
            stop.check()
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
