"""Several processes on one database sign about one checkpoint per interval between them, not
one each (issue #3: at most one signature per interval), and every op is still covered: a
timer tick that finds a checkpoint another process signed since its own last tick signs
nothing. On SQLite and on PostgreSQL."""

from __future__ import annotations

from plc.checkpoints import Checkpointer
from plc.store.engine import make_engine
from plc.store.migrate import upgrade
from plc.store.sql import SqlStore
from plc.store.tlog_store import TlogStore
from plc.tlog.note import generate_signer, parse_signer_key

from ..conftest import Clock
from ..helpers import fill_log


def _sizes(tlog: TlogStore) -> list[int]:
    rows = tlog.store.fetch("SELECT tree_size FROM tlog_checkpoints ORDER BY tree_size", ())
    return [int(r[0]) for r in rows]


def test_a_tick_defers_to_a_checkpoint_another_process_signed(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    store = SqlStore(engine)
    tlog = TlogStore(store)
    store.leaf_hooks.append(tlog.append_in)
    signer = parse_signer_key(generate_signer("example.org/log")[0])
    first, second = (Checkpointer(tlog, signer, Clock()) for _ in range(2))
    grown = 0

    def grow(count: int) -> None:
        nonlocal grown
        fill_log(store, count, first=grown)
        grown += count

    signed = first.tick()
    assert signed is not None and signed.tree_size == 0
    assert second.tick() is None  # first's checkpoint is news to second: it defers
    grow(3)
    signed = first.tick()
    assert signed is not None and signed.tree_size == 3
    grow(2)
    assert second.tick() is None  # first signed since second's last tick
    signed = first.tick()
    assert signed is not None and signed.tree_size == 5
    grow(1)
    assert second.tick() is None
    # first stops ticking (its process ended): second finds nothing new and signs the op
    signed = second.tick()
    assert signed is not None and signed.tree_size == 6
    assert first.tick() is None  # and first, were it back, would now defer to second
    assert _sizes(tlog) == [0, 3, 5, 6]
    # a direct call (start, shutdown) signs whatever grew, whoever signed last
    grow(1)
    assert first.sign_if_grown().tree_size == 7
    engine.dispose()
