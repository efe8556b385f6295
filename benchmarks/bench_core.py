"""Micro-benchmarks of the directory's hot paths, one thread, no HTTP.

Groups:

- ``verify``: an ECDSA check of an op signature with a parsed did:key (``PublicKey.verifies``),
  and ``signer_index`` on a freshly decoded op (signature decode + DAG-CBOR of the unsigned op
  + the check), for secp256k1 and P-256.
- ``codec``: DAG-CBOR encoding of a signed op; ``parse_operation`` (strict schema, DAG-CBOR,
  CID).
- ``rules``: ``validate_next_op`` for a plain append and for a recovery (a fork that
  nullifies one op signed by a lower-authority key: three signature checks).
- ``prepare``: ``Directory.prepare`` on SQLite (store read + parse + rules + policy + the
  stored ``/data`` and DID document bodies) for a genesis, an update, and an update of a DID
  with 20 ops.
- ``commit``: ``SqlStore.commit_batch`` on SQLite (WAL, ``synchronous=FULL``) with 1 and 16
  new DIDs per transaction; the summary prints the time per op.
- ``read``: ``SqlStore.did_state`` (the one indexed lookup behind ``GET /{did}``).
- ``document``: formatting the DID document and ``/data`` JSON of a state.

Ops whose CBOR an :class:`Operation` caches are rebuilt for every call, as the server sees
them (a fresh request body, or history read back from storage).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest
from conftest import (
    T0,
    Identity,
    RecordRate,
    SqliteDirectory,
    fresh_genesis_ops,
    new_identity,
    signed_update,
)

from plc.codec import decode_signature, encode_dag_cbor
from plc.document import format_data, format_did_document
from plc.keys import Curve, parse_did_key
from plc.operation import Operation, normalize, parse_operation, trusted_operation
from plc.rules import LogEntry, PreparedOperation, signer_index, validate_next_op
from plc.service import SubmitResult
from plc.store.records import CommitStatus, PendingCommit

CURVES = [pytest.param(Curve.K256, id="k256"), pytest.param(Curve.P256, id="p256")]


def _identity(curve: Curve, k256: Identity, p256: Identity) -> Identity:
    return k256 if curve is Curve.K256 else p256


def _fresh(op: Operation) -> Operation:
    """The same op without its cached DAG-CBOR (as read back from storage)."""
    return trusted_operation(op.data, op.cid)


# ---- verify ------------------------------------------------------------------------------


@pytest.mark.benchmark(group="verify")
@pytest.mark.parametrize("curve", CURVES)
def test_verify_signature(
    benchmark: Any,
    record_rate: RecordRate,
    curve: Curve,
    k256_identity: Identity,
    p256_identity: Identity,
) -> None:
    """One ECDSA-SHA256 check (low-S included) with an already parsed key."""
    ident = _identity(curve, k256_identity, p256_identity)
    op = parse_operation(ident.genesis)
    data = op.unsigned_cbor()
    sig = decode_signature(op.sig)
    public = parse_did_key(ident.rotation[0].did_key)
    assert public.verifies(data, sig)
    assert benchmark(public.verifies, data, sig)
    record_rate(benchmark, 1)


@pytest.mark.benchmark(group="verify")
@pytest.mark.parametrize("curve", CURVES)
def test_signer_index(
    benchmark: Any,
    record_rate: RecordRate,
    curve: Curve,
    k256_identity: Identity,
    p256_identity: Identity,
) -> None:
    """``plc.rules.signer_index`` of an op signed by the first rotation key: signature
    decode, DAG-CBOR of the unsigned op, one check."""
    ident = _identity(curve, k256_identity, p256_identity)
    op = parse_operation(ident.genesis)
    keys = tuple(op.data["rotationKeys"])

    def run() -> int | None:
        return signer_index(keys, _fresh(op))

    assert benchmark(run) == 0
    record_rate(benchmark, 1)


# ---- codec -------------------------------------------------------------------------------


@pytest.mark.benchmark(group="codec")
def test_dag_cbor_encode_op(
    benchmark: Any, record_rate: RecordRate, k256_identity: Identity
) -> None:
    """DAG-CBOR of a signed genesis ``plc_operation`` (libipld)."""
    encoded = benchmark(encode_dag_cbor, k256_identity.genesis)
    assert isinstance(encoded, bytes) and len(encoded) > 200
    record_rate(benchmark, 1)


@pytest.mark.benchmark(group="codec")
def test_parse_operation(benchmark: Any, record_rate: RecordRate, k256_identity: Identity) -> None:
    """Strict schema validation, DAG-CBOR and CID of a submitted op."""
    body = orjson.loads(orjson.dumps(k256_identity.genesis))
    op = benchmark(parse_operation, body)
    assert op.cid.startswith("bafyrei")
    record_rate(benchmark, 1)


# ---- rules -------------------------------------------------------------------------------


@pytest.mark.benchmark(group="rules")
@pytest.mark.parametrize("curve", CURVES)
def test_validate_next_op_append(
    benchmark: Any,
    record_rate: RecordRate,
    curve: Curve,
    k256_identity: Identity,
    p256_identity: Identity,
) -> None:
    """A plain append to a DID with one op: one signature check."""
    ident = _identity(curve, k256_identity, p256_identity)
    genesis = parse_operation(ident.genesis)
    update = parse_operation(signed_update(ident.genesis, ident.rotation[0], "next.bench.test"))
    at = T0 + timedelta(minutes=5)

    def run() -> PreparedOperation:
        history = [LogEntry(ident.did, _fresh(genesis), T0)]
        return validate_next_op(history, ident.did, _fresh(update), at)

    prepared = benchmark(run)
    assert prepared.prev == genesis.cid and prepared.nullified == ()
    record_rate(benchmark, 1)


@pytest.mark.benchmark(group="rules")
@pytest.mark.parametrize("curve", CURVES)
def test_validate_next_op_recovery(
    benchmark: Any,
    record_rate: RecordRate,
    curve: Curve,
    k256_identity: Identity,
    p256_identity: Identity,
) -> None:
    """A recovery: rotation key 0 forks past an op signed by rotation key 1 within 72 h
    (two checks to find who signed the disputed op, one for the recovery op)."""
    ident = _identity(curve, k256_identity, p256_identity)
    genesis = parse_operation(ident.genesis)
    disputed = parse_operation(signed_update(ident.genesis, ident.rotation[1], "evil.bench.test"))
    recovery = parse_operation(
        signed_update(ident.genesis, ident.rotation[0], "recovered.bench.test")
    )
    at = T0 + timedelta(hours=24)

    def run() -> PreparedOperation:
        history = [
            LogEntry(ident.did, _fresh(genesis), T0),
            LogEntry(ident.did, _fresh(disputed), T0 + timedelta(hours=1)),
        ]
        return validate_next_op(history, ident.did, _fresh(recovery), at)

    prepared = benchmark(run)
    assert prepared.nullified == (disputed.cid,) and prepared.key_index == 0
    record_rate(benchmark, 1)


# ---- Directory.prepare on SQLite -----------------------------------------------------------


def _prepare_runner(
    env: SqliteDirectory, did: str, body: dict[str, Any]
) -> Callable[[], PendingCommit | SubmitResult]:
    def run() -> PendingCommit | SubmitResult:
        # A fresh decoded body per call, as a request would bring.
        return env.directory.prepare(did, orjson.loads(orjson.dumps(body)))

    first = run()
    assert isinstance(first, PendingCommit), first
    return run


@pytest.mark.benchmark(group="prepare")
def test_prepare_genesis(
    benchmark: Any, record_rate: RecordRate, sqlite_directory: SqliteDirectory
) -> None:
    """``Directory.prepare`` of a new DID's genesis (no history)."""
    ident = new_identity("prepare-genesis")
    benchmark(_prepare_runner(sqlite_directory, ident.did, ident.genesis))
    record_rate(benchmark, 1)


@pytest.mark.benchmark(group="prepare")
@pytest.mark.parametrize("history", [1, 20])
def test_prepare_update(
    benchmark: Any, record_rate: RecordRate, sqlite_directory: SqliteDirectory, history: int
) -> None:
    """``Directory.prepare`` of an update to a DID with ``history`` stored ops (history ops
    imported a day apart, so no rate limit applies)."""
    env = sqlite_directory
    ident = new_identity(f"prepare-update-{history}")
    env.directory.import_op(ident.did, ident.genesis, T0)
    head = ident.genesis
    for i in range(1, history):
        head = signed_update(head, ident.rotation[0], f"h{i}.bench.test")
        env.directory.import_op(ident.did, head, T0 + timedelta(days=i))
    env.clock.now = T0 + timedelta(days=history)
    body = signed_update(head, ident.rotation[0], "next.bench.test")
    benchmark(_prepare_runner(env, ident.did, body))
    record_rate(benchmark, 1)


# ---- SqlStore.commit_batch on SQLite -------------------------------------------------------


@pytest.mark.benchmark(group="commit")
@pytest.mark.parametrize("batch", [1, 16])
def test_commit_batch(
    benchmark: Any, record_rate: RecordRate, sqlite_directory: SqliteDirectory, batch: int
) -> None:
    """One transaction appending ``batch`` new DIDs (insert ops, insert DIDs, move the log
    head), fsynced (WAL, ``synchronous=FULL``). Each round commits ops never seen before."""
    env = sqlite_directory
    rounds = 200 if batch == 1 else 40
    warmup = 5
    idents = fresh_genesis_ops((rounds + warmup) * batch, f"commit-{batch}")
    pendings: list[PendingCommit] = []
    for ident in idents:
        pending = env.directory.prepare(ident.did, ident.genesis)
        assert isinstance(pending, PendingCommit)
        pendings.append(pending)
    batches = [pendings[i : i + batch] for i in range(0, len(pendings), batch)]
    cursor = iter(batches)

    def setup() -> tuple[tuple[list[PendingCommit]], dict[str, Any]]:
        return (next(cursor),), {}

    committed = [0]

    def commit(pending: list[PendingCommit]) -> None:
        outcomes = env.store.commit_batch(pending)
        assert all(o.status is CommitStatus.COMMITTED for o in outcomes)
        committed[0] += len(outcomes)

    benchmark.pedantic(commit, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)
    # --benchmark-disable runs the function once; either way every committed op is in the log
    assert env.store.tree_size() == committed[0] > 0
    record_rate(benchmark, batch)


# ---- reads and documents -------------------------------------------------------------------


@pytest.mark.benchmark(group="read")
def test_did_state_read(
    benchmark: Any, record_rate: RecordRate, sqlite_directory: SqliteDirectory
) -> None:
    """``SqlStore.did_state``: the stored document behind ``GET /{did}``."""
    env = sqlite_directory
    for ident in fresh_genesis_ops(50, "read"):
        env.directory.import_op(ident.did, ident.genesis, T0)
    did = new_identity("read-25").did
    state = benchmark(env.store.did_state, did)
    assert state is not None and state[2] is not None
    record_rate(benchmark, 1)


@pytest.mark.benchmark(group="document")
@pytest.mark.parametrize("curve", CURVES)
def test_did_document_format(
    benchmark: Any,
    record_rate: RecordRate,
    curve: Curve,
    k256_identity: Identity,
    p256_identity: Identity,
) -> None:
    """The DID document JSON of a state (Multikey form), as stored for ``GET /{did}``."""
    ident = _identity(curve, k256_identity, p256_identity)
    state = normalize(parse_operation(ident.genesis))
    assert state is not None

    def run() -> bytes:
        return orjson.dumps(format_did_document(ident.did, state))

    document = orjson.loads(benchmark(run))
    assert document["id"] == ident.did
    record_rate(benchmark, 1)


@pytest.mark.benchmark(group="document")
def test_data_format(benchmark: Any, record_rate: RecordRate, k256_identity: Identity) -> None:
    """The ``/data`` JSON of a state."""
    state = normalize(parse_operation(k256_identity.genesis))
    assert state is not None

    def run() -> bytes:
        return orjson.dumps(format_data(k256_identity.did, state))

    assert orjson.loads(benchmark(run))["did"] == k256_identity.did
    record_rate(benchmark, 1)
