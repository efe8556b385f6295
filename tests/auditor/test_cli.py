"""The ``plc-audit`` command line (run as a real process): exit codes, JSON-lines findings,
the summary, ``report``, ``compare``, ``check-evidence``, and the auditor's independence
from the server's modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from auditor.state import bound_source
from tests.helpers import INVALID_LOGS, VALID_LOGS, load_log

from .conftest import line_for, plc_audit

REPO = Path(__file__).resolve().parents[2]


def export_file(tmp_path: Path, log: Path) -> Path:
    entries = load_log(log)
    lines = [
        line_for(e["did"], e["operation"], i, e["createdAt"], e["cid"])
        for i, e in enumerate(entries, 1)
    ]
    path = tmp_path / f"{log.stem}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_clean_file_exits_0_with_a_summary(tmp_path: Path) -> None:
    path = export_file(tmp_path, VALID_LOGS[0])
    state = tmp_path / "s.sqlite3"
    done = plc_audit("verify", str(path), "--state", str(state), "--workers", "0", "--progress")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "clean" in done.stderr and "plc-audit summary" in done.stderr
    assert "ops/s" in done.stderr  # the progress bar's rate column


def test_misbehaviour_exits_2_with_json_lines_report_and_evidence(tmp_path: Path) -> None:
    log = next(p for p in INVALID_LOGS if p.name == "log_invalid_update_nullified.json")
    path = export_file(tmp_path, log)
    state = tmp_path / "s.sqlite3"
    done = plc_audit("verify", str(path), "--state", str(state), "--workers", "0")
    assert done.returncode == 2, done.stderr
    findings = [orjson.loads(x) for x in done.stdout.splitlines()]
    assert [f["class"] for f in findings] == ["chained-to-nullified"]
    assert "MISBEHAVIOUR FOUND" in done.stderr

    report = plc_audit("report", "--state", str(state))
    assert report.returncode == 2
    assert "chained-to-nullified" in report.stdout and "plc-audit summary" in report.stdout
    as_json = plc_audit("report", "--state", str(state), "--json")
    assert [orjson.loads(x)["class"] for x in as_json.stdout.splitlines()] == [
        "chained-to-nullified"
    ]  # stdout is JSON lines only; the summary went to stderr
    assert as_json.returncode == 2 and "plc-audit summary" in as_json.stderr

    saved = tmp_path / "findings.jsonl"
    saved.write_text(done.stdout)
    checked = plc_audit("check-evidence", str(saved))
    assert checked.returncode == 0 and "verified" in checked.stdout
    saved.write_text(done.stdout.replace('"refused":[]', '"refused":[0]'))  # a false claim
    assert plc_audit("check-evidence", str(saved)).returncode == 1


def test_default_state_file_is_named_from_the_source(tmp_path: Path) -> None:
    path = export_file(tmp_path, VALID_LOGS[1])
    done = plc_audit("verify", str(path), "--workers", "0", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    states = list(tmp_path.glob("plc-audit-*.sqlite3"))
    assert len(states) == 1 and len(states[0].stem) == len("plc-audit-") + 16
    assert plc_audit("report", "--file", str(path), cwd=tmp_path).returncode == 0


def test_usage_and_audit_failures_exit_1(tmp_path: Path) -> None:
    assert plc_audit("sync").returncode == 1  # missing --directory (click would say 2)
    assert plc_audit("verify", "--no-such-option", "x").returncode == 1
    assert plc_audit("bogus-command").returncode == 1
    assert plc_audit("verify", str(tmp_path / "missing.jsonl")).returncode == 1
    unreachable = plc_audit(
        "sync", "--directory", "http://127.0.0.1:9", "--state", str(tmp_path / "u.sqlite3")
    )
    assert unreachable.returncode == 1 and "audit failed" in unreachable.stderr
    assert plc_audit("report", "--state", str(tmp_path / "none.sqlite3")).returncode == 1
    assert plc_audit("sync", "-d", "http://x", "--recheck", "sometimes").returncode == 1
    assert plc_audit("sync", "-d", "http://x", "--vkey", "not-a-key").returncode == 1


def test_compare_exit_codes(tmp_path: Path) -> None:
    first = export_file(tmp_path, VALID_LOGS[0])
    second = export_file(tmp_path, VALID_LOGS[1])
    for name, path in (("a", first), ("b", second)):
        done = plc_audit("verify", str(path), "--state", str(tmp_path / f"{name}.sqlite3"))
        assert done.returncode == 0
    same = plc_audit("compare", str(tmp_path / "a.sqlite3"), str(tmp_path / "a.sqlite3"))
    assert same.returncode == 0 and same.stdout == ""
    differ = plc_audit("compare", str(tmp_path / "a.sqlite3"), str(tmp_path / "b.sqlite3"))
    assert differ.returncode == 2
    assert orjson.loads(differ.stdout.splitlines()[0])["class"] == "split-view"


FORBIDDEN = [
    "fastapi",
    "sqlmodel",
    "sqlalchemy",
    "plc.api",
    "plc.store",
    "plc.service",
    "plc.policy",
]


def test_auditor_imports_no_server_web_or_orm_module() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import auditor\n"
        "for m in pkgutil.walk_packages(auditor.__path__, 'auditor.'):\n"
        "    if m.name != 'auditor.__main__':\n"
        "        importlib.import_module(m.name)\n"
        f"forbidden = {FORBIDDEN!r}\n"
        "bad = [m for m in sys.modules\n"
        "       if any(m == f or m.startswith(f + '.') for f in forbidden)]\n"
        "assert not bad, bad\n"
        "print(len([m for m in sys.modules if m.startswith('auditor')]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 20  # every auditor module was imported


def test_evidence_checker_needs_nothing_else_of_the_auditor() -> None:
    code = (
        "import sys\n"
        "import auditor.evidence_check\n"
        "print(sorted(m for m in sys.modules if m.startswith('auditor')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.strip()
    expected = [
        "auditor",
        "auditor.documents",
        "auditor.evidence_chain",
        "auditor.evidence_check",
        "auditor.evidence_ops",
        "auditor.evidence_served",
        "auditor.evidence_time",
    ]
    assert loaded == str(expected)


def test_fresh_verify_never_replaces_what_is_not_its_state(tmp_path: Path) -> None:
    export = export_file(tmp_path, VALID_LOGS[0])
    before = export.read_bytes()
    # The export itself given as --state: refused (exit 1), the file untouched.
    done = plc_audit("verify", str(export), "--state", str(export), "--workers", "0")
    assert done.returncode == 1 and "not an auditor state file" in _flat(done.stderr)
    assert export.read_bytes() == before
    # Another source's state at --state: refused, that state kept.
    other = tmp_path / "other.jsonl"
    other.write_bytes(before)
    state_file = tmp_path / "s.sqlite3"
    assert (
        plc_audit("verify", str(other), "--state", str(state_file), "--workers", "0").returncode
        == 0
    )
    done = plc_audit("verify", str(export), "--state", str(state_file), "--workers", "0")
    assert done.returncode == 1 and "is the state of" in _flat(done.stderr)
    assert bound_source(state_file) == str(other.resolve())
    # --resume on something that is not SQLite: a clear failure, not a traceback.
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database, but long enough to have a header " * 20)
    done = plc_audit("verify", str(export), "--state", str(notes), "--resume", "--workers", "0")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert notes.read_text().startswith("not a database")
    # The same source's state is replaced by a fresh run.
    assert (
        plc_audit("verify", str(other), "--state", str(state_file), "--workers", "0").returncode
        == 0
    )


def _flat(text: str) -> str:
    """``text`` with rich's line wrapping undone."""
    return " ".join(text.split())


def test_announced_removal_list_turns_misbehaviour_into_exit_0(tmp_path: Path) -> None:
    path = export_file(tmp_path, INVALID_LOGS[0])
    state_file = tmp_path / "s.sqlite3"
    done = plc_audit("verify", str(path), "--state", str(state_file), "--workers", "0")
    assert done.returncode == 2, done.stderr
    bad = [orjson.loads(x) for x in done.stdout.splitlines()]
    listed = tmp_path / "removed.json"
    listed.write_bytes(orjson.dumps(sorted({f["cid"] for f in bad if f.get("cid")})))
    args = ("verify", str(path), "--state", str(state_file), "--workers", "0")
    done = plc_audit(*args, "--removed-cids", str(listed))
    assert done.returncode == 0, done.stderr
    excused = [orjson.loads(x) for x in done.stdout.splitlines()]
    assert excused and {f["class"] for f in excused} == {"announced-removal"}
    assert {f["severity"] for f in excused} == {"info"}


def test_vkey_takes_the_whole_line_plc_serve_prints() -> None:
    from auditor.cli import _verifiers
    from plc.tlog.note import generate_signer

    _, key = generate_signer("logs.example.org/plc")
    assert _verifiers([f"verifier key: {key}\n"]) == _verifiers([key])
    done = plc_audit("sync", "-d", "http://127.0.0.1:9", "--vkey", "verifier key: not-a-key")
    assert done.returncode == 1 and "--vkey" in done.stderr


def test_a_negative_worker_count_is_a_usage_error(tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    export.write_bytes(b"")
    state = tmp_path / "state.sqlite3"
    done = plc_audit("verify", str(export), "--state", str(state), "--workers", "-1")
    assert done.returncode == 1  # a usage error (2 means misbehaviour found)
    assert "Traceback" not in done.stderr, done.stderr
    assert "--workers" in done.stderr
    assert not state.exists()  # it crashed after creating the state


def test_a_file_that_is_no_export_fails_the_run_instead_of_accusing(tmp_path: Path) -> None:
    # A cron job pointed at the wrong file must not raise a misbehaviour alarm (exit 2).
    for name, content in (("passwd", b"root:x:0:0:root:/root:/bin/bash\n"), ("list", b"[1]\n")):
        wrong = tmp_path / name
        wrong.write_bytes(content)
        state = tmp_path / f"{name}.sqlite3"
        done = plc_audit("verify", str(wrong), "--state", str(state), "--workers", "0")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "is not a did:plc export" in done.stderr
        assert not state.exists()
