"""Storage of the transparency log: stored tree hashes, checkpoints and the log's signer.

The tree's hashes are appended by :meth:`TlogStore.append_in` inside the transaction that
appends their leaves (a leaf hook of :class:`plc.store.sql.SqlStore`), so a committed
``tree_size`` always has all its hashes. Everything else here is reads: one query per root,
proof or tile (the pure tree math in :mod:`plc.tlog` asks for all the hashes it needs at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, text
from sqlalchemy.engine import Engine

from plc.errors import Unavailable
from plc.store.models import CheckpointRow, SignerRow
from plc.store.rawtx import SQL_INSERT_HASH, Tx
from plc.store.sql import SqlStore
from plc.tlog.errors import HashReaderError
from plc.tlog.hashing import leaf_hash
from plc.tlog.tree import append_leaves, stored_hash_count

CHECKPOINTS = cast(Table, CheckpointRow.__table__)  # type: ignore[attr-defined]
SIGNER = cast(Table, SignerRow.__table__)  # type: ignore[attr-defined]

_PRUNE_CHECKPOINTS = text(
    "DELETE FROM tlog_checkpoints WHERE tree_size <= (SELECT tree_size FROM tlog_checkpoints "
    "ORDER BY tree_size DESC LIMIT 1 OFFSET :offset)"
)
"""Deletes all but the newest ``offset`` checkpoints (none while there are no more)."""
_SQL_LATEST_CHECKPOINT = (
    "SELECT tree_size, root_hash, note FROM tlog_checkpoints ORDER BY tree_size DESC LIMIT 1"
)
_SQL_LINES = "SELECT seq, line FROM operations WHERE seq >= ? AND seq <= ? ORDER BY seq"


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint as stored: size, root and the exact signed note bytes."""

    tree_size: int
    root_hash: bytes
    note: bytes


class _TxReader:
    """``plc.tlog.tree.HashReader`` inside the write transaction."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    def read_hashes(self, indexes: Sequence[int]) -> Sequence[bytes]:
        rows = self.tx.all_in("SELECT idx, hash FROM tlog_hashes WHERE idx IN", list(indexes))
        found = {int(r[0]): bytes(r[1]) for r in rows}
        return _in_order(found, indexes)


class _RawReader:
    """``HashReader`` over the store's read path (one query per call)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def read_hashes(self, indexes: Sequence[int]) -> Sequence[bytes]:
        found: dict[int, bytes] = {}
        chunk = 500
        for start in range(0, len(indexes), chunk):
            part = list(indexes[start : start + chunk])
            marks = ",".join("?" * len(part))
            rows = self.store.fetch(
                f"SELECT idx, hash FROM tlog_hashes WHERE idx IN ({marks})", tuple(part)
            )
            found.update((int(r[0]), bytes(r[1])) for r in rows)
        return _in_order(found, indexes)


def _in_order(found: dict[int, bytes], indexes: Sequence[int]) -> list[bytes]:
    missing = [i for i in indexes if i not in found]
    if missing:
        raise HashReaderError(
            f"tlog: stored hash {missing[0]} is missing",
            expected=len(indexes),
            actual=len(indexes) - len(missing),
        )
    return [found[i] for i in indexes]


class TlogStore:
    """The transparency log's tables, beside a :class:`SqlStore`."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.reader = _RawReader(store)

    @property
    def engine(self) -> Engine:
        return self.store.engine

    def append_in(self, tx: Tx, start_size: int, lines: Sequence[bytes]) -> None:
        """Leaf hook: store the hashes that appending ``lines`` at ``start_size`` creates."""
        new = append_leaves(start_size, [leaf_hash(line) for line in lines], _TxReader(tx))
        first = stored_hash_count(start_size)
        blob = tx.blob
        tx.executemany(SQL_INSERT_HASH, [(first + i, blob(h)) for i, h in enumerate(new)])

    def lines(self, first_seq: int, last_seq: int) -> list[bytes]:
        """Export lines of ``first_seq..last_seq`` (inclusive), in order."""
        rows = self.store.fetch(_SQL_LINES, (first_seq, last_seq))
        return [bytes(r[1]) for r in rows]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest tree size, or None before the first one."""
        rows = self.store.fetch(_SQL_LATEST_CHECKPOINT, ())
        if not rows:
            return None
        size, root, note = rows[0]
        return StoredCheckpoint(int(size), bytes(root), bytes(note))

    def insert_checkpoint(
        self, checkpoint: StoredCheckpoint, signed_at_ms: int, *, kept: int = 0
    ) -> bool:
        """Keep a signed checkpoint; False when one of that size exists already (another
        process signed it: same tree, same root). With ``kept`` > 0, only that many of the
        newest stay: only the newest is ever served, and one every half second of traffic
        grew the table by about 50 MB a day.

        Raises:
            Unavailable: the database failed (the next tick tries again).
        """
        values: dict[str, Any] = {
            "tree_size": checkpoint.tree_size,
            "root_hash": checkpoint.root_hash,
            "note": checkpoint.note,
            "signed_at_ms": signed_at_ms,
        }
        statement = _insert_ignore(self.engine)(CHECKPOINTS).values(**values)
        # On PostgreSQL RETURNING tells whether a row went in: psycopg reports rowcount -1
        # for an INSERT ... ON CONFLICT DO NOTHING, which read as "inserted" every time.
        # SQLite's rowcount is right, and its RETURNING needs SQLite 3.35 (Debian 11 and
        # RHEL 9 ship 3.34).
        postgres = self.engine.dialect.name == "postgresql"
        insert = statement.on_conflict_do_nothing()
        if postgres:
            insert = insert.returning(CHECKPOINTS.c.tree_size)
        try:
            with self.engine.begin() as conn:
                result = conn.execute(insert)
                inserted = result.first() is not None if postgres else result.rowcount == 1
                if kept > 0 and inserted:
                    conn.execute(_PRUNE_CHECKPOINTS, {"offset": kept})
        except Exception as exc:  # noqa: BLE001 - any driver error: try again next tick
            raise Unavailable("Could not store checkpoint") from exc
        return inserted

    def signer_row(self) -> tuple[str, str] | None:
        """``(origin, signer key text)`` stored with the log, or None."""
        rows = self.store.fetch("SELECT origin, signer_key FROM tlog_signer WHERE id = 1", ())
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def create_signer_row(self, origin: str, signer_key: str) -> tuple[str, str]:
        """Store the log's identity unless one exists; return the one that is stored (a
        concurrent first start of another process may win)."""
        statement = _insert_ignore(self.engine)(SIGNER).values(
            id=1, origin=origin, signer_key=signer_key
        )
        with self.engine.begin() as conn:
            conn.execute(statement.on_conflict_do_nothing())
        stored = self.signer_row()
        assert stored is not None
        return stored


def _insert_ignore(engine: Engine) -> Any:
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert
