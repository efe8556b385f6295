"""The go-didplc interop audit logs, replayed as exports (read from the shared vectors).

Every valid log replays clean with the nullified flags the vector records; every invalid
one gives the finding class its name describes, at the op that breaks the rule, with
evidence the standalone checker verifies.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from auditor.findings import MISBEHAVIOUR
from tests.helpers import INVALID_AT, INVALID_LOGS, VALID_LOGS, load_log

from .conftest import Audit, assert_evidence, line_for

EXPECTED_CLASS = {
    "log_invalid_nullification_reused_key.json": "unauthorized-recovery",
    "log_invalid_nullification_too_slow.json": "late-recovery",
    "log_invalid_sig_b64_newline.json": "invalid-signature",
    "log_invalid_sig_b64_padding_bits.json": "invalid-signature",
    "log_invalid_sig_b64_padding_chars.json": "invalid-signature",
    "log_invalid_sig_der.json": "invalid-signature",
    "log_invalid_sig_k256_high_s.json": "invalid-signature",
    "log_invalid_sig_p256_high_s.json": "invalid-signature",
    "log_invalid_update_nullified.json": "chained-to-nullified",
    "log_invalid_update_tombstoned.json": "chained-to-tombstone",
}


def export_of(entries: list[dict[str, Any]]) -> list[bytes]:
    """The audit log as export lines, ``seq`` 1..n in order."""
    return [
        line_for(e["did"], e["operation"], i, e["createdAt"], e["cid"])
        for i, e in enumerate(entries, 1)
    ]


def test_every_invalid_vector_is_named() -> None:
    assert {p.name for p in INVALID_LOGS} == set(EXPECTED_CLASS)
    assert len(VALID_LOGS) == 10


@pytest.mark.parametrize("path", VALID_LOGS, ids=lambda p: p.stem)
def test_valid_log_replays_clean(path: Path, verify: Audit, tmp_path: Path) -> None:
    entries = load_log(path)
    findings = verify(export_of(entries))
    assert findings == []
    conn = sqlite3.connect(tmp_path / "verify.sqlite3")
    derived = dict(conn.execute("SELECT cid, nullified FROM ops").fetchall())
    assert derived == {e["cid"]: int(e["nullified"]) for e in entries}
    assert {s for (s,) in conn.execute("SELECT DISTINCT status FROM ops")} == {"ok"}


@pytest.mark.parametrize("path", INVALID_LOGS, ids=lambda p: p.stem)
def test_invalid_log_gives_its_class(path: Path, verify: Audit) -> None:
    findings = verify(export_of(load_log(path)))
    first = findings[0]
    assert first.severity == MISBEHAVIOUR
    assert first.cls == EXPECTED_CLASS[path.name]
    assert first.seq == INVALID_AT[path.name] + 1
    assert_evidence(findings, first.cls)


def test_all_valid_logs_in_one_export_with_two_workers(verify: Audit) -> None:
    # In createdAt order, as a directory sequences them (one DID's ops rise strictly, so the
    # stable sort keeps each log's order); in file order createdAt goes back by months
    # along seq, which is backdated-op.
    entries = [e for path in VALID_LOGS for e in load_log(path)]
    entries.sort(key=lambda e: str(e["createdAt"]))
    lines = [
        line_for(e["did"], e["operation"], i, e["createdAt"], e["cid"])
        for i, e in enumerate(entries, 1)
    ]
    assert verify(lines, workers=2) == []
