"""Fixtures of the auditor tests: the posted corpus, fake directories, running an audit."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditor import state
from auditor.audit import AuditOptions, sync_directory, verify_file
from auditor.evidence_check import UNVERIFIABLE, VERIFIED, status_of, verdicts
from auditor.findings import Finding
from auditor.report import write_findings
from plc.exportline import build_line
from plc.operation import parse_operation
from plc.tlog.note import Signer
from tests.conftest import LiveServer

from .corpus import Corpus, load_corpus
from .fakedir import FakeLog, make_app

REPO = Path(__file__).resolve().parents[2]


def plc_audit(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``plc-audit ARGS`` in a process of its own: exit code, stdout and stderr (text)."""
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """The posted corpus (built once per test session, shared by xdist workers)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return load_corpus(base / "auditor-corpus")


def line_for(
    did: str, op: dict[str, Any], seq: int, created_at: str, cid: str | None = None
) -> bytes:
    """The canonical export line of a signed op dict (``cid`` overrides the computed one)."""
    parsed = parse_operation(op)
    return build_line(did, cid or parsed.cid, seq, created_at, parsed.canonical_json())


def created_at(line: bytes) -> str:
    """The ``createdAt`` of a line."""
    return str(orjson.loads(line)["createdAt"])


def seq_of(line: bytes) -> int:
    """The ``seq`` of a line."""
    return int(orjson.loads(line)["seq"])


def renumber(lines: list[bytes]) -> list[bytes]:
    """The same ops with ``seq`` 1, 2, 3, ... in the given order (canonical lines)."""
    out = []
    for i, line in enumerate(lines, 1):
        value = orjson.loads(line)
        out.append(line_for(value["did"], value["operation"], i, value["createdAt"], value["cid"]))
    return out


@contextmanager
def serve(log: FakeLog) -> Iterator[str]:
    """Serve a fake directory on 127.0.0.1; yields its URL."""
    with LiveServer(make_app(log)) as server:  # type: ignore[arg-type]
        yield server.url


def stored_findings(path: Path) -> list[Finding]:
    """Every finding in a state file, by seq."""
    conn = state.connect(path, create=False)
    try:
        return [f for _, f in state.load_findings(conn)]
    finally:
        conn.close()


Audit = Callable[..., list[Finding]]


@pytest.fixture
def sync(tmp_path: Path) -> Audit:
    """``sync(url, **options)``: run ``sync_directory`` into ``tmp_path/state.sqlite3`` (kept
    between calls: a second call resumes) and return every finding of the state."""

    def run(url: str, *, state_name: str = "state.sqlite3", **options: Any) -> list[Finding]:
        options.setdefault("workers", 0)
        options.setdefault("progress", False)
        options.setdefault("spot_checks", 3)
        options.setdefault("seed", 1)
        path = tmp_path / state_name
        sync_directory(url, path, AuditOptions(**options))
        return stored_findings(path)

    return run


@pytest.fixture
def verify(tmp_path: Path) -> Audit:
    """``verify(lines_or_path, **options)``: write lines to a file if needed, run
    ``verify_file`` and return the findings."""

    def run(source: list[bytes] | Path, *, resume: bool = False, **options: Any) -> list[Finding]:
        if isinstance(source, Path):
            path = source
        else:
            path = tmp_path / "export.jsonl"
            path.write_bytes(b"\n".join(source) + b"\n")
        options.setdefault("workers", 0)
        options.setdefault("progress", False)
        state_path = tmp_path / "verify.sqlite3"
        verify_file(path, state_path, AuditOptions(**options), resume=resume)
        return stored_findings(state_path)

    return run


def as_written(findings: list[Finding]) -> list[dict[str, Any]]:
    """The findings as a findings file holds them (:func:`auditor.report.write_findings`:
    a finding extending one not in the file is written inline), parsed back."""
    out = io.BytesIO()
    write_findings(findings, out)
    return [orjson.loads(raw) for raw in out.getvalue().splitlines()]


def file_verdicts(findings: list[Finding], cls: str, signer: Signer | None) -> list[str]:
    """The checker's status of each finding of class ``cls``, checked as ``check-evidence``
    checks a findings file (each resolved against the others)."""
    written = as_written(findings)
    assert any(f["class"] == cls for f in written), f"no {cls} finding in {classes(findings)}"
    keys = [signer.verifier] if signer is not None else []
    texts = verdicts(written, keys)
    return [status_of(t) for f, t in zip(written, texts, strict=True) if f["class"] == cls]


def assert_evidence(findings: list[Finding], cls: str, signer: Signer | None = None) -> None:
    """Every finding of class ``cls`` verifies with the standalone checker (and at least one
    exists and is fully ``verified``)."""
    found = file_verdicts(findings, cls, signer)
    assert set(found) <= {VERIFIED, UNVERIFIABLE}
    assert VERIFIED in found, found


def assert_unverifiable(findings: list[Finding], cls: str, signer: Signer | None = None) -> None:
    """Every finding of class ``cls`` passes the standalone checker as ``unverifiable`` (at
    least one exists): its checks hold, and its claim rests on the auditor's observation."""
    assert set(file_verdicts(findings, cls, signer)) == {UNVERIFIABLE}


def assert_evidence_consistent(
    findings: list[Finding], cls: str, signer: Signer | None = None
) -> None:
    """Every finding of class ``cls`` passes the standalone checker's consistency checks
    (``unverifiable``: the claim also rests on what the auditor read, e.g. line order, or
    on an answer the directory did not sign)."""
    found = set(file_verdicts(findings, cls, signer))
    assert found == {UNVERIFIABLE}, found


def classes(findings: list[Finding]) -> set[str]:
    """The finding classes present."""
    return {f.cls for f in findings}


def state_meta(path: Path, key: str) -> int:
    """An integer of the ``meta`` table of the state at ``path``, read-only (0 when unset)."""
    conn = state.open_readonly(path)
    try:
        return state.get_meta_int(conn, key)
    finally:
        conn.close()
