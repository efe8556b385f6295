"""Shared fixtures of the micro-benchmarks: deterministic keys, signed ops, a SQLite store in a
temporary directory, and a per-op throughput summary printed at the end of the run.

Run from the repository root::

    .venv/bin/pytest benchmarks --benchmark-only -p no:xdist

``benchmarks/pytest.ini`` sets ``python_files = bench_*.py``; the normal test run
(``testpaths = ["tests"]``) never collects anything here.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from plc.keys import Curve, PrivateKey
from plc.policy import PolicySettings
from plc.service import Directory
from plc.signing import create_did, update_operation
from plc.store.engine import make_engine
from plc.store.migrate import upgrade
from plc.store.sql import SqlStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
"""The fixed 'now' of every benchmark that needs a clock."""


# ---- signed operations -------------------------------------------------------------------


def key(seed: str, curve: Curve = Curve.K256) -> PrivateKey:
    """A deterministic key (same seed, same key, every run)."""
    return PrivateKey.from_seed(seed, curve)


@dataclass(frozen=True)
class Identity:
    """A DID, its signed genesis op and its rotation keys (most authority first)."""

    did: str
    genesis: dict[str, Any]
    rotation: list[PrivateKey]


def new_identity(seed: str, curve: Curve = Curve.K256) -> Identity:
    """A DID with two rotation keys of ``curve``, its genesis signed by the first."""
    rotation = [key(f"{seed}-rot0", curve), key(f"{seed}-rot1", curve)]
    did, genesis = create_did(rotation, handle=f"{seed}.bench.test")
    return Identity(did, genesis, rotation)


def signed_update(prev_op: dict[str, Any], signer: PrivateKey, handle: str) -> dict[str, Any]:
    """A signed ``plc_operation`` after ``prev_op`` that changes the handle."""
    return update_operation(prev_op, signer, also_known_as=[f"at://{handle}"])


@pytest.fixture(scope="session")
def k256_identity() -> Identity:
    """A secp256k1 identity."""
    return new_identity("bench-k256", Curve.K256)


@pytest.fixture(scope="session")
def p256_identity() -> Identity:
    """A P-256 identity."""
    return new_identity("bench-p256", Curve.P256)


# ---- storage -----------------------------------------------------------------------------


class FixedClock:
    """A clock that answers the same instant until moved."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class SqliteDirectory:
    """A :class:`Directory` over a fresh SQLite file (its committer thread is not started:
    benchmarks call ``prepare`` and ``SqlStore.commit_batch`` directly)."""

    engine: Engine
    store: SqlStore
    directory: Directory
    clock: FixedClock
    path: Path


@pytest.fixture
def sqlite_directory(tmp_path: Path) -> Iterator[SqliteDirectory]:
    """A directory on a fresh SQLite file (WAL, ``synchronous=FULL``, as ``plc serve``)."""
    path = tmp_path / "bench.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store = SqlStore(engine)
    clock = FixedClock()
    directory = Directory(store, PolicySettings(), clock, inline_io=True)
    try:
        yield SqliteDirectory(engine, store, directory, clock, path)
    finally:
        engine.dispose()


# ---- per-op summary ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """A benchmark's median time per round, turned into time per op."""

    name: str
    ops_per_round: int
    median_s: float

    @property
    def per_op_us(self) -> float:
        """Microseconds per op."""
        return self.median_s / self.ops_per_round * 1e6

    @property
    def ops_per_s(self) -> float:
        """Ops per second, one thread."""
        return self.ops_per_round / self.median_s if self.median_s > 0 else float("inf")


_RATES: list[Rate] = []

RecordRate = Callable[[Any, int], None]


@pytest.fixture
def record_rate(request: pytest.FixtureRequest) -> RecordRate:
    """Call ``record_rate(benchmark, ops_per_round)`` after a benchmark has run: the summary at
    the end prints µs/op and ops/s from its median, and ``--benchmark-json`` gets them as
    ``extra_info``."""

    def record(benchmark: Any, ops_per_round: int = 1) -> None:
        metadata = getattr(benchmark, "stats", None)
        benchmark.extra_info["ops_per_round"] = ops_per_round
        if not metadata:
            return  # --benchmark-disable: the function ran once, nothing was measured
        rate = Rate(request.node.name, ops_per_round, float(metadata.stats.median))
        benchmark.extra_info["per_op_us"] = round(rate.per_op_us, 3)
        benchmark.extra_info["ops_per_s"] = round(rate.ops_per_s, 1)
        _RATES.append(rate)

    return record


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the per-op table after pytest-benchmark's own tables."""
    if not _RATES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("per-op throughput (median, one thread)")
    write(
        f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    width = max(len(rate.name) for rate in _RATES)
    write(f"{'benchmark':<{width}}  {'ops/round':>9}  {'µs/op':>10}  {'ops/s':>12}")
    for rate in sorted(_RATES, key=lambda r: r.name):
        write(
            f"{rate.name:<{width}}  {rate.ops_per_round:>9}  {rate.per_op_us:>10.1f}  "
            f"{rate.ops_per_s:>12,.0f}"
        )


def fresh_genesis_ops(count: int, seed: str, curve: Curve = Curve.K256) -> list[Identity]:
    """``count`` distinct signed genesis ops (for benchmarks that consume one per round)."""
    return [new_identity(f"{seed}-{i}", curve) for i in range(count)]
