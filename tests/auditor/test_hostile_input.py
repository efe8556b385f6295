"""Input the auditor cannot take at face value: a garbage checkpoint, a ``seq`` no state can
store, files that are not auditor states or findings, a bogus key. Each is a finding or one
clear line with exit code 1 — never a traceback, never a state that breaks later runs."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from auditor import state
from auditor.audit import AuditOptions, verify_file
from auditor.cli import main
from tests.conftest import LiveServer

from .conftest import Audit, classes, serve
from .corpus import Corpus
from .fakedir import FakeLog

GARBAGE_NOTE = "hello world\nnot a checkpoint\n"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``plc-audit ARGS`` in this process: ``(exit code, stdout, stderr)``."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


@pytest.mark.parametrize("keyed", [True, False])
def test_a_garbage_checkpoint_is_a_finding(corpus: Corpus, sync: Audit, keyed: bool) -> None:
    log = FakeLog(list(corpus.lines[:200]), corpus.signer, checkpoint_override=GARBAGE_NOTE)
    keys = {"verifiers": (corpus.signer.verifier,)} if keyed else {}
    with serve(log) as url:
        findings = sync(url, **keys)
        assert classes(findings) == {"checkpoint-signature-invalid"}
        assert sync(url, **keys) == findings  # and the next run works too


def _with_seq(line: bytes, seq: int) -> bytes:
    return orjson.dumps({**orjson.loads(line), "seq": seq})


@pytest.mark.parametrize("seq", [2**63, 2**64 - 1])
def test_a_seq_no_log_can_hold_is_a_malformed_entry(
    corpus: Corpus, sync: Audit, verify: Audit, tmp_path: Path, seq: int
) -> None:
    lines = list(corpus.lines[:60])
    bogus = _with_seq(corpus.lines[60], seq)
    # A directory ordering by seq serves it last, after any cursor, run after run.
    log = FakeLog([*lines, bogus], corpus.signer, tree_lines=lines)
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
        assert [(f.cls, f.seq) for f in findings] == [("malformed-entry", seq)]
        assert sync(url, **keyed(corpus)) == findings  # the next run: the same, no crash
    conn = state.connect(tmp_path / "state.sqlite3", create=False)
    assert state.get_meta_int(conn, "tree_size") == 60  # not a leaf, not once per run
    assert [r[0] for r in conn.execute("SELECT status FROM checkpoints")] == ["matched"]
    conn.close()
    # In the middle of a file: the line does not move the seq cursor either.
    offline = verify([*lines[:20], _with_seq(lines[20], seq), *lines[21:]])
    assert [f.seq for f in offline if f.cls == "malformed-entry"] == [seq]
    assert [f.evidence["missing"] for f in offline if f.cls == "seq-gap"] == [[21, 21]]


def keyed(corpus: Corpus) -> dict[str, object]:
    return {"verifiers": (corpus.signer.verifier,)}


def test_verify_notes_only_checkpoints_it_did_not_check(
    corpus: Corpus, tmp_path: Path, verify: Audit
) -> None:
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"\n".join(corpus.lines) + b"\n")
    options = AuditOptions(workers=0, progress=False, checkpoint_notes=(corpus.checkpoint,))
    outcome = verify_file(path, tmp_path / "a.sqlite3", options)
    assert not [n for n in outcome.notes if "not checked" in n]
    path.write_bytes(b"\n".join(corpus.lines[:-1]) + b"\n")
    outcome = verify_file(path, tmp_path / "b.sqlite3", options)
    assert [n for n in outcome.notes if "not checked" in n] == [
        f"checkpoint of size {len(corpus.lines)} is larger than the file: not checked"
    ]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_compare_and_report_only_read(
    corpus: Corpus, tmp_path: Path, verify: Audit, capsys: pytest.CaptureFixture[str]
) -> None:
    verify(list(corpus.lines[:100]))
    real = tmp_path / "verify.sqlite3"
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = _digest(other), _digest(real)
    for args in (
        ("compare", str(other), str(real)),
        ("compare", str(real), str(other)),
        ("report", "--state", str(other)),
    ):
        code, _, err = run_cli(capsys, *args)
        assert code == 1 and "not an auditor state file" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.glob("other.db*")) == ["other.db"]
    assert (_digest(other), _digest(real)) == before
    assert run_cli(capsys, "compare", str(real), str(real))[0] == 0
    assert run_cli(capsys, "report", "--state", str(real))[0] == 0
    assert _digest(real) == before[1]


@pytest.mark.parametrize(
    ("content", "vkey", "expected"),
    [
        (None, None, "cannot read"),
        ("this is not json\n", None, "line 1: not JSON"),
        ("\n[1, 2, 3]\n", None, "line 2: not a JSON object"),
        ("\n", "bogus", "--vkey"),
    ],
)
def test_check_evidence_answers_bad_input_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    vkey: str | None,
    expected: str,
) -> None:
    path = tmp_path / "findings.jsonl"
    if content is not None:
        path.write_text(content)
    args = ["check-evidence", str(path)] + (["--vkey", vkey] if vkey else [])
    code, out, err = run_cli(capsys, *args)
    assert code == 1, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert expected in err, err
    if vkey:  # the key was the only problem
        assert run_cli(capsys, "check-evidence", str(path))[0] == 0


def _web_server(status: int) -> Starlette:
    """A web server that is no did:plc directory: every path answers ``status`` with HTML."""

    async def page(request: Request) -> Response:
        return HTMLResponse("<html><body>Welcome to nginx!</body></html>\n", status_code=status)

    return Starlette(routes=[Route("/{rest:path}", page)])


@pytest.mark.parametrize("status", [200, 404])
def test_a_url_that_is_no_directory_fails_and_leaves_no_state(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str], status: int
) -> None:
    """A mistyped URL is the user's mistake (exit 1, nothing kept), even when the server
    answers 200 to everything: its HTML is no checkpoint and no export to report on."""
    path = tmp_path / "s.sqlite3"
    vkey = corpus.signer.verifier.key_text
    with LiveServer(_web_server(status)) as server:  # type: ignore[arg-type]
        args = ("sync", "-d", server.url, "--state", str(path), "--vkey", vkey, "--workers", "0")
        code, out, err = run_cli(capsys, *args)
    assert code == 1 and out == "", (out, err)
    assert "not a did:plc directory" in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []  # the state file it made is gone
