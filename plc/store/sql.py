"""SqlStore: the directory's reads and its one write path (a batch of ops in one transaction).

Writers serialise on the ``log_head`` row (``SELECT … FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), so the heads read after taking it are current, ``seq`` has no
gaps, and two processes on one database never fork a DID: each op carries the head it was
validated against, and a moved head answers "conflict" for that op alone (compare-and-swap).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, insert, select, update
from sqlalchemy.engine import Connection, Engine, RootTransaction
from sqlalchemy.exc import OperationalError

from plc.errors import Unavailable
from plc.exportline import build_line
from plc.rules import PreparedOperation
from plc.store.engine import is_sqlite
from plc.store.models import DidRow, LogHeadRow, OperationRow
from plc.timestamps import format_timestamp, to_ms

DIDS = cast(Table, DidRow.__table__)  # type: ignore[attr-defined]
OPERATIONS = cast(Table, OperationRow.__table__)  # type: ignore[attr-defined]
LOG_HEAD = cast(Table, LogHeadRow.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class PendingCommit:
    """An op validated against ``expected_head`` (None for a genesis), with the bodies of the
    state it leads to (None for a tombstone)."""

    prepared: PreparedOperation
    expected_head: str | None
    data: bytes | None
    document: bytes | None


class CommitStatus(Enum):
    """What happened to one op of a batch."""

    COMMITTED = "committed"
    DUPLICATE = "duplicate"  # the same op became the head in the meantime: nothing appended
    CONFLICT = "conflict"  # the head moved: retryable


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    """Status of one op, with its ``seq`` and export line when committed."""

    status: CommitStatus
    seq: int | None = None
    line: bytes | None = None


@dataclass(frozen=True, slots=True)
class OpenBatch:
    """A written, not yet committed batch (see :meth:`SqlStore.write_batch`)."""

    conn: Connection
    transaction: RootTransaction
    outcomes: list[CommitOutcome]

    def commit(self) -> list[CommitOutcome]:
        """COMMIT (durable once this returns) and release the connection; any thread.

        Raises:
            Unavailable: the commit failed (nothing of the batch is stored).
        """
        try:
            self.transaction.commit()
        except OperationalError as exc:
            raise Unavailable("Database unavailable, try again") from exc
        finally:
            self.conn.close()
        return self.outcomes


@dataclass(frozen=True, slots=True)
class StoredOp:
    """One row of a DID's audit log as stored."""

    seq: int
    cid: str
    created_at_ms: int
    nullified: bool
    line: bytes


# Hot reads go straight to the DB-API cursor with fixed SQL: on SQLite, SQLAlchemy's statement
# machinery costs ~20x the query itself. Written with ``?`` placeholders; PostgreSQL's driver
# gets ``%s``. Writes use SQLAlchemy Core below.
_SQL_DID_STATE = "SELECT tombstoned, data, document FROM dids WHERE did = ?"
_SQL_AUDIT_ROWS = (
    "SELECT seq, cid, created_at_ms, nullified, line FROM operations WHERE did = ? ORDER BY seq"
)
_SQL_EXPORT_SEQ = "SELECT line FROM operations WHERE seq > ? ORDER BY seq LIMIT ?"
_SQL_EXPORT_TIME = (
    "SELECT line, nullified FROM operations WHERE created_at_ms > ? "
    "ORDER BY created_at_ms, cid LIMIT ?"
)
_SQL_TREE_SIZE = "SELECT tree_size FROM log_head WHERE id = 1"
_TREE_SIZE = select(LOG_HEAD.c.tree_size).where(LOG_HEAD.c.id == 1)
_TREE_SIZE_FOR_UPDATE = _TREE_SIZE.with_for_update()
_HEADS = select(DIDS.c.did, DIDS.c.head_cid).where(
    DIDS.c.did.in_(bindparam("dids", expanding=True))
)
_INSERT_OPS = insert(OPERATIONS)
_NULLIFY = (
    update(OPERATIONS)
    .where(and_(OPERATIONS.c.did == bindparam("d"), OPERATIONS.c.cid == bindparam("c")))
    .values(nullified=True)
)
_INSERT_DIDS = insert(DIDS)
_UPDATE_DIDS = (
    update(DIDS)
    .where(DIDS.c.did == bindparam("d"))
    .values(
        head_cid=bindparam("head_cid"),
        tombstoned=bindparam("tombstoned"),
        data=bindparam("data"),
        document=bindparam("document"),
    )
)
_SET_TREE_SIZE = update(LOG_HEAD).where(LOG_HEAD.c.id == 1).values(tree_size=bindparam("size"))


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


LeafHook = Callable[[Connection, int, Sequence[bytes]], None]
"""Called inside the commit with (connection, tree size before, new export lines)."""


class SqlStore:
    """Reads and the batched write of the directory over one SQLAlchemy engine."""

    def __init__(
        self, engine: Engine, read_engine: Engine | None = None, busy_timeout_ms: int = 5000
    ) -> None:
        self.engine = engine
        self.busy_timeout_ms = busy_timeout_ms
        self.read_engine = read_engine or engine
        self._sqlite = is_sqlite(engine)
        self.leaf_hooks: list[LeafHook] = []

    # ---- reads -------------------------------------------------------------------------

    def fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        if not self._sqlite:
            sql = sql.replace("?", "%s")
        try:
            conn = self.read_engine.raw_connection()
        except OperationalError as exc:
            raise Unavailable("Database unavailable, try again") from exc
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            cursor.close()
        except Exception as exc:
            conn.invalidate()
            if isinstance(exc, self._driver_errors()):
                raise Unavailable("Database unavailable, try again") from exc
            raise
        finally:
            conn.close()
        return list(rows)

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        module = self.engine.dialect.dbapi
        return (module.OperationalError,) if module is not None else ()

    def did_state(self, did: str) -> tuple[bool, bytes | None, bytes | None] | None:
        """``(tombstoned, data, document)`` of a DID, or None when it is not registered."""
        rows = self.fetch(_SQL_DID_STATE, (did,))
        if not rows:
            return None
        tombstoned, data, document = rows[0]
        return bool(tombstoned), _bytes(data), _bytes(document)

    def audit_rows(self, did: str) -> list[StoredOp]:
        """The DID's ops in acceptance order, nullified ones included."""
        rows = self.fetch(_SQL_AUDIT_ROWS, (did,))
        return [StoredOp(r[0], r[1], r[2], bool(r[3]), bytes(r[4])) for r in rows]

    def export_after_seq(self, after: int, count: int) -> list[bytes]:
        """Export lines with ``seq > after`` in ``seq`` order, at most ``count``."""
        return [bytes(row[0]) for row in self.fetch(_SQL_EXPORT_SEQ, (after, count))]

    def export_after_time(self, after_ms: int, count: int) -> list[tuple[bytes, bool]]:
        """(line, nullified) of ops with ``createdAt > after`` by (createdAt, cid)."""
        rows = self.fetch(_SQL_EXPORT_TIME, (after_ms, count))
        return [(bytes(row[0]), bool(row[1])) for row in rows]

    def tree_size(self) -> int:
        """The last assigned ``seq`` (0 for an empty log)."""
        return int(self.fetch(_SQL_TREE_SIZE, ())[0][0])

    def ping(self) -> None:
        """Raise if the database does not answer."""
        self.fetch(_SQL_TREE_SIZE, ())

    # ---- the write path ----------------------------------------------------------------

    def commit_batch(self, batch: Sequence[PendingCommit]) -> list[CommitOutcome]:
        """Append every op of ``batch`` whose head still matches, in one transaction.

        Returns one outcome per op, in order. Nothing is written for conflicting ops.

        Raises:
            Unavailable: the database is locked (SQLite busy timeout) or unreachable.
        """
        try:
            with self.engine.connect() as conn, conn.begin():
                if self._sqlite:
                    self._lock_sqlite(conn)
                return self._commit_in(conn, batch)
        except OperationalError as exc:
            raise Unavailable("Database unavailable, try again") from exc

    def write_batch(self, batch: Sequence[PendingCommit]) -> OpenBatch | None:
        """The first half of :meth:`commit_batch` for a caller that wants the slow part (the
        COMMIT, which fsyncs) off its thread: take SQLite's write lock without waiting,
        write the batch, and return the open transaction; None if the lock is busy (commit
        with :meth:`commit_batch` instead). SQLite only.

        Raises:
            Unavailable: the database failed.
        """
        conn = self.engine.connect()
        transaction = conn.begin()
        try:
            conn.exec_driver_sql("PRAGMA busy_timeout=0")
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                locked = True
            except OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                locked = False
            conn.exec_driver_sql(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            if not locked:
                transaction.rollback()
                conn.close()
                return None
            return OpenBatch(conn, transaction, self._commit_in(conn, batch))
        except OperationalError as exc:
            transaction.rollback()
            conn.close()
            raise Unavailable("Database unavailable, try again") from exc
        except BaseException:
            transaction.rollback()
            conn.close()
            raise

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

    def _commit_in(self, conn: Connection, batch: Sequence[PendingCommit]) -> list[CommitOutcome]:
        head_query = _TREE_SIZE if self._sqlite else _TREE_SIZE_FOR_UPDATE
        start_size = int(conn.execute(head_query).scalar_one())
        dids = sorted({p.prepared.did for p in batch})
        heads: dict[str, str] = {row[0]: row[1] for row in conn.execute(_HEADS, {"dids": dids})}
        existing = set(heads)
        tree_size = start_size
        outcomes: list[CommitOutcome] = []
        op_rows: list[dict[str, Any]] = []
        nullify_rows: list[dict[str, Any]] = []
        did_rows: dict[str, dict[str, Any]] = {}
        for pending in batch:
            prepared = pending.prepared
            current = heads.get(prepared.did)
            if current != pending.expected_head:
                status = (
                    CommitStatus.DUPLICATE
                    if current == prepared.operation.cid
                    else CommitStatus.CONFLICT
                )
                outcomes.append(CommitOutcome(status))
                continue
            tree_size += 1
            created_at_ms = to_ms(prepared.created_at)
            line = build_line(
                prepared.did,
                prepared.operation.cid,
                tree_size,
                format_timestamp(prepared.created_at),
                prepared.operation.canonical_json(),
            )
            op_rows.append(
                {
                    "seq": tree_size,
                    "did": prepared.did,
                    "cid": prepared.operation.cid,
                    "created_at_ms": created_at_ms,
                    "nullified": False,
                    "key_index": prepared.key_index,
                    "line": line,
                }
            )
            nullify_rows.extend({"d": prepared.did, "c": cid} for cid in prepared.nullified)
            did_rows[prepared.did] = {
                "did": prepared.did,
                "head_cid": prepared.operation.cid,
                "tombstoned": pending.data is None,
                "data": pending.data,
                "document": pending.document,
            }
            heads[prepared.did] = prepared.operation.cid
            outcomes.append(CommitOutcome(CommitStatus.COMMITTED, tree_size, line))
        if not op_rows:
            return outcomes
        conn.execute(_INSERT_OPS, op_rows)
        if nullify_rows:
            conn.execute(_NULLIFY, nullify_rows)
        new_dids = [row for did, row in did_rows.items() if did not in existing]
        old_dids = [{**row, "d": row["did"]} for did, row in did_rows.items() if did in existing]
        if new_dids:
            conn.execute(_INSERT_DIDS, new_dids)
        if old_dids:
            conn.execute(
                _UPDATE_DIDS, [{k: v for k, v in r.items() if k != "did"} for r in old_dids]
            )
        conn.execute(_SET_TREE_SIZE, {"size": tree_size})
        for hook in self.leaf_hooks:
            hook(conn, start_size, [row["line"] for row in op_rows])
        return outcomes
