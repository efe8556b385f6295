"""A database that refuses writes is said in the log, not only answered 503: an operator
whose PDSes get 503s must see why (SQLite here, its write lock held by another process)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from plc.api.app import create_app

from ..conftest import Clock, make_settings
from ..helpers import new_did


def test_a_refused_write_is_logged_once_per_reason(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "held.sqlite3"
    settings = make_settings(f"sqlite:///{path}", db_busy_timeout_ms=100)
    with TestClient(create_app(settings, clock=clock)) as client:
        first, genesis, _ = new_did("before-the-lock")
        assert client.post(f"/{first}", json=genesis).status_code == 200
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's open write transaction
        try:
            caplog.set_level(logging.WARNING, logger="plc.store")
            for seed in ("locked-1", "locked-2", "locked-3"):
                did, op, _ = new_did(seed)
                answer = client.post(f"/{did}", json=op)
                assert answer.status_code == 503
                assert answer.json() == {"message": "Database unavailable, try again"}
        finally:
            holder.rollback()
            holder.close()
        said = [r.getMessage() for r in caplog.records if r.name == "plc.store"]
        assert said == ["database unavailable: OperationalError: database is locked"], said
        assert client.post(f"/{did}", json=op).status_code == 200
