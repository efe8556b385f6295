"""Only the newest ``PLC_CHECKPOINTS_KEPT`` signed checkpoints stay in the database: one is
signed every ``PLC_CHECKPOINT_INTERVAL_MS`` (500) while ops arrive, only the newest is ever
served, and keeping all of them grew the table by about 50 MB a day. On SQLite and on
PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from plc.api.app import create_app
from plc.store.engine import make_engine
from plc.store.migrate import upgrade
from plc.store.sql import SqlStore
from plc.store.tlog_store import StoredCheckpoint, TlogStore

from ..conftest import make_settings


def _sizes(tlog: TlogStore) -> list[int]:
    rows = tlog.store.fetch("SELECT tree_size FROM tlog_checkpoints ORDER BY tree_size", ())
    return [int(r[0]) for r in rows]


def _checkpoint(size: int) -> StoredCheckpoint:
    return StoredCheckpoint(size, bytes([size]) * 32, f"note of {size}\n".encode())


def test_only_the_newest_checkpoints_are_kept(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    tlog = TlogStore(SqlStore(engine))
    for size in range(1, 7):
        assert tlog.insert_checkpoint(_checkpoint(size), size, kept=3)
        assert _sizes(tlog) == list(range(max(1, size - 2), size + 1))
    assert not tlog.insert_checkpoint(_checkpoint(6), 7, kept=1)  # already there: no pruning
    assert _sizes(tlog) == [4, 5, 6]
    latest = tlog.latest_checkpoint()
    assert latest is not None and latest.tree_size == 6 and latest.note == b"note of 6\n"
    assert tlog.insert_checkpoint(_checkpoint(7), 8)  # 0: every one kept
    assert _sizes(tlog) == [4, 5, 6, 7]
    engine.dispose()


def test_the_server_keeps_what_the_setting_says(db_url: str) -> None:
    app = create_app(make_settings(db_url, checkpoints_kept=2))
    with TestClient(app) as client:
        assert client.get("/_health").status_code == 200
        assert app.state.checkpointer.kept == 2
