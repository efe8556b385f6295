"""``GET /_health`` when the database stops answering, and ``plc health``, the container's
health check, against real servers on 127.0.0.1.

The database failure is a real one: the directory runs on a PostgreSQL database of its own,
which is then closed to new connections and has its sessions ended, then opened again."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from plc.api.app import create_app
from plc.errors import DATABASE_UNAVAILABLE
from plc.health_cli import MAX_BODY_BYTES, health_url

from ..conftest import PG_ADMIN_URL, Clock, LiveServer, free_port, make_settings
from ..resolve.servers import LocalHttp


def plc_health(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``plc health ARGS`` as the container runs it: exit code and printed lines."""
    return subprocess.run(
        [sys.executable, "-m", "plc.cli", "health", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.fixture
def own_database() -> Iterator[tuple[str, object]]:
    """A PostgreSQL database of this test's own: (URL, admin connection)."""
    psycopg = pytest.importorskip("psycopg")
    name = "t_health_" + uuid.uuid4().hex[:12]
    admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(PG_ADMIN_URL)._replace(path=f"/{name}")), admin
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_health_is_503_while_the_database_refuses_and_200_again_after(
    own_database: tuple[str, object], clock: Clock
) -> None:
    url, admin = own_database
    name = urlsplit(url).path.lstrip("/")
    app = create_app(make_settings(url, checkpoint_interval_ms=3_600_000), clock=clock)
    with LiveServer(app) as server:
        health = f"{server.url}/_health"
        assert httpx.get(health).status_code == 200
        done = plc_health("--url", health)
        assert done.returncode == 0 and done.stdout.startswith("healthy: "), done

        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')  # type: ignore[attr-defined]
        admin.execute(  # type: ignore[attr-defined]
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        answer = httpx.get(health)
        assert answer.status_code == 503
        assert answer.json() == {
            "version": app.state.settings.version,
            "error": "Service Unavailable",
            "message": DATABASE_UNAVAILABLE,
        }
        done = plc_health("--url", health)
        assert done.returncode == 1, done
        assert done.stderr == f"unhealthy: {health}: HTTP 503: {DATABASE_UNAVAILABLE}\n"

        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')  # type: ignore[attr-defined]
        assert httpx.get(health).status_code == 200
        assert plc_health("--url", health).returncode == 0


def test_plc_health_finds_the_server_from_the_serve_settings(sqlite_url: str, clock: Clock) -> None:
    """No --url: the host and port plc serve would bind, a wildcard host asked on loopback."""
    with LiveServer(create_app(make_settings(sqlite_url), clock=clock)) as server:
        env = {"PATH": "", "PLC_HOST": "0.0.0.0", "PLC_PORT": str(server.port)}
        done = plc_health(env=env)
        assert done.returncode == 0, done
        assert done.stdout.startswith(f"healthy: http://127.0.0.1:{server.port}/_health")
    done = plc_health(env=env)  # the same server, stopped
    assert done.returncode == 1
    assert done.stderr.startswith(f"unhealthy: http://127.0.0.1:{server.port}/_health: ")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("route", "said"),
    [
        (
            {"status": 200, "body": b"<html>not a directory</html>"},
            "HTTP 200, but the body is not a JSON object",
        ),
        ({"status": 200, "body": b"[1]"}, "HTTP 200, but the body is not a JSON object"),
        ({"status": 500, "body": b'{"message":"x' + b"y" * 300 + b'"}'}, "HTTP 500: x" + "y" * 199),
        ({"status": 200, "body": b" " * (MAX_BODY_BYTES + 1)}, "answer larger than"),
    ],
)
def test_plc_health_is_unhealthy_on_any_other_answer(
    http: LocalHttp, route: dict[str, object], said: str
) -> None:
    http.route("127.0.0.1", "/_health", **route)
    url = f"http://127.0.0.1:{http.port}/_health"
    done = plc_health("--url", url)
    assert done.returncode == 1
    assert done.stderr.startswith(f"unhealthy: {url}: {said}"), done.stderr
    assert len(done.stderr) < 400  # a server's long answer is not printed back


def test_plc_health_gives_the_whole_answer_its_timeout_not_each_read() -> None:
    """A server that drips a healthy answer a byte at a time: each read comes within the
    timeout, the whole answer does not."""
    body = b'{"version":"0.1.0"}' + b" " * 30
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        stop = threading.Event()

        def drip() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n"
                connection.sendall(head.encode())
                for byte in body:
                    if stop.wait(0.2):
                        return
                    try:
                        connection.sendall(bytes([byte]))
                    except OSError:  # plc health gave up and closed first: what it should do
                        return

        dripping = threading.Thread(target=drip, daemon=True)
        dripping.start()
        url = f"http://127.0.0.1:{port}/_health"
        done = plc_health("--url", url, "--timeout", "1")
        stop.set()
        dripping.join(timeout=10)
    assert done.returncode == 1, done
    assert done.stderr == f"unhealthy: {url}: no whole answer within 1 s\n"


def test_plc_health_refuses_settings_it_cannot_use() -> None:
    done = plc_health(env={"PATH": "", "PLC_PORT": "0"})
    assert done.returncode == 1 and "give --url" in done.stderr
    done = plc_health(env={"PATH": "", "PLC_PORT": "port"})
    assert done.returncode == 1 and "PLC_PORT" in done.stderr
    assert plc_health("--url", f"http://127.0.0.1:{free_port()}/_health").returncode == 1
    done = plc_health(env={"PATH": "", "PLC_HOST": "bad..host"})  # was a UnicodeError traceback
    assert (done.returncode, done.stderr) == (
        1,
        "unhealthy: http://bad..host:2582/_health: not a host name\n",
    )


def test_health_url() -> None:
    assert health_url("0.0.0.0", 2582) == "http://127.0.0.1:2582/_health"
    assert health_url("::", 80) == "http://[::1]:80/_health"
    assert health_url("fe80::1", 80) == "http://[fe80::1]:80/_health"
    assert health_url("fe80::1%eth0", 80) == "http://[fe80::1%25eth0]:80/_health"
    assert health_url("plc.example", 2582) == "http://plc.example:2582/_health"
    with pytest.raises(ValueError, match="--url"):
        health_url("127.0.0.1", 0)
