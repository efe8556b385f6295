"""Validation in a child process (``plc.validation_process``): a live server on SQLite whose
POST bodies are validated by a real child process answers as one that validates in-process,
keeps one chain under racing writers, and carries on in-process when the child dies or hangs."""

from __future__ import annotations

import os
import pickle
import signal
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest

from plc.api.app import create_app
from plc.errors import LateRecovery, RateLimited
from plc.validation_process import ValidationProcess, _flatten, _rebuild_error, _unflatten

from ..conftest import Clock, LiveServer, make_settings
from ..helpers import new_did, update
from .test_concurrency import check_one_winner, check_recovery_race, check_seq_contiguous


def _validator(server: LiveServer) -> ValidationProcess:
    validator = server.server.config.app.state.directory.validator
    assert isinstance(validator, ValidationProcess)
    return validator


def _wait_until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.fixture
def validated_server(sqlite_url: str, clock: Clock) -> Iterator[LiveServer]:
    """A live server with a validation process, once that process is ready."""
    app = create_app(make_settings(sqlite_url, validation_process=True), clock=clock)
    with LiveServer(app) as server:
        validator = _validator(server)
        _wait_until(lambda: validator.available, "validation process never became ready")
        yield server


def test_racing_updates_one_winner(validated_server: LiveServer) -> None:
    check_one_winner(validated_server.url)
    assert _validator(validated_server).validated == 21


def test_many_dids_seq_contiguous(validated_server: LiveServer) -> None:
    check_seq_contiguous(validated_server.url)
    assert _validator(validated_server).validated == 40


def test_recovery_race_one_chain(validated_server: LiveServer) -> None:
    check_recovery_race(validated_server.url)
    assert _validator(validated_server).validated == 21


def test_recovery_nullifies_through_the_child(validated_server: LiveServer, clock: Clock) -> None:
    """Genesis, an update by key 1, a recovery by key 0 from the genesis: the update is
    nullified, as the child's PendingCommit said."""
    did, genesis, keys = new_did("child-recovery")
    url = f"{validated_server.url}/{did}"
    assert httpx.post(url, json=genesis).status_code == 200
    clock.advance(timedelta(minutes=1))
    assert (
        httpx.post(url, json=update(genesis, keys[1], also_known_as=["at://a.test"])).status_code
        == 200
    )
    clock.advance(timedelta(minutes=1))
    recovery = update(genesis, keys[0], also_known_as=["at://r.test"])
    assert httpx.post(url, json=recovery).status_code == 200
    audit = httpx.get(f"{url}/log/audit").json()
    assert [entry["nullified"] for entry in audit] == [False, True, False]
    assert httpx.get(f"{url}/data").json()["alsoKnownAs"] == ["at://r.test"]
    assert _validator(validated_server).validated == 3


def test_flattened_pending_commit_comes_back_equal(client, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    """What crosses the socket rebuilds the very PendingCommit (nullified CIDs, signer
    index, timestamps, bodies and the export JSON included)."""
    directory = client.app.state.directory
    did, genesis, keys = new_did("child-flatten")
    assert client.post(f"/{did}", json=genesis).status_code == 200
    clock.advance(timedelta(minutes=1))
    assert client.post(f"/{did}", json=update(genesis, keys[1])).status_code == 200
    clock.advance(timedelta(minutes=1))
    pending = directory.prepare(did, update(genesis, keys[0], also_known_as=["at://f.test"]))
    assert pending.prepared.nullified and pending.prepared.key_index == 0
    rebuilt = _unflatten(pickle.loads(pickle.dumps(_flatten(pending))))
    assert rebuilt == pending
    assert (
        rebuilt.prepared.operation.canonical_json() == pending.prepared.operation.canonical_json()
    )
    assert rebuilt.prepared.operation.unsigned_cbor() == pending.prepared.operation.unsigned_cbor()


def test_rate_limit_429_with_retry_after(validated_server: LiveServer, clock: Clock) -> None:
    """The child raises RateLimited (an error with an extra argument); the parent answers 429
    with its Retry-After, and the clock is the serving process's (tests inject theirs)."""
    did, op, keys = new_did("child-rate")
    url = f"{validated_server.url}/{did}"
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


def test_child_gone_validation_carries_on_here(
    validated_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("plc.validation_process.RESTART_DELAY_S", 600.0)  # no replacement yet
    validator = _validator(validated_server)
    did, op, keys = new_did("child-gone")
    assert httpx.post(f"{validated_server.url}/{did}", json=op).status_code == 200
    validator._process.kill()
    validator._process.join(10)
    deadline = time.monotonic() + 10
    while validator.available:
        assert time.monotonic() < deadline, "the server did not notice its child died"
        time.sleep(0.02)
    second = update(op, keys[1], also_known_as=["at://after.test"])
    assert httpx.post(f"{validated_server.url}/{did}", json=second).status_code == 200
    assert httpx.post(f"{validated_server.url}/{did}", json={"x": 1}).status_code == 400
    assert len(httpx.get(f"{validated_server.url}/{did}/log/audit").json()) == 2
    assert validator.validated == 1


def test_stuck_child_is_killed_and_bypassed(
    validated_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that stops answering (SIGSTOP) costs one request the reply timeout, then is
    killed; that request and the later ones are validated in-process."""
    monkeypatch.setattr("plc.validation_process.REPLY_TIMEOUT_S", 0.5)
    monkeypatch.setattr("plc.validation_process.RESTART_DELAY_S", 600.0)
    validator = _validator(validated_server)
    os.kill(validator._process.pid, signal.SIGSTOP)
    did, op, keys = new_did("child-stuck")
    started = time.monotonic()
    assert httpx.post(f"{validated_server.url}/{did}", json=op, timeout=30).status_code == 200
    assert time.monotonic() - started >= 0.5
    assert not validator.available
    validator._process.join(10)
    assert not validator._process.is_alive()
    second = update(op, keys[1], also_known_as=["at://unstuck.test"])
    assert httpx.post(f"{validated_server.url}/{did}", json=second).status_code == 200
    assert len(httpx.get(f"{validated_server.url}/{did}/log/audit").json()) == 2
    assert validator.validated == 0


def test_gone_child_is_replaced(
    validated_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed child is replaced after the restart delay; the new one validates again."""
    monkeypatch.setattr("plc.validation_process.RESTART_DELAY_S", 0.2)
    validator = _validator(validated_server)
    first = validator._process
    first.kill()
    _wait_until(lambda: validator.restarts == 1, "no replacement was started")
    _wait_until(lambda: validator.available, "the replacement never became ready")
    assert validator._process is not first and validator._process.is_alive()
    assert not first.is_alive()
    did, op, keys = new_did("child-replaced")
    assert httpx.post(f"{validated_server.url}/{did}", json=op).status_code == 200
    assert validator.validated == 1


def test_stuck_child_is_replaced(
    validated_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child killed for being silent is replaced too."""
    monkeypatch.setattr("plc.validation_process.REPLY_TIMEOUT_S", 0.5)
    monkeypatch.setattr("plc.validation_process.RESTART_DELAY_S", 0.2)
    validator = _validator(validated_server)
    stuck = validator._process
    os.kill(stuck.pid, signal.SIGSTOP)
    did, op, keys = new_did("child-stuck-replaced")
    assert httpx.post(f"{validated_server.url}/{did}", json=op, timeout=30).status_code == 200
    assert validator.validated == 0
    _wait_until(lambda: validator.available, "the replacement never became ready")
    assert validator.restarts == 1 and validator._process is not stuck
    assert not stuck.is_alive()
    second = update(op, keys[1], also_known_as=["at://replaced.test"])
    assert httpx.post(f"{validated_server.url}/{did}", json=second).status_code == 200
    assert validator.validated == 1


def test_replacements_that_die_back_off_then_recover(
    validated_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replacements that exit before answering (here: a log level the child refuses) come
    at growing intervals while ops are validated in-process; once one answers, the backoff
    is reset."""
    monkeypatch.setattr("plc.validation_process.RESTART_DELAY_S", 0.1)
    validator = _validator(validated_server)
    validator.log_level = "no-such-level"
    validator._process.kill()
    _wait_until(lambda: validator.restarts >= 3, "replacements stopped coming")
    assert validator._failed_restarts >= 3
    assert not validator.available
    did, op, keys = new_did("child-backoff")
    assert httpx.post(f"{validated_server.url}/{did}", json=op).status_code == 200
    assert validator.validated == 0
    validator.log_level = "warning"
    _wait_until(lambda: validator.available, "no replacement recovered")
    second = update(op, keys[1], also_known_as=["at://recovered.test"])
    assert httpx.post(f"{validated_server.url}/{did}", json=second).status_code == 200
    assert validator.validated == 1
    assert validator._failed_restarts == 0


def test_shutdown_while_a_replacement_waits(
    sqlite_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing the server while a replacement is pending starts none and does not wait out
    the restart delay."""
    monkeypatch.setattr("plc.validation_process.RESTART_DELAY_S", 600.0)
    app = create_app(make_settings(sqlite_url, validation_process=True), clock=clock)
    server = LiveServer(app)
    with server:
        validator = _validator(server)
        _wait_until(lambda: validator.available, "validation process never became ready")
        validator._process.kill()
        _wait_until(lambda: validator._restart is not None, "no replacement was scheduled")
        started = time.monotonic()
    assert not server.thread.is_alive(), "the server did not stop"
    assert time.monotonic() - started < 15
    assert validator.restarts == 0


def test_errors_cross_the_process_boundary_whole() -> None:
    rebuilt = _rebuild_error(RateLimited, "slow down", {"message": "slow down", "retry_after_s": 7})
    assert isinstance(rebuilt, RateLimited)
    assert (rebuilt.message, rebuilt.retry_after_s, str(rebuilt)) == ("slow down", 7, "slow down")
    late = _rebuild_error(LateRecovery, "too late", {"message": "too late", "lapsed_ms": 5})
    assert isinstance(late, LateRecovery) and late.lapsed_ms == 5


def test_child_that_cannot_read_the_database_is_bypassed_and_replaced(
    validated_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replacement child pointed at a database it cannot open answers 503 for its first
    read; the server validates that op itself (200, not 503), stops the child and keeps
    replacing it at growing intervals."""
    monkeypatch.setattr("plc.validation_process.RESTART_DELAY_S", 0.1)
    validator = _validator(validated_server)
    validator.database_url = "sqlite:////nonexistent-dir/plc.sqlite3"
    validator._process.kill()
    _wait_until(lambda: validator.restarts == 1 and validator.available, "no replacement")
    broken = validator._process
    did, op, keys = new_did("child-no-database")
    assert httpx.post(f"{validated_server.url}/{did}", json=op).status_code == 200
    assert validator.validated == 0
    _wait_until(lambda: not broken.is_alive(), "the child that failed was not stopped")
    _wait_until(lambda: validator.restarts >= 2, "no further replacement")
    assert validator._failed_restarts >= 2  # a 503 is not an answer that resets the backoff
    assert len(httpx.get(f"{validated_server.url}/{did}/log/audit").json()) == 1
