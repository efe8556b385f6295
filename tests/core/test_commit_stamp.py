"""``createdAt`` is stamped at the commit (design.md decision 3): an op validated earlier but
committed after another carries the later time, so ``createdAt`` never decreases along
``seq`` (a follower of the timestamp-mode export, which pages by ``createdAt``, missed ops
whose validation and commit were overtaken); a recovery whose window closed meanwhile is a
LATE (refused as such), and imported ops keep their own time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from plc.errors import LateRecovery
from plc.operation import parse_operation
from plc.policy import PolicySettings
from plc.rules import RECOVERY_WINDOW, LogEntry, validate_next_op
from plc.service import Directory
from plc.store.engine import make_engine
from plc.store.migrate import upgrade
from plc.store.records import CommitStatus, PendingCommit
from plc.store.sql import SqlStore
from plc.timestamps import format_timestamp

from ..conftest import Clock
from ..helpers import new_did, update


@pytest.fixture
def env(db_url: str, clock: Clock) -> Iterator[tuple[SqlStore, Directory]]:
    engine = make_engine(db_url)
    upgrade(engine)
    store = SqlStore(engine)
    yield store, Directory(store, PolicySettings(enabled=False), clock)
    store.close()
    engine.dispose()


def _export(store: SqlStore) -> list[dict]:  # type: ignore[type-arg]
    return [orjson.loads(bytes(row[0])) for row in store.fetch("SELECT line FROM operations", ())]


def _prepared(directory: Directory, did: str, op: dict) -> PendingCommit:  # type: ignore[type-arg]
    pending = directory.prepare(did, op)
    assert isinstance(pending, PendingCommit)
    return pending


def test_an_op_committed_after_a_later_one_carries_the_commit_time(
    env: tuple[SqlStore, Directory], clock: Clock
) -> None:
    store, directory = env
    first = _prepared(directory, *new_did("early")[:2])
    clock.advance(timedelta(milliseconds=250))
    second = _prepared(directory, *new_did("late")[:2])
    commit_time = clock()
    assert store.commit_batch([second], clock)[0].status is CommitStatus.COMMITTED
    clock.advance(timedelta(milliseconds=5))
    assert store.commit_batch([first], clock)[0].status is CommitStatus.COMMITTED
    lines = _export(store)
    assert [line["createdAt"] for line in lines] == [
        format_timestamp(commit_time),
        format_timestamp(clock()),  # not the earlier time it was validated at
    ]
    stored = store.fetch("SELECT created_at_ms FROM operations ORDER BY seq", ())
    assert [row[0] for row in stored] == sorted(row[0] for row in stored)


def test_imported_ops_and_commits_without_a_clock_keep_their_time(
    env: tuple[SqlStore, Directory], clock: Clock
) -> None:
    store, directory = env
    did, genesis, _ = new_did("imported")
    then = clock() - timedelta(days=400)
    pending = directory.prepare(did, genesis, created_at=then, imported=True)
    assert isinstance(pending, PendingCommit) and not pending.restamp
    store.commit_batch([pending], clock)
    plain = _prepared(directory, *new_did("no-clock")[:2])
    clock.advance(timedelta(seconds=3))
    store.commit_batch([plain])
    assert [line["createdAt"] for line in _export(store)] == [
        format_timestamp(then),
        format_timestamp(plain.prepared.created_at),
    ]


def test_a_recovery_whose_window_closed_before_its_commit_is_a_conflict(
    env: tuple[SqlStore, Directory], clock: Clock
) -> None:
    store, directory = env
    did, genesis, keys = new_did("recover")
    assert store.commit_batch([_prepared(directory, did, genesis)], clock)
    clock.advance(timedelta(hours=1))
    hijack = update(genesis, keys[1], also_known_as=["at://evil.test"])
    store.commit_batch([_prepared(directory, did, hijack)], clock)
    hijacked_at = clock()
    clock.set(hijacked_at + RECOVERY_WINDOW)  # the last moment a recovery is allowed
    recovery = _prepared(directory, did, update(genesis, keys[0], also_known_as=["at://ok"]))
    assert recovery.prepared.valid_until == hijacked_at + RECOVERY_WINDOW
    clock.advance(timedelta(milliseconds=1))  # ... and it is past when the commit comes
    before = store.tree_size()
    late = store.commit_batch([recovery], clock)[0]
    assert late.status is CommitStatus.LATE
    assert late.lapsed == RECOVERY_WINDOW + timedelta(milliseconds=1)
    assert store.tree_size() == before
    with pytest.raises(LateRecovery):  # as a retry would be refused
        directory.prepare(did, update(genesis, keys[0], also_known_as=["at://ok"]))


def test_ops_stamped_in_one_millisecond_keep_their_order(
    env: tuple[SqlStore, Directory], clock: Clock
) -> None:
    """An update stamped one millisecond after its DID's op of the same millisecond is
    followed in the log by no earlier time (the next commit used to take the clock's)."""
    store, directory = env
    did, genesis, keys = new_did("same-ms")
    store.commit_batch([_prepared(directory, did, genesis)], clock)
    bumped = _prepared(directory, did, update(genesis, keys[1], also_known_as=["at://b"]))
    assert bumped.prepared.created_at == clock() + timedelta(milliseconds=1)
    store.commit_batch([bumped], clock)
    other = _prepared(directory, *new_did("same-ms-other")[:2])
    store.commit_batch([other], clock)
    times = [line["createdAt"] for line in _export(store)]
    assert times == sorted(times)
    assert times[1] == times[2] == format_timestamp(clock() + timedelta(milliseconds=1))


def test_a_log_tail_far_ahead_of_the_clock_is_not_followed(
    env: tuple[SqlStore, Directory], clock: Clock
) -> None:
    store, directory = env
    did, genesis, _ = new_did("future")
    ahead = clock() + timedelta(days=30)  # imported history with a skewed createdAt
    pending = directory.prepare(did, genesis, created_at=ahead, imported=True)
    assert isinstance(pending, PendingCommit)
    store.commit_batch([pending], clock)
    store.commit_batch([_prepared(directory, *new_did("now")[:2])], clock)
    assert _export(store)[1]["createdAt"] == format_timestamp(clock())


@pytest.mark.parametrize("inline_io", [True, False], ids=["event-loop", "committer-thread"])
def test_the_directory_stamps_at_the_commit(db_url: str, inline_io: bool) -> None:
    """Through the service's group commit (both paths): the stored time is the clock's
    reading at the commit, which a stepping clock puts after the validation's."""
    if inline_io and not db_url.startswith("sqlite"):
        pytest.skip("the event-loop commit path (write_batch) is SQLite's own")
    engine = make_engine(db_url)
    upgrade(engine)
    store = SqlStore(engine)
    step = StepClock()
    directory = Directory(store, PolicySettings(enabled=False), step, inline_io=inline_io)
    directory.start()
    try:
        did, genesis, _ = new_did("service")
        asyncio.run(directory.submit_body(did, orjson.dumps(genesis)))
        validated, committed = step.readings[0], step.readings[-1]
        assert committed > validated
        assert _export(store)[0]["createdAt"] == format_timestamp(committed)
    finally:
        directory.stop()
        store.close()
        engine.dispose()


class StepClock:
    """Each reading one second after the one before."""

    def __init__(self) -> None:
        self.readings: list[datetime] = []

    def __call__(self) -> datetime:
        moment = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=len(self.readings))
        self.readings.append(moment)
        return moment


def test_valid_until_is_the_end_of_a_recovery_window_and_none_otherwise(clock: Clock) -> None:
    did, genesis, keys = new_did("rules")
    genesis_op = parse_operation(genesis)
    history = [LogEntry(did, genesis_op, clock(), False)]
    append = parse_operation(update(genesis, keys[1], also_known_as=["at://a"]))
    later = clock() + timedelta(minutes=1)
    assert validate_next_op(history, did, append, later).valid_until is None
    history.append(LogEntry(did, append, later, False))
    recovery = parse_operation(update(genesis, keys[0], also_known_as=["at://b"]))
    prepared = validate_next_op(history, did, recovery, later + timedelta(hours=2))
    assert prepared.nullified == (append.cid,)
    assert prepared.valid_until == later + RECOVERY_WINDOW
