"""Evidence checks of the per-operation finding classes (half of the standalone checker).

Like :mod:`auditor.evidence_check`, this imports only the standard library, ``orjson`` and
the pure core of ``plc`` — never the rest of ``auditor`` — so the two files are all a third
party needs to read to re-verify a finding. Per-DID rule findings are re-decided with the
core's :func:`plc.rules.validate_next_op` over the DID's export lines, an implementation
independent of the auditor's incremental rules (:mod:`auditor.chain`).

Each check takes ``(finding, evidence, verifier keys)`` and returns the verdict text:
:data:`VERIFIED`, or ``"unverifiable: <why>"`` (:func:`unverifiable`) when the claim rests on
the auditor's observation of what the evidence cannot carry (the order or absence of lines in
a whole export, an answer the directory served unsigned); it raises :class:`EvidenceRejected`
when the evidence does not support the claim.

The classes about answers the directory served unsigned (``served-state-mismatch``,
``fork``) are in :mod:`auditor.evidence_served`. A line's ``seq`` in the seq classes is read
as the auditor reads it (:func:`head_seq`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from plc.audit_log import apply_prepared
from plc.codec import cid_for_cbor, encode_dag_cbor
from plc.did import did_for_genesis, is_did_plc
from plc.errors import (
    GenesisHashMismatch,
    InvalidSignature,
    LateRecovery,
    MisorderedOperation,
    PlcError,
)
from plc.exportline import build_line
from plc.operation import Operation, parse_operation, rotation_keys_of
from plc.rules import LogEntry, signer_index, validate_next_op
from plc.timestamps import parse_timestamp
from plc.tlog.checkpoint import MAX_TREE_SIZE
from plc.tlog.note import Verifier

VERIFIED = "verified"
UNVERIFIABLE = "unverifiable"
MAX_SEQ = MAX_TREE_SIZE
"""The largest ``seq`` there can be (a log's largest tree size, an SQLite INTEGER): a line
with a larger one is malformed, as the auditor says (``auditor.sequence``)."""
OBSERVED = "the auditor's observation"
"""Why most claims are unverifiable: they rest on what the auditor saw the directory serve."""
RULE_CLASSES = frozenset(
    "invalid-signature chained-to-nullified chained-to-tombstone chained-to-invalid "
    "late-recovery unauthorized-recovery misordered-timestamp genesis-did-mismatch "
    "op-before-prev".split()
)

MALFORMED = (PlcError, KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)
"""What a check raises on evidence of the wrong shape (a missing key, a string for a number,
a number too large for a date): the evidence is rejected, not the whole file."""


class EvidenceRejected(Exception):
    """The evidence does not support the finding's claim."""


def need(condition: bool, why: str) -> None:
    """Raise :class:`EvidenceRejected` with ``why`` unless ``condition``."""
    if not condition:
        raise EvidenceRejected(why)


def unverifiable(why: str) -> str:
    """The verdict text of a claim the evidence cannot prove: ``"unverifiable: <why>"``."""
    return f"{UNVERIFIABLE}: {why}"


def status_of(verdict: str) -> str:
    """:data:`VERIFIED` or :data:`UNVERIFIABLE`, the status of a verdict text."""
    return VERIFIED if verdict == VERIFIED else UNVERIFIABLE


_CANONICAL_HEAD = re.compile(
    rb'\{"did":"(did:plc:[a-z2-7]{24})","cid":"[^"\\]*","seq":([1-9][0-9]{0,17}),'
)
"""The fixed prefix of a canonical line (design.md decision 5), the way the auditor reads a
line's ``seq`` and ``did`` before parsing it (``auditor.lines.parse_header``, same pattern)."""


def strict_record(line: str) -> dict[str, Any]:
    """Parse an export line strictly (the shape of design.md decision 5; the op not parsed).

    Raises:
        EvidenceRejected: not that shape; orjson.JSONDecodeError: not JSON.
    """
    value = orjson.loads(line)
    need(isinstance(value, dict), "line is not a JSON object")
    keys = {"did", "cid", "seq", "createdAt", "operation", "type"}
    need(value.keys() == keys, f"line keys {sorted(value)}")
    need(value["type"] == "sequenced_op", "line type is not sequenced_op")
    need(type(value["seq"]) is int and value["seq"] >= 1, "seq is not a positive integer")
    need(value["seq"] <= MAX_SEQ, "seq is larger than 2^63-1, the largest seq there can be")
    need(isinstance(value["did"], str) and is_did_plc(value["did"]), "did is not a did:plc")
    need(isinstance(value["cid"], str), "cid is not a string")
    return dict(value)


def strict_entry(line: str) -> tuple[dict[str, Any], LogEntry]:
    """An export line parsed strictly: its JSON object and its op as a core
    :class:`~plc.rules.LogEntry`.

    Raises:
        EvidenceRejected, orjson.JSONDecodeError: as :func:`strict_record`; PlcError: the op
            or ``createdAt`` does not parse.
    """
    record = strict_record(line)
    op = parse_operation(record["operation"])
    return record, LogEntry(record["did"], op, parse_timestamp(record["createdAt"]))


@dataclass
class Replay:
    """A DID's lines replayed with the core in log order, each applied or refused: what the
    check of a line after them needs. ``count`` lines so far, the last one's ``seq``;
    ``tied`` once two of them shared a ``seq``, ``unordered`` once a ``seq`` went back.

    The lines must be the DID's in log order — their ``seq`` not decreasing, no op twice
    — and a finding's last line the accused op at its own ``seq``: replaying an honest
    DID's lines out of order (or one line twice) makes any valid op look like a broken rule.
    Two different ops at one ``seq`` (``duplicate-seq``) are allowed, and so is a ``seq``
    going back unless ``in_order`` (lines the auditor read in that order, :func:`read_order`),
    but their order is then the auditor's observation.

    ``unproven`` holds the refused ops whose refusal rests on a line the evidence does not
    hold: their prev is not among the lines before them (the core then reads a first op as
    a genesis that does not hash to the DID, a later one as on an unknown prev), or is such
    an op. Leaving an honest DID's genesis (or any line) out of the evidence makes its next
    op look refused this way; only the auditor says that line never appeared.
    """

    did: str
    history: list[LogEntry] = field(default_factory=list)
    count: int = 0
    seq: int = 0
    tied: bool = False
    in_order: bool = True
    unordered: bool = False
    cids: dict[str, int] = field(default_factory=dict)  # op CID -> its line's index
    refused_cids: set[str] = field(default_factory=set)
    unproven: set[str] = field(default_factory=set)

    def place(self, line: str) -> LogEntry:
        """Parse the next line and check that it comes next in log order (or read order,
        unless :attr:`in_order`), for this DID.

        Raises:
            EvidenceRejected: a malformed line, another DID's, out of order or repeated.
        """
        record, entry = strict_entry(line)
        index, seq, cid = self.count, record["seq"], entry.operation.cid
        if index and seq < self.seq:
            need(
                not self.in_order,
                f"line {index} (seq {seq}) comes before line {index - 1} "
                f"(seq {self.seq}): the lines are not in log order",
            )
            self.unordered = True
        # The auditor records an op once (a repeat is duplicate-op): replayed twice, an op
        # would look like a recovery of itself.
        need(cid not in self.cids, f"line {index} repeats line {self.cids.get(cid)} (seq {seq})")
        self.tied |= bool(index) and seq == self.seq
        need(entry.did == self.did, f"line {index} is for another DID")
        self.count, self.seq = index + 1, seq
        self.cids[cid] = index
        return entry

    def earlier(self, line: str, refused: bool) -> None:
        """Replay a line before the accused op: the core must refuse it exactly if
        ``refused``.

        Raises:
            EvidenceRejected: as :meth:`place`, or a refusal that does not match.
        """
        index = self.count
        entry = self.place(line)
        try:
            prepared = validate_next_op(self.history, self.did, entry.operation, entry.created_at)
        except PlcError:
            need(refused, f"line {index} is refused by the rules but not marked so")
            self.refuse(entry.operation)
            return
        need(not refused, f"line {index} was marked refused but is valid")
        self.history = apply_prepared(self.history, prepared)

    def refuse(self, op: Operation, *, unproven: bool = False) -> None:
        """Count a placed ``op`` as refused; as :attr:`unproven` too if ``unproven`` or if
        :meth:`rests_on_absence`."""
        self.refused_cids.add(op.cid)
        if unproven or self.rests_on_absence(op):
            self.unproven.add(op.cid)

    def rests_on_absence(self, op: Operation) -> bool:
        """True if a refusal of the placed ``op`` may rest on a line the evidence leaves
        out: its prev is not among the lines placed, or is :attr:`unproven`. (An op's own
        CID, placed with it, cannot be its prev: a CID hashes the op.)"""
        return op.prev is not None and (op.prev not in self.cids or op.prev in self.unproven)


def _rule(finding: dict[str, Any], ev: dict[str, Any], _vkeys: Sequence[Verifier]) -> str:
    return rule_check(finding, ev)[0]


def rule_check(
    finding: dict[str, Any], ev: dict[str, Any], start: Replay | None = None
) -> tuple[str, Replay | None]:
    """Re-decide a per-DID rule finding over its lines (``ev``: ``{"lines", "refused"}``),
    replayed after ``start`` (the lines before them, already checked; consumed), else
    from nothing.

    Returns:
        The verdict text, and the replay with the accused op placed after the lines, as
        refused (for a finding that extends this one), or None when lines are lost.

    Raises:
        EvidenceRejected: the evidence does not support the claim.
    """
    cls, did = finding["class"], finding["did"]
    lines = ev["lines"]
    need(isinstance(lines, list) and bool(lines), "lines missing")
    need(all(x is None or isinstance(x, str) for x in lines), "a line is not a string")
    if None in lines:
        return _lines_lost(), None
    seq = finding.get("seq")
    need(type(seq) is int, "the finding has no integer seq")
    replay = Replay(did) if start is None else start
    need(replay.did == did, "the lines extended are another DID's")
    # The whole list (the lines extended too) is in log order unless the finding says it is
    # in read order: checked the same whether the extended lines are replayed again or not.
    replay.in_order = not read_order(finding, ev)
    need(not (replay.in_order and replay.unordered), "the lines extended are not in log order")
    refused = set(ev.get("refused", []))
    for index, line in enumerate(lines[:-1]):
        replay.earlier(line, index in refused)
    history = replay.history
    last = replay.place(lines[-1])
    need(replay.seq == seq, f"the last line is seq {replay.seq}, not the finding's seq {seq}")
    op = last.operation
    need(op.cid == finding["cid"], "the last line is not the op the finding names")
    try:
        validate_next_op(history, did, op, last.created_at)
    except PlcError as exc:
        error: PlcError = exc
    else:
        raise EvidenceRejected("the core accepts the op: no rule is broken")
    active = [e for e in history if not e.nullified]
    prev = next((e for e in history if e.cid == op.prev), None)
    if cls == "genesis-did-mismatch":
        need(op.prev is None and did_for_genesis(op) != did, "genesis hashes to the DID")
    elif cls == "invalid-signature":
        keys = rotation_keys_of(op) if op.prev is None else rotation_keys_of(_op(prev))
        need(_signer(keys, op) is None, "a rotation key of prev verifies the sig")
    elif cls == "unauthorized-recovery":
        children = [e for e in active if e.operation.prev == op.prev]
        need(bool(children) and prev is not None, "prev has no active child to nullify")
        keys = rotation_keys_of(_op(prev))
        mine, theirs = _signer(keys, op), _signer(keys, children[0].operation)
        need(mine is not None and theirs is not None and mine >= theirs, "key has authority")
    elif cls == "late-recovery":
        need(isinstance(error, LateRecovery), f"core says: {error.message}")
    elif cls == "misordered-timestamp":
        need(isinstance(error, MisorderedOperation), f"core says: {error.message}")
        newest = max((e.created_at for e in active), default=None)
        need(newest is not None and last.created_at <= newest, "the op is later than all")
    elif cls == "chained-to-nullified":
        need(prev is not None and prev.nullified, "prev is not nullified")
    elif cls == "chained-to-tombstone":
        need(prev is not None and prev.operation.is_tombstone, "prev is not a tombstone")
    elif cls == "chained-to-invalid":
        need(op.prev in replay.refused_cids, "prev is not a refused op")
    elif cls == "op-before-prev":
        # The op's own CID is among those placed; its prev cannot be it (a CID hashes the op).
        need(op.prev not in replay.cids, "prev appears earlier")
        replay.refuse(op, unproven=True)
        return unverifiable(f"the order of the export is {OBSERVED}"), replay
    # Without an accepted op before it, the core reads any op as a genesis; a chained-to-
    # invalid claim is proven by its refused prev whatever the core's reason.
    need(
        not isinstance(error, GenesisHashMismatch)
        or cls in ("genesis-did-mismatch", "chained-to-invalid"),
        "the core refuses the op as a genesis that does not hash to the DID",
    )
    replay.refuse(op)
    if op.cid in replay.unproven:
        # Its prev is refused only for want of a line (an honest DID's genesis left out
        # of the evidence looks just the same): the claim rests on the auditor's word.
        text = unverifiable(f"prev is refused for a line the evidence lacks: {OBSERVED}")
        return text, replay
    if replay.unordered:
        text = unverifiable(f"the lines are not in seq order: the order read is {OBSERVED}")
        return text, replay
    if replay.tied:
        text = unverifiable(f"two ops share a seq: their order in the evidence is {OBSERVED}")
        return text, replay
    return VERIFIED, replay


def read_order(finding: dict[str, Any], ev: dict[str, Any]) -> bool:
    """True if a rule finding's lines are in the order the auditor read them, not in ``seq``
    order (``"read_order": true`` in its evidence): the auditor judges ops in the order it
    reads them, and after a seq regression the core may judge them otherwise in ``seq``
    order."""
    evidence = finding.get("evidence")
    written = evidence.get("read_order") if isinstance(evidence, dict) else None
    return ev.get("read_order", written) is True


def _lines_lost() -> str:
    """The auditor leaves out (null) a line it could not fetch again with the bytes it read
    (it checks them against the leaf hash it stored): the claim then rests on its word."""
    return unverifiable(f"lines the directory no longer serves as read: {OBSERVED}")


def _op(entry: LogEntry | None) -> Operation:
    need(entry is not None, "prev is not in the history")
    assert entry is not None
    return entry.operation


def _signer(keys: Sequence[str], op: Operation) -> int | None:
    try:
        return signer_index(keys, op)
    except InvalidSignature:
        return None


def own_line(finding: dict[str, Any], line: Any) -> tuple[dict[str, Any], LogEntry]:
    """:func:`strict_entry` of a line that must be the finding's op (its ``seq``, ``did``, CID).

    Raises:
        EvidenceRejected: not a string, not strict, or not the op the finding names.
    """
    need(isinstance(line, str), "the line is not a string")
    record, entry = strict_entry(line)
    need(record["seq"] == finding.get("seq"), "the line is not at the finding's seq")
    need(entry.did == finding.get("did"), "the line is for another DID")
    need(entry.operation.cid == finding.get("cid"), "the line is not the op the finding names")
    return record, entry


def _wrong_cid(finding: dict[str, Any], ev: dict[str, Any], _vkeys: Sequence[Verifier]) -> str:
    record, entry = own_line(finding, ev["line"])
    need(record["cid"] == ev["claimed"] != entry.operation.cid, "the line's CID is right")
    return VERIFIED


def _malformed(finding: dict[str, Any], ev: dict[str, Any], _vkeys: Sequence[Verifier]) -> str:
    """A line is malformed if it is not UTF-8 (``line_b64``), does not parse strictly, or
    means two things: the ``seq`` / ``did`` of its canonical prefix are not the ones a JSON
    parser reads (a repeated key: the first occurrence is read one way, the last the other;
    the auditor reads both, ``auditor.worker``)."""
    if "line" not in ev:
        try:
            line_bytes(ev, "line").decode("utf-8")
        except UnicodeDecodeError:
            return VERIFIED  # no JSON text can be
        raise EvidenceRejected("line_b64 is UTF-8")
    line = ev["line"]
    need(isinstance(line, str), "the line is not a string")
    try:
        record, _ = strict_entry(line)
    except (EvidenceRejected, PlcError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return VERIFIED
    head = _CANONICAL_HEAD.match(line.encode("utf-8"))
    if head and (int(head.group(2)), head.group(1).decode()) != (record["seq"], record["did"]):
        return VERIFIED
    raise EvidenceRejected("the line parses strictly")


def _non_canonical(finding: dict[str, Any], ev: dict[str, Any], _vkeys: Sequence[Verifier]) -> str:
    record, entry = own_line(finding, ev["line"])
    op_json = entry.operation.canonical_json()
    canonical = build_line(
        record["did"], record["cid"], record["seq"], record["createdAt"], op_json
    )
    need(canonical != ev["line"].encode("utf-8"), "the line is canonical")
    return VERIFIED


def _duplicate_op(finding: dict[str, Any], ev: dict[str, Any], _vkeys: Sequence[Verifier]) -> str:
    lines = ev["lines"]
    need(isinstance(lines, list) and len(lines) == 2, "not two lines")
    second = own_line(finding, lines[1])  # the repeat, at the finding's seq
    if lines[0] is None:
        return _lines_lost()
    first = strict_entry(lines[0])
    need(first[1].did == second[1].did, "two DIDs")
    need(first[1].operation.cid == second[1].operation.cid, "two different ops")
    need(first[0]["seq"] != second[0]["seq"], "the same seq (one line)")
    return VERIFIED


def head_seq(raw: bytes) -> int:
    """The ``seq`` the auditor's seq checks read off a line (``auditor.lines.parse_header``):
    that of a canonical head (:data:`_CANONICAL_HEAD`), else the JSON object's (last) one.

    Raises:
        EvidenceRejected: none there, or one above :data:`MAX_SEQ` (a malformed-entry then).
    """
    head = _CANONICAL_HEAD.match(raw)
    if head is not None:
        return int(head.group(2))
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise EvidenceRejected("the auditor reads no seq from a line that is not JSON") from None
    need(isinstance(value, dict), "the line is not a JSON object")
    seq: Any = value.get("seq")
    need(type(seq) is int and 1 <= seq <= MAX_SEQ, "the line has no seq in 1..2^63-1")
    need(isinstance(value.get("did"), str), "the line has no string did")
    return int(seq)


def line_bytes(ev: dict[str, Any], key: str) -> bytes:
    """The bytes of the evidence line ``key``: its text, or ``<key>_b64`` (not UTF-8).

    Raises:
        EvidenceRejected: neither, or not a string / base64.
    """
    if key in ev:
        need(isinstance(ev[key], str), f"{key} is not a string")
        return bytes(ev[key].encode("utf-8"))
    try:
        return base64.b64decode(ev[f"{key}_b64"], validate=True)
    except (binascii.Error, KeyError, TypeError, ValueError) as exc:
        raise EvidenceRejected(f"no {key}: {exc!r}") from None


def _seq(finding: dict[str, Any], ev: dict[str, Any], _vkeys: Sequence[Verifier]) -> str:
    """The two lines read one after the other must show the claimed break in ``seq``, each
    ``seq`` read as the auditor reads it (:func:`head_seq`), the line's the finding's. That
    they were adjacent in one export rests on the auditor's word (the evidence cannot carry
    the export), so a consistent claim is ``unverifiable``, for every seq class alike."""
    why = f"the order of the export is {OBSERVED}"
    now = head_seq(line_bytes(ev, "line"))
    need(now == finding.get("seq"), "the line is not at the finding's seq")
    if "previous_line" not in ev:
        return unverifiable(why)
    before = head_seq(line_bytes(ev, "previous_line"))
    cls = finding["class"]
    if cls == "duplicate-seq":
        # The same line twice is a repeated seq too (outside a stream's redelivery).
        need(before == now, "not a repeated seq")
    elif cls == "seq-regression":
        need(now < before, "seq did not go back")
    else:
        need(now > before + 1 and ev["missing"] == [before + 1, now - 1], "no gap")
    return unverifiable(why)


def _removal(finding: dict[str, Any], ev: dict[str, Any], _vkeys: Sequence[Verifier]) -> str:
    """The line must be the op the finding names; ``verified`` when its CID is the listed one
    (check it against your own allow-list), unverifiable when an earlier listed op of the DID
    excused it (that op is not in the evidence). A listed op need not parse strictly (the
    list excuses ops the schema refuses, e.g. with an extra field): its CID is then computed
    from its DAG-CBOR."""
    need(isinstance(ev.get("line"), str), "no line")
    try:
        _, entry = strict_entry(ev["line"])
        did, cid = entry.did, entry.operation.cid
    except (EvidenceRejected, PlcError):
        value = orjson.loads(ev["line"])
        need(isinstance(value, dict), "the line is not a JSON object")
        did, cid = value["did"], cid_for_cbor(encode_dag_cbor(value["operation"]))
        need(ev.get("listed_cid") is not None, "the line does not parse strictly")
    need(did == finding["did"], "the line is for another DID")
    need(cid == finding["cid"], "the line is not the op the finding names")
    listed = ev.get("listed_cid")
    if listed is None:
        return unverifiable(f"an earlier listed op of this DID is {OBSERVED}")
    need(listed == cid, "the listed CID is not the line's op")
    return VERIFIED


OP_CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any], Sequence[Verifier]], str]] = {
    **{cls: _rule for cls in RULE_CLASSES},
    "wrong-cid": _wrong_cid,
    "malformed-entry": _malformed,
    "non-canonical-line": _non_canonical,
    "duplicate-op": _duplicate_op,
    **dict.fromkeys(("duplicate-seq", "seq-regression", "seq-gap"), _seq),
    "announced-removal": _removal,
}
"""Checks of the classes about operations, by class."""
