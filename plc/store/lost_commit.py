"""What to answer when the connection fails during a COMMIT: was the batch stored or not?

A COMMIT whose answer never arrives (PostgreSQL's connection cut after the command left, a
proxy or failover dropping it) may have committed. Answering 503 then tells a PDS its op was
refused while it is in the log, with a ``seq``, in ``/export`` and under the next checkpoint;
a client that believes the 503 and builds its next op on the old ``prev`` gets 409. So the
store asks the database, on a new connection, whether the batch's first appended op holds
its ``seq``: a batch is one transaction, all of it or none is stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from sqlalchemy.engine import Engine

from plc.errors import DATABASE_UNAVAILABLE, Unavailable
from plc.store.rawtx import SQL_TREE_SIZE, SQL_TREE_SIZE_FOR_UPDATE, Tx
from plc.store.records import CommitOutcome

log = logging.getLogger("plc.store")

RETRY_EVERY_S = 0.2
SQL_CID_OF_SEQ = "SELECT cid FROM operations WHERE seq = ?"
UNKNOWN = (
    "Database connection lost during commit: the operation may have been stored; "
    "re-submitting the same operation is safe"
)


def settle_lost_commit(
    engine: Engine,
    written: Sequence[CommitOutcome],
    cids: Sequence[str],
    errors: tuple[type[BaseException], ...],
    wait_s: float,
    exc: BaseException,
) -> list[CommitOutcome]:
    """The outcomes of a batch whose COMMIT failed with ``exc`` (``written``: what the
    transaction wrote; ``cids``: the batch's ops, in the same order), once the database says
    whether it committed.

    Asks again every :data:`RETRY_EVERY_S` for up to ``wait_s`` seconds while the database
    is unreachable. On PostgreSQL the question first waits for the log head's row lock, which
    the lost transaction holds until its COMMIT has finished either way.

    Returns:
        ``written`` when the batch is stored (or appended nothing).

    Raises:
        Unavailable: the batch is not stored ("try again"), or the database did not answer
            within ``wait_s`` (the message says the op may be stored and a re-submission is
            safe: an op already stored is answered 200 and appends nothing).
    """
    first = next(((o.seq, cid) for o, cid in zip(written, cids, strict=True) if o.seq), None)
    if first is None:
        return list(written)
    seq, cid = first
    deadline = time.monotonic() + wait_s
    while True:
        try:
            stored = _cid_at(engine, seq)
        except errors:
            if time.monotonic() >= deadline:
                log.warning("commit outcome unknown", extra={"seq": seq})
                raise Unavailable(UNKNOWN) from exc
            time.sleep(RETRY_EVERY_S)
            continue
        if stored == cid:
            log.warning("commit confirmed after its connection failed", extra={"seq": seq})
            return list(written)
        raise Unavailable(DATABASE_UNAVAILABLE) from exc


def _cid_at(engine: Engine, seq: int) -> str | None:
    """The cid of the op stored at ``seq``, or None; after taking the log head's lock on
    PostgreSQL (a new statement then sees whatever committed before the lock was granted)."""
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn, conn.begin():
        tx = Tx(conn.connection.dbapi_connection.cursor(), postgres=postgres)  # type: ignore[union-attr]
        tx.execute(SQL_TREE_SIZE_FOR_UPDATE if postgres else SQL_TREE_SIZE)
        rows = tx.all(SQL_CID_OF_SEQ, (seq,))
        tx.cursor.close()
    return str(rows[0][0]) if rows else None
