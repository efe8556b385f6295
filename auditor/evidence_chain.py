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
supplies lines: the check replays every one of them with the core as if it were inline,
so a referenced finding need not be trusted. It must not be rejected, though: a finding
extending a rejected one is rejected (:meth:`FindingsIndex.rule_verdict`), whatever its
own lines show. This module, like the rest of the checker, imports only the standard
library, ``orjson`` and :mod:`auditor.evidence_ops`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from auditor.evidence_ops import (
    MALFORMED,
    RULE_CLASSES,
    EvidenceRejected,
    Replay,
    need,
    rule_check,
)

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


def _same(a: Any, b: Any) -> bool:
    """``a == b``; False for values nested too deeply to compare (Python's comparison
    recurses): such evidence is rejected when its finding is checked, and must not stop the
    check of the whole file."""
    try:
        return bool(a == b)
    except RecursionError:
        return False


class FindingsIndex:
    """The per-DID rule findings of one findings file, by ``(did, seq, cid)``.

    One op's finding may be in a file more than once (two runs' files, or a run's
    ``--findings`` and ``report --json``, put together), written inline in one output and by
    reference in the other: two findings of one op are the same finding when their whole
    line lists (:func:`inline_evidence`) and the refused marks in them are the same, however
    they are written.

    Args:
        findings: every finding of the file (JSON objects; anything else is skipped).
    """

    def __init__(self, findings: Iterable[Any]) -> None:
        self._by_key: dict[FindingKey, dict[str, Any]] = {}
        # The other findings of a key, each with evidence written otherwise than the first's.
        self._variants: dict[FindingKey, list[dict[str, Any]]] = {}
        self._ambiguous: set[FindingKey] | None = None  # decided at the first lookup
        self._replays: dict[str, tuple[FindingKey, Replay]] = {}
        # Each checked finding of the index: its verdict text, or None when rejected (and
        # then why, the first reason along a chain of references).
        self._outcomes: dict[FindingKey, str | None] = {}
        self._why: dict[FindingKey, str] = {}
        self._message: dict[FindingKey, str] = {}
        for finding in findings:
            key = rule_key(finding)
            if key is None:
                continue
            known = self._by_key.setdefault(key, finding)
            evidence = finding.get("evidence")
            others = self._variants.get(key, [])
            if not _same(known.get("evidence"), evidence) and not any(
                _same(other.get("evidence"), evidence) for other in others
            ):
                self._variants[key] = [*others, finding]

    def lookup(self, did: str, seq: int, cid: str) -> dict[str, Any] | None:
        """The finding of ``(did, seq, cid)`` in the file, or None.

        Raises:
            EvidenceRejected: the file has two findings of that op with different lines.
        """
        key = (did, seq, cid)
        if self._variants:
            if self._ambiguous is None:
                self._ambiguous = self._decide()
            need(key not in self._ambiguous, f"two findings of seq {seq} with different evidence")
        return self._by_key.get(key)

    def _decide(self) -> set[FindingKey]:
        """The keys whose findings do not all have the same whole line list and marks.

        Each key's :func:`_fingerprint` is computed in ``seq`` order, so that of the finding
        it extends (a lower ``seq``) is known first: time linear in the lines of the file.
        """
        prints: dict[FindingKey, Fingerprint | None] = {}
        ambiguous: set[FindingKey] = set()
        for key in sorted(self._by_key, key=lambda k: k[1]):
            found = {
                _fingerprint(f, key, prints)
                for f in [self._by_key[key], *self._variants.get(key, [])]
            }
            if len(found) > 1 or (None in found and key in self._variants):
                ambiguous.add(key)
            prints[key] = found.pop() if len(found) == 1 else None
        return ambiguous

    def rule_verdict(self, finding: dict[str, Any]) -> str:
        """The verdict of a per-DID rule finding of this file (its inline evidence, or the
        lines it extends resolved in the file).

        A finding that extends the one checked last for its DID continues that one's replay
        (:class:`auditor.evidence_ops.Replay`) instead of replaying the DID's lines from the
        start: checked in file order, a file is checked in time linear in its lines. Either
        way the same lines are replayed, so the verdict is the same. A finding that extends
        one whose evidence is rejected is rejected too: the finding it names supplies lines
        the claim rests on, and the file does not hold up.

        Raises:
            EvidenceRejected: as :func:`inline_evidence` and the rule check, or the finding
                extended is rejected; the other :data:`~auditor.evidence_ops.MALFORMED`
                errors: evidence of the wrong shape.
        """
        key = rule_key(finding)
        need(key is not None, "not a per-DID rule finding with a did, seq and cid")
        assert key is not None
        indexed = self._by_key.get(key)
        # Only the file's own finding of the key is remembered (a reference names it).
        own = indexed is finding or _same(indexed, finding)
        if (
            not own
            and indexed is not None
            and indexed.get("class") == finding.get("class")
            and _same(indexed.get("evidence"), finding.get("evidence"))
        ):
            # A copy of the own finding but for its message: the same claim on the same
            # evidence, so the same verdict, without replaying the DID's lines again (a
            # file of such copies took a replay of the whole history per copy).
            outcome = self._outcome(key)
            need(outcome is not None, self._message.get(key, ""))
            assert outcome is not None
            return outcome
        if own and key in self._outcomes:
            # Checked already (as a finding another extends): a file checked out of order
            # is checked in linear time too.
            text = self._outcomes[key]
            need(text is not None, self._message.get(key, ""))
            assert text is not None
            return text
        try:
            text = self._verdict(finding, key, own)
        except (EvidenceRejected, RecursionError, *MALFORMED) as exc:
            if own:
                why = str(exc) if isinstance(exc, EvidenceRejected) else f"malformed: {exc!r}"
                self._outcomes[key], self._message[key] = None, why
                self._why[key] = exc.root if isinstance(exc, _Inherited) else why
            raise
        if own:
            self._outcomes[key] = text
        return text

    def _verdict(self, finding: dict[str, Any], key: FindingKey, own: bool) -> str:
        did, seq, _ = key
        part = _part(finding)
        extended = _extended(finding, seq)
        if extended is not None:
            base = (did, *extended)
            need(self.lookup(*base) is not None, _not_in_file(extended[0]))
            if self._outcome(base) is None:
                why = self._why[base]
                raise _Inherited(
                    f"extends the finding of seq {extended[0]}, which is rejected: {why}", why
                )
        # Only the own finding's check may continue the replay saved for the DID, and take
        # it: another finding of the key would leave the next own finding to start over.
        last = self._replays.pop(did, None) if own else None
        start: Replay | None = None
        if extended is None:
            evidence = {"lines": part[0], "refused": part[1]}
        elif last is not None and last[0] == (did, *extended):
            start, evidence = last[1], {"lines": part[0], "refused": part[1]}
        else:
            evidence = inline_evidence(finding, self.lookup)
        text, replay = rule_check(finding, evidence, start)
        if replay is not None and own:
            self._replays[did] = (key, replay)
        return text

    def _outcome(self, key: FindingKey) -> str | None:
        """The outcome of the file's finding of ``key`` (None: rejected), checked now if it
        was not yet: with the findings it extends that were not, oldest first, each
        continuing the replay of the one before (no recursion along a chain)."""
        pending: list[dict[str, Any]] = []
        at: FindingKey | None = key
        while at is not None and at not in self._outcomes and at in self._by_key:
            finding = self._by_key[at]
            pending.append(finding)
            try:
                extended = _extended(finding, at[1])
            except (EvidenceRejected, RecursionError, *MALFORMED):
                extended = None  # rejected when checked below
            at = None if extended is None else (at[0], *extended)
        for finding in reversed(pending):
            try:
                self.rule_verdict(finding)
            except (EvidenceRejected, RecursionError, *MALFORMED):
                pass  # recorded as rejected
        return self._outcomes[key]


class _Inherited(EvidenceRejected):
    """Rejected because the finding extended is; ``root`` is why that one is."""

    def __init__(self, message: str, root: str) -> None:
        super().__init__(message)
        self.root = root


Fingerprint = tuple[bytes, bytes]
"""A whole line list with its refused marks, hashed: ``(digest, last line as JSON)``. The digest
chains SHA-256 over each line but the last with its mark (the last line's own mark means
nothing, and a finding that extends it marks it refused), so an extending finding's is
computed from the one it extends: equal for the same list written inline or by reference."""


def _fingerprint(
    finding: dict[str, Any], key: FindingKey, prints: dict[FindingKey, Fingerprint | None]
) -> Fingerprint | None:
    """The :data:`Fingerprint` of ``finding`` (of ``key``), given those of the keys below
    it; None when its evidence does not resolve (malformed, or a reference to a key that is
    not in ``prints`` or has none)."""
    try:
        lines, marks = _part(finding)
        extended = _extended(finding, key[1])
        texts = [orjson.dumps(line) for line in lines]
    except (EvidenceRejected, orjson.JSONEncodeError, RecursionError, *MALFORMED):
        return None
    digest = b""
    if extended is not None:
        base = prints.get((key[0], *extended))
        if base is None:
            return None
        digest = hashlib.sha256(base[0] + base[1] + b"\x01").digest()
    refused = set(marks)
    for index, text in enumerate(texts[:-1]):
        mark = b"\x01" if index in refused else b"\x00"
        digest = hashlib.sha256(digest + text + mark).digest()
    return digest, texts[-1]


def _not_in_file(seq: int) -> str:
    return f"extends the finding of seq {seq} of this DID, which is not in this file"


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
    extends nothing, else the whole list through the chain of findings it extends (with the
    finding's ``"read_order": true``, if it has it).

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
        need(base is not None, _not_in_file(base_seq))
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
    inline: dict[str, Any] = {"lines": lines, "refused": refused}
    evidence = finding.get("evidence")
    if isinstance(evidence, dict) and evidence.get("read_order") is True:
        inline["read_order"] = True  # the whole list is in the order the auditor read it
    return inline
