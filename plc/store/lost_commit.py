"""What to answer when the connection fails during a COMMIT: was the batch stored or not?

A COMMIT whose answer never arrives (PostgreSQL's connection cut after the command left, a
proxy or failover dropping it) may have committed. Answering 503 then tells a PDS its op was
refused while it is in the log, with a ``seq``, in ``/export`` and under the next checkpoint;
a client that believes the 503 and builds its next op on the old ``prev`` gets 409. So the
store asks the database, on a new connection, whether every op the batch appended holds its
``seq``: a batch is one transaction, all of it or none is stored. One op alone would not
tell: the same op, submitted again through another process (or imported), may have been
stored at that very ``seq`` by a transaction of its own once the batch's had failed.
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
SQL_CIDS_OF_SEQS = "SELECT seq, cid FROM operations WHERE seq BETWEEN ? AND ?"
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
    appended = {o.seq: cid for o, cid in zip(written, cids, strict=True) if o.seq}
    if not appended:
        return list(written)
    seq = min(appended)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            stored = _cids_at(engine, seq, max(appended))
        except errors:
            if time.monotonic() >= deadline:
                log.warning("commit outcome unknown", extra={"seq": seq})
                raise Unavailable(UNKNOWN) from exc
            time.sleep(RETRY_EVERY_S)
            continue
        if stored == appended:
            log.warning("commit confirmed after its connection failed", extra={"seq": seq})
            return list(written)
        # Not this batch's: its ops are not stored, or were stored by another transaction
        # (then a re-submission is answered 200).
        raise Unavailable(DATABASE_UNAVAILABLE) from exc


def _cids_at(engine: Engine, first: int, last: int) -> dict[int, str]:
    """``{seq: cid}`` of the ops stored at ``first`` to ``last``; after taking the log head's
    lock on PostgreSQL (a new statement then sees whatever committed before the lock was
    granted)."""
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn, conn.begin():
        tx = Tx(conn.connection.dbapi_connection.cursor(), postgres=postgres)  # type: ignore[union-attr]
        tx.execute(SQL_TREE_SIZE_FOR_UPDATE if postgres else SQL_TREE_SIZE)
        rows = tx.all(SQL_CIDS_OF_SEQS, (first, last))
        tx.cursor.close()
    return {int(row[0]): str(row[1]) for row in rows}
