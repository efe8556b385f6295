"""Stopping ``plc import`` and resuming it: SIGTERM and SIGHUP stop it as Ctrl-C does, a
stop never lands inside a batch, the resume cursor it prints is exact, and a resumed run
keeps the refusals of the first (what ``docker stop``, systemd and a closed SSH session
send; before, they killed the run without a cursor)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plc.errors import Unavailable
from plc.importer import cli
from plc.importer.cli import EXIT_INTERRUPTED, EXIT_OK, run_import
from plc.signing import cid_of

from ..conftest import REPO, LiveServer
from ..helpers import new_did, update
from .test_import import rejects_of, sequenced_lines, stored_root, write


def history(dids: int, updates: int) -> list[bytes]:
    """``sequenced_op`` lines of ``dids`` DIDs with ``updates`` updates each, interleaved."""
    chains = []
    for d in range(dids):
        did, genesis, keys = new_did(f"stop{d}")
        ops = [genesis]
        for i in range(updates):
            ops.append(update(ops[-1], keys[0], also_known_as=[f"at://s{d}-{i}.test"]))
        chains.append((did, ops))
    entries = []
    for step in range(updates + 1):
        for did, ops in chains:
            n = len(entries)
            entries.append(
                {
                    "did": did,
                    "operation": ops[step],
                    "cid": cid_of(ops[step]),
                    "createdAt": f"2025-01-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
                }
            )
    return sequenced_lines(entries)


def paced_directory(lines: list[bytes], delay_s: float, stall_from: int | None = None) -> Starlette:
    """A directory serving ``lines`` by seq, each page ``delay_s`` late; a page after seq
    ``stall_from`` takes a minute (a source that hangs)."""

    async def export(request: Request) -> Response:
        after, count = int(request.query_params["after"]), int(request.query_params["count"])
        await asyncio.sleep(60 if stall_from is not None and after >= stall_from else delay_s)
        page = [line for line in lines if orjson.loads(line)["seq"] > after][:count]
        return Response(b"".join(line + b"\n" for line in page), media_type="application/jsonl")

    return Starlette(routes=[Route("/export", export)])


def start_import(url: str, db_url: str, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "plc.cli", "import", url, "--database-url", db_url]
    command += ["--count", "10", "--batch-size", "4", "--interval", "0", *extra]
    return subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE)


def entries(db_url: str) -> int:
    try:
        return stored_root(db_url)[0]
    except (Unavailable, IndexError):  # the import has not created the schema (or its row) yet
        return 0


def wait_for_entries(db_url: str, least: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while entries(db_url) < least:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the import made no progress"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_stops_the_import_between_batches_with_an_exact_cursor(
    sqlite_url: str, sig: signal.Signals
) -> None:
    lines = history(dids=6, updates=9)  # 60 ops, 6 pages
    with LiveServer(paced_directory(lines, delay_s=0.3)) as server:  # type: ignore[arg-type]
        proc = start_import(server.url, sqlite_url)
        wait_for_entries(sqlite_url, 10, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        said = err.decode()
        assert proc.returncode == EXIT_INTERRUPTED, said
        assert f"stopped by {sig.name}: every line read was committed" in said
        after = int(said.rsplit("resume with --after ", 1)[1].split()[0])
        size = stored_root(sqlite_url)[0]
        assert 10 <= after < len(lines)
        assert size == after  # every line up to the cursor committed, none beyond it
        assert run_import(server.url, database_url=sqlite_url, after=after, interval_s=0) == 0
    assert stored_root(sqlite_url)[0] == len(lines)


def test_a_stop_while_the_source_hangs_is_prompt(sqlite_url: str) -> None:
    lines = history(dids=3, updates=9)
    directory = paced_directory(lines, delay_s=0, stall_from=10)
    with LiveServer(directory) as server:  # type: ignore[arg-type]
        proc = start_import(server.url, sqlite_url)
        # batches of 4: seqs 9 and 10 wait in the batch for a page that does not come
        wait_for_entries(sqlite_url, 8, proc)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)  # not the minute the page would take
    assert proc.returncode == EXIT_INTERRUPTED, err.decode()
    assert b"resume with --after 10" in err  # the lines read were committed on the way out
    assert stored_root(sqlite_url)[0] == 10


def test_a_resumed_run_keeps_the_refusals_of_the_first(sqlite_url: str, tmp_path: Path) -> None:
    lines = history(dids=2, updates=2)
    bad: Any = orjson.loads(lines[1])
    bad["operation"]["sig"] = bad["operation"]["sig"][:-2] + "AA"
    first = write(tmp_path / "first.jsonl", [lines[0], orjson.dumps(bad)])
    second = write(tmp_path / "second.jsonl", [b"garbage"])
    rejects = tmp_path / "rejects.jsonl"
    run_import(str(first), database_url=sqlite_url, rejects=rejects, progress=False)
    run_import(str(second), database_url=sqlite_url, rejects=rejects, progress=False)
    assert [r["where"] for r in rejects_of(rejects)] == ["line 2", "line 1"]
    assert (
        run_import(
            str(write(tmp_path / "ok.jsonl", [lines[0]])),
            database_url=sqlite_url,
            rejects=rejects,
            progress=False,
        )
        == EXIT_OK
    )
    assert len(rejects_of(rejects)) == 2


def test_without_a_terminal_progress_lines_give_the_cursor(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A service's log is where an operator finds how far a killed run got."""
    monkeypatch.setattr(cli, "PROGRESS_EVERY_S", 0.0)
    lines = history(dids=2, updates=4)
    with LiveServer(paced_directory(lines, delay_s=0)) as server:  # type: ignore[arg-type]
        code = run_import(server.url, database_url=sqlite_url, count=4, batch_size=2, interval_s=0)
    assert code == EXIT_OK
    said = capsys.readouterr().err
    assert "progress: 4 lines, 4 imported, 0 present, 0 refused; committed through seq 4" in said


def test_a_first_signal_waits_for_the_batch_and_a_second_does_not() -> None:
    stop = cli._Stop()
    with stop.handling():
        with stop.batch():
            os.kill(os.getpid(), signal.SIGTERM)
            finished = True  # the batch was not interrupted
        assert finished and stop.signal_name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            stop.check()
        assert stop.between_batches
        with pytest.raises(KeyboardInterrupt), stop.batch():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # not reached: the second signal stops at once
        assert not stop.between_batches
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_an_ignored_signal_stays_ignored() -> None:
    """``nohup plc import …``: closing the session must not stop the run."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        stop = cli._Stop()
        with stop.handling():
            os.kill(os.getpid(), signal.SIGHUP)
            assert stop.signal_name is None
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
