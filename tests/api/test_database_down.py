"""A database that goes away answers 503 ``{"message"}`` on every route that needs it, never
500, and the server recovers by itself when the database is back (PostgreSQL: a database of
its own, closed to connections and its sessions ended, as a restart or failover does)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from starlette.websockets import WebSocketDisconnect

from plc.api.app import create_app

from ..conftest import PG_ADMIN_URL, Clock, make_settings
from ..helpers import new_did

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_database() -> Iterator[tuple[str, object]]:
    psycopg = pytest.importorskip("psycopg")
    name = "plc_down_" + uuid.uuid4().hex[:12]
    admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(PG_ADMIN_URL)
    try:
        yield urlunsplit(parts._replace(path="/" + name)), admin
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def _take_down(admin: object, name: str, allow: bool) -> None:
    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')  # type: ignore[attr-defined]
    if not allow:
        admin.execute(  # type: ignore[attr-defined]
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )


def test_every_route_answers_503_while_the_database_is_away(
    own_database: tuple[str, object], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    url, admin = own_database
    name = urlsplit(url).path.lstrip("/")
    did, genesis, _ = new_did("down")
    caplog.set_level(logging.INFO, logger="plc.checkpoints")
    settings = make_settings(url, checkpoint_interval_ms=20)
    with TestClient(create_app(settings, clock=clock)) as client:
        assert client.post(f"/{did}", json=genesis).status_code == 200
        _take_down(admin, name, allow=False)
        other, other_genesis, _ = new_did("down-other")
        answers = {
            path: client.get(path)
            for path in (
                f"/{did}",
                f"/{did}/data",
                f"/{did}/log/audit",
                f"/{did}/log/last",
                "/export?after=0",
                "/export",
                "/tlog/proof/inclusion?seq=1&treeSize=1",
                f"/xrpc/com.atproto.identity.resolveDid?did={did}",
            )
        }
        answers["POST"] = client.post(f"/{other}", json=other_genesis)
        for path, response in answers.items():
            assert response.status_code == 503, (path, response.status_code, response.text)
            assert "message" in response.json(), path
        health = client.get("/_health")
        assert health.status_code == 503 and health.json()["message"]
        for query in ("", "?cursor=0", "?cursor=1"):
            # accepted, then closed 1011 "Unavailable" (it was dropped with no close frame
            # and an "Exception in ASGI application" in the log)
            with client.websocket_connect(f"/export/stream{query}") as stream:
                with pytest.raises(WebSocketDisconnect) as closed:
                    stream.receive_text()
            assert (closed.value.code, closed.value.reason) == (1011, "Unavailable"), query
        errors = [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.ERROR and r.name != "plc.checkpoints"  # said once, above
        ]
        assert not errors, errors
        time.sleep(0.5)  # about 25 checkpoint ticks, all failing
        failures = [r for r in caplog.records if r.getMessage().startswith("checkpoint not signed")]
        said = [r.getMessage() for r in failures]
        assert said, "the outage was not logged"
        assert len(said) == len(set(said)), said  # each reason once, not once per tick
        assert len(said) <= 2, said  # at most: the first failed store, then the failed reads
        _take_down(admin, name, allow=True)
        deadline = time.monotonic() + 10
        while not any(r.getMessage() == "checkpoints signed again" for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.get(f"/{did}").status_code == 200
        assert client.post(f"/{other}", json=other_genesis).status_code == 200
        lines = client.get("/export?after=0").content.split(b"\n")
        assert [orjson.loads(line)["did"] for line in lines] == [did, other]


def test_a_worker_starting_during_an_outage_waits_for_the_database(
    own_database: tuple[str, object], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that replaces a dead one starts on its own; during an outage its start
    failed, and uvicorn then stopped the whole server. It now waits (PLC_DB_START_WAIT_S)."""
    url, admin = own_database
    name = urlsplit(url).path.lstrip("/")
    caplog.set_level(logging.WARNING, logger="plc.serve")
    _take_down(admin, name, allow=False)
    reopen = threading.Timer(1.5, _take_down, (admin, name, True))
    reopen.start()
    try:
        with TestClient(create_app(make_settings(url), clock=clock)) as client:
            did, genesis, _ = new_did("late-start")
            assert client.post(f"/{did}", json=genesis).status_code == 200
    finally:
        reopen.cancel()
    waits = [r for r in caplog.records if "not reachable at start" in r.getMessage()]
    assert waits, "the start did not wait"
    # with no time to wait, the start fails as before (and says why)
    _take_down(admin, name, allow=False)
    app = create_app(make_settings(url, db_start_wait_s=0), clock=clock)
    with pytest.raises(OperationalError), TestClient(app):
        pass
