"""A database that stops answering without failing: every request is still answered, within
``PLC_DB_TIMEOUT_S`` (a commit that waits too long: 503, the op may yet be stored) or
``PLC_DB_BUSY_TIMEOUT_MS`` (a read waiting for a table lock on PostgreSQL), and ``/_health``
says 503 meanwhile. Before, such a POST or read waited for as long as the database did, six
stuck reads took every worker thread (``/_health`` included), and a pool with no free
connection was a 500. Real SQLite files, the local PostgreSQL, a TCP proxy on 127.0.0.1."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import QueuePool

from plc.api.app import create_app
from plc.api.routes.health import COMMIT_STALLED
from plc.errors import DATABASE_UNAVAILABLE, Unavailable
from plc.group_commit import COMMIT_TIMED_OUT
from plc.metrics import TREE_SIZE_WAIT_S
from plc.store.sql import SqlStore

from ..conftest import Clock, LiveServer, make_settings
from ..helpers import new_did
from .pgproxy import PgProxy, upstream_of


def _unanswered(url: str, count: int, seconds: float) -> list[threading.Thread]:
    """``count`` GETs of ``url`` in threads, their answers ignored."""

    def get() -> None:
        try:
            httpx.get(url, timeout=seconds)
        except httpx.HTTPError:
            pass

    threads = [threading.Thread(target=get, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_a_commit_that_waits_too_long_is_503_and_stored_later(
    sqlite_url: str, clock: Clock
) -> None:
    """Another process holds SQLite's write lock for longer than PLC_DB_TIMEOUT_S but less
    than the busy timeout: the POST is answered 503 (the op may yet be stored) while its
    commit waits on, /_health says so, and once the lock is let go the op is stored: the
    same op re-submitted is answered 200 with it."""
    settings = make_settings(sqlite_url, db_timeout_s=0.5, db_busy_timeout_ms=20_000)
    with LiveServer(create_app(settings, clock=clock)) as server:
        holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        did, genesis, _ = new_did("late")
        started = time.monotonic()
        answer = httpx.post(f"{server.url}/{did}", json=genesis, timeout=30)
        assert answer.status_code == 503
        assert answer.json() == {"message": COMMIT_TIMED_OUT}
        assert time.monotonic() - started < 5
        health = httpx.get(f"{server.url}/_health", timeout=10)
        assert health.status_code == 503
        assert health.json()["message"].startswith(COMMIT_STALLED)
        holder.execute("COMMIT")
        holder.close()
        deadline = time.monotonic() + 10
        while httpx.get(f"{server.url}/{did}").status_code != 200:
            assert time.monotonic() < deadline, "the commit never finished"
            time.sleep(0.05)
        assert httpx.get(f"{server.url}/_health").status_code == 200
        again = httpx.post(f"{server.url}/{did}", json=genesis, timeout=30)
        assert again.status_code == 200
        assert httpx.get(f"{server.url}/export?after=0").content.count(b"\n") == 0  # one op


def test_a_pool_without_a_free_connection_is_unavailable(sqlite_url: str) -> None:
    """Every pooled connection taken for the pool's whole timeout: Unavailable (503), not
    SQLAlchemy's TimeoutError (a 500)."""
    engine = create_engine(
        sqlite_url, poolclass=QueuePool, pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    taken = engine.raw_connection()
    try:
        store = SqlStore(engine, engine, 1000)
        with pytest.raises(Unavailable) as refused:
            store.fetch("SELECT 1", ())
        assert refused.value.message == DATABASE_UNAVAILABLE
    finally:
        taken.close()
        engine.dispose()


@pytest.mark.postgres
def test_reads_waiting_for_a_table_lock_end_after_the_busy_timeout(
    pg_url: str, clock: Clock
) -> None:
    """A session locks the table of DIDs (VACUUM FULL, a migration's ALTER TABLE): reads of
    it answer 503 after the busy timeout, and eight of them waiting at once do not hold
    /_health, /export or /tlog/checkpoint (they took every worker thread, for good)."""
    psycopg = pytest.importorskip("psycopg")
    settings = make_settings(pg_url, db_busy_timeout_ms=1500)
    with LiveServer(create_app(settings, clock=clock)) as server:
        did, genesis, _ = new_did("locked")
        assert httpx.post(f"{server.url}/{did}", json=genesis).status_code == 200
        holder = psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"))
        try:
            holder.execute("LOCK TABLE dids IN ACCESS EXCLUSIVE MODE")
            waiting = _unanswered(f"{server.url}/{did}", 8, 30)
            time.sleep(0.3)
            started = time.monotonic()
            answer = httpx.get(f"{server.url}/{did}", timeout=30)
            assert answer.status_code == 503
            assert answer.json() == {"message": DATABASE_UNAVAILABLE}
            assert time.monotonic() - started < 10
            for path in ("/_health", "/export?after=0", "/tlog/checkpoint"):
                assert httpx.get(server.url + path, timeout=10).status_code == 200, path
            for thread in waiting:
                thread.join(timeout=30)
        finally:
            holder.rollback()
            holder.close()
        assert httpx.get(f"{server.url}/{did}").status_code == 200


class _Stall(PgProxy):
    """:meth:`stall` makes the connections open at that moment stop forwarding (a hung
    server, a NAT or proxy that dropped them without a reset: TCP still acknowledges, nothing
    answers); later connections work. :meth:`resume` forwards what was held."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._stalled_before = 0.0
        super().__init__(upstream)

    def stall(self) -> None:
        self._stalled_before = time.monotonic()

    def resume(self) -> None:
        self._stalled_before = 0.0

    def opened(self) -> float:
        return time.monotonic()

    def forward(
        self, data: bytes, source: socket.socket, sink: socket.socket, upstream: bool, born: float
    ) -> bool:
        while self._stalled_before > born:
            time.sleep(0.02)
        sink.sendall(data)
        return True


@contextmanager
def _through_proxy(pg_url: str) -> Iterator[tuple[_Stall, str]]:
    proxy = _Stall(upstream_of(pg_url))
    try:
        yield proxy, proxy.url(pg_url)
    finally:
        proxy.resume()
        proxy.close()


@pytest.mark.postgres
def test_a_database_that_stops_answering_gets_every_request_answered(
    pg_url: str, clock: Clock
) -> None:
    """The server's open connections stop forwarding: each POST is answered within
    PLC_DB_TIMEOUT_S (the first was never answered, nor was any POST after it), 503 while
    it finds a stalled connection, and /_health answers; once the connections forward again
    the server works without a restart, and the op is stored once."""
    with _through_proxy(pg_url) as (proxy, url):
        settings = make_settings(url, db_timeout_s=1.0)
        with LiveServer(create_app(settings, clock=clock)) as server:
            warm, warm_genesis, _ = new_did("warm")
            assert httpx.post(f"{server.url}/{warm}", json=warm_genesis).status_code == 200
            assert httpx.get(f"{server.url}/{warm}").status_code == 200
            proxy.stall()
            did, genesis, _ = new_did("held")
            statuses = []
            for _ in range(3):
                started = time.monotonic()
                answer = httpx.post(f"{server.url}/{did}", json=genesis, timeout=30)
                assert time.monotonic() - started < 5
                statuses.append(answer.status_code)
                if answer.status_code == 503:
                    assert answer.json()["message"] in (COMMIT_TIMED_OUT, DATABASE_UNAVAILABLE)
                else:
                    assert answer.status_code == 200, answer.text
            assert statuses[0] == 503  # its read or its commit met a stalled connection
            started = time.monotonic()
            assert httpx.get(f"{server.url}/_health", timeout=30).status_code in (200, 503)
            assert time.monotonic() - started < 10
            proxy.resume()
            deadline = time.monotonic() + 20
            while True:
                answer = httpx.post(f"{server.url}/{did}", json=genesis, timeout=30)
                if answer.status_code == 200:
                    break
                assert time.monotonic() < deadline, answer.text
                time.sleep(0.2)
            assert httpx.get(f"{server.url}/_health", timeout=10).status_code == 200
            lines = httpx.get(f"{server.url}/export?after=0").content.split(b"\n")
            assert len(lines) == 2  # warm and held, each once


@pytest.mark.postgres
def test_metrics_answer_while_the_database_stalls(pg_url: str, clock: Clock) -> None:
    """A scrape whose tree-size read meets a stalled connection answers within
    TREE_SIZE_WAIT_S with NaN (it waited for as long as the database did, holding a worker
    thread), and so does the next one while that read still waits."""
    with _through_proxy(pg_url) as (proxy, url):
        with LiveServer(create_app(make_settings(url), clock=clock)) as server:
            warm, warm_genesis, _ = new_did("warm")
            assert httpx.post(f"{server.url}/{warm}", json=warm_genesis).status_code == 200
            assert "plc_log_tree_size 1.0" in httpx.get(f"{server.url}/metrics").text
            proxy.stall()
            for _ in range(2):
                started = time.monotonic()
                scrape = httpx.get(f"{server.url}/metrics", timeout=30)
                assert scrape.status_code == 200
                assert "plc_log_tree_size NaN" in scrape.text
                assert time.monotonic() - started < TREE_SIZE_WAIT_S + 3
            proxy.resume()
            deadline = time.monotonic() + 20
            while "plc_log_tree_size 1.0" not in httpx.get(f"{server.url}/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.2)
