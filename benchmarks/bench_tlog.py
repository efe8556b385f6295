"""What the transparency log costs: proofs, checkpoint signing, and its share of a write.

Groups:

- ``log-cost``: prepare + commit of new DIDs in batches of 8 (a typical group commit under 8
  concurrent clients) on SQLite, with the log (the tree's stored hashes written in the same
  transaction) and without it, in the same run. The summary's ops/s of the two give the
  log's share of write throughput (target: under 15 %).
- ``proof``: inclusion and consistency proofs from the stored hashes of a 100,000-leaf tree
  (one indexed query each), and the root hash.
- ``checkpoint``: signing a checkpoint after one more leaf, as the timer does (root,
  consistency proof against the previous checkpoint and its check, Ed25519, insert).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, FixedClock, RecordRate, fresh_genesis_ops, new_identity

from plc.checkpoints import Checkpointer
from plc.codec import b32_lower
from plc.operation import parse_operation
from plc.policy import PolicySettings
from plc.rules import PreparedOperation
from plc.service import Directory
from plc.store.engine import make_engine
from plc.store.migrate import upgrade
from plc.store.records import CommitStatus, PendingCommit
from plc.store.sql import SqlStore
from plc.store.tlog_store import TlogStore
from plc.tlog.note import Signer
from plc.tlog.proof import consistency_proof, inclusion_proof
from plc.tlog.tree import root_hash

BATCH = 8
TREE = 100_000


def _directory(path: Path, with_log: bool) -> tuple[Directory, SqlStore]:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store = SqlStore(engine)
    if with_log:
        store.leaf_hooks.append(TlogStore(store).append_in)
    return Directory(store, PolicySettings(), FixedClock(), inline_io=True), store


@pytest.mark.benchmark(group="log-cost")
@pytest.mark.parametrize("with_log", [False, True], ids=["without-log", "with-log"])
def test_write_with_and_without_log(
    benchmark: Any, record_rate: RecordRate, tmp_path: Path, with_log: bool
) -> None:
    """prepare + commit of ``BATCH`` new DIDs per round (what one group commit does)."""
    directory, store = _directory(tmp_path / "w.sqlite3", with_log)
    rounds, warmup = 60, 5
    idents = fresh_genesis_ops((rounds + warmup) * BATCH, f"logcost-{with_log}")
    batches = iter([idents[i : i + BATCH] for i in range(0, len(idents), BATCH)])

    def setup() -> tuple[tuple[Any], dict[str, Any]]:
        return (next(batches),), {}

    def write(batch: list[Any]) -> None:
        pending = [directory.prepare(ident.did, ident.genesis) for ident in batch]
        assert all(isinstance(p, PendingCommit) for p in pending)
        outcomes = store.commit_batch(pending)  # type: ignore[arg-type]
        assert all(o.status is CommitStatus.COMMITTED for o in outcomes)

    benchmark.pedantic(write, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)
    record_rate(benchmark, BATCH)
    store.engine.dispose()


@dataclass
class BigLog:
    store: SqlStore
    tlog: TlogStore


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigLog]:
    """A log of ``TREE`` leaves (one signed op stored under made-up DIDs: a tree benchmark,
    not a rules benchmark)."""
    path = tmp_path_factory.mktemp("biglog") / "big.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store = SqlStore(engine)
    tlog = TlogStore(store)
    store.leaf_hooks.append(tlog.append_in)
    op = parse_operation(new_identity("big").genesis)
    batch: list[PendingCommit] = []
    for i in range(TREE):
        did = "did:plc:" + b32_lower(i.to_bytes(15, "big"))[:24]
        batch.append(PendingCommit(PreparedOperation(did, op, T0, None, (), 0), None, b"{}", b"{}"))
        if len(batch) == 5000:
            store.commit_batch(batch)
            batch = []
    yield BigLog(store, tlog)
    engine.dispose()


@pytest.mark.benchmark(group="proof")
def test_inclusion_proof(benchmark: Any, record_rate: RecordRate, big_log: BigLog) -> None:
    proof = benchmark(inclusion_proof, 12_345, TREE, big_log.tlog.reader)
    assert len(proof) == 17
    record_rate(benchmark, 1)


@pytest.mark.benchmark(group="proof")
def test_consistency_proof(benchmark: Any, record_rate: RecordRate, big_log: BigLog) -> None:
    proof = benchmark(consistency_proof, 54_321, TREE, big_log.tlog.reader)
    assert proof
    record_rate(benchmark, 1)


@pytest.mark.benchmark(group="proof")
def test_root_hash(benchmark: Any, record_rate: RecordRate, big_log: BigLog) -> None:
    root = benchmark(root_hash, TREE, big_log.tlog.reader)
    assert len(root) == 32
    record_rate(benchmark, 1)


@pytest.mark.benchmark(group="checkpoint")
def test_sign_checkpoint(benchmark: Any, record_rate: RecordRate, big_log: BigLog) -> None:
    """One timer tick after one new op: root, consistency check against the last checkpoint,
    Ed25519 signature, insert."""
    checkpointer = Checkpointer(big_log.tlog, Signer.generate("bench.example/log"), FixedClock())
    checkpointer.sign_if_grown()
    op = parse_operation(new_identity("tick").genesis)
    counter = iter(range(10**6))

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        did = "did:plc:" + b32_lower((10**9 + next(counter)).to_bytes(15, "big"))[:24]
        pending = PendingCommit(PreparedOperation(did, op, T0, None, (), 0), None, b"{}", b"{}")
        big_log.store.commit_batch([pending])
        return (), {}

    def tick() -> None:
        checkpointer.sign_if_grown()

    benchmark.pedantic(tick, setup=setup, rounds=50, warmup_rounds=2, iterations=1)
    record_rate(benchmark, 1)
