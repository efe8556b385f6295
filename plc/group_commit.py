"""Group commit: ops waiting at the same moment are committed in one transaction, and each
submitter is answered once the commit that holds its op is durable.

Two paths share one commit step and one answer:

- SQLite (``inline_io``): the batch is written on the event loop and only its COMMIT runs on a
  worker thread (:meth:`GroupCommit._flush_pending`); a batch that finds the write lock taken by
  another process goes to the committer thread, which may wait for it.
- Otherwise (PostgreSQL): one committer thread per process takes whatever is queued
  (:meth:`GroupCommit._run`).

Listeners see every commit before its submitters are answered; a submitter waits at most
``timeout_s`` (then :class:`~plc.errors.Unavailable`, the commit going on).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from plc.errors import PlcError, Unavailable, echo
from plc.store.records import CommitOutcome, PendingCommit
from plc.store.sql import Clock, SqlStore

log = logging.getLogger("plc.service")  # the write path's log, as before it moved here

COMMIT_TIMED_OUT = (
    "Database did not finish the commit in time: the operation may yet be stored; "
    "re-submitting the same operation is safe"
)

GATHER_TURNS = 8
"""Most event-loop turns a SQLite group commit waits for ops still being validated to join
its batch; it stops at the first turn that adds none. Measured (2 cores, 8 writers, the
reference's load generator): 10-15 % more updates/s than one turn, from fewer and larger
commits; 4 and 16 turns did worse than 8."""

Listener = Callable[[list[CommitOutcome], float], None]


class _Job:
    __slots__ = ("pending", "loop", "future")

    def __init__(
        self, pending: PendingCommit, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]
    ) -> None:
        self.pending = pending
        self.loop = loop
        self.future = future


class GroupCommit:
    """The write path of one process.

    Args:
        store: the storage.
        clock: the time source the commit stamps ops with.
        batch_max: most ops in one commit.
        inline_io: write SQLite batches on the event loop (see the module's docstring).
        timeout_s: how long a submitter waits for its commit (None: no bound).
        on_timeout: told ``"a commit"`` when a submitter's wait ran out.
    """

    def __init__(
        self,
        store: SqlStore,
        clock: Clock,
        batch_max: int,
        *,
        inline_io: bool,
        timeout_s: float | None,
        on_timeout: Callable[[str], None],
    ) -> None:
        self.store = store
        self.clock = clock
        self.batch_max = batch_max
        self.inline_io = inline_io
        self.timeout_s = timeout_s
        self._on_timeout = on_timeout
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pending: list[_Job] = []
        self._flusher: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._under_way: dict[str, float] = {}  # "loop" / "thread" -> monotonic start
        self.listeners: list[Listener] = []
        """Called after each commit with its outcomes (in batch order) and its wall time in
        seconds, on the committing thread, before the batch's submitters are answered (so an
        answered client finds its commit counted): keep listeners quick and non-blocking.
        Their exceptions are logged and ignored."""

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

    async def commit(self, pending: PendingCommit) -> CommitOutcome:
        """Commit ``pending`` with whatever else is waiting; its outcome once durable.

        Raises:
            Unavailable: the commit did not finish within :attr:`timeout_s` (it goes on: the
                op may yet be stored, and a re-submission then finds it), or the database
                failed.
            PlcError: as the store refused the batch.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CommitOutcome] = loop.create_future()
        job = _Job(pending, loop, future)
        if self.inline_io:
            self._pending.append(job)
            if self._flusher is None or self._flusher.done():
                self._flusher = loop.create_task(self._flush_pending())
        else:
            self._queue.put(job)
        if self.timeout_s is None:
            return await future
        # A timer, not wait_for and shield: those cost about 15 µs per POST, 3 % of one.
        # The commit's own answer, when it comes, finds the future done and is dropped.
        timer = loop.call_later(self.timeout_s, self._expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def commit_now(self, pending: PendingCommit) -> CommitOutcome:
        """Commit ``pending`` alone, on the calling thread (imports), listeners told."""
        started = time.perf_counter()
        outcome = self.store.commit_batch([pending])[0]
        self._notify([outcome], time.perf_counter() - started)
        return outcome

    def stalled_s(self) -> float | None:
        """Seconds the commit under way has taken, when that is longer than
        :attr:`timeout_s` (a database that stopped answering); None otherwise."""
        starts, limit = list(self._under_way.values()), self.timeout_s
        if not starts or limit is None:
            return None
        taken = time.monotonic() - min(starts)
        return taken if taken > limit else None

    def _expire(self, future: asyncio.Future[CommitOutcome]) -> None:
        if not future.done():
            self._on_timeout("a commit")
            future.set_exception(Unavailable(COMMIT_TIMED_OUT))

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
            except Exception as exc:  # noqa: BLE001 - any failure must reach the waiters
                failure = _failure(exc)
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
        except Exception as exc:  # noqa: BLE001 - any failure must reach the waiters
            _deliver(jobs, [_failure(exc)] * len(jobs))
            return
        finally:
            self._under_way.pop("thread", None)
        # Listeners first: a client that has its answer must find its commit counted
        # (GET /metrics) and the stream connections woken; _deliver answers it on its loop,
        # which may run before this thread's next line.
        self._notify(outcomes, time.perf_counter() - started)
        _deliver(jobs, outcomes)

    def _notify(self, outcomes: list[CommitOutcome], seconds: float) -> None:
        for listener in self.listeners:
            try:
                listener(outcomes, seconds)
            except Exception:  # noqa: BLE001 - a listener must not break the write path
                log.exception("commit listener failed")


def _failure(exc: Exception) -> PlcError:
    """What a batch's submitters are answered when its commit raised ``exc``: the store's
    own refusal as it is; any other failure (the driver's) logged, and 503."""
    if isinstance(exc, PlcError):
        return exc
    log.error("commit failed", exc_info=exc)
    return Unavailable(f"Commit failed: {echo(type(exc).__name__)}")


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
