"""PostgreSQL locks: a writer waits at most ``PLC_DB_BUSY_TIMEOUT_MS`` for the log head held
by another session (then 503, nothing stored; it waited forever), and processes starting at
once on an empty database migrate one after the other (two at once failed)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from plc.api.app import create_app
from plc.store.engine import make_engine
from plc.store.migrate import upgrade

from ..conftest import Clock, make_settings
from ..helpers import new_did

pytestmark = pytest.mark.postgres


def test_a_held_log_head_is_waited_for_within_the_busy_timeout(pg_url: str, clock: Clock) -> None:
    psycopg = pytest.importorskip("psycopg")
    app = create_app(make_settings(pg_url, db_busy_timeout_ms=300), clock=clock)
    with TestClient(app) as client:
        first_did, first, _ = new_did("before")
        assert client.post(f"/{first_did}", json=first).status_code == 200
        # another session (a stuck process, an operator's psql) holds the log head's row
        holder = psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"))
        try:
            holder.execute("SELECT tree_size FROM log_head WHERE id = 1 FOR UPDATE")
            did, genesis, _ = new_did("blocked")
            answers: list = []  # type: ignore[type-arg]
            # in a thread: without the timeout the POST never returns
            poster = threading.Thread(
                target=lambda: answers.append(client.post(f"/{did}", json=genesis)), daemon=True
            )
            poster.start()
            poster.join(timeout=30)
            assert answers, "the POST still waits for the log head"
            blocked = answers[0]
            assert blocked.status_code == 503
            assert "message" in blocked.json()
            assert client.get(f"/{did}").status_code == 404  # nothing stored
        finally:
            holder.rollback()
            holder.close()
        assert client.post(f"/{did}", json=genesis).status_code == 200
        assert client.get("/export?after=0").content.count(b"\n") == 1  # seq 1 and 2


def test_processes_starting_at_once_migrate_one_after_the_other(pg_url: str) -> None:
    starters = 4
    barrier = threading.Barrier(starters)
    failures: list[BaseException] = []

    def start() -> None:
        engine = make_engine(pg_url)
        try:
            barrier.wait()
            upgrade(engine)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start, daemon=True) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "the migrations deadlocked"
    assert failures == []
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        assert len(version) == 1
    finally:
        engine.dispose()


def test_a_writer_that_waited_for_the_lock_follows_the_newest_created_at(pg_url: str) -> None:
    """Two processes' stores on one database: A stamps its op half a second ahead of the clock
    while B waits for the log head; B must then stamp at or after A's op, so that createdAt
    never decreases along seq. Reading the newest createdAt in the locking statement itself
    gave B NULL (READ COMMITTED re-reads only the locked row) and B's earlier clock."""
    from plc.policy import PolicySettings
    from plc.service import Directory
    from plc.store.sql import SqlStore
    from plc.store.tlog_store import TlogStore

    engine = make_engine(pg_url)
    upgrade(engine)
    stores = []
    for _ in range(2):
        store = SqlStore(make_engine(pg_url))
        store.leaf_hooks.append(TlogStore(store).append_in)
        stores.append((store, Directory(store, PolicySettings(enabled=False))))
    (store_a, directory_a), (store_b, directory_b) = stores

    def pending(directory: Directory, seed: str):  # type: ignore[no-untyped-def]
        did, genesis, _ = new_did(seed)
        return directory.prepare(did, genesis)

    def clock_a() -> datetime:
        # read under A's lock: B is kept waiting meanwhile
        time.sleep(0.5)
        return datetime.now(UTC) + timedelta(milliseconds=500)

    pending_a, pending_b = pending(directory_a, "ahead"), pending(directory_b, "waiting")
    outcomes: dict[str, Any] = {}
    writer_a = threading.Thread(
        target=lambda: outcomes.update(a=store_a.commit_batch([pending_a], clock_a)[0])
    )
    writer_a.start()
    time.sleep(0.15)
    outcomes["b"] = store_b.commit_batch([pending_b], lambda: datetime.now(UTC))[0]
    writer_a.join()
    a, b = outcomes["a"], outcomes["b"]
    assert (a.seq, b.seq) == (1, 2)
    created = [orjson.loads(o.line)["createdAt"] for o in (a, b)]
    assert created[1] >= created[0], created
