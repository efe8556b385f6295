"""One reader of new log entries per process, fanned out to every live ``/export/stream``
connection (:mod:`plc.api.routes.stream`).

Each connection used to poll the database itself (every poll interval and after every
commit): with a hundred live readers a SQLite server spent its event loop on their queries
and accepted a seventh of the creates it does alone. Here one task reads the ops committed
since the last read (woken by this process's commits, otherwise every poll interval, so ops
committed by other processes on the same PostgreSQL are found too) and hands each line to
every subscriber's queue; the reference server does the same with one sequencer per process.

A connection backfills from the database on its own until its cursor is within the lines the
hub keeps (``recent``), then joins: the lines after its cursor are queued for it and every
later line reaches it through the hub. Joining and fan-out both run on the event loop without
an ``await`` between them, so no line is missed or doubled at the switch. The lines after the
cursor are found in ``recent`` by ``seq``; a joiner is only taken when ``recent`` reaches back
to the line right after its cursor (``seq`` has no gaps: one log-head row hands them out and
commits land in ``seq`` order). A subscriber the hub lets go of (``behind``) sends what it
was given, backfills from its last line and joins again, the same way.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections import deque
from dataclasses import dataclass, field

from plc.errors import Unavailable
from plc.exportline import line_head
from plc.service import Directory

PAGE = 500
"""Lines read from the database at once (hub and backfill)."""


class CommitSignal:
    """Wakes waiters when this process commits (set from the committer thread)."""

    def __init__(self) -> None:
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def register(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.add((asyncio.get_running_loop(), event))
        return event

    def unregister(self, event: asyncio.Event) -> None:
        self._waiters = {w for w in self._waiters if w[1] is not event}

    def notify(self, *_: object) -> None:
        """Wake every waiter: one call per event loop (it runs on the committer thread
        before write answers, so one wake-up of the loop, not one per waiter)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
        for loop, event in list(self._waiters):
            by_loop.setdefault(loop, []).append(event)
        for loop, events in by_loop.items():
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(_set_all, events)


def _set_all(events: list[asyncio.Event]) -> None:
    for event in events:
        event.set()


def seq_of(line: bytes) -> int:
    """The ``seq`` of a stored export line (its head only: the hub reads every committed
    line)."""
    return int(line_head(line)["seq"])


@dataclass(eq=False)
class Subscriber:
    """One live connection: the lines waiting to be sent, and whether it fell behind.

    Attributes:
        limit: most lines waiting; one more and the hub lets go of the connection.
        lines: ``(seq, line)`` to send, in ``seq`` order.
        ready: set when ``lines`` gains a line, or the subscriber falls behind or is dropped.
        behind: the hub let go of it (more than ``limit`` lines were waiting, as when another
            process commits a burst): once it has sent ``lines`` the connection reads on from
            the database and joins again. The reference closes such a connection with
            ``ConsumerTooSlow``, which made clients that read as fast as they could reconnect;
            a client that does not read at all is cut off by the send timeout instead.
        ended: ``Unavailable`` when the hub could not read the database; None while fed.
    """

    limit: int
    lines: deque[tuple[int, bytes]] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    behind: bool = False
    ended: str | None = None
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    """Set with ``ended``: the connection closes at once, whatever it is still sending."""

    def offer(self, seq: int, line: bytes) -> bool:
        """Queue ``line``; False (and ``behind``) when that would overflow ``limit``."""
        if len(self.lines) >= self.limit:
            self.behind = True
            self.ready.set()
            return False
        self.lines.append((seq, line))
        self.ready.set()
        return True

    def end(self, reason: str) -> None:
        """Mark the subscriber dropped for ``reason``."""
        self.ended = reason
        self.ready.set()
        self.gone.set()


class StreamHub:
    """The process's reader of new lines.

    Args:
        directory: where lines are read (``export_after_seq``, ``tree_size``).
        signal: this process's commit signal.
        poll_s: longest wait between two reads, seconds.
        keep: lines kept for joining connections (``recent``).
    """

    def __init__(
        self, directory: Directory, signal: CommitSignal, poll_s: float, keep: int
    ) -> None:
        self._directory = directory
        self._signal = signal
        self._poll_s = poll_s
        self.head: int | None = None
        """The last ``seq`` read (None while the hub is not running)."""
        self.recent: deque[tuple[int, bytes]] = deque(maxlen=keep)
        self._subscribers: set[Subscriber] = set()
        self._waiting = 0
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure: Exception | None = None
        self._stopped = False

    @property
    def subscribers(self) -> int:
        """Live connections fed by the hub."""
        return len(self._subscribers)

    async def join(self, cursor: int, subscriber: Subscriber) -> bool:
        """Feed ``subscriber`` every line with ``seq > cursor``, once the hub has read up to
        ``cursor``; False when ``cursor`` is older than the lines the hub keeps, or more
        lines than the subscriber's limit are past it (backfill further from the database,
        then ask again).

        Raises:
            Exception: what made the hub stop while this waited (the database failed).
        """
        self._waiting += 1
        try:
            self._start()
            while self.head is None or self.head < cursor:
                if self._failure is not None and self._stopped:
                    raise self._failure
                advanced = self._advanced
                await advanced.wait()
                if self._failure is not None:
                    raise self._failure
                self._start()
        finally:
            self._waiting -= 1
        recent = list(self.recent)
        after = bisect.bisect_right(recent, cursor, key=lambda entry: entry[0])
        if self.head > cursor and (not recent or recent[0][0] > cursor + 1):
            return False  # recent starts after the cursor: lines in between are not kept
        if len(recent) - after > subscriber.limit:
            return False
        subscriber.behind = False
        for seq, line in recent[after:]:
            subscriber.offer(seq, line)
        self._subscribers.add(subscriber)
        return True

    def leave(self, subscriber: Subscriber) -> None:
        """Stop feeding ``subscriber``."""
        self._subscribers.discard(subscriber)

    def _start(self) -> None:
        if self._stopped:
            return
        if self._task is None or self._task.done():
            self._failure = None
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop reading for good (app shutdown): live subscribers end with ``Unavailable``,
        waiting joiners get :class:`~plc.errors.Unavailable`, and no reader starts again."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._failure = Unavailable("the directory is shutting down")
        for subscriber in self._subscribers:
            subscriber.end("Unavailable")
        self._subscribers.clear()
        self._wake_joiners()

    async def _run(self) -> None:
        """Read new lines while anyone listens or waits to join; then forget the head, so a
        later start reads it afresh."""
        directory = self._directory
        wake = self._signal.register()
        try:
            self.head = await directory.run(directory.store.tree_size)
            self.recent.clear()
            self._wake_joiners()
            while self._subscribers or self._waiting:
                wake.clear()
                lines = await directory.run(directory.store.export_after_seq, self.head, PAGE)
                for line in lines:
                    seq = seq_of(line)
                    self.recent.append((seq, line))
                    self.head = seq
                    for subscriber in list(self._subscribers):
                        if not subscriber.offer(seq, line):
                            self._subscribers.discard(subscriber)
                            if directory.metrics is not None:
                                directory.metrics.stream_fell_behind.inc()
                if lines:
                    self._wake_joiners()
                if len(lines) < PAGE:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self._poll_s)
                else:
                    # A burst (an import, another process): let the connections send what
                    # they were given before the next page (SQLite reads do not yield).
                    await asyncio.sleep(0)
        except Exception as exc:  # noqa: BLE001 - handed to every waiter; the next join retries
            self._failure = exc
            for subscriber in self._subscribers:
                subscriber.end("Unavailable")
            self._subscribers.clear()
        finally:
            self._signal.unregister(wake)
            self.head = None
            self._wake_joiners()

    def _wake_joiners(self) -> None:
        advanced, self._advanced = self._advanced, asyncio.Event()
        advanced.set()
