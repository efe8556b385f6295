"""Stopping ``sync --follow`` with Ctrl-C: the state stays consistent whatever the moment
(a KeyboardInterrupt inside a batch commit is not carried on from), a damaged state is one
line, and a directory that is down when one stops does not turn the summary into a
failure. Real processes and real signals where the signal is the point."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditor import audit, state, treestore
from auditor.audit import AuditOptions, sync_directory
from auditor.errors import AuditFailed
from auditor.treestore import TreeStore
from plc.tlog.hashing import leaf_hash

from .conftest import serve, state_meta, stored_findings
from .corpus import Corpus
from .fakedir import FakeLog, grow_later
from .test_resume import cursor

REPO = Path(__file__).resolve().parents[2]
OPTIONS: dict[str, Any] = {"workers": 0, "progress": False, "spot_checks": 2, "seed": 1}


def test_an_interrupt_inside_a_commit_while_following_is_not_carried_on_from(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyboardInterrupt (a second Ctrl-C) between a batch's tree write and its COMMIT:
    the run ends with it (nothing after it uses the half-done replay), and the next run
    resumes from the last committed batch to a consistent, clean state."""
    log = FakeLog(list(corpus.lines[:1000]), corpus.signer)
    following = threading.Event()
    real_follow, real_flush = audit.follow_stream, treestore.TreeStore.flush
    flushes = {"n": 0}

    def follow_stream(*args: Any, **kwargs: Any) -> str | None:
        following.set()
        return real_follow(*args, **kwargs)

    def flush(self: TreeStore) -> None:
        real_flush(self)
        if following.is_set():
            flushes["n"] += 1
            if flushes["n"] == 3:
                raise KeyboardInterrupt  # after the tree rows are written, before COMMIT

    monkeypatch.setattr(audit, "follow_stream", follow_stream)
    monkeypatch.setattr(treestore.TreeStore, "flush", flush)
    path = tmp_path / "state.sqlite3"
    with serve(log) as url:
        grower = grow_later(
            log, list(corpus.lines[1000:2000]), lambda: following.wait(30), group=20, pause_s=0.05
        )
        options = AuditOptions(**OPTIONS, follow=True, follow_seconds=20.0)
        with pytest.raises(KeyboardInterrupt):
            sync_directory(url, path, options)
        grower.join()
        monkeypatch.setattr(treestore.TreeStore, "flush", real_flush)
        assert flushes["n"] == 3
        sync_directory(url, path, AuditOptions(**OPTIONS))  # resumes: no traceback
    assert stored_findings(path) == []
    assert state_meta(path, "tree_size") == state_meta(path, "ops_read") == len(log.lines)
    assert state_meta(path, "cursor_seq") == len(log.lines)


def test_a_rolled_back_tree_write_is_written_again_by_the_next_commit(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.sqlite3")
    tree = TreeStore(conn, 0)
    tree.append([leaf_hash(b"%d" % i) for i in range(300)])
    conn.execute("BEGIN IMMEDIATE")
    tree.flush()
    conn.execute("ROLLBACK")  # an interrupted commit
    conn.execute("BEGIN IMMEDIATE")
    tree.flush()
    state.set_meta(conn, "tree_size", 300)
    conn.execute("COMMIT")
    tree.committed()
    root = tree.root()
    again = TreeStore(conn, 300)  # raised "state tree is short" when the rows were lost
    assert again.root() == root
    conn.close()


def test_a_damaged_state_fails_in_one_line(corpus: Corpus, tmp_path: Path) -> None:
    log = FakeLog(list(corpus.lines[:600]), corpus.signer)
    path = tmp_path / "state.sqlite3"
    with serve(log) as url:
        sync_directory(url, path, AuditOptions(**OPTIONS))
        conn = sqlite3.connect(path)
        conn.execute("DELETE FROM tree_chunk WHERE chunk = (SELECT MAX(chunk) FROM tree_chunk)")
        conn.commit()
        conn.close()
        with pytest.raises(AuditFailed, match="damaged auditor state file"):
            sync_directory(url, path, AuditOptions(**OPTIONS))


@pytest.fixture
def follower(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:  # only what this test started
        if process.poll() is None:
            process.kill()
            process.wait()


def _follow_in_background(url: str, path: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "auditor", "sync", "-d", url, "--state", str(path)]
    return subprocess.Popen(
        [*command, "--follow", "--no-progress", "--findings", os.devnull, "--spot-checks", "2"],
        cwd=REPO,
        start_new_session=True,  # its own group, signalled as a terminal does
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_cursor(process: subprocess.Popen[bytes], path: Path, seq: int) -> None:
    deadline = time.monotonic() + 60
    while cursor(path) < seq and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cursor(path) >= seq and process.poll() is None, "the run did not start following"
    time.sleep(0.5)  # connected to the stream


@pytest.mark.parametrize("directory", ["up", "down"])
def test_ctrl_c_stops_following_with_a_summary(
    corpus: Corpus,
    tmp_path: Path,
    follower: list[subprocess.Popen[bytes]],
    directory: str,
) -> None:
    """Ctrl-C ends ``--follow`` with the summary (exit 0 here: nothing wrong was found), also
    when the directory has just gone away (its last log check and the spot checks are then
    noted as skipped, not "audit failed")."""
    log = FakeLog(list(corpus.lines[:800]), corpus.signer)
    path = tmp_path / "state.sqlite3"
    with serve(log) as url:
        process = _follow_in_background(url, path)
        follower.append(process)
        _wait_for_cursor(process, path, 800)
        if directory == "up":
            os.killpg(process.pid, signal.SIGINT)
            _, err = process.communicate(timeout=60)
    if directory == "down":  # the server is stopped: the stream is being retried
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    stderr = " ".join(err.decode("utf-8", "replace").split())
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "audit failed" not in stderr, stderr
    assert "stopped following (interrupted)" in stderr, stderr
    if directory == "down":
        assert "skipped after the interrupt" in stderr, stderr
    assert state_meta(path, "tree_size") == state_meta(path, "ops_read") == 800


def test_a_redelivery_reaching_back_before_a_resume_is_dropped(
    corpus: Corpus, tmp_path: Path
) -> None:
    """A resumed ``--follow`` whose stream starts 300 ops before the cursor asked for:
    the ops read (and committed) by the earlier run are redeliveries, not seq-regression."""
    log = FakeLog(list(corpus.lines[:1000]), corpus.signer, stream_rewind=300)
    path = tmp_path / "state.sqlite3"
    with serve(log) as url:
        sync_directory(url, path, AuditOptions(**OPTIONS))
        log.lines.extend(corpus.lines[1000:1100])
        log.changed()
        options = AuditOptions(**OPTIONS, follow=True, follow_seconds=3.0, recheck="none")
        sync_directory(url, path, options)
    assert stored_findings(path) == []
    assert state_meta(path, "tree_size") == state_meta(path, "cursor_seq") == 1100
