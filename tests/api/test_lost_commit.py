"""A connection to PostgreSQL that fails during COMMIT: the POST is answered by what the
database did, found by asking it again (plc.store.lost_commit). The database is the local
PostgreSQL behind a TCP proxy on 127.0.0.1 that cuts a connection once, just after (or just
instead of) forwarding a COMMIT."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from plc.api.app import create_app

from ..conftest import Clock, make_settings
from ..helpers import new_did
from .pgproxy import PgProxy, upstream_of

pytestmark = pytest.mark.postgres

COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"
"""The simple-query message psycopg sends for a COMMIT."""


class CuttingProxy(PgProxy):
    """Forwards TCP to ``upstream``; once armed, the next connection that sends a COMMIT is
    cut: after forwarding it ("after") or instead of forwarding it ("before")."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.armed: str | None = None
        self.cuts = 0
        self.lock = threading.Lock()
        super().__init__(upstream)

    def opened(self) -> threading.Event:
        return threading.Event()  # set: nothing more reaches the client

    def forward(
        self,
        data: bytes,
        source: socket.socket,
        sink: socket.socket,
        upstream: bool,
        cutting: threading.Event,
    ) -> bool:
        mode = None
        if upstream and COMMIT in data:
            with self.lock:
                mode, self.armed = self.armed, None
        if mode is not None:
            cutting.set()
        elif not upstream and cutting.is_set():
            return True
        if mode == "after":
            sink.sendall(data)
            time.sleep(0.1)  # PostgreSQL commits; its answer never gets through
        if mode is not None:
            self.cuts += 1
            for end in (source, sink):
                end.shutdown(socket.SHUT_RDWR)
            return False
        sink.sendall(data)
        return True


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[str, CuttingProxy]]:
    proxy = CuttingProxy(upstream_of(pg_url))
    try:
        yield proxy.url(pg_url), proxy
    finally:
        proxy.close()


@pytest.mark.parametrize(("cut", "status"), [("after", 200), ("before", 503)])
def test_a_post_whose_commit_lost_its_connection(
    proxied: tuple[str, CuttingProxy], clock: Clock, cut: str, status: int
) -> None:
    url, proxy = proxied
    # no checkpoint timer: its commits must not meet the armed proxy first
    settings = make_settings(url, checkpoint_interval_ms=3_600_000)
    with TestClient(create_app(settings, clock=clock)) as client:
        first, first_genesis, _ = new_did("lost-first")
        assert client.post(f"/{first}", json=first_genesis).status_code == 200
        did, genesis, _ = new_did("lost-" + cut)
        proxy.armed = cut
        answer = client.post(f"/{did}", json=genesis)
        assert proxy.cuts == 1
        # "after": committed, so 200 (it was 503 for an op in the log); "before": not stored
        assert answer.status_code == status, answer.text
        stored = client.get(f"/{did}/log/last")
        assert stored.status_code == (200 if cut == "after" else 404)
        if cut == "before":
            assert answer.json() == {"message": "Database unavailable, try again"}
            assert client.post(f"/{did}", json=genesis).status_code == 200  # the retry lands
        lines = client.get("/export?after=0").content.split(b"\n")
        assert len(lines) == 2  # seq 1 and 2, no gap, nothing twice
        assert client.post(f"/{did}", json=genesis).status_code == 200  # a re-submission
        assert len(client.get("/export?after=0").content.split(b"\n")) == 2
