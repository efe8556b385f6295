"""Stopping a run that has worker processes (real processes, real signals): Ctrl-C ends it
promptly with "interrupted" and exit code 1, and killing the coordinator alone (SIGKILL)
leaves no worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .generate import generate_export
from .test_resume import verify_in_background

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough ops that a run with two workers lasts a few seconds."""
    path = tmp_path_factory.mktemp("stop") / "export.jsonl"
    return generate_export(path, 8_000, seed="stopping")


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _start(export: Path, state: Path) -> tuple[subprocess.Popen[bytes], list[int]]:
    """A verify run with two workers, well into its replay; returns it and its workers."""
    # Batches bigger than a pipe's buffer: workers are mostly mid-way through reading one.
    process = verify_in_background(export, state, 500, past=1000, stderr=subprocess.PIPE)
    workers = _children(process.pid)
    assert len(workers) >= 2, workers
    return process, workers


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if _running(p)]


def _cleanup(pids: list[int]) -> None:
    for pid in pids:  # only the processes this test started
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.parametrize("to", ["group", "coordinator"])
def test_ctrl_c_ends_the_run_promptly(export: Path, tmp_path: Path, to: str) -> None:
    process, workers = _start(export, tmp_path / "state.sqlite3")
    try:
        if to == "group":  # what a terminal does on Ctrl-C
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 15 s after SIGINT")
        stderr = err.decode("utf-8", "replace")
        assert process.returncode == 1, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr, stderr
        assert _gone_within(workers, 5) == []
    finally:
        _cleanup([process.pid, *workers])


def test_killing_the_coordinator_alone_stops_its_workers(export: Path, tmp_path: Path) -> None:
    process, workers = _start(export, tmp_path / "state.sqlite3")
    try:
        process.kill()  # SIGKILL to the coordinator only: its workers are orphaned
        process.wait()
        assert _gone_within(workers, 5) == [], "workers left running after the coordinator died"
    finally:
        _cleanup(workers)
