"""The load tools in ``benchmarks/`` still run end to end (small counts): ``load.py`` against
a live server, ``asgi_load.py`` in-process. Their numbers are not checked here, only that
every op they send is accepted and read back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from .conftest import LiveServer

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_load_py_creates_updates_and_reads_back(live_server: LiveServer, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    done = _run(
        "load.py",
        "--url",
        live_server.url,
        "--creates",
        "12",
        "--updates",
        "24",
        "--resolves",
        "20",
        "--phases",
        "create,update,verify,resolve",
        "--no-progress",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    phases = orjson.loads(out.read_bytes())["phases"]
    assert phases["create"]["ok"] == 12
    assert phases["update"]["ok"] == 24
    assert phases["resolve"]["ok"] == 20
    assert phases["verify"]["matched"] == 12


def test_asgi_load_accepts_every_op() -> None:
    done = _run("asgi_load.py", "--creates", "10", "--updates", "20", "--concurrency", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "update 2" in done.stderr  # two updates per DID: two rounds
