"""`plc serve`'s start-up lines: where it listens (the real port, also for `--port 0`) and
which database it uses, as given (no driver name, no password); no Alembic chatter; a stop
during start-up; warnings about settings meant for tests."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from plc.document import DOCUMENTS_VERSION

from .conftest import REPO

PLC = str(Path(sys.executable).parent / "plc")


@contextmanager
def _serving(database: str, environment: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`plc serve --port 0` on ``database``, its log (JSON lines, info) on a stderr pipe;
    terminated at the end. A server that never says anything more is killed after 60 s, so
    that a readline() ends instead of hanging."""
    process = subprocess.Popen(
        [PLC, "serve", "--port", "0", "--database-url", database],
        cwd=REPO,
        env={**os.environ, "PLC_LOG_LEVEL": "info", **environment},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        assert process.stderr is not None
        yield process
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=30)


def _until_listening(process: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    """The JSON log lines a starting `plc serve` says up to and including "listening on"."""
    assert process.stderr is not None
    said: list[dict[str, Any]] = []
    while not said or not str(said[-1].get("msg", "")).startswith("listening on"):
        line = process.stderr.readline()
        assert line, "plc serve ended before saying where it listens"
        said.append(orjson.loads(line))
    return said


def test_port_zero_is_chosen_before_the_start_up_line(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'start.sqlite3'}"
    with _serving(database, {}) as process:
        deadline = time.monotonic() + 60
        records = _until_listening(process)
        said, record = [str(r.get("msg", "")) for r in records], records[-1]
        # Alembic's context lines (said on every connection) are dropped; its upgrade stays
        assert not [m for m in said if m.startswith(("Context impl", "Will assume"))]
        assert [m for m in said if m.startswith("Running upgrade")]
        port = record["port"]
        assert port > 0
        assert record["msg"] == f"listening on http://127.0.0.1:{port}, database {database}"
        while True:  # and that is where it answers
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/_health").status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.05)


def test_an_ipv6_host_is_bracketed_in_the_start_up_line(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'v6.sqlite3'}"
    with _serving(database, {"PLC_HOST": "::1"}) as process:
        record = _until_listening(process)[-1]
        port = record["port"]
        assert record["msg"] == f"listening on http://[::1]:{port}, database {database}"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_during_start_up_ends_with_its_code_and_no_traceback(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    # Sent once the migration speaks, before or as the server starts. SIGTERM used to kill
    # the process by default action, which PID 1 of a container does not have (docker stop
    # was ignored until its SIGKILL); Ctrl-C there printed a KeyboardInterrupt traceback.
    with _serving(f"sqlite:///{tmp_path / 'stop.sqlite3'}", {}) as process:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert first, "plc serve said nothing"
        process.send_signal(sig)
        rest = process.stderr.read()
        assert process.wait() == code
        assert b"Traceback" not in first + rest, rest.decode()


def _start_up_lines(tmp_path: Path, environment: dict[str, str]) -> list[dict[str, Any]]:
    """`plc serve` started with ``environment``: what it says up to "listening on"."""
    with _serving(f"sqlite:///{tmp_path / 'said.sqlite3'}", environment) as process:
        return _until_listening(process)


def test_resolver_settings_meant_for_tests_are_warned_of(tmp_path: Path) -> None:
    warned = "resolver settings meant for tests are set"
    plain = _start_up_lines(tmp_path, {})
    assert not [r for r in plain if str(r.get("msg", "")).startswith(warned)]
    testing = _start_up_lines(
        tmp_path,
        {"PLC_RESOLVE_HANDLE_HTTP_SCHEME": "http", "PLC_RESOLVE_DID_WEB_HTTP_PORT": "8080"},
    )
    (warning,) = [r for r in testing if str(r.get("msg", "")).startswith(warned)]
    assert warning["level"] == "warning", warning
    assert warning["PLC_RESOLVE_HANDLE_HTTP_SCHEME"] == "http"
    assert warning["PLC_RESOLVE_DID_WEB_HTTP_PORT"] == 8080


def test_workers_end_when_plc_serve_is_killed(tmp_path: Path) -> None:
    """SIGKILL of `plc serve` with two workers: the workers end too (they used to serve on as
    orphans, holding the port)."""
    with _serving(f"sqlite:///{tmp_path / 'orphans.sqlite3'}", {"PLC_WORKERS": "2"}) as process:
        port = _until_listening(process)[-1]["port"]
        deadline = time.monotonic() + 60
        while True:
            workers = [pid for pid in _children(process.pid) if b"spawn_main" in _cmdline(pid)]
            if len(workers) == 2 and _healthy(port):
                break
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        process.kill()
        process.wait()
        deadline = time.monotonic() + 30
        try:
            while left := [pid for pid in workers if _alive(pid)]:
                assert time.monotonic() < deadline, f"workers {left} outlived plc serve"
                time.sleep(0.1)
        finally:
            for pid in workers:  # when they did outlive it: not left running after the test
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/_health")


def _healthy(port: int) -> bool:
    """Whether the server on ``port`` answers ``/_health`` with 200 now."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/_health").status_code == 200
    except httpx.TransportError:
        return False


def _children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for its new parent to reap counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stop_once_serving_is_graceful_and_exits_0(tmp_path: Path, workers: str) -> None:
    """SIGTERM to a serving `plc serve` (docker stop, systemctl stop): exit 0 whatever the
    worker count. One worker used to exit 143, which systemd counts as a failed stop."""
    database = f"sqlite:///{tmp_path / 'stop.sqlite3'}"
    with _serving(database, {"PLC_WORKERS": workers}) as process:
        port = _until_listening(process)[-1]["port"]
        deadline = time.monotonic() + 60
        while not _healthy(port):
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.stderr is not None
        rest = process.stderr.read()
        assert process.wait() == 0, rest.decode()
        assert b"Traceback" not in rest, rest.decode()


def test_documents_rendered_by_an_earlier_version_are_warned_of(tmp_path: Path) -> None:
    warned = "DID documents stored by an earlier version"
    fresh = _start_up_lines(tmp_path, {})
    assert not [r for r in fresh if str(r.get("msg", "")).startswith(warned)]
    database = tmp_path / "said.sqlite3"
    with sqlite3.connect(database) as connection:  # as revision 0003 marks a filled database
        connection.execute("UPDATE store_meta SET value = 1 WHERE name = 'documents_version'")
    (warning,) = [
        r for r in _start_up_lines(tmp_path, {}) if str(r.get("msg", "")).startswith(warned)
    ]
    assert warning["level"] == "warning", warning
    assert "plc refresh-documents" in warning["msg"]
    assert (warning["stored"], warning["current"]) == (1, DOCUMENTS_VERSION)
