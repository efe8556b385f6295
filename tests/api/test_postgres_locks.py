"""PostgreSQL locks: a writer waits at most ``PLC_DB_BUSY_TIMEOUT_MS`` for the log head held
by another session (then 503, nothing stored; it waited forever), and processes starting at
once on an empty database migrate one after the other (two at once failed)."""

from __future__ import annotations

import threading

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
