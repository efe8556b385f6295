"""SqlStore: the directory's reads and its one write path (a batch of ops in one transaction).

Writers serialise on the ``log_head`` row (``SELECT … FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), so the heads read after taking it are current, ``seq`` has no
gaps, and two processes on one database never fork a DID: each op carries the head it was
validated against, and a moved head answers "conflict" for that op alone (compare-and-swap).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import PoolProxiedConnection

from plc.errors import DATABASE_UNAVAILABLE, Unavailable
from plc.exportline import build_line
from plc.logging_setup import RepeatLimit
from plc.rules import RECOVERY_WINDOW
from plc.store.engine import is_sqlite
from plc.store.lost_commit import settle_lost_commit
from plc.store.rawtx import (
    IN_CHUNK,
    SQL_CREATED_AT_OF_SEQ,
    SQL_INSERT_DID,
    SQL_INSERT_OP,
    SQL_LOG_TAIL,
    SQL_NULLIFY,
    SQL_OP_IS_ACTIVE,
    SQL_SET_TREE_SIZE,
    SQL_TREE_SIZE,
    SQL_TREE_SIZE_FOR_UPDATE,
    SQL_UPDATE_DID,
    Tx,
)
from plc.store.records import (
    STORED_OP_COLUMNS,
    CommitOutcome,
    CommitStatus,
    PendingCommit,
    StoredOp,
    optional_bytes,
    stored_op,
)
from plc.timestamps import format_timestamp, from_ms, to_ms, truncate_ms

log = logging.getLogger("plc.store")

Clock = Callable[[], datetime]
"""Current aware UTC time."""


_TAIL_AHEAD = timedelta(seconds=1)
"""How far ahead of the clock the log's newest ``createdAt`` may be and still be followed."""


class OpenBatch:
    """A written, not yet committed batch on the store's SQLite writer connection (see
    :meth:`SqlStore.write_batch`)."""

    __slots__ = ("store", "outcomes")

    def __init__(self, store: SqlStore, outcomes: list[CommitOutcome]) -> None:
        self.store = store
        self.outcomes = outcomes

    def commit(self) -> list[CommitOutcome]:
        """COMMIT (durable once this returns) and release the writer; any thread.

        Raises:
            Unavailable: the commit failed (nothing of the batch is stored).
        """
        self.store._finish_write(commit=True)
        return self.outcomes


# Hot reads go straight to the DB-API cursor with fixed SQL: on SQLite, SQLAlchemy's statement
# machinery costs ~20x the query itself. Written with ``?`` placeholders; PostgreSQL's driver
# gets ``%s``. Writes, the same way, in plc.store.rawtx.
_SQL_DID_STATE = "SELECT tombstoned, data, document FROM dids WHERE did = ?"
_SQL_AUDIT_ROWS = f"SELECT {STORED_OP_COLUMNS} FROM operations WHERE did = ? ORDER BY seq"
_SQL_AUDIT_ROWS_OF = f"SELECT {STORED_OP_COLUMNS}, did FROM operations WHERE did IN"
_SQL_EXPORT_SEQ = "SELECT line FROM operations WHERE seq > ? ORDER BY seq LIMIT ?"
_SQL_EXPORT_TIME = (
    "SELECT line, nullified FROM operations WHERE created_at_ms > ? "
    "ORDER BY created_at_ms, cid LIMIT ?"
)


LeafHook = Callable[[Tx, int, Sequence[bytes]], None]
"""Called inside the commit with (the transaction, tree size before, new export lines)."""


class SqlStore:
    """Reads and the batched write of the directory over one SQLAlchemy engine.

    On SQLite, two connections may be held for the store's lifetime (released by
    :meth:`close`): the reads of one thread, the event loop's (:meth:`pin_reads`), and the
    writer of :meth:`write_batch`. A pool checkout costs more than a small read.
    """

    def __init__(
        self, engine: Engine, read_engine: Engine | None = None, busy_timeout_ms: int = 5000
    ) -> None:
        self.engine = engine
        self.busy_timeout_ms = busy_timeout_ms
        self._said = RepeatLimit()
        self.read_engine = read_engine or engine
        self._sqlite = is_sqlite(engine)
        self.leaf_hooks: list[LeafHook] = []
        self._pinned_thread: int | None = None
        self._pinned: PoolProxiedConnection | None = None
        self._writer: PoolProxiedConnection | None = None
        self._writer_busy = False
        self._db_errors: tuple[type[BaseException], ...] = (
            OperationalError,
            InterfaceError,
            PoolTimeout,  # every pooled connection busy for the pool's timeout: 503, not 500
            *self._driver_errors(),
        )

    def pin_reads(self) -> None:
        """Serve the calling thread's reads from one connection of its own (SQLite only;
        meant for the event loop's thread, where reads run inline). Other threads keep
        using the pool."""
        if self._sqlite:
            self._pinned_thread = threading.get_ident()

    def close(self) -> None:
        """Return the held connections to the pool (the store still works afterwards)."""
        self._pinned_thread = None
        pinned, self._pinned = self._pinned, None
        if pinned is not None:
            pinned.close()
        if not self._writer_busy:
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.close()

    # ---- reads -------------------------------------------------------------------------

    def fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Rows of one query (``?`` placeholders on every backend).

        Raises:
            Unavailable: the database is unreachable or failed.
        """
        if self._pinned_thread is not None and threading.get_ident() == self._pinned_thread:
            return self._fetch_pinned(sql, params)
        if not self._sqlite:
            sql = sql.replace("?", "%s")
        try:
            # The pool raises the driver's own error, not SQLAlchemy's, when it cannot connect.
            conn = self.read_engine.raw_connection()
        except self._db_errors as exc:
            raise self._unavailable(exc) from exc
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            cursor.close()
        except Exception as exc:
            conn.invalidate()
            if isinstance(exc, self._db_errors):
                raise self._unavailable(exc) from exc
            raise
        finally:
            conn.close()
        return list(rows)

    def _fetch_pinned(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        conn = self._pinned
        try:
            if conn is None:
                conn = self._pinned = self.read_engine.raw_connection()
            cursor = conn.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                cursor.close()
        except Exception as exc:
            if conn is not None:
                self._pinned = None
                conn.invalidate()
            if isinstance(exc, self._db_errors):
                raise self._unavailable(exc) from exc
            raise

    def _unavailable(self, exc: BaseException) -> Unavailable:
        """The 503 for a driver failure, said in the log too (each distinct failure at most
        once a minute, :class:`~plc.logging_setup.RepeatLimit`): an operator whose clients
        get 503s must find out why, say a read-only file or a full disk."""
        driver = getattr(exc, "orig", None) or exc  # SQLAlchemy's wrapper names it again
        text = str(driver).splitlines()[0] if str(driver) else ""
        said = f"{type(driver).__name__}: {text}"[:300]
        if self._said.due(said):
            log.warning("database unavailable: %s", said)
        return Unavailable(DATABASE_UNAVAILABLE)

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        """The driver's errors for a database that is unreachable, gone or failing (not for
        a wrong statement: those stay 500s, they are our bugs)."""
        module = self.engine.dialect.dbapi
        if module is None:
            return ()
        return (module.OperationalError, module.InterfaceError)

    def did_state(self, did: str) -> tuple[bool, bytes | None, bytes | None] | None:
        """``(tombstoned, data, document)`` of a DID, or None when it is not registered."""
        rows = self.fetch(_SQL_DID_STATE, (did,))
        if not rows:
            return None
        tombstoned, data, document = rows[0]
        return bool(tombstoned), optional_bytes(data), optional_bytes(document)

    def audit_rows(self, did: str) -> list[StoredOp]:
        """The DID's ops in acceptance order, nullified ones included."""
        rows = self.fetch(_SQL_AUDIT_ROWS, (did,))
        return [stored_op(r) for r in rows]

    def audit_rows_of(self, dids: Sequence[str]) -> dict[str, list[StoredOp]]:
        """:meth:`audit_rows` of several DIDs in few queries (every DID asked for is a key)."""
        found: dict[str, list[StoredOp]] = {did: [] for did in dids}
        unique = list(found)
        for start in range(0, len(unique), IN_CHUNK):
            part = unique[start : start + IN_CHUNK]
            marks = ",".join("?" * len(part))
            sql = f"{_SQL_AUDIT_ROWS_OF} ({marks}) ORDER BY did, seq"
            for r in self.fetch(sql, tuple(part)):
                found[r[5]].append(stored_op(r))
        return found

    def export_after_seq(self, after: int, count: int) -> list[bytes]:
        """Export lines with ``seq > after`` in ``seq`` order, at most ``count``."""
        return [bytes(row[0]) for row in self.fetch(_SQL_EXPORT_SEQ, (after, count))]

    def export_after_time(self, after_ms: int, count: int) -> list[tuple[bytes, bool]]:
        """(line, nullified) of ops with ``createdAt > after`` by (createdAt, cid)."""
        rows = self.fetch(_SQL_EXPORT_TIME, (after_ms, count))
        return [(bytes(row[0]), bool(row[1])) for row in rows]

    def tree_size(self) -> int:
        """The last assigned ``seq`` (0 for an empty log)."""
        return int(self.fetch(SQL_TREE_SIZE, ())[0][0])

    def ping(self) -> None:
        """Raise if the database does not answer."""
        self.fetch(SQL_TREE_SIZE, ())

    # ---- the write path ----------------------------------------------------------------

    def commit_batch(
        self, batch: Sequence[PendingCommit], clock: Clock | None = None
    ) -> list[CommitOutcome]:
        """Append every op of ``batch`` whose head still matches, in one transaction.

        ``clock`` (aware UTC) is read once the transaction holds the log head: an op with
        ``restamp`` is stamped with the latest of its own ``created_at``, that reading and
        the ``createdAt`` of the op before it in the log (so ``createdAt`` never decreases
        along ``seq`` among such ops, design.md decision 3; a log tail more than a second
        ahead of the clock, imported or skewed, is not followed); a recovery whose window
        that stamp has passed is LATE, and nothing is written for it.

        Returns one outcome per op, in order. Nothing is written for conflicting ops.

        When the COMMIT itself fails, the database is asked whether it committed
        (:func:`~plc.store.lost_commit.settle_lost_commit`).

        Raises:
            Unavailable: the database is locked (SQLite busy timeout) or unreachable.
        """
        written: list[CommitOutcome] | None = None
        try:
            with self.engine.connect() as conn, conn.begin():
                if self._sqlite:
                    self._lock_sqlite(conn)
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    written = self._commit_in(Tx(cursor, postgres=not self._sqlite), batch, clock)
                finally:
                    cursor.close()
            return written
        except self._db_errors as exc:
            if written is None:  # failed before the COMMIT: nothing is stored
                raise self._unavailable(exc) from exc
            cids = [p.prepared.operation.cid for p in batch]
            wait_s = self.busy_timeout_ms / 1000
            return settle_lost_commit(self.engine, written, cids, self._db_errors, wait_s, exc)

    def write_batch(
        self, batch: Sequence[PendingCommit], clock: Clock | None = None
    ) -> OpenBatch | None:
        """The first half of :meth:`commit_batch` for a caller that wants the slow part (the
        COMMIT, which fsyncs) off its thread: take SQLite's write lock on the store's writer
        connection without waiting, write the batch, and return the open transaction; None
        if the lock (or the writer, for an unfinished batch) is busy: commit with
        :meth:`commit_batch` instead (``clock`` as there). SQLite only; one open batch at a
        time.

        Raises:
            Unavailable: the database failed (nothing of the batch is stored).
        """
        if self._writer_busy:
            return None
        self._writer_busy = True
        try:
            writer = self._writer
            if writer is None:
                writer = self._writer = self.engine.raw_connection()
                writer.dbapi_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
            raw = writer.dbapi_connection
            assert raw is not None
            try:
                raw.execute("BEGIN IMMEDIATE")
            except self._driver_errors() as exc:
                if "locked" not in str(exc):
                    raise
                self._writer_busy = False
                return None
            cursor = raw.cursor()
            try:
                outcomes = self._commit_in(Tx(cursor, postgres=False), batch, clock)
            finally:
                cursor.close()
        except BaseException as exc:
            self._finish_write(commit=False)
            if isinstance(exc, self._db_errors):
                raise self._unavailable(exc) from exc
            raise
        return OpenBatch(self, outcomes)

    def _finish_write(self, *, commit: bool) -> None:
        """End the writer's transaction (COMMIT or ROLLBACK) and free the writer; a writer
        that failed is dropped. Raises Unavailable when the COMMIT fails."""
        writer = self._writer
        try:
            if writer is None or writer.dbapi_connection is None:
                return
            raw = writer.dbapi_connection
            if commit:
                try:
                    raw.commit()
                    return
                except Exception as exc:
                    self._drop_writer()
                    raise self._unavailable(exc) from exc
            try:
                raw.rollback()
            except Exception:  # noqa: BLE001 - a writer that cannot roll back is dropped
                self._drop_writer()
        finally:
            self._writer_busy = False

    def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.invalidate()

    def _lock_sqlite(self, conn: Connection) -> None:
        """Take SQLite's write lock up front (BEGIN IMMEDIATE), polling every few hundred µs.

        SQLite's own busy handler sleeps in steps of up to 100 ms, which lets one process's
        committer starve another's; a short poll keeps several workers' group commits
        interleaved. Gives up after ``busy_timeout_ms`` (→ Unavailable, 503).
        """
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        delay = 0.0002
        conn.exec_driver_sql("PRAGMA busy_timeout=0")
        try:
            while True:
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    return
                except OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                time.sleep(delay)
                delay = min(delay * 2, 0.002)
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")

    def _commit_in(
        self, tx: Tx, batch: Sequence[PendingCommit], clock: Clock | None
    ) -> list[CommitOutcome]:
        """Write ``batch`` in the open transaction ``tx`` (after taking the write lock)."""
        if self._sqlite:
            start_size, newest_ms = tx.all(SQL_LOG_TAIL)[0]
        else:
            start_size, newest_ms = tx.all(SQL_TREE_SIZE_FOR_UPDATE)[0][0], None
            if start_size and clock is not None:
                newest_ms = tx.all(SQL_CREATED_AT_OF_SEQ, (start_size,))[0][0]
        start_size = int(start_size)
        # Read under the lock: a later transaction reads a later time (one host's clock).
        floor = truncate_ms(clock()) if clock is not None else None
        if floor is not None and newest_ms is not None:
            newest = from_ms(int(newest_ms))
            if floor < newest <= floor + _TAIL_AHEAD:
                floor = newest
        dids = sorted({p.prepared.did for p in batch})
        heads: dict[str, str] = {
            str(row[0]): str(row[1])
            for row in tx.all_in("SELECT did, head_cid FROM dids WHERE did IN", dids)
        }
        existing = set(heads)
        tree_size = start_size
        outcomes: list[CommitOutcome] = []
        op_rows: list[tuple[Any, ...]] = []
        lines: list[bytes] = []
        nullify_rows: list[tuple[Any, ...]] = []
        did_rows: dict[str, tuple[Any, ...]] = {}
        flag, blob = tx.flag, tx.blob
        yes, no = flag(True), flag(False)
        for pending in batch:
            prepared = pending.prepared
            did, cid = prepared.did, prepared.operation.cid
            current = heads.get(did)
            if current != pending.expected_head:
                # The op may be stored already, the head moved on past it (the same op
                # committed through another process, then a child of it): a re-submission,
                # answered 200 (design.md decision 1), not "the DID changed".
                # The batch's own rows are not written yet: they are looked at first.
                stored = current == cid or (
                    (yes, did, cid) not in nullify_rows
                    and (
                        any(row[1] == did and row[2] == cid for row in op_rows)
                        or bool(tx.all(SQL_OP_IS_ACTIVE, (did, cid, no)))
                    )
                )
                status = CommitStatus.DUPLICATE if stored else CommitStatus.CONFLICT
                outcomes.append(CommitOutcome(status))
                continue
            created_at = prepared.created_at
            if pending.restamp and floor is not None:
                if floor > created_at:
                    if prepared.valid_until is not None and floor > prepared.valid_until:
                        first = prepared.valid_until - RECOVERY_WINDOW
                        outcomes.append(CommitOutcome(CommitStatus.LATE, lapsed=floor - first))
                        continue
                    created_at = floor
                floor = created_at  # the next op is stamped no earlier
            tree_size += 1
            line = build_line(
                did,
                cid,
                tree_size,
                format_timestamp(created_at),
                prepared.operation.canonical_json(),
            )
            op_rows.append(
                (
                    tree_size,
                    did,
                    cid,
                    to_ms(created_at),
                    no,
                    prepared.key_index,
                    blob(line),
                )
            )
            lines.append(line)
            nullify_rows.extend((yes, did, nullified) for nullified in prepared.nullified)
            did_rows[did] = (
                cid,
                flag(pending.data is None),
                blob(pending.data),
                blob(pending.document),
                did,
            )
            heads[did] = cid
            outcomes.append(CommitOutcome(CommitStatus.COMMITTED, tree_size, line))
        if not op_rows:
            return outcomes
        tx.executemany(SQL_INSERT_OP, op_rows)
        tx.executemany(SQL_NULLIFY, nullify_rows)
        tx.executemany(
            SQL_INSERT_DID,
            [(row[4], *row[:4]) for did, row in did_rows.items() if did not in existing],
        )
        tx.executemany(SQL_UPDATE_DID, [row for did, row in did_rows.items() if did in existing])
        tx.execute(SQL_SET_TREE_SIZE, (tree_size,))
        for hook in self.leaf_hooks:
            hook(tx, start_size, lines)
        return outcomes
