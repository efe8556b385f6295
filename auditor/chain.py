"""Per-DID replay state and the did:plc rules applied one op at a time (pure, no I/O).

The core's :func:`plc.rules.validate_next_op` takes a DID's whole audit log, ops included;
an auditor replaying tens of millions of ops cannot keep that. It keeps, per op, what
go-didplc's ``OpEntry`` keeps (``didplc/opstore.go``): the op's rotation keys, how many of
them (a prefix, ``allowed``) may still sign a child, the CID of its newest accepted child
(``last_child``), its ``createdAt``, and whether it is nullified. That is enough to decide the
next op exactly as the core does (the equivalence is tested against ``validate_next_op``):

1. genesis (``prev`` null): signed by one of its own rotation keys; hashes to the DID.
2. ``prev`` must name an op of this DID seen earlier, accepted, not nullified, not a
   tombstone, and older than the new op.
3. ``prev`` without a child: any of its rotation keys may sign.
4. ``prev`` with an active child: a recovery. It must be signed by one of the first
   ``allowed`` keys of ``prev`` (strictly higher authority than the child's signer), be later
   than the DID's newest op, and come at most 72 h (inclusive) after that child. The active
   chain from that child on is nullified.

Signature checks use :func:`plc.rules.signer_index` (strict base64url, 64-byte low-S r‖s).
A refusal names the finding class the op belongs to (see :mod:`auditor.findings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plc.did import did_for_genesis
from plc.errors import InvalidSignature
from plc.operation import Operation, rotation_keys_of
from plc.rules import RECOVERY_WINDOW, signer_index
from plc.timestamps import ONE_MS

RECOVERY_WINDOW_MS = RECOVERY_WINDOW // ONE_MS
"""The 72 h recovery window in milliseconds (inclusive)."""

OK = "ok"
REFUSED = "refused"
EXCUSED = "excused"


@dataclass(slots=True)
class OpState:
    """What the auditor keeps about one op (one row of the state's ``ops`` table).

    Attributes:
        cid: the op's CID (computed, not the one the line claims).
        seq: its export ``seq``.
        created_ms: its ``createdAt`` in milliseconds since the Unix epoch.
        rotation_keys: the keys it grants its children (empty for a tombstone).
        allowed: how many of ``rotation_keys`` (a prefix) may still sign a child.
        key_index: index of its signer in its prev's keys (own keys for a genesis); None if
            it was not accepted.
        last_child: CID of the newest accepted op whose ``prev`` is this op.
        nullified: True once a recovery rewrote it away.
        tombstone: True for a ``plc_tombstone``.
        status: ``ok`` (accepted), ``refused`` (broke a rule) or ``excused`` (announced removal).
        position: byte offset of its line in a file source, None for HTTP sources.
        dirty: changed since it was loaded (must be written back).
        stored: its row exists in the state (loaded from it, or written by an earlier
            batch): only ``allowed``, ``last_child`` and ``nullified`` can have changed.
    """

    cid: str
    seq: int
    created_ms: int
    rotation_keys: tuple[str, ...]
    allowed: int
    key_index: int | None
    last_child: str | None
    nullified: bool
    tombstone: bool
    status: str
    position: int | None
    dirty: bool = False
    stored: bool = False


@dataclass(slots=True)
class DidHistory:
    """Every op of one DID the auditor has seen, by CID, in ``seq`` order."""

    did: str
    ops: dict[str, OpState] = field(default_factory=dict)

    def head(self) -> OpState | None:
        """The newest accepted, non-nullified op (the DID's current state), or None."""
        best: OpState | None = None
        for state in self.ops.values():
            if (
                state.status == OK
                and not state.nullified
                and (best is None or state.seq > best.seq)
            ):
                best = state
        return best

    def accepted(self) -> list[OpState]:
        """Accepted ops (nullified included) in ``seq`` order."""
        return sorted((s for s in self.ops.values() if s.status == OK), key=lambda s: s.seq)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on one op.

    Attributes:
        cls: None if accepted, else the finding class of the refusal.
        message: why (empty when accepted).
        key_index: index of the signing key (accepted ops only).
        nullified: CIDs the op nullifies, oldest first.
    """

    cls: str | None
    message: str = ""
    key_index: int | None = None
    nullified: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        """True if the op extends the DID's history."""
        return self.cls is None


def _signer(keys: tuple[str, ...], op: Operation) -> int | None:
    """Index of the first key of ``keys`` that verifies ``op``; None also for a ``sig`` that
    is not strict base64url of 64 bytes."""
    try:
        return signer_index(keys, op)
    except InvalidSignature:
        return None


def _judge_genesis(history: DidHistory, did: str, op: Operation) -> Verdict:
    if history.head() is not None:
        return Verdict("genesis-did-mismatch", "a second genesis for an existing DID")
    keys = rotation_keys_of(op)
    index = _signer(keys, op)
    if index is None:
        return Verdict("invalid-signature", "no rotation key of the genesis op verifies its sig")
    expected = did_for_genesis(op)
    if expected != did:
        return Verdict("genesis-did-mismatch", f"genesis op hashes to {expected}, not {did}")
    return Verdict(None, key_index=index)


def judge(history: DidHistory, did: str, op: Operation, created_ms: int) -> Verdict:
    """Decide whether ``op`` (``createdAt`` = ``created_ms``) may extend ``history``.

    Args:
        history: the DID's ops seen so far (not changed here).
        did: the DID the export line names.
        op: the strictly parsed op.
        created_ms: its ``createdAt``, ms since the epoch.

    Returns:
        The :class:`Verdict` (never raises for a rule violation).
    """
    if op.prev is None:
        return _judge_genesis(history, did, op)
    prev = history.ops.get(op.prev)
    if prev is None:
        return Verdict("op-before-prev", f"prev {op.prev} has not appeared for this DID")
    if prev.status != OK:
        return Verdict("chained-to-invalid", f"prev {op.prev} was itself refused or excused")
    if prev.nullified:
        return Verdict("chained-to-nullified", f"prev {op.prev} is nullified")
    if prev.tombstone:
        return Verdict("chained-to-tombstone", f"prev {op.prev} is a tombstone")
    if created_ms <= prev.created_ms:
        return Verdict("misordered-timestamp", "createdAt is not later than its prev's")
    allowed = prev.rotation_keys[: prev.allowed]
    index = _signer(allowed, op)
    if prev.last_child is None:
        if index is None:
            return Verdict("invalid-signature", "no rotation key of prev verifies the sig")
        return Verdict(None, key_index=index)
    # A recovery: prev already has an active child, which this op would nullify.
    first = history.ops[prev.last_child]
    if index is None:
        anyone = _signer(prev.rotation_keys, op)
        if anyone is None:
            return Verdict("invalid-signature", "no rotation key of prev verifies the sig")
        return Verdict(
            "unauthorized-recovery",
            f"signed by rotation key {anyone} of prev; nullifying its child (signed by key "
            f"{first.key_index}) needs a key of strictly higher authority",
        )
    head = history.head()
    if head is not None and created_ms <= head.created_ms:
        return Verdict("misordered-timestamp", "recovery is not later than the DID's newest op")
    lapsed_ms = created_ms - first.created_ms
    if lapsed_ms > RECOVERY_WINDOW_MS:
        return Verdict(
            "late-recovery",
            f"recovery {lapsed_ms} ms after the op it nullifies (limit {RECOVERY_WINDOW_MS})",
        )
    nullified: list[str] = []
    cursor: str | None = first.cid
    while cursor is not None:
        nullified.append(cursor)
        cursor = history.ops[cursor].last_child
    return Verdict(None, key_index=index, nullified=tuple(nullified))


def record(
    history: DidHistory,
    op: Operation,
    seq: int,
    created_ms: int,
    verdict: Verdict | None,
    position: int | None,
) -> OpState:
    """Add ``op`` to ``history`` as decided (``verdict`` None means excused), updating its
    prev and the ops it nullifies; every touched state is marked dirty. ``op.cid`` must be
    new to ``history`` (a repeat is the caller's ``duplicate-op`` finding, never recorded).

    Returns:
        The new op's state.
    """
    if verdict is None:
        status = EXCUSED
    else:
        status = OK if verdict.accepted else REFUSED
    keys = rotation_keys_of(op)
    state = OpState(
        cid=op.cid,
        seq=seq,
        created_ms=created_ms,
        rotation_keys=keys,
        allowed=len(keys),
        key_index=verdict.key_index if verdict is not None else None,
        last_child=None,
        nullified=False,
        tombstone=op.is_tombstone,
        status=status,
        position=position,
        dirty=True,
    )
    if verdict is not None and verdict.accepted:
        for cid in verdict.nullified:
            gone = history.ops[cid]
            gone.nullified = True
            gone.dirty = True
        if op.prev is not None:
            prev = history.ops[op.prev]
            assert verdict.key_index is not None
            prev.allowed = verdict.key_index
            prev.last_child = op.cid
            prev.dirty = True
    history.ops[op.cid] = state
    return state
