"""The stream hub's joins: a cursor the kept lines no longer reach, lines queued from the
kept ones, and a stop that leaves no reader behind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from plc.api.stream_hub import StreamHub, Subscriber
from plc.errors import Unavailable

from ..helpers import new_did


@pytest.fixture
def app_client(app_factory: Any) -> Iterator[TestClient]:
    with TestClient(app_factory()) as client:
        yield client


def post_dids(client: TestClient, count: int, seed: str) -> None:
    for i in range(count):
        did, genesis, _ = new_did(f"{seed}{i}")
        assert client.post(f"/{did}", json=genesis).status_code == 200


def test_a_join_takes_the_kept_lines_after_its_cursor_and_no_others(
    app_client: TestClient,
) -> None:
    post_dids(app_client, 10, "hub-a")
    state = app_client.app.state  # type: ignore[attr-defined]

    async def scenario() -> tuple[list[int], bool, list[int], bool]:
        hub = StreamHub(state.directory, state.commit_signal, poll_s=0.02, keep=3)
        first = Subscriber(limit=100)
        assert await hub.join(10, first)  # at the head: nothing to queue
        await asyncio.to_thread(post_dids, app_client, 5, "hub-b")
        while hub.head != 15:
            await asyncio.sleep(0.01)
        too_far = await hub.join(11, Subscriber(limit=100))  # 12 and 13 are no longer kept
        late = Subscriber(limit=100)
        joined = await hub.join(12, late)  # 13, 14, 15 are
        await hub.stop()
        return (
            [seq for seq, _ in first.lines],
            too_far,
            [seq for seq, _ in late.lines],
            joined,
        )

    first, too_far, late, joined = asyncio.run(scenario())
    assert first == [11, 12, 13, 14, 15]
    assert too_far is False
    assert joined and late == [13, 14, 15]


def test_a_stopped_hub_ends_its_subscribers_and_starts_no_reader(
    app_client: TestClient,
) -> None:
    post_dids(app_client, 2, "hub-stop")
    state = app_client.app.state  # type: ignore[attr-defined]

    async def scenario() -> tuple[str | None, type[BaseException] | None, int]:
        hub = StreamHub(state.directory, state.commit_signal, poll_s=0.02, keep=10)
        live = Subscriber(limit=10)
        assert await hub.join(2, live)
        waiting = asyncio.create_task(hub.join(5, Subscriber(limit=10)))  # beyond the head
        await asyncio.sleep(0.05)
        await hub.stop()
        error = None
        try:
            await waiting
        except Unavailable as exc:
            error = type(exc)
        later = asyncio.create_task(hub.join(2, Subscriber(limit=10)))
        done, _ = await asyncio.wait({later}, timeout=0.2)
        readers = [
            t
            for t in asyncio.all_tasks()
            if getattr(t.get_coro(), "__qualname__", "") == "StreamHub._run"
        ]
        assert done and isinstance(later.exception(), Unavailable)
        return live.ended, error, len(readers)

    ended, error, readers = asyncio.run(scenario())
    assert ended == "Unavailable"
    assert error is Unavailable
    assert readers == 0
