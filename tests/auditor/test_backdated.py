"""``backdated-op``: an op whose ``createdAt`` goes back along ``seq`` beyond the tolerance
(a recovery stamped into the 72 h window and appended at the end of the log), found across
runs, with evidence the standalone checker verifies and refuses when tampered with."""

from __future__ import annotations

import copy
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditor.backdating import CreatedAtTracker
from auditor.evidence_check import VERIFIED, EvidenceRejected, verdict
from auditor.findings import Finding
from plc.keys import PrivateKey
from plc.operation import parse_operation
from plc.timestamps import format_timestamp, parse_timestamp, to_ms

from .conftest import Audit, line_for, plc_audit
from .generate import T0, signed_op

REPO = Path(__file__).resolve().parents[2]


class Log:
    """Export lines built op by op: ``seq`` 1, 2, ... with the ``createdAt`` given."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def add(self, did: str, op: dict[str, Any], when: datetime) -> bytes:
        line = line_for(did, op, len(self.lines) + 1, format_timestamp(when))
        self.lines.append(line)
        return line

    def genesis(self, name: str, when: datetime) -> tuple[str, list[PrivateKey], str]:
        """A new DID (keys: index 0 most authority); returns ``(did, keys, genesis cid)``."""
        from plc.did import did_for_genesis

        keys = [PrivateKey.from_seed(f"{name}-0"), PrivateKey.from_seed(f"{name}-1")]
        op = signed_op(keys, None, f"{name}.test", keys[0])
        parsed = parse_operation(op)
        did = did_for_genesis(parsed)
        self.add(did, op, when)
        return did, keys, parsed.cid


def _backdated_recovery_log() -> tuple[Log, bytes, bytes]:
    """A DID whose update (by its lower-authority key) is recovered 4 days later, the
    recovery stamped 1 h after the update and appended at the end of the log; other DIDs'
    ops in between. Returns the log, the high-water line and the recovery's line."""
    log = Log()
    did, keys, genesis = log.genesis("victim", T0)
    update = signed_op(keys, genesis, "hijacked.test", keys[1])
    log.add(did, update, T0 + timedelta(seconds=1))
    high = b""
    for i in range(6):
        when = T0 + timedelta(days=i * 0.8, seconds=2)
        other, _, _ = log.genesis(f"bystander{i}", when)
        high = log.lines[-1]
    recovery = signed_op(keys, genesis, "recovered.test", keys[0])
    line = log.add(did, recovery, T0 + timedelta(hours=1))
    return log, high, line


def _honest_log(regression: timedelta) -> Log:
    """Ops of several DIDs, ``createdAt`` rising, except one that goes back by
    ``regression`` from the op before it (another DID's, as concurrent writers interleave)."""
    log = Log()
    for i in range(5):
        log.genesis(f"honest{i}", T0 + timedelta(seconds=10 * i))
    log.genesis("interleaved", T0 + timedelta(seconds=40) - regression)
    log.genesis("after", T0 + timedelta(seconds=50))
    return log


def _backdated(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.cls == "backdated-op"]


def test_honest_logs_give_no_finding(verify: Audit) -> None:
    assert verify(_honest_log(timedelta(0)).lines) == []
    # Concurrent writers: 59.999 s back along seq is inside the default 60 s tolerance.
    assert verify(_honest_log(timedelta(seconds=59.999)).lines) == []


def test_a_regression_beyond_the_tolerance_is_reported_against_the_high_water_line(
    verify: Audit,
) -> None:
    log = _honest_log(timedelta(seconds=60, milliseconds=1))
    found = _backdated(verify(log.lines))
    assert [(f.seq, f.evidence["high_water_line"]) for f in found] == [(6, log.lines[4].decode())]
    assert verdict(orjson.loads(found[0].dumps())) == VERIFIED
    # The tolerance is the operator's: 0 reports a regression of 1 ms, 120 s none of 60 s.
    one_ms = _honest_log(timedelta(milliseconds=1))
    assert [f.seq for f in _backdated(verify(one_ms.lines, created_at_tolerance_ms=0))] == [6]
    assert verify(log.lines, created_at_tolerance_ms=120_000) == []


def test_a_backdated_recovery_appended_at_the_end_is_found(verify: Audit) -> None:
    log, high, recovery = _backdated_recovery_log()
    findings = verify(log.lines)
    # The per-DID rules see a timely recovery (1 h after the update): only this catches it.
    assert [(f.cls, f.seq) for f in findings] == [("backdated-op", len(log.lines))]
    finding = findings[0]
    assert finding.evidence == {
        "high_water_line": high.decode(),
        "line": recovery.decode(),
        "tolerance_ms": 60_000,
    }
    assert finding.cid == parse_operation(orjson.loads(recovery)["operation"]).cid
    assert verdict(orjson.loads(finding.dumps())) == VERIFIED


def test_the_high_water_mark_survives_resumption(verify: Audit, tmp_path: Path) -> None:
    log, high, _ = _backdated_recovery_log()
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"\n".join(log.lines[:-1]) + b"\n")
    assert verify(path) == []
    # The high-water line was read by the first run only.
    with open(path, "ab") as handle:
        handle.write(log.lines[-1] + b"\n")
    found = verify(path, resume=True)
    assert [(f.cls, f.seq, f.evidence["high_water_line"]) for f in found] == [
        ("backdated-op", len(log.lines), high.decode())
    ]


def test_the_mark_moves_only_forward_along_seq() -> None:
    log = _honest_log(timedelta(seconds=61))
    tracker = CreatedAtTracker(60_000)
    for index, line in enumerate(log.lines[:5], 1):
        assert tracker.observe(index, line) is None
    assert tracker.observe(6, log.lines[5]) is not None
    assert tracker.mark is not None and tracker.mark.seq == 5  # a backdated op is no mark
    # A line re-read with a seq not above the mark's (a regression) is not compared.
    assert tracker.observe(2, log.lines[5]) is None
    # A line whose seq is not the one it was read with is not trusted as a mark.
    assert tracker.observe(9, log.lines[6]) is None and tracker.mark.seq == 5
    with pytest.raises(ValueError):
        CreatedAtTracker(-1)


def _tampered(finding: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    ev = finding["evidence"]
    out = []

    def variant(why: str, **changes: Any) -> None:
        copied = copy.deepcopy(finding)
        copied["evidence"].update(changes)
        out.append((why, copied))

    high, line = orjson.loads(ev["high_water_line"]), orjson.loads(ev["line"])
    variant("swapped", high_water_line=ev["line"], line=ev["high_water_line"])
    variant("tolerance above the gap", tolerance_ms=4 * 86_400_000)
    variant("negative tolerance", tolerance_ms=-1)
    variant("tolerance not an integer", tolerance_ms=60.0)
    variant("tolerance a boolean", tolerance_ms=True)
    variant(
        "line moved later",
        line=orjson.dumps({**line, "createdAt": high["createdAt"]}).decode(),
    )
    variant(
        "high-water line not a sequenced_op",
        high_water_line=orjson.dumps({k: v for k, v in high.items() if k != "type"}).decode(),
    )
    variant(
        "high-water seq not lower",
        high_water_line=orjson.dumps({**high, "seq": line["seq"]}).decode(),
    )
    variant("no line", line=None)
    moved = copy.deepcopy(finding)
    moved["seq"] = finding["seq"] + 1
    out.append(("finding at another seq", moved))
    other = copy.deepcopy(finding)
    other["cid"] = high["cid"]
    out.append(("finding names another op", other))
    return out


def test_check_evidence_accepts_the_genuine_and_rejects_tampered_evidence(
    verify: Audit, tmp_path: Path
) -> None:
    log, _, _ = _backdated_recovery_log()
    (finding,) = verify(log.lines)
    genuine = orjson.loads(finding.dumps())
    assert verdict(genuine) == VERIFIED
    for why, tampered in _tampered(genuine):
        with pytest.raises(EvidenceRejected):
            verdict(tampered)
            pytest.fail(f"accepted: {why}")
    path = tmp_path / "findings.jsonl"
    path.write_bytes(orjson.dumps(genuine) + b"\n")
    done = plc_audit("check-evidence", str(path))
    assert done.returncode == 0 and "backdated-op seq=" in done.stdout, done.stdout
    # the claim holds under the finding's tolerance: the verdict line says which
    assert ": verified (tolerance 60000 ms)" in done.stdout, done.stdout
    path.write_bytes(orjson.dumps(_tampered(genuine)[1][1]) + b"\n")
    done = plc_audit("check-evidence", str(path))
    assert done.returncode == 1 and "REJECTED" in done.stdout, done.stdout


@pytest.mark.parametrize("value", ["-1", "-0.001", "nan", "inf", "sixty"])
def test_the_tolerance_option_refuses_what_is_no_tolerance(tmp_path: Path, value: str) -> None:
    export = tmp_path / "export.jsonl"
    export.write_bytes(b"\n".join(_honest_log(timedelta(0)).lines) + b"\n")
    state = tmp_path / "state.sqlite3"
    for command in (
        ["verify", str(export), "--state", str(state)],
        ["sync", "-d", "http://127.0.0.1:9", "--state", str(state)],
    ):
        done = plc_audit(*command, "--workers", "0", f"--created-at-tolerance={value}")
        assert done.returncode == 1, done.stdout + done.stderr  # a usage error
        assert "--created-at-tolerance" in done.stderr
        assert "Traceback" not in done.stderr
        assert not state.exists()


def test_the_tolerance_option_takes_seconds_and_zero(tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    export.write_bytes(b"\n".join(_honest_log(timedelta(seconds=0.5)).lines) + b"\n")
    state = tmp_path / "state.sqlite3"
    args = ["verify", str(export), "--state", str(state), "--workers", "0"]
    assert plc_audit(*args).returncode == 0  # default 60 s
    assert plc_audit(*args, "--created-at-tolerance", "0.5").returncode == 0
    done = plc_audit(*args, "--created-at-tolerance", "0.499")
    assert done.returncode == 2 and '"backdated-op"' in done.stdout, done.stdout + done.stderr
    done = plc_audit(*args, "--created-at-tolerance", "0")
    assert done.returncode == 2
    assert orjson.loads(done.stdout.splitlines()[0])["evidence"]["tolerance_ms"] == 0


def _future_dated_log(ahead: timedelta) -> tuple[Log, bytes]:
    """Honest ops, then one stamped ``ahead`` of the real clock, then more honest ops (whose
    ``createdAt`` are all in the past). Returns the log and the future-dated line."""
    log = Log()
    for i in range(3):
        log.genesis(f"before{i}", T0 + timedelta(seconds=i))
    log.genesis("ahead", datetime.now(UTC) + ahead)
    future = log.lines[-1]
    for i in range(4):
        log.genesis(f"after{i}", T0 + timedelta(seconds=10 + i))
    return log, future


def test_a_future_dated_op_is_reported_and_is_no_high_water_mark(verify: Audit) -> None:
    log, future = _future_dated_log(timedelta(days=365))
    findings = verify(log.lines)
    # One finding for the op stamped a year ahead, none for the honest ops after it: as a
    # mark it made every later op "backdated" until real time caught up.
    assert [(f.cls, f.seq) for f in findings] == [("future-dated-op", 4)]
    (finding,) = findings
    assert finding.evidence["line"] == future.decode()
    assert finding.evidence["tolerance_ms"] == 60_000
    observed = parse_timestamp(finding.evidence["observed_at"])
    assert abs(datetime.now(UTC) - observed) < timedelta(hours=1)  # the auditor's clock
    genuine = orjson.loads(finding.dumps())
    assert verdict(genuine).startswith("unverifiable: observed_at is the auditor's clock")
    # Tampered: the clock moved to within the tolerance, a larger tolerance, another op.
    for changes in (
        {"observed_at": orjson.loads(future)["createdAt"]},
        {"tolerance_ms": 2 * 365 * 86_400_000},
        {"line": log.lines[0].decode()},
        {"observed_at": "yesterday"},
    ):
        tampered = copy.deepcopy(genuine)
        tampered["evidence"].update(changes)
        with pytest.raises(EvidenceRejected):
            verdict(tampered)
            pytest.fail(f"accepted: {changes}")


def test_future_dating_is_judged_by_the_clock_with_the_tolerance() -> None:
    log, _ = _future_dated_log(timedelta(0))
    stamped = orjson.loads(log.lines[3])["createdAt"]
    at = parse_timestamp(stamped)

    def tracker(now: datetime) -> CreatedAtTracker:
        found = CreatedAtTracker(60_000, now_ms=lambda: to_ms(now))
        for index, line in enumerate(log.lines[:3], 1):
            assert found.observe(index, line) is None
        return found

    # exactly the tolerance ahead: a clock difference, and the line becomes the mark
    on_time = tracker(at - timedelta(seconds=60))
    assert on_time.observe(4, log.lines[3]) is None
    assert on_time.mark is not None and on_time.mark.seq == 4
    ahead = tracker(at - timedelta(seconds=60, milliseconds=1))
    finding = ahead.observe(4, log.lines[3])
    assert finding is not None and finding.cls == "future-dated-op"
    assert ahead.mark is not None and ahead.mark.seq == 3


def test_allow_backdated_reports_the_finding_as_information(verify: Audit, tmp_path: Path) -> None:
    """A mirror whose log holds history imported out of createdAt order: the same finding,
    as information (exit 0), when the operator says so."""
    log, _, _ = _backdated_recovery_log()
    (finding,) = verify(log.lines, allow_backdated=True)
    assert (finding.cls, finding.severity) == ("backdated-op", "info")
    assert verdict(orjson.loads(finding.dumps())) == VERIFIED
    export = tmp_path / "mirror.jsonl"
    export.write_bytes(b"\n".join(log.lines) + b"\n")
    args = ["verify", str(export), "--state", str(tmp_path / "s.sqlite3"), "--workers", "0"]
    assert plc_audit(*args).returncode == 2
    done = plc_audit(*args, "--allow-backdated")
    assert done.returncode == 0 and '"severity":"info"' in done.stdout, done.stdout


def test_a_state_from_before_the_check_takes_its_last_line_as_the_mark(
    verify: Audit, tmp_path: Path
) -> None:
    log, _, recovery = _backdated_recovery_log()
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"\n".join(log.lines[:-1]) + b"\n")
    assert verify(path) == []
    state_file = tmp_path / "verify.sqlite3"
    with sqlite3.connect(state_file) as conn:  # as a state written by the version before
        conn.execute("DELETE FROM meta WHERE key = 'created_at_high_water'")
    conn.close()
    with open(path, "ab") as handle:
        handle.write(recovery + b"\n")
    found = verify(path, resume=True)
    # The first line of the resumed run is compared with the last line the old state read.
    assert [(f.cls, f.seq, f.evidence["high_water_line"]) for f in found] == [
        ("backdated-op", len(log.lines), log.lines[-2].decode())
    ]
