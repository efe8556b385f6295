"""Helpers the tests share: loading vectors, keys, building signed chains."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from plc.codec import b32_lower
from plc.keys import Curve, PrivateKey
from plc.operation import parse_operation
from plc.rules import PreparedOperation
from plc.signing import create_did, update_operation
from plc.store.records import PendingCommit
from plc.store.sql import SqlStore
from plc.timestamps import parse_timestamp

from .conftest import INTEROP

VALID_LOGS = sorted((INTEROP / "valid").glob("*.json"))
INVALID_LOGS = sorted((INTEROP / "invalid").glob("*.json"))

# Index of the first op each invalid log must be refused at (checked independently by the
# go-didplc and reference test suites; see shared/vectors/README.md).
INVALID_AT = {
    "log_invalid_nullification_reused_key.json": 2,
    "log_invalid_nullification_too_slow.json": 2,
    "log_invalid_sig_b64_newline.json": 0,
    "log_invalid_sig_b64_padding_bits.json": 0,
    "log_invalid_sig_b64_padding_chars.json": 0,
    "log_invalid_sig_der.json": 0,
    "log_invalid_sig_k256_high_s.json": 0,
    "log_invalid_sig_p256_high_s.json": 0,
    "log_invalid_update_nullified.json": 4,
    "log_invalid_update_tombstoned.json": 2,
}


def load_log(path: Path) -> list[dict[str, Any]]:
    value = json.loads(path.read_text())
    assert isinstance(value, list)
    return value


def key(seed: str, curve: Curve = Curve.K256) -> PrivateKey:
    return PrivateKey.from_seed(seed, curve)


def new_did(
    seed: str = "alice", curve: Curve = Curve.K256, handle: str | None = None
) -> tuple[str, dict[str, Any], list[PrivateKey]]:
    """A DID with two rotation keys (seeded) and its signed genesis op."""
    keys = [key(f"{seed}-rot0", curve), key(f"{seed}-rot1", curve)]
    did, genesis = create_did(keys, handle=handle or f"{seed}.example.com")
    return did, genesis, keys


def update(prev_op: dict[str, Any], signer: PrivateKey, **changes: Any) -> dict[str, Any]:
    """A signed update of ``prev_op`` (a plc_operation) with ``changes`` applied."""
    return update_operation(prev_op, signer, **changes)


def fill_log(store: SqlStore, count: int, first: int = 0) -> None:
    """Append ``count`` leaves straight through the store, for tests of the log, not of the
    rules: one signed genesis op stored under made-up DIDs numbered from ``first`` (give each
    call on one database its own range)."""
    _, genesis, _ = new_did("bulk")
    op = parse_operation(genesis)
    when = parse_timestamp("2026-01-01T00:00:00.000Z")
    batch = []
    for i in range(first, first + count):
        did = "did:plc:" + b32_lower(i.to_bytes(15, "big"))[:24]
        prepared = PreparedOperation(did, op, when, None, (), 0)
        batch.append(PendingCommit(prepared, None, b"{}", b"{}"))
        if len(batch) == 5000:
            store.commit_batch(batch)
            batch = []
    if batch:
        store.commit_batch(batch)


@contextmanager
def dripping_head(seconds: float) -> Iterator[str]:
    """A server whose answer's head comes a byte every 0.2 s, for ``seconds``, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(65536)
            ends = time.monotonic() + seconds
            head = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 10_000
            for byte in head:
                if stop.wait(0.2) or time.monotonic() > ends:
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=10)
