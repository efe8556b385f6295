"""The directory service: load history → rules → policy → commit, and the read models.

Knows nothing about HTTP. Writes go through one committer thread per process that groups the
ops waiting at that moment into one transaction (group commit); each submitter is answered
after the commit that holds its op is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import orjson

from plc.codec import has_bad_unicode
from plc.document import operation_state_bodies
from plc.errors import (
    DATABASE_UNAVAILABLE,
    HeadMismatch,
    InvalidInput,
    LogEntryTooLarge,
    MalformedDid,
    MalformedOperation,
    MisorderedOperation,
    PlcError,
    Unavailable,
    echo,
)
from plc.exportline import MAX_LINE_BYTES, longest_line, operation_json
from plc.logging_setup import RepeatLimit
from plc.metrics import DirectoryMetrics
from plc.operation import Operation, parse_operation, trusted_operation
from plc.policy import (
    PolicySettings,
    validate_admission,
    validate_rate_limit,
    validate_size,
    validate_unparsed_size,
)
from plc.reads import DirectoryReads
from plc.rules import LogEntry, late_recovery, validate_next_op
from plc.store.history import NEWEST_ROWS, audit_rows_since, newest_audit_rows
from plc.store.records import CommitOutcome, CommitStatus, PendingCommit, StoredOp
from plc.store.sql import Clock, SqlStore
from plc.timestamps import ONE_MS, from_ms, to_ms, truncate_ms
from plc.validation_process import ValidationProcess, ValidatorUnavailable

log = logging.getLogger("plc.service")

COMMIT_TIMED_OUT = (
    "Database did not finish the commit in time: the operation may yet be stored; "
    "re-submitting the same operation is safe"
)

HISTORY_WINDOW_MS = 8 * 24 * 3600 * 1000
"""How far back the history read to validate an op reaches (:meth:`Directory.prepare`):
longer than the recovery window and the longest rate-limit window (a week)."""

T = TypeVar("T")

GATHER_TURNS = 8
"""Most event-loop turns a SQLite group commit waits for ops still being validated to join
its batch; it stops at the first turn that adds none. Measured (2 cores, 8 writers, the
reference's load generator): 10-15 % more updates/s than one turn, from fewer and larger
commits; 4 and 16 turns did worse than 8."""


def decode_json_body(body: bytes) -> Any:
    """The decoded request body. A leading UTF-8 byte order mark is skipped, as the
    reference's body parser does (iconv-lite strips it). Raises InvalidInput (400) on
    malformed JSON."""
    if body[:3] == b"\xef\xbb\xbf":
        body = body[3:]
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON body: {str(exc)[:200]}") from exc


def system_clock() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


class SubmitResult(NamedTuple):
    """Outcome of an accepted submission: its ``seq`` (None when it was already stored)."""

    cid: str
    seq: int | None
    duplicate: bool


class _Job:
    __slots__ = ("pending", "loop", "future")

    def __init__(
        self, pending: PendingCommit, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]
    ) -> None:
        self.pending = pending
        self.loop = loop
        self.future = future


class Directory(DirectoryReads):
    """The did:plc directory over a :class:`SqlStore`.

    Args:
        store: the storage.
        policy: admission limits for new ops.
        clock: returns the current aware UTC time (tests inject their own).
        batch_max: most ops grouped into one commit.
        inline_io: run reads and validation on the event loop instead of a worker thread.
            Right for SQLite, where a read takes ~20 µs and a thread hop costs more than the
            work; wrong for a database across a network.
        db_timeout_s: seconds a store call on a worker thread (:meth:`run`), and a
            submitter's wait for its commit, may take before :class:`Unavailable` is raised
            (a commit goes on: the op may yet be stored); None: no bound.
    """

    def __init__(
        self,
        store: SqlStore,
        policy: PolicySettings,
        clock: Clock = system_clock,
        batch_max: int = 256,
        inline_io: bool = False,
        db_timeout_s: float | None = None,
    ) -> None:
        self.store = store
        self.inline_io = inline_io
        self.db_timeout_s = db_timeout_s
        self._under_way: dict[str, float] = {}  # "loop" / "thread" -> monotonic start
        self._said = RepeatLimit()
        self.policy = policy
        self.clock = clock
        self.batch_max = batch_max
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pending: list[_Job] = []
        self._flusher: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self.commit_listeners: list[Callable[[list[CommitOutcome], float], None]] = []
        """Called after each commit with its outcomes (in batch order) and its wall time in
        seconds, on the committing thread, before the batch's submitters are answered (so an
        answered client finds its commit counted): keep listeners quick and non-blocking.
        Their exceptions are logged and ignored."""
        self.validator: ValidationProcess | None = None
        """The child process that validates POST bodies (:meth:`submit_body`); None: here."""
        self.metrics: DirectoryMetrics | None = None
        """Where refusals are counted (``GET /metrics``; its commits come as a listener);
        None: nowhere."""

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the committer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="plc-committer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Finish queued commits and stop the committer thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    # ---- writes ------------------------------------------------------------------------

    def prepare(
        self,
        did: str,
        body: Any,
        *,
        created_at: datetime | None = None,
        imported: bool = False,
        json_text: bytes | None = None,
        history: Sequence[LogEntry] | None = None,
    ) -> PendingCommit | SubmitResult:
        """Validate a submitted op against the DID's stored history (no write).

        Args:
            did: the DID from the request path (compared byte for byte).
            body: the decoded JSON body.
            created_at: import only: the op's original timestamp (else the clock's).
            imported: import of history (a mirror or a restore): admission policy is not
                applied and legacy ``create`` genesis ops are accepted.
            json_text: the request body ``body`` was decoded from with ``orjson.loads``
                (``parse_operation``'s ``json_text``: the U+0000 check is a byte search).
            history: the DID's stored ops as audit-log entries, when the caller has them
                (an import reads a batch's histories in one query and keeps a DID's between
                its ops); default: read here.

        Returns the :class:`PendingCommit` to commit, or a :class:`SubmitResult` when the very
        same op is already the DID's (non-nullified) op: re-submission is idempotent. An
        import finds a nullified op already stored too (a re-run of an import).

        Raises:
            PlcError: the op is malformed, invalid under the rules, or refused by policy.
        """
        if has_bad_unicode(did):
            raise MalformedDid("Improperly formatted did: NUL or lone surrogate in the path")
        try:
            op = parse_operation(body, json_text=json_text)
        except MalformedOperation:
            if not imported:
                validate_unparsed_size(body, self.policy)
            raise
        line_bytes = longest_line(did, op.cid, op.canonical_json())
        if line_bytes > MAX_LINE_BYTES:
            if not imported:  # the reference's refusal when its own limit is broken too
                validate_size(op, self.policy)
            raise LogEntryTooLarge(
                f"Operation too large for the transparency log: its export line would take up "
                f"to {line_bytes} bytes, at most {MAX_LINE_BYTES} (C2SP tlog-tiles entries)"
            )
        if history is None:
            history = self._deciding_history(did, op)
        for entry in history:
            if entry.cid == op.cid:
                if entry.nullified and not imported:
                    raise MisorderedOperation(
                        f"Operations not correctly ordered: {op.cid} was nullified"
                    )
                # Before admission: an op stored under older limits (or imported) is
                # still the DID's, and re-submitting it is answered as the first time.
                return SubmitResult(op.cid, None, duplicate=True)
        if not imported:
            validate_admission(op, self.policy)
        active = [e for e in history if not e.nullified]
        head = active[-1] if active else None
        if created_at is None:
            created_at = truncate_ms(self.clock())
            if head is not None and created_at <= head.created_at:
                # No later moment past the last a datetime holds (an imported stamp): the
                # clock's then, which the rules refuse as not later than the head.
                with contextlib.suppress(OverflowError):
                    created_at = head.created_at + ONE_MS
        prepared = validate_next_op(history, did, op, created_at)
        if not prepared.nullified and not imported:
            validate_rate_limit([e.created_at for e in active], created_at, self.policy)
        bodies = operation_state_bodies(did, op)
        data, document = bodies if bodies is not None else (None, None)
        return PendingCommit(
            prepared, head.cid if head else None, data, document, restamp=not imported
        )

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking store work: inline (SQLite) or in a worker thread (PostgreSQL),
        there for at most :attr:`db_timeout_s`.

        Raises:
            Unavailable: the worker thread did not finish in time (a connection that stopped
                answering; the thread is left to it).
        """
        if self.inline_io:
            return fn(*args, **kwargs)
        if self.db_timeout_s is None:
            return await asyncio.to_thread(fn, *args, **kwargs)
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), self.db_timeout_s)
        except TimeoutError:
            self._say_timeout("a database call")
            raise Unavailable(DATABASE_UNAVAILABLE) from None

    def _say_timeout(self, what: str) -> None:
        if self._said.due(what):
            log.warning(
                "%s did not finish within %g s: the database does not answer",
                what,
                self.db_timeout_s,
            )

    async def submit_body(self, did: str, body: bytes) -> SubmitResult:
        """Validate and durably append the op in a request body (JSON bytes); answers after
        its commit. Validated by the validation process when one is ready, else here. Every
        refusal is counted in :attr:`metrics`.

        Raises:
            PlcError: as :meth:`prepare` (InvalidInput, 400, when ``body`` is not JSON);
                HeadMismatch (409) when the DID's head moved between validation and commit;
                Unavailable (503) when the database is locked.
        """
        try:
            validator = self.validator
            if validator is not None and validator.available:
                try:
                    prepared = await validator.prepare(did, body, self.clock())
                except ValidatorUnavailable:
                    pass
                else:
                    return await self._append(prepared)
            return await self._append(await self.run(self.prepare_body, did, body))
        except PlcError as exc:
            if self.metrics is not None:
                self.metrics.refused(exc)
            raise

    def _deciding_history(self, did: str, op: Operation) -> list[LogEntry]:
        """The part of the DID's history that decides ``op`` as the whole would: the ops of
        the last :data:`HISTORY_WINDOW_MS` (the 72-hour recovery window and the rate limits'
        week, with a day to spare) from the newest op before them that is not nullified;
        the whole history when ``op`` repeats an older op or names an older ``prev`` (an
        old op submitted again, a recovery too late, a fork from a nullified op)."""
        rows = newest_audit_rows(self.store, did)
        if len(rows) == NEWEST_ROWS:  # perhaps not all: from the op before the window on
            since = to_ms(self.clock()) - HISTORY_WINDOW_MS
            rows = audit_rows_since(self.store, did, since, rows)
        history = history_of(did, rows)
        if not history or history[0].operation.prev is None:  # the genesis is in it: all
            return history
        if any(entry.cid == op.cid for entry in history):
            return history
        # An op stored with this prev was stored after it, so it would be in the window too:
        # a prev in the window decides alone.
        if op.prev in {entry.cid for entry in history if not entry.nullified}:
            return history
        return history_of(did, self.store.audit_rows(did))

    def prepare_body(self, did: str, body: bytes) -> PendingCommit | SubmitResult:
        """:meth:`prepare` for a request body (JSON bytes); what the validation process runs.

        Raises:
            PlcError: as :meth:`prepare`; InvalidInput (400) when ``body`` is not JSON.
        """
        if not body:  # as Express's JSON parser reads it (body-parser: an empty body is {})
            return self.prepare(did, {}, json_text=b"{}")
        return self.prepare(did, decode_json_body(body), json_text=body)

    async def _append(self, prepared: PendingCommit | SubmitResult) -> SubmitResult:
        """Commit a prepared op (group commit) and answer once it is durable."""
        if isinstance(prepared, SubmitResult):
            return prepared
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CommitOutcome] = loop.create_future()
        job = _Job(prepared, loop, future)
        if self.inline_io:
            self._pending.append(job)
            if self._flusher is None or self._flusher.done():
                self._flusher = loop.create_task(self._flush_pending())
        else:
            self._queue.put(job)
        outcome = await self._outcome(future)
        cid = prepared.prepared.operation.cid
        if outcome.status is CommitStatus.CONFLICT:
            raise HeadMismatch(
                "Proposed prev does not match the most recent operation: the DID changed "
                "while this operation was validated; retry"
            )
        if outcome.status is CommitStatus.LATE:
            assert outcome.lapsed is not None
            raise late_recovery(outcome.lapsed)
        if outcome.status is CommitStatus.DUPLICATE:
            return SubmitResult(cid, None, duplicate=True)
        return SubmitResult(cid, outcome.seq, duplicate=False)

    async def _outcome(self, future: asyncio.Future[CommitOutcome]) -> CommitOutcome:
        """The commit's outcome, waited for at most :attr:`db_timeout_s`.

        Raises:
            Unavailable: the commit did not finish in time (it goes on: the op may yet be
                stored, and a re-submission then finds it).
            PlcError: as the commit raised it.
        """
        if self.db_timeout_s is None:
            return await future
        # A timer, not wait_for and shield: those cost about 15 µs per POST, 3 % of one.
        # The commit's own answer, when it comes, finds the future done and is dropped.
        timer = asyncio.get_running_loop().call_later(self.db_timeout_s, self._expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, future: asyncio.Future[CommitOutcome]) -> None:
        if not future.done():
            self._say_timeout("a commit")
            future.set_exception(Unavailable(COMMIT_TIMED_OUT))

    def commit_stalled_s(self) -> float | None:
        """Seconds the commit under way has taken, when that is longer than
        :attr:`db_timeout_s` (a database that stopped answering); None otherwise."""
        starts, limit = list(self._under_way.values()), self.db_timeout_s
        if not starts or limit is None:
            return None
        taken = time.monotonic() - min(starts)
        return taken if taken > limit else None

    def import_op(self, did: str, body: Any, created_at: datetime) -> SubmitResult:
        """Append a historical op with its original timestamp, synchronously (no policy;
        legacy genesis allowed; the rules still apply in full).

        Raises:
            PlcError: the op is malformed or invalid under the rules; HeadMismatch on a race.
        """
        pending = self.prepare(did, body, created_at=created_at, imported=True)
        if isinstance(pending, SubmitResult):
            return pending
        started = time.perf_counter()
        outcome = self.store.commit_batch([pending])[0]
        self._notify([outcome], time.perf_counter() - started)
        if outcome.status is not CommitStatus.COMMITTED:
            raise HeadMismatch("Proposed prev does not match the most recent operation")
        return SubmitResult(pending.prepared.operation.cid, outcome.seq, duplicate=False)

    async def _flush_pending(self) -> None:
        """Group commit for SQLite on the event loop: the batch is written here (CPU work,
        no waiting: the write lock is taken without blocking), and only the COMMIT, which
        fsyncs and releases the GIL, runs on a worker thread. Ops that arrive meanwhile form
        the next batch. Running Python on one thread avoids the GIL contention a committer
        thread costs (measured: about 40 % less CPU per op). When another process holds the
        lock, the batch goes to the committer thread, which may wait."""
        while self._pending:
            await self._gather()
            jobs, self._pending = self._pending[: self.batch_max], self._pending[self.batch_max :]
            started = time.perf_counter()
            self._under_way["loop"] = time.monotonic()
            try:
                written = self.store.write_batch([job.pending for job in jobs], self.clock)
                if written is None:
                    for job in jobs:
                        self._queue.put(job)
                    continue
                outcomes = await asyncio.to_thread(written.commit)
            except PlcError as exc:
                _resolve_all([(job.future, exc) for job in jobs])
                continue
            except Exception as exc:  # noqa: BLE001 - any driver failure must reach the waiters
                log.exception("commit failed")
                failure = Unavailable(f"Commit failed: {echo(type(exc).__name__)}")
                _resolve_all([(job.future, failure) for job in jobs])
                continue
            finally:
                self._under_way.pop("loop", None)
            # Either order answers after the listeners here (the waiters run once this task
            # yields); this one matches the committer thread's.
            self._notify(outcomes, time.perf_counter() - started)
            _resolve_all([(job.future, o) for job, o in zip(jobs, outcomes, strict=True)])

    async def _gather(self) -> None:
        """Let requests already running join the next batch: yield to the event loop while
        each turn adds ops, for at most :data:`GATHER_TURNS` turns or ``batch_max`` ops."""
        for _ in range(GATHER_TURNS):
            before = len(self._pending)
            if before >= self.batch_max:
                return
            await asyncio.sleep(0)
            if len(self._pending) == before:
                return

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            stop = False
            while len(jobs) < self.batch_max:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            self._commit_jobs(jobs)
            if stop:
                return

    def _commit_jobs(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        self._under_way["thread"] = time.monotonic()
        try:
            outcomes = self.store.commit_batch([job.pending for job in jobs], self.clock)
        except PlcError as exc:
            _deliver(jobs, [exc] * len(jobs))
            return
        except Exception as exc:  # noqa: BLE001 - any driver failure must reach the waiters
            log.exception("commit failed")
            failure = Unavailable(f"Commit failed: {echo(type(exc).__name__)}")
            _deliver(jobs, [failure] * len(jobs))
            return
        finally:
            self._under_way.pop("thread", None)
        # Listeners first: a client that has its answer must find its commit counted
        # (GET /metrics) and the stream connections woken; _deliver answers it on its loop,
        # which may run before this thread's next line.
        self._notify(outcomes, time.perf_counter() - started)
        _deliver(jobs, outcomes)

    def _notify(self, outcomes: list[CommitOutcome], seconds: float) -> None:
        for listener in self.commit_listeners:
            try:
                listener(outcomes, seconds)
            except Exception:  # noqa: BLE001 - a listener must not break the write path
                log.exception("commit listener failed")


def history_of(did: str, rows: Sequence[StoredOp]) -> list[LogEntry]:
    """A DID's stored ops (:meth:`SqlStore.audit_rows`) as audit-log entries, in order."""
    return [_entry(did, row) for row in rows]


def _entry(did: str, row: StoredOp) -> LogEntry:
    op_data = orjson.loads(operation_json(row.line))
    return LogEntry(
        did, trusted_operation(op_data, row.cid), from_ms(row.created_at_ms), row.nullified
    )


def _deliver(jobs: list[_Job], results: Sequence[CommitOutcome | PlcError]) -> None:
    """Hand each job its result on its event loop: one wake-up per loop, not one per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
    for job, result in zip(jobs, results, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, result))
    for loop, items in by_loop.items():
        loop.call_soon_threadsafe(_resolve_all, items)


def _resolve_all(items: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in items:
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
