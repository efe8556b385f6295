"""The stored ``/data`` and DID-document bodies against what this version renders.

Each ``dids`` row holds the bodies of its head op's state, rendered when that op was committed
(design.md decision 6), so a fix to the rendering reaches stored DIDs only when they are
rendered again. :func:`refresh_page` does that a page of DIDs at a time, by primary key, and
:data:`plc.document.DOCUMENTS_VERSION` in ``store_meta`` records which rendering the stored
bodies come from (``plc serve`` warns while it is older than the code's).

A row is rewritten with a compare-and-swap on its head: a DID whose head moved while it was
being checked keeps what its new op wrote (by this version), so the refresh can run while the
directory serves. Each page's rewrites are one short write transaction that holds the log head
as a writer's does (SQLite's write lock; the ``log_head`` row on PostgreSQL), so it waits for
a commit in progress instead of deadlocking with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Engine

from plc.document import DOCUMENTS_VERSION, head_state
from plc.exportline import operation_json
from plc.store.engine import is_sqlite
from plc.store.rawtx import SQL_TREE_SIZE_FOR_UPDATE
from plc.store.records import optional_bytes

DOCUMENTS_VERSION_KEY = "documents_version"

_SQL_PAGE = text(
    "SELECT d.did, d.head_cid, d.tombstoned, d.data, d.document, o.line FROM dids d "
    "LEFT JOIN operations o ON o.did = d.did AND o.cid = d.head_cid "
    "WHERE d.did > :after ORDER BY d.did LIMIT :limit"
)
_SQL_REWRITE = text(
    "UPDATE dids SET tombstoned = :tombstoned, data = :data, document = :document "
    "WHERE did = :did AND head_cid = :head_cid"
)
_SQL_COUNT = text("SELECT COUNT(*) FROM dids")
_SQL_GET_META = text("SELECT value FROM store_meta WHERE name = :name")
_SQL_SET_META = text("UPDATE store_meta SET value = :value WHERE name = :name")


@dataclass
class RefreshCounts:
    """What a page of DIDs held, or (:meth:`add`) several.

    Attributes:
        checked: DIDs read.
        stale: DIDs whose stored state differs from their head op's rendering.
        rewritten: stale DIDs rewritten (0 on a check).
        moved: stale DIDs left alone because their head moved meanwhile.
        unreadable: DIDs whose head op is missing or cannot be rendered (left alone; these
            are not documents but damage, for an operator to look into).
        stale_dids, unreadable_dids: those DIDs, in order (the first ones, after :meth:`add`).
    """

    checked: int = 0
    stale: int = 0
    rewritten: int = 0
    moved: int = 0
    unreadable: int = 0
    stale_dids: list[str] = field(default_factory=list)
    unreadable_dids: list[str] = field(default_factory=list)

    def add(self, page: RefreshCounts, keep: int) -> None:
        """Count ``page`` in, keeping at most ``keep`` DIDs of each list."""
        self.checked += page.checked
        self.stale += page.stale
        self.rewritten += page.rewritten
        self.moved += page.moved
        self.unreadable += page.unreadable
        self.stale_dids.extend(page.stale_dids[: keep - len(self.stale_dids)])
        self.unreadable_dids.extend(page.unreadable_dids[: keep - len(self.unreadable_dids)])


def count_dids(engine: Engine) -> int:
    """Rows of ``dids`` (for a progress bar; a full count on PostgreSQL)."""
    with engine.connect() as connection:
        return int(connection.execute(_SQL_COUNT).scalar_one())


def stored_documents_version(engine: Engine) -> int | None:
    """The ``documents_version`` of the database; None when it has no ``store_meta`` row
    (a schema before revision 0003)."""
    with engine.connect() as connection:
        value = connection.execute(_SQL_GET_META, {"name": DOCUMENTS_VERSION_KEY}).scalar()
    return None if value is None else int(value)


def mark_documents_current(engine: Engine) -> None:
    """Record that every stored body is this version's rendering (after a whole refresh)."""
    with engine.begin() as connection:
        connection.execute(
            _SQL_SET_META, {"name": DOCUMENTS_VERSION_KEY, "value": DOCUMENTS_VERSION}
        )


def refresh_page(
    engine: Engine, after: str, limit: int, *, rewrite: bool
) -> tuple[str | None, RefreshCounts]:
    """Check up to ``limit`` DIDs after ``after`` (by primary key; ``""`` for the first page)
    against their head op's rendering and, when ``rewrite``, store the rendering where it
    differs (compare-and-swap on the head).

    Returns the page's last DID (the next page starts after it; None when the page was
    empty) and its counts.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database failed (nothing of the page's rewrites
            is kept).
    """
    result = RefreshCounts()
    last_did: str | None = None
    with engine.connect() as connection:
        rows = connection.execute(_SQL_PAGE, {"after": after, "limit": limit}).all()
    changes: list[dict[str, object]] = []
    for did, head_cid, tombstoned, data, document, line in rows:
        result.checked += 1
        last_did = did
        try:
            if line is None:
                raise LookupError("the head op is not stored")
            expected = head_state(did, head_cid, operation_json(bytes(line)))
        except (LookupError, TypeError, ValueError):  # orjson's error is a ValueError
            result.unreadable += 1
            result.unreadable_dids.append(did)
            continue
        stored = (bool(tombstoned), optional_bytes(data), optional_bytes(document))
        if stored == expected:
            continue
        result.stale += 1
        result.stale_dids.append(did)
        changes.append(
            {
                "did": did,
                "head_cid": head_cid,
                "tombstoned": expected[0],
                "data": expected[1],
                "document": expected[2],
            }
        )
    if rewrite and changes:
        with engine.begin() as connection:
            if is_sqlite(engine):  # its connections autocommit: one transaction, one fsync
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                # Writers take the log head first, then their DIDs' rows in arrival order:
                # rows taken here in DID order without it could deadlock with a batch.
                connection.exec_driver_sql(SQL_TREE_SIZE_FOR_UPDATE)
            for change in changes:
                if connection.execute(_SQL_REWRITE, change).rowcount == 1:
                    result.rewritten += 1
                else:
                    result.moved += 1
    return last_did, result
