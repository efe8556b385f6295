"""Reads of a DID's history bounded by time, for validating its next op, and of its newest
op alone (``/log/last``).

A DID's whole audit log decides its next op only in rare cases (an op that repeats or forks
from one older than the recovery window); otherwise the ops of the last days do, and a DID
with thousands of ops made every POST read and parse all of them (18 ms at 1,000 ops and
33 ms at 1,500 on PostgreSQL). :func:`newest_audit_rows` and :func:`audit_rows_since` read
the recent part, so that :meth:`plc.service.Directory.prepare` can fall back to the whole
history exactly when the recent part could decide differently.
"""

from __future__ import annotations

from plc.store.records import STORED_OP_COLUMNS, StoredOp, stored_op
from plc.store.sql import SqlStore

NEWEST_ROWS = 128
"""Rows read first, newest first: a whole history for all but a few DIDs (the rate limits
admit at most 100 ops a week), and its cost is the cost of reading all of a short one."""
_SQL_NEWEST_ROWS = (
    f"SELECT {STORED_OP_COLUMNS} FROM operations WHERE did = ? ORDER BY seq DESC LIMIT ?"
)
_SQL_LAST_ACTIVE = (
    "SELECT line FROM operations WHERE did = ? AND nullified = ? ORDER BY seq DESC LIMIT 1"
)
_SQL_RECENT_ROWS = (
    f"SELECT {STORED_OP_COLUMNS} FROM operations WHERE did = ? AND seq >= "
    "COALESCE((SELECT MAX(seq) FROM operations WHERE did = ? AND nullified = ? "
    "AND created_at_ms < ?), 0) ORDER BY seq"
)


def newest_audit_rows(store: SqlStore, did: str) -> list[StoredOp]:
    """The DID's newest :data:`NEWEST_ROWS` ops (all of them when it has fewer), nullified
    ones included, in acceptance order; none for an unknown DID.

    Raises:
        plc.errors.Unavailable: the database cannot answer.
    """
    newest = store.fetch(_SQL_NEWEST_ROWS, (did, NEWEST_ROWS))
    return [stored_op(r) for r in reversed(newest)]


def audit_rows_since(
    store: SqlStore, did: str, since_ms: int, newest: list[StoredOp]
) -> list[StoredOp]:
    """The DID's ops from its newest non-nullified op created before ``since_ms`` (epoch
    milliseconds, UTC) on, nullified ones included, in acceptance order (every op when none
    is that old): cut from ``newest`` (:func:`newest_audit_rows`) when that op is among
    them, else read.

    Raises:
        plc.errors.Unavailable: the database cannot answer.
    """
    for start in range(len(newest) - 1, -1, -1):
        if not newest[start].nullified and newest[start].created_at_ms < since_ms:
            return newest[start:]
    rows = store.fetch(_SQL_RECENT_ROWS, (did, did, False, since_ms))
    return [stored_op(r) for r in rows]


def last_active_line(store: SqlStore, did: str) -> bytes | None:
    """Export line of the DID's newest op not nullified (one indexed row, however long the
    history), or None when it has none.

    Raises:
        plc.errors.Unavailable: the database cannot answer.
    """
    rows = store.fetch(_SQL_LAST_ACTIVE, (did, False))
    return bytes(rows[0][0]) if rows else None
