"""Shared fixtures: vectors, a settable clock, a fresh database per test (SQLite file or a
PostgreSQL schema of its own), the app, and a live server on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings

from plc.api.app import create_app
from plc.api.http_server import uvicorn_options
from plc.config import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED_VECTORS = REPO.parent / "shared" / "vectors"
INTEROP = SHARED_VECTORS / "did-method-plc" / "interop_tests" / "audit_log"
PG_ADMIN_URL = os.environ.get("PLC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

pytest_plugins = ["tests.local_servers"]

hypothesis_settings.register_profile("ci", deadline=None, max_examples=40, derandomize=True)
hypothesis_settings.register_profile("dev", deadline=None, max_examples=25)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


class Clock:
    """A clock tests set and advance; returns aware UTC datetimes."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment

    def advance(self, delta: timedelta) -> None:
        self.now = self.now + delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _pg_schema_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    schema = "t_" + uuid.uuid4().hex[:16]
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}")
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'plc.sqlite3'}"
    else:
        yield from _pg_schema_url()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema (for tests that are about PostgreSQL only)."""
    yield from _pg_schema_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'plc.sqlite3'}"


def make_settings(db_url: str, **overrides: object) -> Settings:
    return Settings(database_url=db_url, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def app_factory(db_url: str, clock: Clock):  # type: ignore[no-untyped-def]
    def build(**overrides: object) -> FastAPI:
        return create_app(make_settings(db_url, **overrides), clock=clock)

    return build


@pytest.fixture
def client(app_factory) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A client of an app with the default (plc.directory) policy."""
    with TestClient(app_factory()) as test_client:
        yield test_client


@pytest.fixture
def open_client(app_factory) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A client of an app with the admission policy switched off (replays)."""
    with TestClient(app_factory(policy_enabled=False)) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = {**uvicorn_options(), "log_level": "warning"}
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def live_server(app_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with LiveServer(app_factory()) as server:
        yield server


@pytest.fixture
def logging_left_as_found() -> Iterator[None]:
    """``plc serve`` sets up JSON logging on stderr before it opens the database: undo it, or
    later tests in this process would find their stderr full of log lines."""
    loggers = [
        logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access")
    ]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    hook = sys.unraisablehook
    yield
    for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        lg.handlers[:], lg.propagate = handlers, propagate
        lg.setLevel(level)
    sys.unraisablehook = hook
