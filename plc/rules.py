"""The per-DID validity rules of did:plc, as one pure function.

:func:`validate_next_op` decides whether a signed operation may extend a DID's history at a
given time, and what accepting it implies (its ``prev``, the ops it nullifies, the index of the
rotation key that signed it). No I/O, no clock (the time comes in), no admission policy: every
history plc.directory holds is valid here (empty or duplicate rotation keys, legacy ``create``
genesis, ops of any size).

Rules (did:plc spec v0.3 "Key Rotation & Account Recovery"; plc-spec-notes.md §3.2, the
reference's ``assureValidNextOp``; design.md decision 3):

1. Genesis (no ops yet): not a tombstone; signed by one of its own rotation keys; hashes to
   the DID; ``prev`` is null.
2. Otherwise ``prev`` names a non-nullified op of the DID that is not a tombstone, and the new
   op is later than it.
3. ``prev`` is the head: any rotation key of ``prev`` may sign.
4. ``prev`` is older (a fork): the ops after ``prev`` are nullified. The new op must be signed
   by a key of strictly higher authority (lower index in ``prev``'s rotation keys) than the key
   that signed the first op it nullifies, be later than the DID's newest op, and arrive at most
   72 h (inclusive) after that first nullified op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from plc.codec import decode_signature
from plc.did import did_for_genesis
from plc.errors import (
    GenesisHashMismatch,
    ImproperOperation,
    InvalidSignature,
    LateRecovery,
    MalformedEncoding,
    MisorderedOperation,
    UnsupportedKeyType,
    echo,
)
from plc.keys import parse_did_key
from plc.operation import Operation, rotation_keys_of
from plc.timestamps import ONE_MS

RECOVERY_WINDOW = timedelta(hours=72)
"""How long after the first op it nullifies a recovery op may arrive (inclusive)."""

MISORDERED = "Operations not correctly ordered"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One op of a DID's audit log (``/log/audit`` entry).

    Attributes:
        did: the DID.
        operation: the signed op.
        created_at: when the directory accepted it (aware UTC, ms precision).
        nullified: True once a recovery op rewrote it away.
    """

    did: str
    operation: Operation
    created_at: datetime
    nullified: bool = False

    @property
    def cid(self) -> str:
        """CID of the op."""
        return self.operation.cid


@dataclass(frozen=True, slots=True)
class PreparedOperation:
    """What accepting an op means (go-didplc's ``PreparedOperation``).

    Attributes:
        did: the DID.
        operation: the op to append.
        created_at: its timestamp.
        prev: CID of the op it extends (None for a genesis).
        nullified: CIDs of the ops it nullifies, oldest first (empty for a plain append).
        key_index: index, in the rotation keys it was checked against, of the key that
            signed it (lower = more authority).
        valid_until: the latest ``created_at`` the same decision holds at (a recovery: the
            end of its 72-hour window); None: any later time (design.md decision 3: the
            server may stamp the op later, at its commit).
    """

    did: str
    operation: Operation
    created_at: datetime
    prev: str | None
    nullified: tuple[str, ...]
    key_index: int
    valid_until: datetime | None = None


def signer_index(keys: Sequence[str], op: Operation) -> int | None:
    """Index of the first key in ``keys`` whose signature check of ``op`` succeeds, else None.

    Keys that are not k256/p256 did:keys never verify (they are skipped, not an error).

    Raises:
        InvalidSignature: ``sig`` is not 86 chars of strict unpadded base64url (64 bytes).
    """
    try:
        sig = decode_signature(op.sig)
    except MalformedEncoding as exc:
        raise InvalidSignature(f"Invalid signature on op: {exc.message}") from exc
    data = op.unsigned_cbor()
    for index, did_key in enumerate(keys):
        try:
            key = parse_did_key(did_key)
        except (MalformedEncoding, UnsupportedKeyType):
            continue
        if key.verifies(data, sig):
            return index
    return None


def validate_genesis(did: str, op: Operation) -> int:
    """Check a genesis op for ``did``; return the index of the rotation key that signed it.

    Raises:
        MisorderedOperation: a tombstone cannot be a genesis.
        InvalidSignature: none of its own rotation keys verifies it.
        GenesisHashMismatch: it does not hash to ``did``.
        ImproperOperation: its ``prev`` is not null.
    """
    if op.is_tombstone:
        raise MisorderedOperation(MISORDERED)
    index = signer_index(rotation_keys_of(op), op)
    if index is None:
        raise InvalidSignature(f"Invalid signature on op: {_op_text(op)}")
    expected = did_for_genesis(op)
    if expected != did:
        raise GenesisHashMismatch(
            f"Hash of genesis operation does not match DID identifier: {expected}"
        )
    if op.prev is not None:
        raise ImproperOperation("Improperly formatted operation, expected null prev on create")
    return index


def validate_next_op(
    history: Sequence[LogEntry], did: str, op: Operation, created_at: datetime
) -> PreparedOperation:
    """Decide whether ``op`` may be appended to ``history`` at ``created_at``.

    Args:
        history: the DID's audit log (nullified ops included) in acceptance order; empty for
            a DID that does not exist yet.
        did: the DID the op is submitted for.
        op: the schema-valid signed op.
        created_at: the time the op is accepted at (aware UTC).

    Returns:
        The :class:`PreparedOperation`.

    Raises:
        MisorderedOperation, InvalidSignature, LateRecovery, GenesisHashMismatch,
        ImproperOperation: as in the module docstring.
    """
    active = [entry for entry in history if not entry.nullified]
    if not active:
        key_index = validate_genesis(did, op)
        return PreparedOperation(did, op, created_at, None, (), key_index)

    prev = op.prev
    position = next((i for i, e in enumerate(active) if e.cid == prev), None)
    if position is None:
        if prev is not None and any(e.cid == prev for e in history):
            raise MisorderedOperation(f"{MISORDERED}: prev {echo(prev)} is nullified")
        raise MisorderedOperation(MISORDERED)
    fork_point = active[position]
    if fork_point.operation.is_tombstone:
        raise MisorderedOperation(f"{MISORDERED}: prev {echo(prev)} is a tombstone")
    if created_at <= fork_point.created_at:
        raise MisorderedOperation(f"{MISORDERED}: not later than its prev")
    keys = rotation_keys_of(fork_point.operation)
    candidates = active[position + 1 :]

    if not candidates:
        append_index = signer_index(keys, op)
        if append_index is None:
            raise InvalidSignature(f"Invalid signature on op: {_op_text(op)}")
        return PreparedOperation(did, op, created_at, prev, (), append_index)

    # A fork: only a strictly higher-authority key than the one that signed the first
    # nullified op may rewrite history, and only within the recovery window.
    first = candidates[0]
    disputed = signer_index(keys, first.operation)
    allowed = keys[: disputed if disputed is not None else len(keys)]
    recovery_index = signer_index(allowed, op)
    if recovery_index is None:
        raise InvalidSignature(f"Invalid signature on op: {_op_text(op)}")
    if created_at <= active[-1].created_at:
        raise MisorderedOperation(f"{MISORDERED}: not later than the newest op")
    lapsed = created_at - first.created_at
    if lapsed > RECOVERY_WINDOW:
        raise late_recovery(lapsed)
    nullified = tuple(entry.cid for entry in candidates)
    try:
        valid_until: datetime | None = first.created_at + RECOVERY_WINDOW
    except OverflowError:  # within 72 h of the last moment a datetime holds: no later stamp
        valid_until = None
    return PreparedOperation(did, op, created_at, prev, nullified, recovery_index, valid_until)


def late_recovery(lapsed: timedelta) -> LateRecovery:
    """The error for a recovery ``lapsed`` after the first op it nullifies (over 72 h)."""
    lapsed_ms = lapsed // ONE_MS
    return LateRecovery(
        "Recovery operation occurred outside of the allowed 72 hr recovery window. "
        f"Time lapsed: {lapsed_ms}",
        lapsed_ms,
    )


def _op_text(op: Operation) -> str:
    return echo(op.canonical_json().decode("utf-8"))
