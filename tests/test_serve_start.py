"""`plc serve`'s start-up lines: where it listens (the real port, also for `--port 0`) and
which database it uses, as given (no driver name, no password); no Alembic chatter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from .conftest import REPO

PLC = str(Path(sys.executable).parent / "plc")


def test_port_zero_is_chosen_before_the_start_up_line(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'start.sqlite3'}"
    environment = {**os.environ, "PLC_LOG_LEVEL": "info"}
    process = subprocess.Popen(
        [PLC, "serve", "--port", "0", "--database-url", database],
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # a server that never says it listens is killed: readline() then ends instead of hanging
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        record = None
        said: list[str] = []
        while record is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line, "plc serve ended before saying where it listens"
            parsed = orjson.loads(line)
            said.append(str(parsed.get("msg", "")))
            if said[-1].startswith("listening on"):
                record = parsed
        assert record is not None
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
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_during_start_up_ends_with_its_code_and_no_traceback(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    # Sent once the migration speaks, before or as the server starts. SIGTERM used to kill
    # the process by default action, which PID 1 of a container does not have (docker stop
    # was ignored until its SIGKILL); Ctrl-C there printed a KeyboardInterrupt traceback.
    database = f"sqlite:///{tmp_path / 'stop.sqlite3'}"
    process = subprocess.Popen(
        [PLC, "serve", "--port", "0", "--database-url", database],
        cwd=REPO,
        env={**os.environ, "PLC_LOG_LEVEL": "info"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert first, "plc serve said nothing"
        process.send_signal(sig)
        rest = process.stderr.read()
        assert process.wait() == code
        assert b"Traceback" not in first + rest, rest.decode()
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()


def _start_up_lines(tmp_path: Path, environment: dict[str, str]) -> list[dict[str, object]]:
    """The JSON log lines `plc serve` says up to and including "listening on"."""
    database = f"sqlite:///{tmp_path / 'said.sqlite3'}"
    process = subprocess.Popen(
        [PLC, "serve", "--port", "0", "--database-url", database],
        cwd=REPO,
        env={**os.environ, "PLC_LOG_LEVEL": "info", **environment},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    said: list[dict[str, object]] = []
    try:
        assert process.stderr is not None
        while not str(said[-1].get("msg", "")).startswith("listening on") if said else True:
            line = process.stderr.readline()
            assert line, "plc serve ended before saying where it listens"
            said.append(orjson.loads(line))
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=30)
    return said


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
