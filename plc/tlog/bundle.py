"""Verification of a ``GET /{did}/log/proof`` response: a DID's ops, proven in the tlog.

Shape (design.md decision 5; hashes standard padded base64)::

    {
      "did": "did:plc:...",
      "checkpoint": "<signed checkpoint note text>",
      "entries": [
        {"seq": 17, "line": "<exact export line>", "inclusionProof": ["<hash>", ...]},
        ...
      ]
    }

Entries are in strictly ascending ``seq`` order. Unknown keys are ignored (room to grow);
every documented key must be present with its type. What a verified bundle proves: each line
is leaf ``seq - 1`` of the tree the (signed) checkpoint describes, and is a ``sequenced_op``
of this DID with that ``seq``. It does not prove that the bundle lists *all* of the DID's ops:
only a full replay of the log (the auditor) can show that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plc.tlog import leaf_index_for_seq
from plc.tlog.checkpoint import Checkpoint, open_log_checkpoint
from plc.tlog.encoding import decode_hash_b64, encode_b64
from plc.tlog.errors import (
    DidMismatch,
    EntryMismatch,
    MalformedBundle,
    MalformedProof,
    OriginMismatch,
    RootMismatch,
)
from plc.tlog.hashing import leaf_hash
from plc.tlog.note import Verifier
from plc.tlog.proof import verify_inclusion

__all__ = [
    "VerifiedDidLogProof",
    "VerifiedLogEntry",
    "build_did_log_proof",
    "verify_did_log_proof",
]


@dataclass(frozen=True)
class VerifiedLogEntry:
    """One proven entry.

    Attributes:
        seq: the op's export ``seq``.
        leaf_index: ``seq - 1``.
        line: the exact export line (its UTF-8 bytes are the leaf).
        leaf_hash: 32-byte RFC 6962 leaf hash of the line.
        record: the parsed line (a ``sequenced_op`` JSON object).
    """

    seq: int
    leaf_index: int
    line: str
    leaf_hash: bytes
    record: Mapping[str, Any]


@dataclass(frozen=True)
class VerifiedDidLogProof:
    """A verified ``/{did}/log/proof`` response: the DID, the checkpoint, the entries."""

    did: str
    checkpoint: Checkpoint
    entries: tuple[VerifiedLogEntry, ...]


def _field(obj: Mapping[str, object], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    # bool is an int subclass; a JSON true is never a seq.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedBundle(f"{where}: {key!r} must be a {kind.__name__}")
    return value


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key in JSON object")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _parse_line(line: str, leaf_index: int) -> Mapping[str, Any]:
    """Parse an export line as one JSON object (no duplicate keys, no NaN/Infinity)."""
    try:
        record = json.loads(
            line, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise EntryMismatch(
            field="line", expected="a JSON object", actual=line, leaf_index=leaf_index
        )
    return record


def verify_did_log_proof(
    bundle: Mapping[str, object],
    verifiers: Verifier | Iterable[Verifier],
    *,
    origin: str | None = None,
    did: str | None = None,
) -> VerifiedDidLogProof:
    """Verify a ``/{did}/log/proof`` response against the log's key(s).

    1. Check the shape (see the module doc); at least one entry, ascending ``seq``; the
       bundle's ``did`` is ``did`` if given (a caller that does not give it must compare
       the result's ``did`` with the DID it asked about).
    2. Open the checkpoint note with the log's own key: of ``verifiers``, only those named
       after the checkpoint's origin count, so a witness's key given alongside cannot vouch
       for it (:func:`plc.tlog.checkpoint.open_log_checkpoint`); origin checked if given.
    3. For each entry: leaf index ``seq - 1``; ``leaf_hash(line.encode("utf-8"))`` with the
       inclusion proof must give the checkpoint's root (RFC 9162 §2.1.3.2).
    4. Each line must be a JSON object with ``"type": "sequenced_op"``, ``"did"`` equal to
       the bundle's ``did`` and ``"seq"`` equal to the entry's ``seq``.

    Args:
        bundle: the decoded JSON response.
        verifiers: the log's verifier key(s) (:func:`plc.tlog.note.parse_verifier_key`).
        origin: the log's origin, if the caller knows it.
        did: the DID the caller asked about, if it should be checked here.

    Raises:
        MalformedBundle: not a JSON object, wrong shape, empty or unordered entries, a line
            that is not UTF-8.
        DidMismatch: ``did`` given and the bundle is about another DID.
        MalformedNote, SignatureError, UnknownKey, MalformedCheckpoint, OriginMismatch:
            the checkpoint does not verify with a key named after its origin
            (:func:`plc.tlog.checkpoint.open_log_checkpoint`).
        MalformedProof: a proof hash that is not canonical base64 of 32 bytes.
        InclusionProofError: ``seq`` beyond the tree, or a proof of the wrong length.
        RootMismatch: the proof does not lead to the checkpoint's root (``what`` names the
            ``seq``).
        EntryMismatch: a proven line that is not this DID's op with this ``seq``.
    """
    # 1. Shape.
    if not isinstance(bundle, Mapping):  # a hostile server's JSON may be anything
        raise MalformedBundle("bundle is not a JSON object")
    bundle_did = _field(bundle, "did", str, "bundle")
    if did is not None and bundle_did != did:
        raise DidMismatch(did, bundle_did)
    did = bundle_did
    note_text = _field(bundle, "checkpoint", str, "bundle")
    raw_entries = _field(bundle, "entries", list, "bundle")
    if not raw_entries:
        raise MalformedBundle("bundle has no entries")
    # 2. Checkpoint.
    keys = [verifiers] if isinstance(verifiers, Verifier) else list(verifiers)
    checkpoint = open_log_checkpoint(note_text, keys)
    if origin is not None and checkpoint.origin != origin:
        raise OriginMismatch(origin, checkpoint.origin)
    entries: list[VerifiedLogEntry] = []
    previous_seq = 0
    for position, raw in enumerate(raw_entries):
        where = f"entry {position}"
        if not isinstance(raw, Mapping):
            raise MalformedBundle(f"{where} is not an object")
        seq = _field(raw, "seq", int, where)
        line = _field(raw, "line", str, where)
        proof_texts = _field(raw, "inclusionProof", list, where)
        if seq <= previous_seq:
            raise MalformedBundle(f"{where}: seq {seq} is not above the previous {previous_seq}")
        previous_seq = seq
        leaf_index = leaf_index_for_seq(seq)
        proof = []
        for i, text in enumerate(proof_texts):
            try:
                proof.append(decode_hash_b64(text if isinstance(text, str) else ""))
            except ValueError:
                raise MalformedProof(
                    f"{where}: inclusion proof hash {i} is not base64 of 32 bytes", position=i
                ) from None
        try:
            line_bytes = line.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedBundle(f"{where}: line is not valid UTF-8") from None
        # 3. Inclusion of the exact line bytes under the signed root.
        hashed = leaf_hash(line_bytes)
        try:
            verify_inclusion(hashed, leaf_index, checkpoint.tree_size, proof, checkpoint.root_hash)
        except RootMismatch as exc:
            raise RootMismatch(
                exc.expected, exc.actual, what=f"root hash (inclusion of seq {seq})"
            ) from exc
        # 4. The proven line is this DID's op with this seq.
        record = _parse_line(line, leaf_index)
        for key, expected in (("type", "sequenced_op"), ("did", did), ("seq", seq)):
            actual = record.get(key)
            if type(actual) is not type(expected) or actual != expected:
                raise EntryMismatch(
                    field=key, expected=expected, actual=actual, leaf_index=leaf_index
                )
        entries.append(VerifiedLogEntry(seq, leaf_index, line, hashed, record))
    return VerifiedDidLogProof(did, checkpoint, tuple(entries))


def build_did_log_proof(
    did: str,
    checkpoint_note: str,
    entries: Iterable[tuple[int, str | bytes, Sequence[bytes]]],
) -> dict[str, object]:
    """Build the ``/{did}/log/proof`` response body (the server side of the format).

    Args:
        did: the DID.
        checkpoint_note: the signed checkpoint note the proofs are for.
        entries: ``(seq, line, inclusion_proof)`` per op in ascending ``seq``; ``line`` is the
            stored export line (bytes are decoded as UTF-8), ``inclusion_proof`` 32-byte
            hashes for leaf ``seq - 1`` in the checkpoint's tree.

    Raises:
        UnicodeDecodeError: a stored line that is not UTF-8 (a store bug).
    """
    return {
        "did": did,
        "checkpoint": checkpoint_note,
        "entries": [
            {
                "seq": seq,
                "line": line.decode("utf-8") if isinstance(line, bytes) else line,
                "inclusionProof": [encode_b64(h) for h in proof],
            }
            for seq, line, proof in entries
        ],
    }
