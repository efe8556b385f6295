"""``/export/stream`` under load it must not buckle under: many live readers, clients that
stop reading, oversized and invalid client frames, shutdown with clients connected."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from plc.api import ws_protocol
from plc.api.http_server import served_settings
from plc.store.sql import SqlStore

from ..conftest import LiveServer
from ..helpers import new_did, update
from .test_stream import _post_dids, _ws


@pytest.fixture
def server(app_factory, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PLC_STREAM_SEND_TIMEOUT_S", "1")
    monkeypatch.setenv("PLC_SHUTDOWN_GRACE_S", "1")
    served_settings.cache_clear()
    try:
        with LiveServer(app_factory(stream_buffer=1000, policy_enabled=False)) as live:
            yield live
    finally:
        served_settings.cache_clear()


def post_big_ops(server: LiveServer, count: int) -> None:
    """``count`` DIDs, each updated with a ~60 kB op: more than a socket's buffers hold
    (Linux grows a send buffer to 4 MiB), so a client that does not read blocks the sends."""
    padding = ["https://" + "p" * 59_000 + ".test"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for i in range(count):
            did, genesis, keys = new_did(f"big{i}")
            assert http.post(f"/{did}", json=genesis).status_code == 200
            op = update(genesis, keys[0], also_known_as=[f"at://big{i}.test", *padding])
            assert http.post(f"/{did}", json=op).status_code == 200, "too big"


def stalled_client(server: LiveServer) -> ClientConnection:
    """A stream client from seq 0 that reads nothing: a tiny receive buffer, a one-message
    queue and no pings of its own."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return _ws(server, "?cursor=0", sock=sock, max_queue=1, ping_interval=None, close_timeout=0.1)


def test_live_readers_share_one_database_reader(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = {"n": 0}
    original = SqlStore.export_after_seq

    def counted(self: SqlStore, after: int, count: int) -> list[bytes]:
        reads["n"] += 1
        return original(self, after, count)

    monkeypatch.setattr(SqlStore, "export_after_seq", counted)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(_ws(server)) for _ in range(30)]
        time.sleep(0.3)  # every client has joined
        reads["n"] = 0
        time.sleep(1.0)  # ten poll intervals of 100 ms
        idle_reads = reads["n"]
        _post_dids(server, 5, "shared")
        seen = [[c.recv(timeout=10) for _ in range(5)] for c in clients]
    # one reader polling ~10 times a second, not thirty of them (~300 reads)
    assert idle_reads <= 20
    assert all(lines == seen[0] for lines in seen)
    assert [f'"seq":{i}' in line for i, line in enumerate(seen[0], 1)] == [True] * 5


def stream_connections(server: LiveServer) -> list[object]:
    """The server's open WebSocket connections."""
    connections = server.server.server_state.connections
    return [c for c in list(connections) if isinstance(c, ws_protocol.StreamWebSocketProtocol)]


def test_a_client_that_stops_reading_is_disconnected_after_the_send_timeout(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    post_big_ops(server, 120)
    with caplog.at_level(logging.WARNING), stalled_client(server):
        time.sleep(0.5)
        assert len(stream_connections(server)) == 1  # its sends are blocked by now
        deadline = time.monotonic() + 10
        while stream_connections(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        # aborted by the server (about 1 s after the sends blocked), the client still open
        assert stream_connections(server) == []
    assert any("left sent data unread" in r.getMessage() for r in caplog.records)


def test_oversized_and_invalid_client_frames_are_refused(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    with _ws(server) as ws:
        ws.send(b"x" * (ws_protocol.MAX_MESSAGE_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with caplog.at_level(logging.WARNING), _ws(server) as ws:
        with ws.protocol_mutex:  # raw bytes: the client library's send() would refuse them
            ws.protocol.send_text(b"\xc3\x28")
            ws.send_data()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert any("not UTF-8" in r.getMessage() for r in caplog.records)


def test_shutdown_does_not_wait_for_a_client_that_stopped_reading(
    app_factory,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLC_STREAM_SEND_TIMEOUT_S", "120")  # only the shutdown grace helps
    monkeypatch.setenv("PLC_SHUTDOWN_GRACE_S", "1")
    served_settings.cache_clear()
    live = LiveServer(app_factory(stream_buffer=1000, policy_enabled=False))
    try:
        with live:
            post_big_ops(live, 120)
            with stalled_client(live):
                time.sleep(1)
                started = time.monotonic()
                live.__exit__()  # the server stops while the client still holds on
                took = time.monotonic() - started
    finally:
        served_settings.cache_clear()
    assert not live.thread.is_alive()
    assert took < 10  # the grace and the abort that follows it, not the client's pleasure
