"""Several workers share one metrics directory: a worker that dies (SIGKILL, replaced by
uvicorn's supervisor) stops counting in ``plc_stream_connections``, while the ops it
committed stay counted; a new process that is given a dead worker's id does not start from
that worker's open connections."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from prometheus_client.multiprocess import MultiProcessCollector
from websockets.sync.client import connect

from .helpers import new_did
from .test_serve_start import _alive, _children, _cmdline, _healthy, _serving, _until_listening


def _scraped(port: int, name: str) -> float:
    """The value of the unlabelled sample ``name`` in a scrape of ``/metrics`` (a new
    connection: whichever worker the kernel hands it to answers)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"connection": "close"}).text
    (value,) = re.findall(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(value)


def _by_worker(shared: Path, kind: str, name: str) -> dict[int, float]:
    """``name``'s value in each process's own file of ``kind`` (``counter``,
    ``gauge_livesum``) in the shared directory, by process id."""
    found = {}
    for file in shared.glob(f"{kind}_*.db"):
        metrics = MultiProcessCollector.merge([str(file)])  # type: ignore[no-untyped-call]
        samples = [s for m in metrics for s in m.samples if s.name == name]
        found[int(file.stem.rsplit("_", 1)[1])] = sum(s.value for s in samples)
    return found


def _workers(pid: int) -> list[int]:
    return [child for child in _children(pid) if b"spawn_main" in _cmdline(child)]


def test_a_killed_workers_streams_stop_counting_and_its_commits_do_not(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"  # an operator's own directory: the same files, a known path
    database = f"sqlite:///{tmp_path / 'workers.sqlite3'}"
    environment = {"PLC_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    with _serving(database, environment) as process, ExitStack() as clients:
        port = _until_listening(process)[-1]["port"]
        deadline = time.monotonic() + 60
        while len(_workers(process.pid)) < 2 or not _healthy(port):
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        url = f"ws://127.0.0.1:{port}/export/stream"
        for _ in range(8):
            clients.enter_context(connect(url, open_timeout=10, compression=None))
        while _scraped(port, "plc_stream_connections") != 8:
            assert time.monotonic() < deadline, "the streams were not counted"
            time.sleep(0.05)
        open_by_worker = _by_worker(shared, "gauge_livesum", "plc_stream_connections")
        victim = max(open_by_worker, key=lambda pid: open_by_worker[pid])
        assert open_by_worker[victim] > 0 and victim in _workers(process.pid)
        posted = 0
        # until the victim has committed some: its counts must outlive it
        while not _by_worker(shared, "counter", "plc_ops_committed_total").get(victim):
            assert posted < 400, _by_worker(shared, "counter", "plc_ops_committed_total")
            did, genesis, _ = new_did(f"dying-worker{posted}")
            answer = httpx.post(
                f"http://127.0.0.1:{port}/{did}", json=genesis, headers={"connection": "close"}
            )
            assert answer.status_code == 200
            posted += 1

        os.kill(victim, signal.SIGKILL)
        clients.close()
        while _alive(victim) or len(_workers(process.pid)) < 2 or not _healthy(port):
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.1)
        # Every scrape, whichever worker answers, the new one included: no stream is open.
        settled = time.monotonic() + 30
        while [_scraped(port, "plc_stream_connections") for _ in range(6)] != [0.0] * 6:
            assert time.monotonic() < settled, (
                f"the dead worker's {open_by_worker[victim]} streams still count: "
                f"{sorted(p.name for p in shared.iterdir())}"
            )
            time.sleep(0.2)
        assert not (shared / f"gauge_livesum_{victim}.db").exists()
        # Its counters stay: the sum does not fall back when a worker dies.
        assert (shared / f"counter_{victim}.db").exists()
        assert [_scraped(port, "plc_ops_committed_total") for _ in range(6)] == [float(posted)] * 6


_WORKER = """
import os, sys
from plc.metrics import DirectoryMetrics

metrics = DirectoryMetrics()
text = metrics.exposition()[0].decode()
print([line for line in text.splitlines() if line.startswith("plc_stream_connections ")][0])
sys.stdout.flush()
if sys.argv[1] == "open-and-become-another":
    for _ in range(3):
        metrics.stream_connections.inc()
    metrics.ops_committed.inc(5)
    # The same process id, a new program: as a worker given a dead worker's id.
    os.execv(sys.executable, [sys.executable, "-c", sys.argv[2], "fresh", ""])
"""


def test_a_worker_given_a_dead_workers_id_does_not_start_from_its_streams(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    script = textwrap.dedent(_WORKER)
    done = subprocess.run(
        [sys.executable, "-c", script, "open-and-become-another", script],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)},
        capture_output=True,
        timeout=60,
        check=True,
    )
    # before its 3 streams, then in the new program under the same id: none open
    assert done.stdout.decode().splitlines() == [
        "plc_stream_connections 0.0",
        "plc_stream_connections 0.0",
    ], done.stderr.decode()
    # what the first program committed still counts
    assert list(_by_worker(shared, "counter", "plc_ops_committed_total").values()) == [5.0]
