"""Spot checks against a directory that keeps accepting ops after the export was read: an
answer newer than the replay is not a ``served-state-mismatch`` when the export's newer ops
explain it; a difference they do not explain still is, with those ops in its evidence."""

from __future__ import annotations

from typing import Any

from ..helpers import new_did, update
from .conftest import Audit, assert_evidence_consistent, classes, line_for, serve
from .fakedir import FakeLog


class BusyLog(FakeLog):
    """A directory that accepts one more op each time it has served the end of its export
    (an empty page): what a live directory does between the auditor's last page and its spot
    checks, and again while they run."""

    pending: list[bytes]

    def page(self, after: int, count: int) -> list[bytes]:
        out = super().page(after, count)
        if not out and self.pending:
            self.lines.append(self.pending.pop(0))
            self.changed()
        return out


def _busy(seed: str, accepted_later: int) -> tuple[str, BusyLog]:
    """A DID with a genesis and one update exported, and ``accepted_later`` updates the
    directory accepts one by one after each end of the export it serves."""
    did, op, keys = new_did(seed)
    lines = [line_for(did, op, 1, "2025-01-01T00:00:00.000Z")]
    for n in range(1, 2 + accepted_later):
        op = update(op, keys[0], also_known_as=[f"at://{seed}{n}.example"])
        lines.append(line_for(did, op, n + 1, f"2025-01-01T00:00:{n:02d}.000Z"))
    log = BusyLog(lines[:2])
    log.pending = lines[2:]
    return did, log


def test_ops_accepted_after_the_export_was_read_are_not_a_mismatch(sync: Audit) -> None:
    # Three ops arrive one by one while the spot checks run: every served answer is newer
    # than the replay when it is fetched (was a served-state-mismatch, exit 2).
    _, log = _busy("busy", 3)
    with serve(log) as url:
        assert sync(url, spot_checks=5) == []
    assert log.pending == [] and len(log.lines) == 5


def test_a_difference_newer_ops_do_not_explain_is_still_reported(sync: Audit) -> None:
    did, log = _busy("lying", 1)
    log.responses_override[f"/{did}/data"] = (200, {"did": did, "alsoKnownAs": ["at://x.test"]})
    with serve(log) as url:
        findings = sync(url, spot_checks=5)
    assert classes(findings) == {"served-state-mismatch"}
    (found,) = findings
    assert found.did == did and found.evidence["url"].endswith("/data")
    # The evidence replays to the newer state: the op accepted after the export was read.
    assert len(found.evidence["lines"]) == 3
    newest: Any = found.evidence["expected"]
    assert newest["alsoKnownAs"] == ["at://lying2.example"]
    assert_evidence_consistent(findings, "served-state-mismatch")
