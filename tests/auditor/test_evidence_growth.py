"""Per-DID rule findings that pile up on one DID: their evidence grows linearly with the
lines involved (a finding ``extends`` the DID's previous one, :mod:`auditor.evidence_chain`),
every findings file the auditor writes checks on its own, and references that do not hold
are refused."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor import evidence_chain, state
from auditor.audit import AuditOptions, verify_file
from auditor.evidence_chain import inline_evidence
from auditor.evidence_check import (
    UNVERIFIABLE,
    VERIFIED,
    EvidenceRejected,
    check_finding,
    status_of,
    verdicts,
)
from auditor.report import state_lookup, write_findings
from plc.exportline import build_line
from plc.operation import parse_operation

from .conftest import plc_audit
from .evidence_size import bad_off_valid_log, chained_log, interleaved_log

REPO = Path(__file__).resolve().parents[2]


def _audit(lines: list[bytes], work: Path, *, resume: bool = False) -> bytes:
    """``verify`` the lines (as ``plc-audit verify`` does) and return the findings output of
    the run: its new findings, written as the command line writes them."""
    export, path = work / "export.jsonl", work / "state.sqlite3"
    export.write_bytes(b"".join(line + b"\n" for line in lines))
    outcome = verify_file(export, path, AuditOptions(workers=0, progress=False), resume=resume)
    conn = state.connect(path, create=False)
    try:
        found = [f for _, f in state.load_findings(conn, after_id=outcome.first_finding_id)]
        out = io.BytesIO()
        write_findings(found, out, state_lookup(conn))
    finally:
        conn.close()
    return out.getvalue()


def _parsed(output: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in output.splitlines()]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda n: chained_log(n), id="a bad op and a chain on it"),
        pytest.param(lambda n: bad_off_valid_log(n, n // 5), id="bad ops off a valid history"),
    ],
)
def test_evidence_bytes_per_line_do_not_grow_with_the_log(make: Any, tmp_path: Path) -> None:
    for size in (250, 1000):
        lines = make(size)
        work = tmp_path / str(size)
        work.mkdir()
        output = _audit(lines, work)
        line_bytes = sum(len(line) + 1 for line in lines)
        findings = _parsed(output)
        assert len(findings) >= size // 5
        # Each line once (as a JSON string) plus a reference per finding: under two lines'
        # bytes per line of the log at any size. Written in full per finding, 1,000 chained
        # ops took 415 MB (414,679 bytes per line).
        assert len(output) / len(lines) < 2 * line_bytes / len(lines), len(output)


def test_a_chain_of_findings_extends_the_one_before(tmp_path: Path) -> None:
    lines = chained_log(40)
    findings = _parsed(_audit(lines, tmp_path))
    assert [f["class"] for f in findings] == ["invalid-signature"] + ["chained-to-invalid"] * 40
    assert "extends" not in findings[0]["evidence"]
    assert len(findings[0]["evidence"]["lines"]) == 2  # the genesis and the bad op
    for before, after in zip(findings, findings[1:], strict=False):
        assert after["evidence"]["extends"] == {"seq": before["seq"], "cid": before["cid"]}
        assert len(after["evidence"]["lines"]) == 1  # only its own op
    assert set(verdicts(findings)) == {VERIFIED}
    # The same findings in the inline form (as earlier versions wrote them), each alone.
    whole = [{**f, "evidence": inline_evidence(f, _index(findings))} for f in findings]
    assert len(whole[-1]["evidence"]["lines"]) == len(lines)
    assert {check_finding(f) for f in whole} == {VERIFIED}


def _index(findings: list[dict[str, Any]]) -> Any:
    from auditor.evidence_check import FindingsIndex

    return FindingsIndex(findings).lookup


def test_every_run_writes_findings_that_check_on_their_own(tmp_path: Path) -> None:
    lines = bad_off_valid_log(30, 12)
    export, state_path = tmp_path / "export.jsonl", tmp_path / "state.sqlite3"
    export.write_bytes(b"".join(line + b"\n" for line in lines[:36]))
    first, second, everything = (tmp_path / f"{n}.jsonl" for n in ("first", "second", "all"))
    common = ["--state", str(state_path), "--workers", "0"]
    assert plc_audit("verify", str(export), *common, "--findings", str(first)).returncode == 2
    export.write_bytes(b"".join(line + b"\n" for line in lines))
    done = plc_audit("verify", str(export), *common, "--resume", "--findings", str(second))
    assert done.returncode == 2, done.stderr
    runs = [_parsed(path.read_bytes()) for path in (first, second)]
    assert [len(r) for r in runs] == [6, 6]
    # The second run's first finding extends one of the first run: it is written inline.
    assert "extends" not in runs[1][0]["evidence"]
    assert len(runs[1][0]["evidence"]["lines"]) == 37
    assert all("extends" in f["evidence"] for f in runs[1][1:])
    report = plc_audit("report", "--state", str(state_path), "--json")
    everything.write_text(report.stdout)
    for path in (first, second, everything):
        done = plc_audit("check-evidence", str(path))
        assert done.returncode == 0, done.stdout
    assert "12 verified, 0 unverifiable, 0 rejected" in done.stdout


def _chain_file(tmp_path: Path) -> list[dict[str, Any]]:
    return _parsed(_audit(chained_log(6), tmp_path))


def _rejected(findings: list[dict[str, Any]], at: int) -> str:
    with pytest.raises(EvidenceRejected) as caught:
        index = _index_of(findings)
        check_finding(findings[at], [], index)
    return str(caught.value)


def _index_of(findings: list[dict[str, Any]]) -> Any:
    from auditor.evidence_check import FindingsIndex

    return FindingsIndex(findings)


def test_references_that_do_not_hold_are_rejected(tmp_path: Path) -> None:
    genuine = _chain_file(tmp_path)
    assert set(verdicts(genuine)) == {VERIFIED}
    last = len(genuine) - 1

    missing = genuine[:-2] + genuine[-1:]  # the finding the last one extends is left out
    assert "not in this file" in _rejected(missing, len(missing) - 1)

    alone = copy.deepcopy(genuine[last])
    with pytest.raises(EvidenceRejected, match="check it with its file"):
        check_finding(alone)

    forward = copy.deepcopy(genuine)
    forward[2]["evidence"]["extends"] = {"seq": genuine[4]["seq"], "cid": genuine[4]["cid"]}
    assert "not earlier" in _rejected(forward, 2)

    # The finding extended holds a line of the DID that is not its: the replay refuses it.
    doctored = copy.deepcopy(genuine)
    doctored[0]["evidence"]["lines"][0] = genuine[1]["evidence"]["lines"][0]
    _rejected(doctored, last)

    # A valid op marked refused in the finding it extends: the replay says so.
    marked = copy.deepcopy(genuine)
    marked[0]["evidence"]["refused"] = [0]
    assert "marked refused but is valid" in _rejected(marked, last)
    marked[0]["evidence"]["refused"] = [5]
    assert "refused is not a list of positions" in _rejected(marked, last)

    # Two findings of one op with different lines: which one is meant is unclear.
    twice = copy.deepcopy(genuine) + [copy.deepcopy(genuine[3])]
    twice[-1]["evidence"]["lines"] = genuine[0]["evidence"]["lines"]
    assert "two findings" in _rejected(twice, 4)
    assert set(verdicts(genuine + [copy.deepcopy(genuine[3])])) == {VERIFIED}  # the same twice

    # A finding that is no per-DID rule finding cannot be extended.
    other = copy.deepcopy(genuine)
    other[4]["class"] = "wrong-cid"
    assert "not in this file" in _rejected(other, 5)


def test_the_command_line_rejects_a_file_without_the_finding_extended(tmp_path: Path) -> None:
    genuine = _chain_file(tmp_path)
    path = tmp_path / "partial.jsonl"
    path.write_bytes(b"".join(orjson.dumps(f) + b"\n" for f in genuine[2:]))
    done = plc_audit("check-evidence", str(path))
    assert done.returncode == 1, done.stdout
    assert "not in this file" in done.stdout
    # Every later finding's lines run through the one left out.
    assert "0 verified, 0 unverifiable, 5 rejected" in done.stdout


def test_a_chain_on_an_op_whose_genesis_never_appeared_is_unverifiable(tmp_path: Path) -> None:
    # Without an accepted op, the core reads every op of the DID as a bad genesis. The first
    # op is refused only because its prev (the genesis) is not among the lines: that rests
    # on the auditor's word, and so does every op chained on it (leaving an honest DID's
    # genesis out of the evidence looks the same). Neither rejected nor verified.
    lines = chained_log(3)[1:]  # the genesis is never served
    findings = _parsed(_audit([line_for_seq(line, i) for i, line in enumerate(lines, 1)], tmp_path))
    assert [f["class"] for f in findings] == ["op-before-prev"] + ["chained-to-invalid"] * 3
    checked = verdicts(findings)
    assert [status_of(v) for v in checked] == [UNVERIFIABLE] * 4
    assert all("prev is refused for a line the evidence lacks" in v for v in checked[1:])


def line_for_seq(line: bytes, seq: int) -> bytes:
    """``line`` renumbered to ``seq``."""
    value = orjson.loads(line)
    return build_line(
        value["did"],
        value["cid"],
        seq,
        value["createdAt"],
        parse_operation(value["operation"]).canonical_json(),
    )


def _outcomes(findings: list[dict[str, Any]], *, continued: bool) -> list[str]:
    """Each finding's status or ``rejected``: checked in file order against one index (a
    finding continues the replay of the one it extends), or each against a fresh one (every
    finding's lines replayed from the start)."""
    shared = _index_of(findings)
    out = []
    for finding in findings:
        index = shared if continued else _index_of(findings)
        try:
            out.append(status_of(check_finding(finding, [], index)))
        except EvidenceRejected:
            out.append("rejected")
    return out


@pytest.fixture(scope="module")
def mixed_file(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Findings of three DIDs: a chain on a bad op, bad ops off a valid history, bad ops
    between valid ones."""
    chained = chained_log(5)
    history = bad_off_valid_log(4, 4)
    mixed = interleaved_log(4)
    lines = [line_for_seq(line, i) for i, line in enumerate(chained + history + mixed, 1)]
    return _parsed(_audit(lines, tmp_path_factory.mktemp("mixed")))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_continuing_a_replay_gives_the_verdicts_of_replaying_from_the_start(
    mixed_file: list[dict[str, Any]], data: st.DataObject
) -> None:
    findings = copy.deepcopy(mixed_file)
    assert len(findings) == 14
    all_lines = [line for f in mixed_file for line in f["evidence"]["lines"]]
    for _ in range(data.draw(st.integers(0, 3))):
        target = findings[data.draw(st.integers(0, len(findings) - 1))]
        ev = target["evidence"]
        change = data.draw(
            st.sampled_from(["line", "drop", "refused", "extends", "seq", "order", "copy"])
        )
        if change == "line":
            ev["lines"][data.draw(st.integers(0, len(ev["lines"]) - 1))] = data.draw(
                st.sampled_from(all_lines)
            )
        elif change == "drop" and len(ev["lines"]) > 1:
            del ev["lines"][data.draw(st.integers(0, len(ev["lines"]) - 2))]
        elif change == "refused":
            ev["refused"] = data.draw(st.lists(st.integers(-1, len(ev["lines"])), max_size=3))
        elif change == "extends":
            other = data.draw(st.sampled_from(mixed_file))
            ev["extends"] = {"seq": other["seq"], "cid": other["cid"]}
        elif change == "seq":
            target["seq"] += data.draw(st.sampled_from([-1, 1]))
        elif change == "order":
            findings.reverse()
        else:
            findings.append(copy.deepcopy(data.draw(st.sampled_from(findings))))
    assert _outcomes(findings, continued=True) == _outcomes(findings, continued=False)


def test_copies_of_a_finding_are_not_replayed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file can repeat a finding with another message as often as it likes: each copy got
    a replay of the DID's whole history (and took the saved replay from the next finding),
    so a few MB of copies took the checker hours. The copies now cost no replay, and the
    verdicts are the same."""
    lines = chained_log(100)
    findings = _parsed(_audit(lines, tmp_path))
    copies = [{**findings[-1], "message": f"copy {n}"} for n in range(30)]
    replayed: list[int] = []
    original = vars(evidence_chain)["rule_check"]

    def counted(finding: Any, evidence: Any, start: Any = None) -> Any:
        replayed.append(len(evidence["lines"]))
        return original(finding, evidence, start)

    monkeypatch.setattr(evidence_chain, "rule_check", counted)
    texts = verdicts([*findings[:-1], *copies, findings[-1]])
    assert set(texts) == {VERIFIED}
    assert sum(replayed) <= 2 * len(lines), sum(replayed)  # was about 31 times the log
