"""Per-DID rule findings that extend an earlier finding of the same DID (part of the
standalone checker).

A per-DID rule finding's evidence is the DID's export lines up to the accused op. Written in
full in every finding, a DID with many refused ops (a bad op followed by a long chain of ops
on it, or many bad ops on a long valid history) makes the evidence grow with the square of
its lines. So the auditor writes a finding whose DID had an op refused before as::

    {"extends": {"seq": S, "cid": C}, "lines": [...], "refused": [...]}

``S`` and ``C`` are the ``seq`` and ``cid`` of the newest earlier refused op of the DID:
its own per-DID rule finding, in the same findings file, carries the lines up to it. The
finding's whole line list is that finding's whole list followed by ``lines``; ``refused``
lists positions in ``lines``, and the earlier finding's op (the last line of its list)
counts as refused. Each line is written once per DID and file, and each finding adds a
reference of constant size: the evidence grows linearly with the lines involved.

:func:`inline_evidence` turns such evidence into the inline form (``{"lines", "refused"}``,
the form earlier versions wrote, still accepted) that the rule check replays. A reference
only supplies lines: the check replays every one of them with the core as if it were
inline, so a referenced finding need not be trusted (nor even verified on its own). This
module, like the rest of the checker, imports only the standard library and
:mod:`auditor.evidence_ops`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from auditor.evidence_ops import RULE_CLASSES, EvidenceRejected, Replay, need, rule_check

FindingKey = tuple[str, int, str]
"""``(did, seq, cid)`` of a per-DID rule finding."""

Lookup = Callable[[str, int, str], "dict[str, Any] | None"]
"""Finds the per-DID rule finding of ``(did, seq, cid)``, or None."""


def rule_key(finding: Any) -> FindingKey | None:
    """``(did, seq, cid)`` of a per-DID rule finding (a JSON object), else None."""
    if not isinstance(finding, dict) or finding.get("class") not in RULE_CLASSES:
        return None
    did, seq, cid = finding.get("did"), finding.get("seq"), finding.get("cid")
    if not isinstance(did, str) or type(seq) is not int or not isinstance(cid, str):
        return None
    return did, seq, cid


class FindingsIndex:
    """The per-DID rule findings of one findings file, by ``(did, seq, cid)``.

    Args:
        findings: every finding of the file (JSON objects; anything else is skipped).
    """

    def __init__(self, findings: Iterable[Any]) -> None:
        self._by_key: dict[FindingKey, dict[str, Any]] = {}
        self._ambiguous: set[FindingKey] = set()
        self._replays: dict[str, tuple[FindingKey, Replay]] = {}
        for finding in findings:
            key = rule_key(finding)
            if key is None:
                continue
            known = self._by_key.setdefault(key, finding)
            # The same finding twice (two runs' files put together) is one finding.
            if known.get("evidence") != finding.get("evidence"):
                self._ambiguous.add(key)

    def lookup(self, did: str, seq: int, cid: str) -> dict[str, Any] | None:
        """The finding of ``(did, seq, cid)`` in the file, or None.

        Raises:
            EvidenceRejected: the file has two findings of that op with different evidence.
        """
        key = (did, seq, cid)
        need(key not in self._ambiguous, f"two findings of seq {seq} with different evidence")
        return self._by_key.get(key)

    def rule_verdict(self, finding: dict[str, Any]) -> str:
        """The verdict of a per-DID rule finding of this file (its inline evidence, or the
        lines it extends resolved in the file).

        A finding that extends the one checked last for its DID continues that one's replay
        (:class:`auditor.evidence_ops.Replay`) instead of replaying the DID's lines from the
        start: checked in file order, a file is checked in time linear in its lines. Either
        way the same lines are replayed, so the verdict is the same.

        Raises:
            EvidenceRejected: as :func:`inline_evidence` and the rule check.
        """
        key = rule_key(finding)
        need(key is not None, "not a per-DID rule finding with a did, seq and cid")
        assert key is not None
        did, seq, _ = key
        own = _part(finding)
        extended = _extended(finding, seq)
        last = self._replays.pop(did, None)
        start: Replay | None = None
        if extended is None:
            evidence = {"lines": own[0], "refused": own[1]}
        elif last is not None and last[0] == (did, *extended):
            self.lookup(did, *extended)  # an ambiguous reference is refused either way
            start, evidence = last[1], {"lines": own[0], "refused": own[1]}
        else:
            evidence = inline_evidence(finding, self.lookup)
        text, replay = rule_check(finding, evidence, start)
        known = self._by_key.get(key)
        # Only a finding of this file may be continued: the reference names the file's.
        if replay is not None and known is not None and known["evidence"] == finding["evidence"]:
            self._replays[did] = (key, replay)
        return text


def _part(finding: dict[str, Any]) -> tuple[list[Any], list[int]]:
    evidence = finding.get("evidence")
    need(isinstance(evidence, dict), "the evidence is not a JSON object")
    assert isinstance(evidence, dict)
    lines, refused = evidence.get("lines"), evidence.get("refused", [])
    if not isinstance(lines, list) or not lines:
        raise EvidenceRejected("lines missing")
    need(
        isinstance(refused, list) and all(type(i) is int and 0 <= i < len(lines) for i in refused),
        "refused is not a list of positions in lines",
    )
    return lines, refused


def _extended(finding: dict[str, Any], seq: int) -> tuple[int, str] | None:
    """``(seq, cid)`` that ``finding`` (at ``seq``) extends, or None.

    Raises:
        EvidenceRejected: a malformed reference, or one to a finding not earlier.
    """
    extends = finding["evidence"].get("extends")
    if extends is None:
        return None
    need(isinstance(extends, dict), "extends is not a JSON object")
    base_seq, base_cid = extends.get("seq"), extends.get("cid")
    need(
        type(base_seq) is int and isinstance(base_cid, str),
        "extends has no integer seq and string cid",
    )
    # Strictly decreasing seq: every chain ends, and no finding extends a later one.
    need(base_seq < seq, f"extends seq {base_seq}, not earlier than seq {seq}")
    return base_seq, base_cid


def inline_evidence(finding: dict[str, Any], lookup: Lookup) -> dict[str, Any]:
    """The inline evidence ``{"lines", "refused"}`` of a per-DID rule finding: its own if it
    extends nothing, else the whole list through the chain of findings it extends.

    Args:
        finding: the finding (JSON object).
        lookup: where the findings it extends are found (the rest of its file).

    Raises:
        EvidenceRejected: a malformed reference, a finding it extends that is not found (or
            is not an earlier per-DID rule finding of the same DID), a cycle.
    """
    key = rule_key(finding)
    need(key is not None, "not a per-DID rule finding with a did, seq and cid")
    assert key is not None
    did, seq, _ = key
    parts = [_part(finding)]
    current = finding
    while True:
        extended = _extended(current, seq)
        if extended is None:
            break
        base_seq, base_cid = extended
        base = lookup(did, base_seq, base_cid)
        need(
            base is not None,
            f"extends the finding of seq {base_seq} of this DID, which is not in this file",
        )
        assert base is not None
        need(rule_key(base) == (did, base_seq, base_cid), "extends no per-DID rule finding")
        parts.append(_part(base))
        current, seq = base, base_seq
    lines: list[Any] = []
    refused: list[int] = []
    for own, marks in reversed(parts):
        if lines:
            refused.append(len(lines) - 1)  # the op of the finding extended
        refused += [len(lines) + i for i in marks]
        lines += own
    return {"lines": lines, "refused": refused}
