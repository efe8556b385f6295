"""``/export/stream`` over a real WebSocket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from ..conftest import Clock, LiveServer
from ..helpers import new_did, update


def _ws(server: LiveServer, query: str = "", **kwargs: object) -> ClientConnection:
    url = server.url.replace("http://", "ws://") + "/export/stream" + query
    return connect(url, open_timeout=10, compression=None, **kwargs)  # type: ignore[arg-type]


def _post_dids(server: LiveServer, count: int, seed: str) -> None:
    async def run() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            created = [new_did(f"{seed}{i}") for i in range(count)]
            responses = await asyncio.gather(*(http.post(f"/{d}", json=g) for d, g, _ in created))
        return [r.status_code for r in responses]

    assert asyncio.run(run()) == [200] * count


def _closed_reason(ws: ClientConnection, limit: int = 100_000) -> str:
    for _ in range(limit):
        try:
            ws.recv(timeout=10)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.reason
    raise AssertionError("connection was not closed")


@pytest.fixture
def stream_server(app_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with LiveServer(app_factory(stream_backfill_window_s=3600, stream_buffer=5)) as server:
        yield server


def test_plain_http_gets_426(stream_server: LiveServer) -> None:
    response = httpx.get(f"{stream_server.url}/export/stream")
    assert response.status_code == 426 and response.json() == {"message": "upgrade required"}


def test_future_cursor(stream_server: LiveServer) -> None:
    _post_dids(stream_server, 2, "future")
    with _ws(stream_server, "?cursor=3") as ws:
        assert _closed_reason(ws) == "FutureCursor"


def test_outdated_cursor(stream_server: LiveServer, clock: Clock) -> None:
    _post_dids(stream_server, 2, "old")
    clock.advance(timedelta(hours=2))
    with _ws(stream_server, "?cursor=0") as ws:
        assert _closed_reason(ws) == "OutdatedCursor"
    with _ws(stream_server, "?cursor=2") as ws:  # nothing to backfill: fine
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)


def test_stream_equals_export_for_concurrent_clients(
    stream_server: LiveServer, clock: Clock
) -> None:
    _post_dids(stream_server, 4, "before")
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(_ws(stream_server, "?cursor=0")) for _ in range(3)]
        live_only = stack.enter_context(_ws(stream_server))
        did, genesis, keys = new_did("during")
        assert httpx.post(f"{stream_server.url}/{did}", json=genesis).status_code == 200
        clock.advance(timedelta(seconds=1))
        op = update(genesis, keys[0], also_known_as=["at://during2.test"])
        assert httpx.post(f"{stream_server.url}/{did}", json=op).status_code == 200
        export = httpx.get(f"{stream_server.url}/export?after=0").text.split("\n")
        assert len(export) == 6
        for ws in clients:
            assert [ws.recv(timeout=10) for _ in range(6)] == export
        assert [live_only.recv(timeout=10) for _ in range(2)] == export[4:]


def test_a_reader_that_falls_behind_a_burst_reads_on_from_the_database(
    stream_server: LiveServer,
) -> None:
    """A burst of commits larger than a connection's buffer (5 here) used to close it with
    ConsumerTooSlow however fast it read; it now reads the rest from the database and rejoins
    the live feed (a client that stops reading is cut off by the send timeout instead)."""
    with _ws(stream_server) as ws:
        _post_dids(stream_server, 150, "burst-a")
        _post_dids(stream_server, 150, "burst-b")
        seqs = [orjson.loads(ws.recv(timeout=10))["seq"] for _ in range(300)]
        assert seqs == list(range(1, 301))
        _post_dids(stream_server, 1, "burst-c")  # live again
        assert orjson.loads(ws.recv(timeout=10))["seq"] == 301
    metrics = httpx.get(f"{stream_server.url}/metrics").text
    [fell_behind] = [
        line for line in metrics.splitlines() if line.startswith("plc_stream_fell_behind_total ")
    ]
    assert float(fell_behind.split()[1]) >= 1
    assert "plc_stream_connections 0.0" in metrics


def test_a_trailing_slash_is_the_same_route_and_a_newline_no_route(
    stream_server: LiveServer,
) -> None:
    _post_dids(stream_server, 1, "slash")
    with _ws(stream_server, "/?cursor=0") as ws:  # /export/stream/ is /export/stream
        assert '"seq":1' in str(ws.recv(timeout=10))
    url = stream_server.url.replace("http://", "ws://") + "/export/stream%0A"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=10)
    assert refused.value.response.status_code == 403


def test_a_cursor_of_any_length_past_the_head_is_a_future_cursor(
    stream_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The reference reads any number: 19 or more digits are beyond every seq, so the answer
    is FutureCursor, not a refused handshake; leading zeros count for nothing."""
    _post_dids(stream_server, 2, "long-cursor")
    for cursor in ("9" * 19, "1" + "0" * 40):
        with _ws(stream_server, f"?cursor={cursor}") as ws:
            assert _closed_reason(ws) == "FutureCursor"
    with _ws(stream_server, "?cursor=" + "0" * 30 + "1") as ws:
        assert orjson.loads(ws.recv(timeout=10))["seq"] == 2
    for bad in ("9" * 101, "abc", "-1", ""):
        with pytest.raises(InvalidStatus) as refused:
            _ws(stream_server, "?cursor=" + bad)
        response = refused.value.response
        assert response.status_code == 400, bad  # as any bad request: {"message"}
        assert orjson.loads(response.body) == {"message": "Invalid cursor parameter"}
    # a refusal is not a server error: nothing at error level (anyone could flood the log)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
