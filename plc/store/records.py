"""The store's records: what a commit takes and answers, and a stored op as read back.

They are named tuples: as immutable as a frozen dataclass, at less than half its construction
cost (a frozen dataclass sets each field with ``object.__setattr__``), and the write path makes
several per op.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from enum import Enum
from typing import Any, NamedTuple

from plc.rules import PreparedOperation


class PendingCommit(NamedTuple):
    """An op validated against ``expected_head`` (None for a genesis), with the bodies of the
    state it leads to (None for a tombstone)."""

    prepared: PreparedOperation
    expected_head: str | None
    data: bytes | None
    document: bytes | None
    restamp: bool = False
    """Stamped by this server: its ``created_at`` may move later at the commit (see
    :meth:`plc.store.sql.SqlStore.commit_batch`; design.md decision 3). Imported ops keep
    their own."""


class CommitStatus(Enum):
    """What happened to one op of a batch."""

    COMMITTED = "committed"
    DUPLICATE = "duplicate"  # the same op became the head in the meantime: nothing appended
    CONFLICT = "conflict"  # the head moved: retryable
    LATE = "late"  # a recovery whose 72-hour window closed before its commit


class CommitOutcome(NamedTuple):
    """Status of one op, with its ``seq`` and export line when committed."""

    status: CommitStatus
    seq: int | None = None
    line: bytes | None = None
    lapsed: timedelta | None = None
    """LATE: the time from the first op the recovery nullifies to the commit's stamp."""


class StoredOp(NamedTuple):
    """One row of a DID's audit log as stored."""

    seq: int
    cid: str
    created_at_ms: int
    nullified: bool
    line: bytes


STORED_OP_COLUMNS = "seq, cid, created_at_ms, nullified, line"
"""The ``operations`` columns :func:`stored_op` reads, in its order."""


def stored_op(row: Sequence[Any]) -> StoredOp:
    """A :class:`StoredOp` from a row that starts with :data:`STORED_OP_COLUMNS`."""
    return StoredOp(row[0], row[1], row[2], bool(row[3]), bytes(row[4]))


def optional_bytes(value: Any) -> bytes | None:
    """A BLOB column's value as ``bytes`` (drivers give ``bytes``, ``memoryview`` or
    ``bytearray``), or None for NULL."""
    return None if value is None else bytes(value)
