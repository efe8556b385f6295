"""Split views ``compare`` must see without any entries, and a directory going back on what
it served: an older checkpoint (noted) and an export cut back below what was verified (a
finding, whatever ``--recheck`` says)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from auditor.audit import AuditOptions, sync_directory, verify_file
from auditor.compare import compare_states
from auditor.evidence_check import UNVERIFIABLE, VERIFIED, check_finding
from auditor.findings import MISBEHAVIOUR
from plc.tlog.checkpoint import Checkpoint, sign_checkpoint

from .conftest import classes, serve, stored_findings
from .corpus import Corpus
from .fakedir import FakeLog
from .test_hostile_input import run_cli


def test_compare_finds_same_size_checkpoints_no_entries_reach(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    size = 150
    genuine = FakeLog(list(corpus.lines[:size]), corpus.signer).checkpoint()
    forged = sign_checkpoint(Checkpoint(corpus.signer.name, size, b"\x05" * 32), corpus.signer)
    export = tmp_path / "export.jsonl"
    export.write_bytes(b"\n".join(corpus.lines[:100]) + b"\n")  # nobody reads up to 150
    keys = (corpus.signer.verifier,)
    for name, note in (("a", genuine), ("b", forged)):
        options = AuditOptions(workers=0, progress=False, verifiers=keys, checkpoint_notes=(note,))
        verify_file(export, tmp_path / f"{name}.sqlite3", options)
        assert stored_findings(tmp_path / f"{name}.sqlite3") == []  # alone: pending, clean
    found = compare_states(tmp_path / "a.sqlite3", tmp_path / "b.sqlite3")
    assert [f.cls for f in found] == ["split-view"]
    assert {found[0].evidence["covering_checkpoint"], found[0].evidence["other_checkpoint"]} == {
        genuine,
        forged,
    }
    assert check_finding(orjson.loads(found[0].dumps()), [corpus.signer.verifier]) == VERIFIED
    assert compare_states(tmp_path / "b.sqlite3", tmp_path / "a.sqlite3")[0].cls == "split-view"
    code, out, _ = run_cli(
        capsys, "compare", str(tmp_path / "a.sqlite3"), str(tmp_path / "b.sqlite3")
    )
    assert code == 2 and orjson.loads(out.splitlines()[0])["class"] == "split-view"


def _sync(url: str, path: Path, **options: object) -> tuple[list[str], list[str]]:
    """One sync run: its notes and the classes of the misbehaviour findings of the state."""
    opts = AuditOptions(workers=0, progress=False, spot_checks=-1, **options)  # type: ignore[arg-type]
    outcome = sync_directory(url, path, opts)
    found = stored_findings(path)
    return outcome.notes, sorted({f.cls for f in found if f.severity == MISBEHAVIOUR})


def test_an_older_checkpoint_is_noted(corpus: Corpus, tmp_path: Path) -> None:
    log = FakeLog(list(corpus.lines[:200]), corpus.signer)
    older = FakeLog(list(corpus.lines[:100]), corpus.signer).checkpoint()
    keys = {"verifiers": (corpus.signer.verifier,)}
    with serve(log) as url:
        _sync(url, tmp_path / "s.sqlite3", **keys)
        log.checkpoint_override = older  # consistent with the first: not a finding
        notes, bad = _sync(url, tmp_path / "s.sqlite3", **keys)
    assert bad == []
    assert any("checkpoint of size 100, older than the one of size 200" in n for n in notes)


@pytest.mark.parametrize("recheck", ["none", "tail"])
def test_an_export_cut_back_below_what_was_verified_is_found(
    corpus: Corpus, tmp_path: Path, recheck: str
) -> None:
    log = FakeLog(list(corpus.lines[:200]), corpus.signer)
    keys = {"verifiers": (corpus.signer.verifier,)}
    with serve(log) as url:
        assert _sync(url, tmp_path / "s.sqlite3", **keys)[1] == []
        log.lines = list(corpus.lines[:100])  # and a checkpoint of what is left
        log.changed()
        notes, bad = _sync(url, tmp_path / "s.sqlite3", recheck=recheck, **keys)
    assert bad == ["export-rewritten"]
    assert any("no longer served" in n for n in notes)
    missing = [f for f in stored_findings(tmp_path / "s.sqlite3") if f.cls == "export-rewritten"]
    assert {f.evidence["kind"] for f in missing} == {"missing"}
    assert min(f.evidence["leaf_index"] for f in missing) == 100
    verdicts = {check_finding(orjson.loads(f.dumps()), [corpus.signer.verifier]) for f in missing}
    assert verdicts == {UNVERIFIABLE}  # absence rests on the auditor's read of the export
    assert "checkpoint-root-mismatch" not in classes(stored_findings(tmp_path / "s.sqlite3"))
