"""Resume and compare: a run killed mid-replay and resumed ends in the same state as one
uninterrupted run; two auditors shown different histories find the split view together."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from auditor.audit import AuditOptions, verify_file
from auditor.compare import compare_states
from auditor.evidence_check import VERIFIED, check_finding
from auditor.sources import SourceSpec
from auditor.worker import Item, Validator, WorkerConfig

from .conftest import Audit, classes, renumber, seq_of, stored_findings
from .corpus import Corpus
from .fakedir import FakeLog, make_split_app
from .generate import generate_export

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def big_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12,000 generated ops with an invalid update every 300 updates."""
    path = tmp_path_factory.mktemp("gen") / "export.jsonl"
    return generate_export(path, 12_000, seed="resume", bad_every=300)


def dump(path: Path) -> dict[str, Any]:
    """Everything a state holds that a run decides (not timing or bookkeeping)."""
    conn = sqlite3.connect(path)
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    meta.pop("source", None)
    result = {
        "meta": meta,
        "ops": conn.execute("SELECT * FROM ops ORDER BY did, cid").fetchall(),
        "findings": conn.execute("SELECT key, body FROM findings ORDER BY key").fetchall(),
        "tree": conn.execute("SELECT * FROM tree_chunk ORDER BY chunk").fetchall(),
        "checkpoints": conn.execute("SELECT note, status FROM checkpoints ORDER BY id").fetchall(),
    }
    conn.close()
    return result


def cursor(path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        row = conn.execute("SELECT value FROM meta WHERE key = 'cursor_seq'").fetchone()
        conn.close()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


def verify_in_background(
    export: Path, state: Path, batch_lines: int, past: int, stderr: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """``plc-audit verify`` of ``export`` in its own process group (as in a terminal), returned
    once its committed cursor has passed ``past`` and it is still running."""
    command = [sys.executable, "-m", "auditor", "verify", str(export), "--state", str(state)]
    process = subprocess.Popen(
        [*command, "--no-progress", "--findings", os.devnull, "--batch-lines", str(batch_lines)],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    deadline = time.monotonic() + 60
    while cursor(state) < past and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run finished before it could be stopped"
    return process


def test_kill_and_resume_gives_the_same_state(big_export: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.sqlite3"
    options = AuditOptions(workers=2, progress=False)
    verify_file(big_export, whole, options)

    killed = tmp_path / "killed.sqlite3"
    # Small batches (many commits to be killed between); the state must not depend on it.
    process = verify_in_background(big_export, killed, batch_lines=1000, past=3000)
    os.killpg(process.pid, signal.SIGKILL)  # the coordinator and its workers, mid-replay
    process.wait()
    interrupted_at = cursor(killed)
    assert 3000 <= interrupted_at < 12_000

    verify_file(big_export, killed, options, resume=True)
    assert dump(killed) == dump(whole)
    assert dump(whole)["meta"]["cursor_seq"] == "12000"


def test_resumed_verify_notices_a_changed_file(
    big_export: Path, tmp_path: Path, verify: Audit
) -> None:
    lines = big_export.read_bytes().split(b"\n")[:3000]
    first = verify(lines)
    assert classes(first) == {"invalid-signature"}
    lines[1200] = lines[1200].replace(b'"createdAt":"2025', b'"createdAt":"2024')
    again = verify(lines, resume=True)
    assert [f.evidence["kind"] for f in again if f.cls == "export-rewritten"] == ["changed"]


def test_compare_finds_a_split_view(corpus: Corpus, tmp_path: Path, sync: Audit) -> None:
    from tests.conftest import LiveServer

    lines_b = list(corpus.lines)
    dids = [x.split(b'"did":"')[1][:32] for x in lines_b]
    k = next(i for i in range(600, len(lines_b)) if dids.count(dids[i]) == 1)
    del lines_b[k]  # one op nobody depends on: B's history is valid too
    a = FakeLog(list(corpus.lines), corpus.signer)
    b = FakeLog(renumber(lines_b), corpus.signer)
    keys = (corpus.signer.verifier,)
    with LiveServer(make_split_app(a, b)) as server:  # type: ignore[arg-type]
        assert sync(server.url + "/a", state_name="a.sqlite3", verifiers=keys) == []
        assert sync(server.url + "/b", state_name="b.sqlite3", verifiers=keys) == []
    found = compare_states(tmp_path / "a.sqlite3", tmp_path / "b.sqlite3")
    assert "split-view" in classes(found)
    verdicts = [check_finding(f.to_json(), [corpus.signer.verifier]) for f in found]
    assert VERIFIED in verdicts
    entries = [f for f in found if f.evidence.get("leaf_index") is not None]
    assert entries and entries[0].seq == k + 1
    assert compare_states(tmp_path / "a.sqlite3", tmp_path / "a.sqlite3") == []
    assert seq_of(b.lines[-1]) == len(corpus.lines) - 1


def test_an_op_applied_before_a_kill_is_still_evidence_after_it(
    big_export: Path, tmp_path: Path
) -> None:
    """A killed run's worker may commit its rows for a batch the coordinator never committed.
    Replayed, such an op is skipped, but a later refused op of the same DID still cites its line
    (it cited null when the replayed line was dropped and its leaf was not yet committed)."""
    lines = [line for line in big_export.read_bytes().split(b"\n") if line]
    whole = tmp_path / "whole.sqlite3"
    verify_file(big_export, whole, AuditOptions(workers=0, progress=False))
    refused = next(f for f in stored_findings(whole) if f.cls == "invalid-signature")
    assert refused.did is not None and refused.seq is not None
    quoted = f'"{refused.did}"'.encode()
    mine: list[Item] = [(seq_of(line), refused.did, line, None) for line in lines if quoted in line]
    before = [item for item in mine if item[0] < refused.seq]
    assert before, "the refused op has a prev"
    config = WorkerConfig(str(tmp_path / "killed.sqlite3"), SourceSpec.for_file(big_export))
    killed = Validator(config)
    killed.run_batch(1, before)  # the killed run's worker committed these; nothing else did
    killed.close()

    resumed = Validator(config)
    resumed.run_batch(1, [item for item in mine if item[0] <= refused.seq])
    resumed.close()
    found = [f for f in stored_findings(tmp_path / "killed.sqlite3") if f.seq == refused.seq]
    assert [f.cls for f in found] == ["invalid-signature"]
    assert None not in found[0].evidence["lines"]
    assert found[0].evidence == refused.evidence
