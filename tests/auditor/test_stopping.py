"""Stopping a run that has worker processes (real processes, real signals): Ctrl-C ends it
promptly with exit code 130 and a line saying how to resume (which works), and killing the
coordinator alone (SIGKILL) leaves no worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditor.audit import AuditOptions, sync_directory

from .conftest import serve, stored_findings
from .fakedir import FakeLog
from .generate import generate_export
from .test_resume import cursor, verify_in_background

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
        assert process.returncode == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr, stderr
        assert "the same verify with --resume resumes" in stderr, stderr
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


def test_ctrl_c_in_sync_exits_130_and_a_rerun_resumes(export: Path, tmp_path: Path) -> None:
    """Ctrl-C is not "audit failed" (1): 130, with how to go on, and going on works."""
    lines = [x for x in export.read_bytes().split(b"\n") if x]
    path = tmp_path / "state.sqlite3"
    # no /tlog/: the run is the replay alone; slowed to about 2 s, so that it is still
    # running once 1,000 lines are in on a machine that replays 8,000 in under half a second
    with serve(FakeLog(lines, page_delay_s=0.25)) as url:
        command = [sys.executable, "-m", "auditor", "sync", "-d", url, "--state", str(path)]
        process = subprocess.Popen(
            [*command, "--no-progress", "--findings", os.devnull, "--spot-checks", "0"],
            cwd=REPO,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while cursor(path) < 1000 and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert process.poll() is None, "the run finished before it could be stopped"
            os.killpg(process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
            _, err = process.communicate(timeout=15)
        finally:
            _cleanup([process.pid])
        stderr = err.decode("utf-8", "replace")
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr and "audit failed" not in stderr, stderr
        assert "running the same sync again (without --fresh) resumes" in stderr, stderr
        stopped_at = cursor(path)
        assert 1000 <= stopped_at < len(lines)
        options = AuditOptions(workers=0, progress=False, spot_checks=-1, recheck="tail")
        outcome = sync_directory(url, path, options)
    assert cursor(path) == len(lines) and outcome.ops == len(lines) - stopped_at
    assert stored_findings(path) == []
