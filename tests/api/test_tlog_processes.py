"""The log across processes and restarts: `plc serve` prints its verifier key, keeps its
identity and never signs inconsistent checkpoints; two servers on one PostgreSQL; tiles of a
log large enough to have level-1 and level-2 tiles."""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from plc.store.engine import make_engine
from plc.store.migrate import upgrade
from plc.store.sql import SqlStore
from plc.store.tlog_store import TlogStore
from plc.tlog.checkpoint import Checkpoint, open_checkpoint
from plc.tlog.note import parse_verifier_key
from plc.tlog.proof import verify_consistency
from plc.tlog.tiles import verify_tiles

from ..conftest import REPO, free_port
from ..helpers import fill_log, new_did

PLC = str(Path(sys.executable).parent / "plc")


@contextmanager
def plc_serve(
    database_url: str, stderr: Path | None = None, **env: str
) -> Iterator[tuple[str, str]]:
    """Run the real `plc serve` (its log to ``stderr``, else dropped); yield (base URL,
    verifier key line value)."""
    port = free_port()
    environment = {**os.environ, "DATABASE_URL": database_url, "PLC_PORT": str(port), **env}
    log = stderr.open("wb") if stderr is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        [PLC, "serve"], cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=log
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().decode()
        match = re.fullmatch(r"verifier key: (\S+)\n", first)
        assert match, first
        url = f"http://127.0.0.1:{port}"
        # a bound on a hang, not a speed check: a start that signs a 65,836-leaf tree took
        # over 30 s on two cores shared by four test processes
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/_health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield url, match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if stderr is not None:
            log.close()  # type: ignore[union-attr]


def _checkpoint(url: str, vkey: str, at_least: int) -> Checkpoint:
    deadline = time.monotonic() + 10
    while True:
        checkpoint = open_checkpoint(
            httpx.get(f"{url}/tlog/checkpoint").text, [parse_verifier_key(vkey)]
        )
        if checkpoint.tree_size >= at_least or time.monotonic() > deadline:
            return checkpoint
        time.sleep(0.1)


def _consistent(url: str, old: Checkpoint, new: Checkpoint) -> None:
    if old.tree_size == 0 or old.tree_size == new.tree_size:
        assert old.tree_size == 0 or old.root_hash == new.root_hash
        return
    body = httpx.get(f"{url}/tlog/proof/consistency?from={old.tree_size}&to={new.tree_size}").json()
    proof = [base64.b64decode(h) for h in body["consistencyProof"]]
    verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)


def test_plc_serve_prints_key_and_keeps_identity_across_restarts(tmp_path: Path) -> None:
    url_db = f"sqlite:///{tmp_path / 'log.sqlite3'}"
    with plc_serve(url_db) as (url, vkey):
        assert re.fullmatch(r"[A-Za-z0-9._/-]+\+[0-9a-f]{8}\+\S+", vkey)
        for i in range(3):
            did, genesis, _ = new_did(f"restart{i}")
            assert httpx.post(f"{url}/{did}", json=genesis).status_code == 200
        before = _checkpoint(url, vkey, 3)
        assert before.tree_size == 3
    with plc_serve(url_db) as (url, vkey_again):
        assert vkey_again == vkey
        for i in range(2):
            did, genesis, _ = new_did(f"restart-more{i}")
            assert httpx.post(f"{url}/{did}", json=genesis).status_code == 200
        after = _checkpoint(url, vkey, 5)
        assert after.tree_size == 5
        _consistent(url, before, after)


def test_configured_origin_and_key(tmp_path: Path) -> None:
    from plc.tlog.note import generate_signer

    signer_key, verifier_key = generate_signer("logs.example.org/plc")
    with plc_serve(f"sqlite:///{tmp_path / 'k.sqlite3'}", PLC_LOG_SIGNING_KEY=signer_key) as (
        url,
        vkey,
    ):
        assert vkey == verifier_key
        assert httpx.get(f"{url}/tlog/checkpoint").text.startswith("logs.example.org/plc\n0\n")


@pytest.mark.postgres
def test_two_servers_on_one_postgres(pg_url: str) -> None:
    with plc_serve(pg_url) as (url_a, vkey_a), plc_serve(pg_url) as (url_b, vkey_b):
        assert vkey_a == vkey_b  # one log, one identity
        import asyncio

        created = [new_did(f"two{i}") for i in range(60)]

        async def post_all() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as http:
                responses = await asyncio.gather(
                    *(
                        http.post(f"{(url_a, url_b)[i % 2]}/{did}", json=genesis)
                        for i, (did, genesis, _) in enumerate(created)
                    )
                )
            return [r.status_code for r in responses]

        seen: list[Checkpoint] = []
        for _ in range(3):
            assert asyncio.run(post_all()).count(200) in (60, 0)
            seen.append(_checkpoint(url_a, vkey_a, 1))
            seen.append(_checkpoint(url_b, vkey_a, 1))
            created = [new_did(f"two{len(seen)}-{i}") for i in range(60)]
        final = _checkpoint(url_a, vkey_a, 180)
        assert final.tree_size == 180
        lines = httpx.get(f"{url_b}/export?after=0").content.split(b"\n")
        assert [orjson.loads(line)["seq"] for line in lines] == list(range(1, 181))
        ordered = sorted(seen + [final], key=lambda c: c.tree_size)
        for old, new in zip(ordered, ordered[1:], strict=False):
            _consistent(url_a, old, new)


def test_tiles_of_a_log_with_level_2(tmp_path: Path) -> None:
    url_db = f"sqlite:///{tmp_path / 'big.sqlite3'}"
    engine = make_engine(url_db)
    upgrade(engine)
    store = SqlStore(engine)
    store.leaf_hooks.append(TlogStore(store).append_in)
    fill_log(store, 65_536 + 300)
    engine.dispose()
    with plc_serve(url_db) as (url, vkey):
        checkpoint = _checkpoint(url, vkey, 65_836)
        assert checkpoint.tree_size == 65_836
        fetched: list[str] = []

        with httpx.Client(base_url=f"{url}/tlog/") as http:

            def fetch(path: str) -> bytes:
                fetched.append(path)
                response = http.get(path)
                response.raise_for_status()
                return response.content

            verify_tiles(checkpoint.tree_size, checkpoint.root_hash, fetch)
        assert "tile/2/000.p/1" in fetched and "tile/1/001.p/1" in fetched
        assert "tile/1/000" in fetched and "tile/0/257.p/44" in fetched


def test_with_two_workers_every_scrape_counts_every_workers_ops(tmp_path: Path) -> None:
    # Each worker counts what it serves; a scrape, whichever worker answers it, must show
    # the sum, or Prometheus sees a counter jump back and forth between the workers' counts.
    from prometheus_client.multiprocess import MultiProcessCollector

    def committed() -> float:
        text = httpx.get(f"{url}/metrics", headers={"connection": "close"}).text
        (value,) = re.findall(r"^plc_ops_committed_total (\S+)$", text, re.MULTILINE)
        return float(value)

    def shared_dirs() -> set[Path]:
        return {p for p in Path(tempfile.gettempdir()).glob("plc-metrics-*") if p.is_dir()}

    def committed_by_worker(shared: Path) -> list[float]:
        counts = []
        for file in sorted(shared.glob("counter_*.db")):
            metrics = MultiProcessCollector.merge([str(file)])  # type: ignore[no-untyped-call]
            samples = [s for m in metrics for s in m.samples]
            counts.append(sum(s.value for s in samples if s.name == "plc_ops_committed_total"))
        return counts

    before = shared_dirs()
    log = tmp_path / "server.log"
    with plc_serve(f"sqlite:///{tmp_path / 'w.sqlite3'}", stderr=log, PLC_WORKERS="2") as (
        url,
        _,
    ):
        (shared,) = shared_dirs() - before
        posted = 0
        # A new connection each: the kernel spreads them over the workers; go on until both
        # have counted some (so the sum is really of two workers' counts).
        while posted < 16 or len([c for c in committed_by_worker(shared) if c]) < 2:
            assert posted < 400, committed_by_worker(shared)
            did, genesis, _ = new_did(f"two-workers{posted}")
            answer = httpx.post(f"{url}/{did}", json=genesis, headers={"connection": "close"})
            assert answer.status_code == 200
            posted += 1
        assert [committed() for _ in range(12)] == [float(posted)] * 12
        text = httpx.get(f"{url}/metrics").text
        assert re.search(rf"^plc_log_tree_size {posted}\.0$", text, re.MULTILINE)
        assert "process_cpu_seconds_total" not in text  # one worker's alone: left out
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
            sock.sendall(
                b"GET /_health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17_000 + b"\r\n\r\n"
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 431 ")
    # plc serve removes the directory it made once its workers are gone.
    assert not shared.exists()
    # Each worker set up the JSON log itself: every line is a JSON record, the 431's too.
    records = [orjson.loads(line) for line in log.read_bytes().splitlines() if line.strip()]
    assert not [r for r in records if r["logger"] == "uvicorn.access"]  # no line per request
    refused = [r for r in records if r["logger"] == "plc.http"]
    assert len(refused) == 1 and refused[0]["status"] == 431, records
    # And the operator is told that two workers on SQLite write slower than one.
    assert [r["workers"] for r in records if r["level"] == "warning" and "SQLite" in r["msg"]] == [
        2
    ]
