"""SqlStore's SQLite writer connection (``write_batch``) and pinned reads: one open batch at
a time, a busy lock or writer declines without writing, failures leave nothing behind."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from plc.errors import MisorderedOperation, Unavailable
from plc.group_commit import GATHER_TURNS
from plc.policy import PolicySettings
from plc.service import Directory
from plc.store.engine import make_engine
from plc.store.lost_commit import settle_lost_commit
from plc.store.migrate import upgrade
from plc.store.records import CommitOutcome, CommitStatus, PendingCommit
from plc.store.sql import SqlStore
from plc.store.tlog_store import TlogStore
from plc.timestamps import parse_timestamp

from ..conftest import Clock
from ..helpers import new_did, update


@pytest.fixture
def env(sqlite_url: str, clock: Clock) -> Iterator[tuple[SqlStore, Directory, str]]:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    store = SqlStore(engine)
    store.leaf_hooks.append(TlogStore(store).append_in)
    yield store, Directory(store, PolicySettings(), clock), sqlite_url.removeprefix("sqlite:///")
    store.close()
    engine.dispose()


def _pending(directory: Directory, seed: str) -> PendingCommit:
    did, genesis, _ = new_did(seed)
    pending = directory.prepare(did, genesis)
    assert isinstance(pending, PendingCommit)
    return pending


def test_one_open_batch_at_a_time(env: tuple[SqlStore, Directory, str]) -> None:
    store, directory, _ = env
    first, second = _pending(directory, "w1"), _pending(directory, "w2")
    opened = store.write_batch([first])
    assert opened is not None
    assert store.write_batch([second]) is None  # the writer holds an open batch
    assert store.tree_size() == 0  # not visible before COMMIT
    assert [o.status for o in opened.commit()] == [CommitStatus.COMMITTED]
    assert store.tree_size() == 1
    again = store.write_batch([second])
    assert again is not None
    assert [o.seq for o in again.commit()] == [2]
    assert [bytes(r[0]) for r in store.fetch("SELECT hash FROM tlog_hashes", ())]


def test_lock_held_elsewhere_declines_and_writes_nothing(
    env: tuple[SqlStore, Directory, str],
) -> None:
    store, directory, path = env
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        assert store.write_batch([_pending(directory, "w3")]) is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    opened = store.write_batch([_pending(directory, "w3")])
    assert opened is not None and opened.commit()[0].seq == 1


def test_failed_write_rolls_back_and_frees_the_writer(
    env: tuple[SqlStore, Directory, str],
) -> None:
    store, directory, _ = env

    def broken_hook(*_: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    store.leaf_hooks.append(broken_hook)
    with pytest.raises(Unavailable):
        store.write_batch([_pending(directory, "w4")])
    store.leaf_hooks.remove(broken_hook)
    assert store.tree_size() == 0
    assert store.fetch("SELECT count(*) FROM operations", ()) == [(0,)]
    opened = store.write_batch([_pending(directory, "w4")])
    assert opened is not None and opened.commit()[0].seq == 1


def test_pinned_reads_see_commits_and_other_threads_use_the_pool(
    env: tuple[SqlStore, Directory, str],
) -> None:
    store, directory, _ = env
    store.pin_reads()
    assert store.tree_size() == 0
    seen: list[int] = []
    store.commit_batch([_pending(directory, "w5")])
    assert store.tree_size() == 1
    thread = threading.Thread(target=lambda: seen.append(store.tree_size()))
    thread.start()
    thread.join()
    assert seen == [1]
    store.close()
    assert store.tree_size() == 1  # after close, reads go through the pool


def test_sqlite_stores_flags_as_integers_and_bodies_as_blobs(
    env: tuple[SqlStore, Directory, str],
) -> None:
    """The writer binds BOOLEAN columns as ``int`` and BLOB columns as ``bytearray`` on
    SQLite (no adaptation lookup): what is stored is integer 0/1 and blobs, as with ``bool``
    and ``bytes``, and reads give back ``bytes``."""
    store, directory, _ = env
    pending = _pending(directory, "types")
    opened = store.write_batch([pending])
    assert opened is not None
    (outcome,) = opened.commit()
    assert store.fetch("SELECT typeof(nullified), nullified, typeof(line) FROM operations", ()) == [
        ("integer", 0, "blob")
    ]
    assert store.fetch(
        "SELECT typeof(tombstoned), tombstoned, typeof(data), typeof(document) FROM dids", ()
    ) == [("integer", 0, "blob", "blob")]
    assert {r[0] for r in store.fetch("SELECT typeof(hash) FROM tlog_hashes", ())} == {"blob"}
    (row,) = store.audit_rows(pending.prepared.did)
    assert row.line == outcome.line and type(row.line) is bytes
    state = store.did_state(pending.prepared.did)
    assert state == (False, pending.data, pending.document)


def test_group_commit_gathers_ops_still_being_validated(
    env: tuple[SqlStore, Directory, str], clock: Clock
) -> None:
    """Six submissions arriving one event-loop turn apart go out in one commit: the flush
    waits while each turn brings another op (GATHER_TURNS), then commits them together
    (with one turn, as before, they went out as [1, 2], [3, 4, 5], [6])."""
    store = env[0]
    directory = Directory(store, PolicySettings(), clock, inline_io=True)
    batches: list[list[int | None]] = []
    directory.committer.listeners.append(
        lambda outcomes, _seconds: batches.append([o.seq for o in outcomes])
    )
    assert GATHER_TURNS >= 6
    dids = [new_did(f"gather-{i}") for i in range(6)]

    async def submit(turns: int, did: str, genesis: dict[str, object]) -> int | None:
        for _ in range(turns):
            await asyncio.sleep(0)
        return (await directory.submit_body(did, orjson.dumps(genesis))).seq

    async def run_all() -> list[int | None]:
        return list(await asyncio.gather(*(submit(i, d, g) for i, (d, g, _) in enumerate(dids))))

    seqs = asyncio.run(run_all())
    assert sorted(s for s in seqs if s is not None) == [1, 2, 3, 4, 5, 6]
    assert batches == [[1, 2, 3, 4, 5, 6]]


def test_listeners_have_run_when_the_committer_threads_submitter_gets_its_answer(
    env: tuple[SqlStore, Directory, str], clock: Clock
) -> None:
    """A client that has its 200 must find its op counted in GET /metrics. On the committer
    thread (PostgreSQL's path) the answer used to be handed to the event loop before the
    listeners ran, so a scrape right after could miss the commit; the slow listener makes
    that order fail every time. (On the event-loop path either order is safe: the waiters
    run only once the flushing task yields, after the listeners.)"""
    directory = Directory(env[0], PolicySettings(), clock, inline_io=False)
    finished: list[int | None] = []

    def slow_listener(outcomes: list[CommitOutcome], _seconds: float) -> None:
        threading.Event().wait(0.2)  # long enough for a woken submitter to overtake it
        finished.extend(o.seq for o in outcomes)

    directory.committer.listeners.append(slow_listener)
    directory.start()
    try:
        did, genesis, _ = new_did("listeners")
        result = asyncio.run(directory.submit_body(did, orjson.dumps(genesis)))
        assert finished == [result.seq] == [1]
    finally:
        directory.stop()


def test_the_alembic_command_migrates_the_database_plc_serve_would_use(tmp_path: Path) -> None:
    # By hand, from any directory: DATABASE_URL as plc serve reads it, or -x database_url.
    alembic = str(Path(sys.executable).parent / "alembic")
    ini = str(Path(__file__).resolve().parents[2] / "alembic.ini")
    by_env, by_x = tmp_path / "env.sqlite3", tmp_path / "x.sqlite3"
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{by_env}"}
    subprocess.run([alembic, "-c", ini, "upgrade", "head"], cwd=tmp_path, env=env, check=True)
    x = ["-x", f"database_url=sqlite:///{by_x}"]
    subprocess.run([alembic, "-c", ini, *x, "upgrade", "head"], cwd=tmp_path, env=env, check=True)
    for db in (by_env, by_x):
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0003",)]
    assert not (tmp_path / "plc-directory.sqlite3").exists()


def test_the_alembic_command_says_a_database_it_cannot_open_in_one_line(tmp_path: Path) -> None:
    alembic = str(Path(sys.executable).parent / "alembic")
    ini = str(Path(__file__).resolve().parents[2] / "alembic.ini")
    env = {"PATH": "/usr/bin:/bin"}
    (tmp_path / "not-a-database").write_text("plain text\n")
    for url in (
        f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.sqlite3'}",
        "garbage://x",
        f"sqlite:///{tmp_path / 'not-a-database'}",  # a DatabaseError: was a traceback
    ):
        done = subprocess.run(
            [alembic, "-c", ini, "-x", f"database_url={url}", "current"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 1
        assert "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith("error: ")


def test_a_lost_commit_is_confirmed_only_when_every_op_of_the_batch_holds_its_seq(
    env: tuple[SqlStore, Directory, str],
) -> None:
    """A batch [A, X] whose COMMIT was lost, while A alone, submitted again elsewhere, was
    stored at A's seq by a transaction of its own: A's CID at its seq does not mean the batch
    committed (X was answered 200 and never stored)."""
    store, directory, _ = env
    a, x = _pending(directory, "lost-a"), _pending(directory, "lost-x")
    opened = store.write_batch([a, x])
    assert opened is not None
    written = list(opened.outcomes)
    assert [o.seq for o in written] == [1, 2]
    store._finish_write(commit=False)  # the lost COMMIT: rolled back
    assert [o.seq for o in store.commit_batch([a])] == [1]  # A, through another process
    cids = [p.prepared.operation.cid for p in (a, x)]
    lost = RuntimeError("connection lost during COMMIT")
    with pytest.raises(Unavailable):
        settle_lost_commit(store.engine, written, cids, (sqlite3.Error,), 1.0, lost)
    # A batch of A alone, stored at its seq, is confirmed as before.
    assert settle_lost_commit(store.engine, written[:1], cids[:1], (), 1.0, lost) == written[:1]


def test_an_op_stored_meanwhile_is_a_duplicate_even_when_the_head_moved_past_it(
    env: tuple[SqlStore, Directory, str], clock: Clock
) -> None:
    """One copy of A validated against G waits; another copy of A commits, then B on A. The
    waiting copy finds the head at B: A is stored and active, so it is answered as the
    re-submission it is (200), not 409 "the DID changed". Once a recovery has nullified A,
    the same wait ends in a conflict."""
    store, directory, _ = env
    did, genesis, keys = new_did("moved")
    [g] = store.commit_batch([_prepared(directory, did, genesis)])
    a = update(genesis, keys[1], also_known_as=["at://a.test"])
    clock.advance(timedelta(seconds=1))
    waiting = _prepared(directory, did, a)
    assert store.commit_batch([_prepared(directory, did, a)])[0].status is CommitStatus.COMMITTED
    clock.advance(timedelta(seconds=1))
    b = update(a, keys[1], also_known_as=["at://b.test"])
    assert store.commit_batch([_prepared(directory, did, b)])[0].status is CommitStatus.COMMITTED
    assert [o.status for o in store.commit_batch([waiting])] == [CommitStatus.DUPLICATE]
    clock.advance(timedelta(seconds=1))
    recovery = update(genesis, keys[0], also_known_as=["at://r.test"])
    assert store.commit_batch([_prepared(directory, did, recovery)])[0].seq == 4
    assert [o.status for o in store.commit_batch([waiting])] == [CommitStatus.CONFLICT]
    assert g.seq == 1 and store.tree_size() == 4  # nothing appended by the waiting copy


def _prepared(directory: Directory, did: str, op: dict[str, object]) -> PendingCommit:
    pending = directory.prepare(did, op)
    assert isinstance(pending, PendingCommit)
    return pending


def test_an_op_after_a_head_stamped_at_the_last_moment_is_refused_not_a_crash(
    env: tuple[SqlStore, Directory, str],
) -> None:
    # such a head comes only from an import; head + 1 ms is no date (a POST answered 500)
    store, directory, _ = env
    did, genesis, keys = new_did("last-moment")
    last = parse_timestamp("9999-12-31T23:59:59.999Z")
    pending = directory.prepare(did, genesis, created_at=last, imported=True)
    assert isinstance(pending, PendingCommit)
    store.commit_batch([pending])
    with pytest.raises(MisorderedOperation, match="not later than"):
        directory.prepare(did, update(genesis, keys[0], also_known_as=["at://next.example"]))
