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
    did, genesis, keys = new_did("race")
    assert httpx.post(f"{live_server.url}/{did}", json=genesis).status_code == 200
    contenders = [
        update(genesis, keys[i % 2], also_known_as=[f"at://c{i}.test"]) for i in range(20)
    ]
    statuses = asyncio.run(_race(live_server.url, f"/{did}", contenders))
    assert statuses.count(200) == 1
    assert all(s in (400, 409) for s in statuses if s != 200)
    audit = httpx.get(f"{live_server.url}/{did}/log/audit").json()
    assert len(audit) == 2 and not any(a["nullified"] for a in audit)
    lines = httpx.get(f"{live_server.url}/export?after=0").content.split(b"\n")
    assert [orjson.loads(line)["seq"] for line in lines] == [1, 2]


def test_many_dids_concurrently_seq_contiguous(live_server: LiveServer) -> None:
    created = [new_did(f"many{i}") for i in range(40)]

    async def post_all() -> list[int]:
        async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
            responses = await asyncio.gather(*(http.post(f"/{d}", json=g) for d, g, _ in created))
        return [r.status_code for r in responses]

    assert asyncio.run(post_all()) == [200] * 40
    lines = httpx.get(f"{live_server.url}/export?after=0").content.split(b"\n")
    assert sorted(orjson.loads(line)["seq"] for line in lines) == list(range(1, 41))
    assert {orjson.loads(line)["did"] for line in lines} == {d for d, _, _ in created}
