"""Racing writers against a live server on 127.0.0.1 (SQLite and PostgreSQL): one winner,
no fork, ``seq`` contiguous."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from ..conftest import LiveServer
from ..helpers import new_did, update


async def _race(url: str, path: str, bodies: list[dict]) -> list[int]:  # type: ignore[type-arg]
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        responses = await asyncio.gather(*(http.post(path, json=b) for b in bodies))
    return [r.status_code for r in responses]


def test_twenty_concurrent_updates_one_winner(live_server: LiveServer) -> None:
    check_one_winner(live_server.url)


def test_many_dids_concurrently_seq_contiguous(live_server: LiveServer) -> None:
    check_seq_contiguous(live_server.url)


def test_recovery_races_are_recoveries_not_forks(live_server: LiveServer) -> None:
    check_recovery_race(live_server.url)


def check_one_winner(url: str) -> None:
    """20 updates with the same prev and signer: one 200, the rest 400/409, no fork."""
    did, genesis, keys = new_did("race")
    assert httpx.post(f"{url}/{did}", json=genesis).status_code == 200
    # All signed by the same key: a contender validated after the winner committed is a fork
    # by a key without higher authority (400); one validated before it loses the
    # compare-and-swap (409). A contender signed by a stronger key would be a legitimate
    # recovery, not a fork (test_recovery_races_are_recoveries_not_forks).
    contenders = [update(genesis, keys[1], also_known_as=[f"at://c{i}.test"]) for i in range(20)]
    statuses = asyncio.run(_race(url, f"/{did}", contenders))
    assert statuses.count(200) == 1
    assert all(s in (400, 409) for s in statuses if s != 200)
    audit = httpx.get(f"{url}/{did}/log/audit").json()
    assert len(audit) == 2 and not any(a["nullified"] for a in audit)
    lines = httpx.get(f"{url}/export?after=0").content.split(b"\n")
    assert [orjson.loads(line)["seq"] for line in lines] == [1, 2]


def check_seq_contiguous(url: str) -> None:
    """40 new DIDs at once: all stored, ``seq`` 1..40 without gaps."""
    created = [new_did(f"many{i}") for i in range(40)]

    async def post_all() -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            responses = await asyncio.gather(*(http.post(f"/{d}", json=g) for d, g, _ in created))
        return [r.status_code for r in responses]

    assert asyncio.run(post_all()) == [200] * 40
    lines = httpx.get(f"{url}/export?after=0").content.split(b"\n")
    assert sorted(orjson.loads(line)["seq"] for line in lines) == list(range(1, 41))
    assert {orjson.loads(line)["did"] for line in lines} == {d for d, _, _ in created}


def check_recovery_race(url: str) -> None:
    """20 updates from one fork point by two keys: one chain whatever the interleaving."""
    did, genesis, keys = new_did("race2")
    assert httpx.post(f"{url}/{did}", json=genesis).status_code == 200
    contenders = [
        update(genesis, keys[i % 2], also_known_as=[f"at://r{i}.test"]) for i in range(20)
    ]
    statuses = asyncio.run(_race(url, f"/{did}", contenders))
    assert statuses.count(200) in (1, 2)
    audit = httpx.get(f"{url}/{did}/log/audit").json()
    active = [a for a in audit if not a["nullified"]]
    # whatever interleaving happened, the DID has one chain: genesis and one child
    assert len(active) == 2 and active[1]["operation"]["prev"] == audit[0]["cid"]
    assert len(audit) == 1 + statuses.count(200)


def test_sqlite_write_lock_held_elsewhere(sqlite_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    """Another process holding SQLite's write lock: the op waits for it (the committer
    thread's path), is then committed, and nothing is lost or duplicated."""
    import sqlite3
    import threading
    import time

    from plc.api.app import create_app
    from plc.config import Settings

    with LiveServer(create_app(Settings(database_url=sqlite_url), clock=clock)) as server:
        path = sqlite_url.removeprefix("sqlite:///")
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
        did, genesis, _ = new_did("locked")
        started = time.monotonic()
        response = httpx.post(f"{server.url}/{did}", json=genesis, timeout=30)
        assert response.status_code == 200, response.text
        assert time.monotonic() - started >= 0.4
        lines = httpx.get(f"{server.url}/export?after=0").content.split(b"\n")
        assert [orjson.loads(line)["did"] for line in lines] == [did]
        other.close()


def test_sqlite_lock_timeout_is_503_and_nothing_stored(sqlite_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    from plc.api.app import create_app
    from plc.config import Settings

    settings = Settings(database_url=sqlite_url, db_busy_timeout_ms=300)
    with LiveServer(create_app(settings, clock=clock)) as server:
        path = sqlite_url.removeprefix("sqlite:///")
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        did, genesis, _ = new_did("timeout")
        response = httpx.post(f"{server.url}/{did}", json=genesis, timeout=30)
        assert response.status_code == 503 and "message" in response.json()
        other.execute("ROLLBACK")
        other.close()
        assert httpx.get(f"{server.url}/export?after=0").content == b""
        assert httpx.get(f"{server.url}/{did}").status_code == 404
        assert httpx.post(f"{server.url}/{did}", json=genesis).status_code == 200
