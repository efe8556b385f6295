"""End to end against our real directory (``plc.api``, SQLite): a clean audit with the log's
verifier key, then the database tampered with behind the server's back — each change caught
through the real ``/export``, ``/tlog/*`` and DID endpoints."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from plc.api.app import create_app
from plc.config import Settings
from plc.keys import Curve, PrivateKey
from plc.signing import create_did
from plc.tlog.note import Signer
from tests.conftest import Clock, LiveServer

from .conftest import (
    Audit,
    assert_evidence_consistent,
    assert_unverifiable,
    classes,
)
from .corpus import _update


@dataclass
class Directory:
    url: str
    db: Path
    signer: Signer
    ops: int


def _post(client: httpx.Client, did: str, op: dict[str, object]) -> None:
    response = client.post(
        f"/{did}", content=orjson.dumps(op), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    signer = Signer.generate("e2e.test/log")
    db = tmp_path / "plc.sqlite3"
    clock = Clock()
    settings = Settings(
        database_url=f"sqlite:///{db}",
        log_signing_key=signer.key_text,
        log_origin=signer.name,
        checkpoint_interval_ms=50,
    )
    with LiveServer(create_app(settings, clock=clock)) as server:
        client = httpx.Client(base_url=server.url)
        ops = 0
        for i in range(40):
            curve = Curve.P256 if i % 4 == 0 else Curve.K256
            keys = [PrivateKey.from_seed(f"e2e{i}-0", curve), PrivateKey.from_seed(f"e2e{i}-1")]
            did, genesis = create_did(keys, handle=f"e2e{i}.test")
            _post(client, did, genesis)
            history = [genesis]
            ops += 1
            clock.advance(timedelta(seconds=1))
            if i % 3 == 0:
                history.append(_update(history[-1], keys[1], f"e2e{i}-b.test"))
                _post(client, did, history[-1])
                ops += 1
            if i % 6 == 0:  # key 0 overrides key 1's update: a recovery
                _post(client, did, _update(history[-2], keys[0], f"e2e{i}-r.test"))
                ops += 1
        deadline = time.monotonic() + 10
        while client.get("/tlog/checkpoint").text.split("\n")[1] != str(ops):
            assert time.monotonic() < deadline, "no checkpoint covers every op"
            time.sleep(0.05)
        client.close()
        yield Directory(server.url, db, signer, ops)


def _tamper(db: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(db, timeout=30)
    with conn:
        conn.execute(sql, params)
    conn.close()


def test_real_directory_is_clean_then_a_changed_line_is_caught(
    directory: Directory, sync: Audit
) -> None:
    keys = (directory.signer.verifier,)
    assert sync(directory.url, workers=2, spot_checks=5, verifiers=keys) == []

    conn = sqlite3.connect(directory.db)
    line = conn.execute("SELECT line FROM operations WHERE seq = 5").fetchone()[0]
    conn.close()
    changed = bytes(line).replace(b'"createdAt":"2026', b'"createdAt":"2027')
    _tamper(directory.db, "UPDATE operations SET line = ? WHERE seq = 5", changed)

    again = sync(directory.url, verifiers=keys)  # resumes: the second read differs
    assert "export-rewritten" in classes(again)
    assert_unverifiable(again, "export-rewritten", directory.signer)

    fresh = sync(directory.url, state_name="fresh.sqlite3", verifiers=keys)
    mismatch = [f for f in fresh if f.cls == "checkpoint-root-mismatch"]
    assert mismatch and mismatch[0].evidence["leaf"]["leaf_index"] == 4  # seq 5, via tiles
    assert_unverifiable(fresh, "checkpoint-root-mismatch", directory.signer)


def test_real_directory_with_tampered_documents_and_audit_flags(
    directory: Directory, sync: Audit
) -> None:
    keys = (directory.signer.verifier,)
    _tamper(
        directory.db,
        "UPDATE dids SET document = CAST(replace(CAST(document AS TEXT), 'https://pds', "
        "'https://evil') AS BLOB)",
    )
    findings = sync(directory.url, spot_checks=4, verifiers=keys)
    assert classes(findings) == {"served-state-mismatch"}
    assert_evidence_consistent(findings, "served-state-mismatch", directory.signer)

    _tamper(directory.db, "UPDATE operations SET nullified = 1 - nullified")
    flipped = sync(directory.url, state_name="flags.sqlite3", spot_checks=4, verifiers=keys)
    paths = {f.evidence["url"].rsplit("/", 2)[-2:][-1] for f in flipped}
    assert "audit" in paths
