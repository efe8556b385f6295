"""Per-DID validation of batches of export lines, in worker processes.

Verification is the bottleneck (design.md "measured anchors"), so DIDs are sharded over
worker processes by ``crc32(did) % workers``: every op of a DID goes to the same worker, in
export order, so per-DID order is preserved. Each worker keeps no state in memory between
batches: it loads the histories of the batch's DIDs from the state file, decides every op
(:mod:`auditor.chain`), and writes the changed rows and its findings in one short
transaction. ``workers=0`` runs the same code in the calling process.

For each line: strict parse (``malformed-entry``), canonical form (``non-canonical-line``,
when asked), claimed vs computed CID (``wrong-cid``), repeated ``(did, cid)``
(``duplicate-op``), announced removals (``announced-removal``), then the did:plc rules; the
lines a rule finding carries, and in which order, are :mod:`auditor.rulelines`'s.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
import zlib
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from typing import Any

import orjson

from auditor import state
from auditor.chain import DidHistory, OpState, judge, record
from auditor.errors import AuditFailed
from auditor.findings import INFO, Finding, line_text
from auditor.lines import MalformedLine, canonical_line, parse_entry
from auditor.options import HttpLimits
from auditor.rulelines import RuleLines
from auditor.sources import LineFetcher, SourceSpec
from auditor.treestore import check_line
from plc.codec import cid_for_cbor, encode_dag_cbor
from plc.errors import PlcError

PIPELINE_DEPTH = 4
"""Batches the coordinator keeps in flight beyond the one being committed
(:mod:`auditor.replay`); a worker keeps the lines of that many recent batches, whose leaves
may not be committed yet, for evidence."""

Item = tuple[int, str, bytes, int | None]
"""One line for a worker: ``(seq, did, line, position)``."""


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker needs (picklable).

    Attributes:
        state_path: the state file.
        source: where lines can be fetched again for evidence.
        removed_cids: the announced-removal allow-list.
        canonical_lines: report lines that are not in canonical form.
        http_limits: the limits of a line fetched again from a directory.
    """

    state_path: str
    source: SourceSpec
    removed_cids: frozenset[str] = frozenset()
    canonical_lines: bool = False
    http_limits: HttpLimits = HttpLimits()


@dataclass
class BatchResult:
    """What a worker reports for one batch: ops handled, findings stored, DIDs with refused
    ops (candidates for a targeted spot check)."""

    batch_id: int
    ops: int = 0
    findings: int = 0
    suspects: list[str] = field(default_factory=list)


class Validator:
    """Validates batches for one shard and writes the results to the state file."""

    def __init__(self, config: WorkerConfig) -> None:
        self._config = config
        self._conn = state.connect(config.state_path)
        self._excused = state.excused_dids(self._conn)
        self._fetcher = LineFetcher(config.source, config.http_limits)
        # Lines of the batches before this one that the coordinator may not have committed
        # yet (their leaves are not in the state): PIPELINE_DEPTH of them at most.
        self._recent: collections.deque[dict[tuple[int, str], bytes]] = collections.deque(
            maxlen=PIPELINE_DEPTH + 2
        )
        self._rules = RuleLines(self._conn)  # the lines of per-DID rule findings

    def close(self) -> None:
        """Close the state connection and the line fetcher."""
        self._fetcher.close()
        self._conn.close()

    def run_batch(self, batch_id: int, items: list[Item]) -> BatchResult:
        """Decide every line of ``items`` (in order) and commit the results."""
        result = BatchResult(batch_id, ops=len(items))
        if not items:
            return result
        histories = state.load_histories(self._conn, (did for _, did, _, _ in items))
        self._rules.new_batch()
        lines: dict[tuple[int, str], bytes] = {}
        self._recent.appendleft(lines)
        findings: list[Finding] = []
        new_excused: list[tuple[str, int, str]] = []
        for seq, did, line, position in items:
            for found in self._one(histories, lines, new_excused, seq, did, line, position):
                findings.append(found)
                if found.severity != INFO and found.did is not None:
                    result.suspects.append(found.did)
        dirty = [(did, s) for did, h in histories.items() for s in h.ops.values() if s.dirty]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            state.save_states(self._conn, dirty)
            for did, from_seq, cid in new_excused:
                state.add_excused(self._conn, did, from_seq, cid)
            result.findings = state.store_findings(self._conn, findings)
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:  # not if it was interrupted right after COMMIT
                self._conn.execute("ROLLBACK")
            raise
        return result

    def _one(
        self,
        histories: dict[str, DidHistory],
        lines: dict[tuple[int, str], bytes],
        new_excused: list[tuple[str, int, str]],
        seq: int,
        did: str,
        line: bytes,
        position: int | None,
    ) -> list[Finding]:
        try:
            entry = parse_entry(line)
        except MalformedLine as exc:
            removal = self._listed_unparsed(seq, did, line)
            if removal is not None:
                # Announced removals include ops the strict schema refuses (an extra field):
                # the list excuses them whatever they hold (design: removals.py).
                if did not in self._excused:
                    self._excused[did] = seq
                    new_excused.append((did, seq, removal))
                return [
                    Finding(
                        "announced-removal",
                        f"op is on the announced-removal list (it does not parse strictly: {exc})",
                        {**line_text(line), "listed_cid": removal},
                        seq=seq,
                        did=did,
                        cid=removal,
                        severity=INFO,
                    )
                ]
            return [
                Finding(
                    "malformed-entry", str(exc), {**line_text(line), "error": str(exc)}, seq=seq
                )
            ]
        if (entry.seq, entry.did) != (seq, did):
            error = "the line's seq or did reads differently to two JSON parsers"
            return [Finding("malformed-entry", error, {**line_text(line), "error": error}, seq=seq)]
        op = entry.operation
        history = histories[did]
        earlier = history.ops.get(op.cid)
        if earlier is not None:
            if earlier.seq == seq:
                # Applied by an interrupted run: replaying it is harmless, but a later op of
                # this DID may need its line as evidence before this batch's leaves commit.
                lines[(seq, op.cid)] = line
                return []
            first = self._line_of(earlier, lines)
            evidence = {"lines": [_text(first), _text(line)]}
            return [
                Finding(
                    "duplicate-op",
                    f"op {op.cid} already appeared as seq {earlier.seq}",
                    evidence,
                    seq=seq,
                    did=did,
                    cid=op.cid,
                )
            ]
        side: list[Finding] = []
        if self._config.canonical_lines:
            canonical = canonical_line(entry)
            if canonical != line:
                side.append(
                    Finding(
                        "non-canonical-line",
                        "line is not the canonical sequenced_op encoding",
                        {**line_text(line), "canonical": canonical.decode("utf-8")},
                        seq=seq,
                        did=did,
                        cid=op.cid,
                    )
                )
        if op.cid != entry.claimed_cid:
            side.append(
                Finding(
                    "wrong-cid",
                    f"line claims cid {entry.claimed_cid}, the op's CID is {op.cid}",
                    {**line_text(line), "claimed": entry.claimed_cid, "computed": op.cid},
                    seq=seq,
                    did=did,
                    cid=op.cid,
                )
            )
        lines[(seq, op.cid)] = line
        listed = op.cid in self._config.removed_cids
        if did in self._excused or listed:
            if did not in self._excused:
                self._excused[did] = seq
                new_excused.append((did, seq, op.cid))
            record(history, op, seq, entry.created_ms, None, position)
            return side + [
                Finding(
                    "announced-removal",
                    "op is on the announced-removal list"
                    if listed
                    else "a listed op of this DID came earlier",
                    {**line_text(line), "listed_cid": op.cid if listed else None},
                    seq=seq,
                    did=did,
                    cid=op.cid,
                    severity=INFO,
                )
            ]
        verdict = judge(history, did, op, entry.created_ms)
        current = record(history, op, seq, entry.created_ms, verdict, position)

        def line_of(s: OpState) -> bytes | None:
            return self._line_of(s, lines)

        self._rules.note(history, current, op, line_of)
        if verdict.accepted:
            return side
        assert verdict.cls is not None
        return side + [
            Finding(
                verdict.cls,
                verdict.message,
                self._rules.evidence(history, current, line_of),
                seq=seq,
                did=did,
                cid=op.cid,
            )
        ]

    def _listed_unparsed(self, seq: int, did: str, line: bytes) -> str | None:
        """The CID of the op of a line that does not parse strictly, when that CID is on the
        announced-removal list and the line's ``seq`` and ``did`` are the ones it was routed
        by; else None. The CID is computed from the op's DAG-CBOR (the line's own ``cid``
        could name a listed op it does not hold)."""
        if not self._config.removed_cids:
            return None
        try:
            value = orjson.loads(line)
            if not isinstance(value, dict) or (value.get("seq"), value.get("did")) != (seq, did):
                return None
            cid = cid_for_cbor(encode_dag_cbor(value["operation"]))
        except (orjson.JSONDecodeError, PlcError, KeyError, TypeError, ValueError):
            return None
        return cid if cid in self._config.removed_cids else None

    def _line_of(self, op: OpState, lines: dict[tuple[int, str], bytes]) -> bytes | None:
        """The line of a known op: from this batch, else fetched again from the source (and
        checked to be that op's line)."""
        line = lines.get((op.seq, op.cid))
        if line is None:
            line = next((b[op.seq, op.cid] for b in self._recent if (op.seq, op.cid) in b), None)
        if line is not None:
            return line
        line = self._fetcher.line(op.seq, op.position)
        if line is None:
            return None
        return line if check_line(self._conn, op.seq, line) else None


def _text(line: bytes | None) -> str | None:
    return None if line is None else line.decode("utf-8", "replace")


def shard_of(did: str, workers: int) -> int:
    """The worker index a DID is validated by."""
    return zlib.crc32(did.encode("utf-8")) % workers


PARENT_POLL_S = 1.0
"""How often a worker's watchdog looks for its coordinator when nothing woke it sooner."""


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker at once when the coordinator is gone (killed with SIGKILL, say).

    Runs in a daemon thread, so it works while the main thread is blocked anywhere (reading
    half a batch message from a pipe whose writer died, a SQLite lock): it waits on the
    parent's sentinel (a pipe multiprocessing keeps open in the parent, readable at its
    death) and also polls ``os.getppid()``. An uncommitted batch is rolled back by SQLite
    and replayed on resume.
    """
    parent = multiprocessing.parent_process()
    while True:
        if parent is not None:
            parent.join(timeout=PARENT_POLL_S)
            gone = not parent.is_alive()
        else:
            time.sleep(PARENT_POLL_S)
            gone = False
        if gone or os.getppid() != parent_pid:
            os._exit(1)


def _worker_main(
    config: WorkerConfig, inbox: Queue[Any], outbox: Queue[Any], parent_pid: int
) -> None:
    # Ctrl-C reaches the whole process group; the coordinator alone decides (it stops us).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    validator = Validator(config)
    try:
        while True:
            message = inbox.get()
            if message is None:
                return
            batch_id, items = message
            try:
                outbox.put(("ok", validator.run_batch(batch_id, items)))
            except Exception:  # reported to the coordinator, which fails the audit
                outbox.put(("error", traceback.format_exc()))
                return
    finally:
        validator.close()


class WorkerPool:
    """Shards batches over ``workers`` processes (``0``: in this process) and reports which
    batches every shard has committed.

    Batches are numbered by the caller in submission order; :meth:`wait` returns the merged
    result of the oldest outstanding batch once every shard has committed it.
    """

    def __init__(self, config: WorkerConfig, workers: int) -> None:
        self._n = workers
        self._pending: dict[int, tuple[int, BatchResult]] = {}
        self._order: list[int] = []
        self._local = Validator(config) if workers == 0 else None
        self._done: dict[int, BatchResult] = {}
        ctx = multiprocessing.get_context("spawn")
        self._outbox: Queue[Any] = ctx.Queue()
        self._inboxes: list[Queue[Any]] = []
        self._procs: list[Any] = []
        for _ in range(workers):
            inbox: Queue[Any] = ctx.Queue()
            proc = ctx.Process(
                target=_worker_main, args=(config, inbox, self._outbox, os.getpid()), daemon=True
            )
            proc.start()
            self._inboxes.append(inbox)
            self._procs.append(proc)

    @property
    def outstanding(self) -> int:
        """Batches submitted but not yet returned by :meth:`wait`."""
        return len(self._order)

    def submit(self, batch_id: int, items: list[Item]) -> None:
        """Hand a batch (in export order) to the shards."""
        self._order.append(batch_id)
        if self._local is not None:
            self._done[batch_id] = self._local.run_batch(batch_id, items)
            return
        shards: list[list[Item]] = [[] for _ in range(self._n)]
        for item in items:
            shards[shard_of(item[1], self._n)].append(item)
        self._pending[batch_id] = (0, BatchResult(batch_id))
        for inbox, shard in zip(self._inboxes, shards, strict=True):
            inbox.put((batch_id, shard))

    def wait(self) -> BatchResult:
        """Block until the oldest outstanding batch is committed by every shard.

        Raises:
            AuditFailed: a worker failed or died.
        """
        batch_id = self._order.pop(0)
        if self._local is not None:
            return self._done.pop(batch_id)
        while self._pending[batch_id][0] < self._n:
            try:
                kind, payload = self._outbox.get(timeout=5.0)
            except queue.Empty as exc:  # check the workers are alive
                if any(not p.is_alive() for p in self._procs):
                    raise AuditFailed("a validation worker died") from exc
                continue
            if kind == "error":
                raise AuditFailed(f"a validation worker failed:\n{payload}")
            count, merged = self._pending[payload.batch_id]
            merged.ops += payload.ops
            merged.findings += payload.findings
            merged.suspects.extend(payload.suspects)
            self._pending[payload.batch_id] = (count + 1, merged)
        return self._pending.pop(batch_id)[1]

    def close(self) -> None:
        """Stop the workers (after their queued batches) and release the state."""
        if self._local is not None:
            self._local.close()
            self._local = None
            return
        for inbox in self._inboxes:
            inbox.put(None)
        self._join(30.0)

    def terminate(self) -> None:
        """Stop the workers now (after a failure or Ctrl-C); uncommitted batches are
        replayed on resume. Never waits for queued batches to be read."""
        if self._local is not None:
            self._local.close()
            self._local = None
            return
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        self._join(5.0)

    def _join(self, timeout_s: float) -> None:
        """Wait for the workers (killing those still alive after ``timeout_s``), then drop
        the queues. Once no worker is left, nothing can read what is still queued: the
        queues' feeder threads are not waited for (they would block forever on a full pipe,
        whose reading end this process holds too)."""
        for proc in self._procs:
            proc.join(timeout=timeout_s)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=timeout_s)
        self._procs = []
        for channel in [*self._inboxes, self._outbox]:
            channel.cancel_join_thread()
            channel.close()
        self._inboxes = []
