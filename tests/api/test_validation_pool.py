"""Validation in a child process (``plc.validation_pool``): a live server on SQLite whose POST
bodies are validated by a real child process answers as one that validates in-process, keeps
one chain under racing writers, and carries on in-process when the child dies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from plc.api.app import create_app
from plc.errors import LateRecovery, RateLimited
from plc.validation_pool import ValidationPool, _rebuild_error

from ..conftest import Clock, LiveServer, make_settings
from ..helpers import new_did, update
from .test_concurrency import check_one_winner, check_recovery_race, check_seq_contiguous


def _pool(server: LiveServer) -> ValidationPool:
    pool = server.server.config.app.state.directory.validation_pool
    assert isinstance(pool, ValidationPool)
    return pool


@pytest.fixture
def pooled_server(sqlite_url: str, clock: Clock) -> Iterator[LiveServer]:
    """A live server with one validation process, once that process is ready."""
    app = create_app(make_settings(sqlite_url, validation_processes=1), clock=clock)
    with LiveServer(app) as server:
        pool = _pool(server)
        deadline = time.monotonic() + 60
        while not pool.available:
            assert time.monotonic() < deadline, "validation process never became ready"
            time.sleep(0.05)
        yield server


def test_racing_updates_one_winner(pooled_server: LiveServer) -> None:
    check_one_winner(pooled_server.url)


def test_many_dids_seq_contiguous(pooled_server: LiveServer) -> None:
    check_seq_contiguous(pooled_server.url)


def test_recovery_race_one_chain(pooled_server: LiveServer) -> None:
    check_recovery_race(pooled_server.url)


def test_rate_limit_429_with_retry_after(pooled_server: LiveServer, clock: Clock) -> None:
    """The child raises RateLimited (an error with an extra argument); the parent answers 429
    with its Retry-After, and the clock is the serving process's (tests inject theirs)."""
    did, op, keys = new_did("pool-rate")
    url = f"{pooled_server.url}/{did}"
    assert httpx.post(url, json=op).status_code == 200
    for i in range(9):
        clock.advance(timedelta(minutes=1))
        op = update(op, keys[1], also_known_as=[f"at://r{i}.test"])
        assert httpx.post(url, json=op).status_code == 200, i
    clock.advance(timedelta(minutes=1))
    limited = httpx.post(url, json=update(op, keys[1], also_known_as=["at://over.test"]))
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) == 50 * 60 + 1
    audit = httpx.get(f"{url}/log/audit").json()
    assert len(audit) == 10
    assert audit[-1]["createdAt"] == "2026-01-01T00:09:00.000Z"


def test_child_gone_validation_carries_on_here(pooled_server: LiveServer) -> None:
    pool = _pool(pooled_server)
    did, op, keys = new_did("pool-gone")
    assert httpx.post(f"{pooled_server.url}/{did}", json=op).status_code == 200
    for child in pool._children:
        child.process.kill()
        child.process.join(10)
    deadline = time.monotonic() + 10
    while pool.available:
        assert time.monotonic() < deadline, "the pool did not notice its child died"
        time.sleep(0.02)
    second = update(op, keys[1], also_known_as=["at://after.test"])
    assert httpx.post(f"{pooled_server.url}/{did}", json=second).status_code == 200
    assert httpx.post(f"{pooled_server.url}/{did}", json={"x": 1}).status_code == 400
    assert len(httpx.get(f"{pooled_server.url}/{did}/log/audit").json()) == 2


def test_errors_cross_the_process_boundary_whole() -> None:
    rebuilt = _rebuild_error(RateLimited, "slow down", {"message": "slow down", "retry_after_s": 7})
    assert isinstance(rebuilt, RateLimited)
    assert (rebuilt.message, rebuilt.retry_after_s, str(rebuilt)) == ("slow down", 7, "slow down")
    late = _rebuild_error(LateRecovery, "too late", {"message": "too late", "lapsed_ms": 5})
    assert isinstance(late, LateRecovery) and late.lapsed_ms == 5
