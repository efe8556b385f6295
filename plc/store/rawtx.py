"""The write transaction's statements, run on the DB-API cursor with fixed SQL.

SQLAlchemy Core compiles and binds every row of every statement in Python; for the few small
statements of a commit that costs several times the statements themselves (measured: ~0.2 ms
of CPU per op on SQLite). The SQL is written once here with ``?`` placeholders; PostgreSQL's
driver (psycopg) gets ``%s``. Table and column names are those of :mod:`plc.store.models`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

SQL_TREE_SIZE = "SELECT tree_size FROM log_head WHERE id = 1"
SQL_TREE_SIZE_FOR_UPDATE = SQL_TREE_SIZE + " FOR UPDATE"
SQL_LOG_TAIL = (
    "SELECT h.tree_size, o.created_at_ms FROM log_head h "
    "LEFT JOIN operations o ON o.seq = h.tree_size WHERE h.id = 1"
)
"""The tree size and the newest op's ``created_at_ms`` (NULL for an empty log) in one
statement: SQLite only, where the transaction already holds the write lock. On PostgreSQL a
writer that waited for the log head's row lock re-reads that row alone (READ COMMITTED's
recheck), so the joined op another writer just committed would read as NULL: there the lock is
taken first (:data:`SQL_TREE_SIZE_FOR_UPDATE`) and the op read by a later statement, which sees
every commit made before it (:data:`SQL_CREATED_AT_OF_SEQ`)."""
SQL_CREATED_AT_OF_SEQ = "SELECT created_at_ms FROM operations WHERE seq = ?"
SQL_SET_TREE_SIZE = "UPDATE log_head SET tree_size = ? WHERE id = 1"
SQL_INSERT_OP = (
    "INSERT INTO operations (seq, did, cid, created_at_ms, nullified, key_index, line) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
SQL_NULLIFY = "UPDATE operations SET nullified = ? WHERE did = ? AND cid = ?"
SQL_OP_IS_ACTIVE = "SELECT 1 FROM operations WHERE did = ? AND cid = ? AND nullified = ?"
SQL_INSERT_DID = (
    "INSERT INTO dids (did, head_cid, tombstoned, data, document) VALUES (?, ?, ?, ?, ?)"
)
SQL_UPDATE_DID = (
    "UPDATE dids SET head_cid = ?, tombstoned = ?, data = ?, document = ? WHERE did = ?"
)
SQL_INSERT_HASH = "INSERT INTO tlog_hashes (idx, hash) VALUES (?, ?)"

IN_CHUNK = 500
"""Most values bound into one ``IN (…)`` list."""


def _identity(value: bytes | None) -> bytes | None:
    return value


def _sqlite_blob(value: bytes | None) -> bytearray | None:
    return None if value is None else bytearray(value)


class Tx:
    """A DB-API cursor inside an open write transaction.

    Statements use ``?`` placeholders on every backend. Errors are the driver's own
    (``sqlite3.OperationalError``, ``psycopg.OperationalError``, …); the caller maps them.

    Values bound to BOOLEAN and BLOB columns go through :attr:`flag` and :attr:`blob`. On
    SQLite they become ``int`` and ``bytearray``: Python's ``sqlite3`` binds ``bytes``,
    ``bool`` and ``None`` only after a failed adaptation lookup that formats and discards an
    ``AttributeError`` per value (measured: ~1/10 of a commit's CPU), while ``int`` and
    ``bytearray`` are bound directly. The stored values are the same (integer 0/1, blob).
    PostgreSQL gets ``bool`` and ``bytes`` as they are (its BOOLEAN refuses an integer).
    """

    __slots__ = ("cursor", "_pg", "flag", "blob")

    def __init__(self, cursor: Any, *, postgres: bool) -> None:
        self.cursor = cursor
        self._pg = postgres
        self.flag: Callable[[bool], bool | int] = bool if postgres else int
        self.blob: Callable[[bytes | None], bytes | bytearray | None] = (
            _identity if postgres else _sqlite_blob
        )

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._pg else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement."""
        self.cursor.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement per row (nothing for no rows)."""
        if rows:
            self.cursor.executemany(self._sql(sql), rows)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one query."""
        self.cursor.execute(self._sql(sql), params)
        return list(self.cursor.fetchall())

    def all_in(self, sql_prefix: str, values: Sequence[Any]) -> list[Any]:
        """Rows of ``<sql_prefix> (?, …)`` over ``values``, :data:`IN_CHUNK` at a time
        (``sql_prefix`` ends with ``IN``)."""
        rows: list[Any] = []
        for start in range(0, len(values), IN_CHUNK):
            part = values[start : start + IN_CHUNK]
            rows.extend(self.all(f"{sql_prefix} ({','.join('?' * len(part))})", part))
        return rows
