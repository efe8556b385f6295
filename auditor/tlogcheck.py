"""Log checks: signed checkpoints against each other and against the entries read.

For every checkpoint the directory serves (C2SP tlog-checkpoint signed note):

1. Signature: with verifier keys (``--vkey``) the note must verify
   (:func:`plc.tlog.checkpoint.open_checkpoint`), else ``checkpoint-signature-invalid``;
   without keys it is parsed unverified and recorded as such (not an error).
2. Consistency with the last checkpoint kept for the same origin: equal sizes need equal
   roots; otherwise the directory's consistency proof between them must verify locally
   (RFC 9162 §2.1.4.2, :func:`plc.tlog.proof.verify_consistency`). Failure is
   ``inconsistent-checkpoints`` (a split view or rewritten history), with both notes and
   the proof as evidence.
3. Root: once the entries read reach its tree size, the root recomputed from them
   (:class:`auditor.treestore.TreeStore`) must equal the checkpoint's. A checkpoint larger
   than what was read stays ``pending`` (also across runs) and is checked when the entries
   arrive, never reported early. A mismatch is ``checkpoint-root-mismatch``; when the
   directory serves proofs, the first differing leaf is located by binary search over
   consistency proofs and proven with an inclusion proof (from ``/tlog/proof/inclusion``, or
   computed from the C2SP tiles if that answer does not verify).

Every checkpoint seen is kept in the state's ``checkpoints`` table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from auditor import state
from auditor.client import DirectoryClient, ProofUnavailable
from auditor.findings import Finding
from auditor.sources import LineFetcher
from auditor.treestore import TreeStore
from plc.errors import PlcError, VerificationError
from plc.tlog.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint_unsafe
from plc.tlog.encoding import encode_b64
from plc.tlog.hashing import EMPTY_ROOT
from plc.tlog.note import Verifier
from plc.tlog.proof import (
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from plc.tlog.tiles import TileHashReader
from plc.tlog.tree import stored_hash_index


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A row of the ``checkpoints`` table."""

    id: int
    origin: str
    tree_size: int
    root_hash: bytes
    note: str
    signature: str
    status: str


def stored_checkpoints(conn: sqlite3.Connection) -> list[StoredCheckpoint]:
    """Every checkpoint kept, in the order first seen."""
    rows = conn.execute(
        "SELECT id, origin, tree_size, root_hash, note, signature, status FROM checkpoints "
        "ORDER BY id"
    ).fetchall()
    return [
        StoredCheckpoint(int(r[0]), str(r[1]), int(r[2]), bytes(r[3]), str(r[4]), r[5], r[6])
        for r in rows
    ]


def _b64(hashes: Sequence[bytes]) -> list[str]:
    return [encode_b64(h) for h in hashes]


class TlogChecker:
    """Applies the checks of the module docstring, writing to the state connection.

    Args:
        conn: the state (the coordinator's connection; callers commit).
        tree: the entries' tree.
        verifiers: the log's verifier keys; empty = record signatures as unverified.
        client: the directory, for proofs (None for offline files).
        fetcher: fetches entry lines again for evidence.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        tree: TreeStore,
        verifiers: Sequence[Verifier],
        client: DirectoryClient | None,
        fetcher: LineFetcher | None,
    ) -> None:
        self._conn = conn
        self._tree = tree
        self._verifiers = list(verifiers)
        self._client = client
        self._fetcher = fetcher

    def verify_stored(self) -> list[Finding]:
        """With verifier keys: check the signatures of checkpoints kept unverified by earlier
        runs (marking them ``verified``); a failure is ``checkpoint-signature-invalid``."""
        if not self._verifiers:
            return []
        findings: list[Finding] = []
        for cp in stored_checkpoints(self._conn):
            if cp.signature != "unverified":
                continue
            try:
                open_checkpoint(cp.note, self._verifiers)
            except VerificationError as exc:
                findings.append(self._bad_signature(cp.note, exc))
                continue
            self._conn.execute(
                "UPDATE checkpoints SET signature = 'verified' WHERE id = ?", (cp.id,)
            )
        return findings

    def _bad_signature(self, note: str, exc: VerificationError) -> Finding:
        return Finding(
            "checkpoint-signature-invalid",
            f"checkpoint does not verify: {exc.message}",
            {
                "checkpoint": note,
                "vkey": [v.key_text for v in self._verifiers],
                "error": exc.message,
            },
            scope=note,
        )

    def observe(self, note: str) -> list[Finding]:
        """Check and keep a checkpoint note the directory served.

        Raises:
            AuditFailed: the directory refused a consistency proof it must serve.
        """
        known = self._conn.execute("SELECT 1 FROM checkpoints WHERE note = ?", (note,)).fetchone()
        if known is not None:
            return []
        signature = "verified" if self._verifiers else "unverified"
        try:
            if self._verifiers:
                checkpoint = open_checkpoint(note, self._verifiers)
            else:
                checkpoint = parse_checkpoint_unsafe(note)
        except VerificationError as exc:
            return [self._bad_signature(note, exc)]
        findings = self._consistency(note, checkpoint)
        self._conn.execute(
            "INSERT INTO checkpoints (origin, tree_size, root_hash, note, signature, status) "
            "VALUES (?, ?, ?, ?, ?, 'pending')",
            (checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash, note, signature),
        )
        return findings

    def _consistency(self, note: str, new: Checkpoint) -> list[Finding]:
        row = self._conn.execute(
            "SELECT note, tree_size, root_hash FROM checkpoints WHERE origin = ? "
            "ORDER BY id DESC LIMIT 1",
            (new.origin,),
        ).fetchone()
        if row is None:
            return []
        old_note, old_size, old_root = str(row[0]), int(row[1]), bytes(row[2])
        (small_note, small_size, small_root), (large_note, large_size, large_root) = sorted(
            [(old_note, old_size, old_root), (note, new.tree_size, new.root_hash)],
            key=lambda t: t[1],
        )
        proof: list[bytes] | None = None
        error = ""
        if small_size == large_size:
            if small_root != large_root:
                error = "two checkpoints of the same tree size with different roots"
        elif small_size == 0:
            if small_root != EMPTY_ROOT:
                error = "a checkpoint of tree size 0 whose root is not the empty root"
        elif self._client is not None:
            try:
                proof = self._client.consistency_proof(small_size, large_size)
                verify_consistency(small_size, large_size, small_root, large_root, proof)
            except ProofUnavailable as exc:
                error = f"the directory serves no consistency proof between them ({exc})"
            except VerificationError as exc:
                error = exc.message
        if not error:
            return []
        evidence: dict[str, Any] = {
            "smaller": small_note,
            "larger": large_note,
            "consistency_proof": None if proof is None else _b64(proof),
            "error": error,
            "local": self._local_proof(small_size, large_size, large_root),
        }
        return [
            Finding(
                "inconsistent-checkpoints",
                f"checkpoints of sizes {small_size} and {large_size} are inconsistent: {error}",
                evidence,
                scope=f"{small_note}\x00{large_note}",
            )
        ]

    def _local_proof(
        self, small_size: int, large_size: int, large_root: bytes
    ) -> dict[str, Any] | None:
        """When the entries read reach the larger checkpoint and give its root: the root at
        the smaller size and a consistency proof between them, computed from the entries —
        evidence that does not depend on the directory's proofs."""
        if not 0 < small_size < large_size <= self._tree.tree_size:
            return None
        if self._tree.root(large_size) != large_root:
            return None
        return {
            "root_at_smaller_size": encode_b64(self._tree.root(small_size)),
            "consistency_proof": _b64(consistency_proof(small_size, large_size, self._tree)),
        }

    def check_pending(self, tree_size: int) -> list[Finding]:
        """Compare every pending checkpoint of at most ``tree_size`` leaves with the root of
        the entries read; mark it ``matched`` or ``mismatch``."""
        findings: list[Finding] = []
        for cp in stored_checkpoints(self._conn):
            if cp.status != "pending" or cp.tree_size > tree_size:
                continue
            computed = self._tree.root(cp.tree_size)
            status = "matched" if computed == cp.root_hash else "mismatch"
            self._conn.execute("UPDATE checkpoints SET status = ? WHERE id = ?", (status, cp.id))
            if status == "mismatch":
                findings.append(self._root_mismatch(cp, computed))
        return findings

    def _root_mismatch(self, cp: StoredCheckpoint, computed: bytes) -> Finding:
        leaf: dict[str, Any] | None = None
        if self._client is not None:
            try:
                leaf = self._locate(cp)
            except (ProofUnavailable, PlcError):
                leaf = None
        return Finding(
            "checkpoint-root-mismatch",
            f"the first {cp.tree_size} entries read have root {encode_b64(computed)}, the "
            f"checkpoint says {encode_b64(cp.root_hash)}",
            {"checkpoint": cp.note, "computed_root": encode_b64(computed), "leaf": leaf},
            scope=cp.note,
        )

    def _locate(self, cp: StoredCheckpoint) -> dict[str, Any] | None:
        """Find and prove the first leaf where the entries read differ from the checkpoint's
        tree (binary search over the directory's consistency proofs)."""
        assert self._client is not None
        size = cp.tree_size
        lo, hi = 0, size  # prefix lo agrees with the checkpoint's tree, prefix hi does not
        prefix: dict[str, Any] | None = None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            proof = self._client.consistency_proof(mid, size)
            root = self._tree.root(mid)
            try:
                verify_consistency(mid, size, root, cp.root_hash, proof)
            except VerificationError:
                hi = mid
            else:
                lo = mid
                prefix = {"tree_size": mid, "root": encode_b64(root), "proof": _b64(proof)}
        try:
            directory_leaf, inclusion = self._client.inclusion_proof(lo + 1, size)
            verify_inclusion(directory_leaf, lo, size, inclusion, cp.root_hash)
        except (ProofUnavailable, VerificationError):
            # The proof endpoint's answer does not verify: read the checkpoint's own leaf
            # and its proof from the tiles of the tree instead (C2SP tlog-tiles).
            tiles = TileHashReader(size, self._client.tile)
            directory_leaf = tiles.read_hashes([stored_hash_index(0, lo)])[0]
            inclusion = inclusion_proof(lo, size, tiles)
            verify_inclusion(directory_leaf, lo, size, inclusion, cp.root_hash)
        line = self._line_of_leaf(lo)
        return {
            "leaf_index": lo,
            "line": None if line is None else line.decode("utf-8", "replace"),
            "stored_leaf_hash": encode_b64(self._tree.leaf_hash(lo)),
            "directory_leaf_hash": encode_b64(directory_leaf),
            "inclusion_proof": _b64(inclusion),
            "consistent_prefix": prefix,
        }

    def _line_of_leaf(self, leaf_index: int) -> bytes | None:
        if self._fetcher is None:
            return None
        seq = state.seq_of_leaf(self._conn, leaf_index)
        stored = state.op_at_seq(self._conn, seq)
        return self._fetcher.line(seq, stored[2] if stored else None)
