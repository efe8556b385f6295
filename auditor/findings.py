"""Findings: what the auditor reports, each with a class, the entries involved and evidence.

A finding is a claim about the directory backed by *self-contained* evidence: the raw export
lines, signed checkpoints and proofs a third party needs to re-check it with nothing but the
pure core (:mod:`auditor.evidence_check`), without trusting the auditor or the directory
(style-anchors rule 6, after golang.org/x/mod/sumdb ``checkTrees``).

JSON shape (one object per line in the findings output)::

    {"class": "invalid-signature", "severity": "misbehaviour", "seq": 17,
     "did": "did:plc:...", "cid": "bafyrei...", "message": "...", "evidence": {...}}

``severity`` is ``misbehaviour`` (exit code 2) or ``info`` (reported, exit code 0).
``seq``/``did``/``cid`` are null when a finding is not about one operation.

Evidence by class (hashes are standard padded base64, lines are the exact export lines):

- per-DID rule classes (``invalid-signature``, ``chained-to-nullified``, ``chained-to-tombstone``,
  ``chained-to-invalid``, ``late-recovery``, ``unauthorized-recovery``, ``misordered-timestamp``,
  ``genesis-did-mismatch``, ``op-before-prev``): ``{"lines": [...], "refused": [i, ...]}`` — the
  DID's export lines in ``seq`` order (not decreasing, no op twice: the checker refuses any
  other order), ending with the offending op at the finding's ``seq``; after a ``seq``
  regression that would judge the DID otherwise, in the order the auditor read them instead,
  with ``"read_order": true`` (the checker replays them so, and the verdict is
  unverifiable); ``refused`` lists the positions of earlier lines the auditor had refused
  (the rest replay cleanly). A line read
  in an earlier batch is fetched again; it is null when the directory no longer serves the
  bytes read (its leaf hash is not the stored one).
  When an earlier op of the DID was refused, its finding already holds the lines up to it,
  and the finding *extends* it instead (:mod:`auditor.evidence_chain`):
  ``{"extends": {"seq", "cid"}, "lines": [...], "refused": [...]}`` names the newest earlier
  refused op of the DID (its finding is the per-DID rule finding with that ``seq`` and
  ``cid``); ``lines`` holds only the DID's lines after it, ``refused`` positions in them. The
  whole list is the extended finding's whole list, then ``lines``; the extended finding's op
  counts as refused. A DID's lines are so written once, not once per finding: one bad op
  and 1,000 ops chained on it took 415 MB of findings in full, 1.2 MB extended. The state
  stores findings in this form. Every findings output (``--findings``, ``report --json``)
  writes a finding that extends one not earlier in the same output with its whole list
  inline, so each output checks on its own: ``check-evidence`` resolves ``extends`` within
  the file it checks (and accepts the inline form everywhere, as earlier versions wrote it).
  A finding whose extended finding is rejected is rejected too. Findings of one op written
  in both forms (outputs put together) are one finding when their whole lists and marks are
  the same. The auditor writes a finding inline rather than extend one written before a
  line of the DID with a lower ``seq`` was read (a seq regression), or found by an earlier
  run (which lines it read in what order is not kept).
  A refusal the lines cannot prove — the op's prev is not among them (as for a first op
  whose genesis never appeared, or any op whose line was left out), or is such an op — is
  the auditor's word: a claim resting on one (``chained-to-invalid`` on such an op) is
  "unverifiable", never "verified".
- ``backdated-op``: ``{"high_water_line", "line", "tolerance_ms"}`` — ``line`` (the op at
  the finding's ``seq``) has a ``createdAt`` more than ``tolerance_ms`` milliseconds (an
  integer >= 0, the operator's ``--created-at-tolerance``) earlier than that of
  ``high_water_line``, the line with the highest ``createdAt`` read before it, whose ``seq``
  is lower. Both are exact export lines; the checker requires both to parse as
  ``sequenced_op`` lines (``line``'s op too, and to be the op the finding names), the
  ``seq`` to increase from the first to the second and the gap to exceed the tolerance.
- ``future-dated-op``: ``{"line", "observed_at", "tolerance_ms"}`` — ``line``'s
  ``createdAt`` is more than ``tolerance_ms`` later than ``observed_at``, the auditor's clock
  when it read the line (a timestamp of the same form). Such a line never becomes the
  high-water mark of ``backdated-op``. The checker verifies the line and the arithmetic and
  answers "unverifiable": the clock is the auditor's word.
- ``wrong-cid``: ``{"line", "claimed", "computed"}``.
- ``malformed-entry``: ``{"line", "error"}`` (``line_b64`` instead when not UTF-8).
- ``non-canonical-line``: ``{"line", "canonical"}``.
- ``duplicate-op``: ``{"lines": [first, repeat]}`` (same DID and CID, two ``seq``).
- ``duplicate-seq`` / ``seq-regression``: ``{"previous_line", "line"}``.
- ``seq-gap``: ``{"previous_line", "line", "missing": [first, last]}``.
- ``export-rewritten``: ``{"kind": "changed"|"missing"|"duplicated"|"reordered"|"inserted",
  "leaf_index",
  "stored_leaf_hash", "served_line" (or null), "checkpoint" (signed note covering the stored
  leaf, or null), "inclusion_proof"}`` — the proof shows the stored leaf hash is leaf
  ``leaf_index`` of the checkpoint's tree.
- ``checkpoint-root-mismatch``: ``{"checkpoint", "computed_root", "leaf"}`` where ``leaf`` is the
  first leaf that differs: ``{"leaf_index", "line", "stored_leaf_hash", "directory_leaf_hash",
  "inclusion_proof", "consistent_prefix"}`` — the checkpoint's own leaf at that index, proven
  by the inclusion proof (from the proof endpoint or the tiles), is not the line served as
  that ``seq``; null offline or when the directory gave no usable proofs. ``line`` is the
  line read with that leaf's ``seq`` (``leaf_index + 1``), fetched again; null when the
  directory no longer serves the bytes read (their hash is checked), or when no line with
  that ``seq`` was read: then ``unserved_seq`` names it (``read_seq`` is the ``seq`` of
  the line read as that leaf).
- ``checkpoint-entries-withheld``: ``{"checkpoint", "entries_read", "last_seq",
  "unserved_seq", "leaf"}`` — the export reached ``last_seq`` (at least the checkpoint's
  size) with fewer entries than the checkpoint has and never served ``unserved_seq``;
  ``leaf`` is ``{"leaf_index", "directory_leaf_hash", "inclusion_proof"}``, the
  checkpoint's own leaf of that ``seq`` (null when the directory gave no usable proof).
- ``inconsistent-checkpoints``: ``{"smaller", "larger", "root_at_smaller_size",
  "consistency_proof", "proof_source", "error"}`` — two signed notes of one origin and,
  unless their sizes are equal (different roots) or the smaller is 0 (not the empty root), a
  consistency proof that verifies from ``root_at_smaller_size`` to the larger note's root,
  where that root is not the smaller note's; ``proof_source`` says where the proof came from:
  ``entries`` (computed from the entries read), ``directory`` (``/tlog/proof/consistency``)
  or ``tiles`` (computed from the C2SP tiles).
- ``checkpoint-signature-invalid``: ``{"checkpoint", "vkey", "error"}``.
- ``served-state-mismatch`` / ``fork``: ``{"url", "served", "expected", "lines"}`` (``fork``
  adds ``forked_prev``, the CIDs with two non-nullified children in the served audit log).
- ``split-view`` (from :mod:`auditor.compare`): ``{"covering_checkpoint", "other_checkpoint",
  "root_at_other_size", "consistency_proof"}`` — the root of the covering checkpoint's tree
  at the other checkpoint's size, proven by the consistency proof, is not the other
  checkpoint's root; or ``{"leaf_index", "leaf_hash_a", "leaf_hash_b", "root_a", "root_b",
  "tree_size", "op_a", "op_b"}`` when the two auditors' entries differ.
- ``announced-removal``: ``{"line", "listed_cid"}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

MISBEHAVIOUR: Final = "misbehaviour"
INFO: Final = "info"

CLASSES: Final[dict[str, str]] = {
    "invalid-signature": "an op no allowed rotation key signed was accepted",
    "chained-to-nullified": "an op whose prev is a nullified op was accepted",
    "chained-to-tombstone": "an op whose prev is a tombstone was accepted",
    "chained-to-invalid": "an op whose prev the auditor refused was accepted",
    "late-recovery": "a recovery op more than 72 h after the op it nullifies was accepted",
    "unauthorized-recovery": "a recovery by a key without higher authority was accepted",
    "misordered-timestamp": "an op not later than its prev (or the newest op) was accepted",
    "backdated-op": "an op's createdAt is earlier, beyond the tolerance, than that of an op "
    "with a lower seq",
    "future-dated-op": "an op's createdAt is later, beyond the tolerance, than the auditor's "
    "clock when it read the op",
    "wrong-cid": "an export line names a CID that is not its op's CID",
    "genesis-did-mismatch": "a genesis op that does not hash to its DID was accepted",
    "fork": "the directory serves two non-nullified children of one op",
    "op-before-prev": "an op appears before the op its prev names (or that op never appeared)",
    "malformed-entry": "an export line that does not parse strictly",
    "non-canonical-line": "an export line that is not the canonical sequenced_op encoding",
    "duplicate-op": "the same (did, cid) appears twice in one export",
    "duplicate-seq": "the same seq appears twice in one export",
    "seq-regression": "seq went backwards",
    "seq-gap": "seq skipped values",
    "export-rewritten": "an op missing, duplicated, reordered, changed or inserted between two "
    "reads",
    "checkpoint-root-mismatch": "a signed checkpoint's root differs from the entries' root",
    "checkpoint-entries-withheld": "the export went past a signed checkpoint's size without "
    "serving all its entries",
    "inconsistent-checkpoints": "two checkpoints that no consistency proof links (split view)",
    "checkpoint-signature-invalid": "a checkpoint not signed by the verifier key",
    "served-state-mismatch": "a served DID document, /data or audit log differs from replay",
    "split-view": "two auditors were shown histories that cannot both be true",
    "announced-removal": "an op on the announced-removal allow-list (excused)",
}
"""Every finding class and what it claims."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding.

    Attributes:
        cls: the finding class, a key of :data:`CLASSES`.
        message: one human-readable sentence.
        evidence: class-specific evidence (see the module docstring), JSON-compatible.
        seq, did, cid: the operation concerned, when there is one.
        severity: :data:`MISBEHAVIOUR` or :data:`INFO`.
        scope: extra identity for findings not tied to one op (e.g. the checkpoint sizes);
            part of :attr:`key`, not of the JSON.
    """

    cls: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None
    did: str | None = None
    cid: str | None = None
    severity: str = MISBEHAVIOUR
    scope: str = ""

    def __post_init__(self) -> None:
        if self.cls not in CLASSES:
            raise ValueError(f"unknown finding class {self.cls!r}")
        if self.severity not in (MISBEHAVIOUR, INFO):
            raise ValueError(f"unknown severity {self.severity!r}")

    @property
    def key(self) -> str:
        """Identity of the finding: re-detecting the same problem (a resumed run re-reading
        a batch) gives the same key, so it is stored once."""
        return f"{self.cls}|{self.seq}|{self.did}|{self.cid}|{self.scope}"

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the findings output."""
        return {
            "class": self.cls,
            "severity": self.severity,
            "seq": self.seq,
            "did": self.did,
            "cid": self.cid,
            "message": self.message,
            "evidence": self.evidence,
        }

    def dumps(self) -> bytes:
        """Compact JSON bytes of :meth:`to_json`."""
        return orjson.dumps(self.to_json())


def finding_from_json(obj: dict[str, Any]) -> Finding:
    """Rebuild a :class:`Finding` from its JSON object.

    Raises:
        ValueError: unknown class or severity; KeyError: a missing field.
    """
    return Finding(
        cls=obj["class"],
        message=obj["message"],
        evidence=dict(obj.get("evidence") or {}),
        seq=obj.get("seq"),
        did=obj.get("did"),
        cid=obj.get("cid"),
        severity=obj.get("severity", MISBEHAVIOUR),
    )


def line_text(line: bytes) -> dict[str, str]:
    """Evidence form of a raw line: ``{"line": text}``, or ``{"line_b64": ...}`` if not UTF-8."""
    try:
        return {"line": line.decode("utf-8")}
    except UnicodeDecodeError:
        import base64

        return {"line_b64": base64.b64encode(line).decode("ascii")}
