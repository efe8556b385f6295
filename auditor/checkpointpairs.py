"""Settling whether two signed checkpoints of one log are consistent (RFC 9162 §2.1.4).

Two checkpoints ``small.size <= large.size`` are consistent when the larger one's tree, cut
at the smaller size, has the smaller one's root. Equal sizes need equal roots and size 0 the
empty root (no proof needed). Otherwise a consistency proof (RFC 9162 §2.1.4.2,
:func:`plc.tlog.proof.verify_consistency`) is taken from the first source that gives one
verifying against the larger root: the entries read (when they give the larger root), the
directory's ``/tlog/proof/consistency`` (from the smaller root, or from the root it implies:
:func:`auditor.evidence_check.implied_old_root`), its C2SP tiles (c2sp.org/tlog-tiles). The
root at the smaller size that proof starts from either is the smaller checkpoint's
(consistent) or is not: ``inconsistent-checkpoints``, with both notes, that root and the
proof as evidence anyone can check with the log's key (``plc-audit check-evidence``). A proof
that is refused or does not verify against the larger root settles nothing and is never a
finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from auditor.client import DirectoryClient
from auditor.errors import AuditFailed
from auditor.evidence_check import implied_old_root
from auditor.findings import Finding
from auditor.treestore import TreeStore
from plc.errors import PlcError, VerificationError
from plc.tlog.encoding import encode_b64
from plc.tlog.hashing import EMPTY_ROOT
from plc.tlog.proof import consistency_proof, verify_consistency
from plc.tlog.tiles import TileHashReader
from plc.tlog.tree import HashReader, root_hash


class Signed(NamedTuple):
    """A checkpoint as the consistency checks need it: its signed note, its tree size (in
    leaves) and its 32-byte root hash."""

    note: str
    size: int
    root: bytes


_Proof = tuple[bytes, list[bytes], str]
"""``(root at the smaller size, consistency proof, source)``: a proof that verifies from
that root to the larger checkpoint's root."""


def b64_list(hashes: Sequence[bytes]) -> list[str]:
    """Hashes as a list of standard base64 strings (the evidence's encoding)."""
    return [encode_b64(h) for h in hashes]


class PairSettler:
    """Settles pairs of checkpoints (module docstring).

    Args:
        tree: the entries' tree (a proof source when it gives the larger root).
        client: the directory, for proofs and tiles (None for offline files).
    """

    def __init__(self, tree: TreeStore, client: DirectoryClient | None) -> None:
        self._tree = tree
        self._client = client

    def settle(self, a: Signed, b: Signed) -> list[Finding]:
        """The ``inconsistent-checkpoints`` finding if ``a`` and ``b`` (either order) are
        proven inconsistent; nothing if consistent or not settled. Network failures and bad
        proofs settle nothing (never raised)."""
        small, large = sorted([a, b], key=lambda t: t.size)
        if small.size == large.size:
            if small.root == large.root:
                return []
            error = "two checkpoints of the same tree size with different roots"
            return [self._inconsistent(small, large, error, None)]
        if small.size == 0:
            if small.root == EMPTY_ROOT:
                return []
            error = "a checkpoint of tree size 0 whose root is not the empty root"
            return [self._inconsistent(small, large, error, None)]
        for attempt in (self._by_entries, self._by_directory, self._by_tiles):
            found = attempt(small, large)
            if found is None:
                continue
            if found[0] == small.root:
                return []
            error = (
                f"the larger checkpoint's tree (proof from the {found[2]}) has another root "
                f"at size {small.size}"
            )
            return [self._inconsistent(small, large, error, found)]
        return []

    def _by_entries(self, small: Signed, large: Signed) -> _Proof | None:
        """From the entries read, when they give the larger checkpoint's root."""
        if large.size > self._tree.tree_size or self._tree.root(large.size) != large.root:
            return None
        proof = consistency_proof(small.size, large.size, self._tree)
        return self._tree.root(small.size), proof, "entries"

    def _by_directory(self, small: Signed, large: Signed) -> _Proof | None:
        """From ``/tlog/proof/consistency``: the proof must verify against the larger root,
        from the smaller root or from the one it implies (:func:`implied_old_root`)."""
        if self._client is None:
            return None
        try:
            proof = self._client.consistency_proof(small.size, large.size)
            verify_consistency(small.size, large.size, small.root, large.root, proof)
        except AuditFailed:  # refused, malformed, unreachable: settles nothing
            return None
        except VerificationError:
            root = implied_old_root(small.size, large.size, large.root, proof)
            return None if root is None else (root, proof, "directory")
        return small.root, proof, "directory"

    def _by_tiles(self, small: Signed, large: Signed) -> _Proof | None:
        """From the C2SP tiles of the larger tree (c2sp.org/tlog-tiles): its root at the
        smaller size and a proof, which must verify against the larger root."""
        if self._client is None:
            return None
        try:
            reader: HashReader = TileHashReader(large.size, self._client.tile)
            root = root_hash(small.size, reader)
            proof = consistency_proof(small.size, large.size, reader)
            verify_consistency(small.size, large.size, root, large.root, proof)
        except (AuditFailed, PlcError):
            return None
        return root, proof, "tiles"

    @staticmethod
    def _inconsistent(small: Signed, large: Signed, error: str, found: _Proof | None) -> Finding:
        evidence: dict[str, Any] = {
            "smaller": small.note,
            "larger": large.note,
            "root_at_smaller_size": None if found is None else encode_b64(found[0]),
            "consistency_proof": None if found is None else b64_list(found[1]),
            "proof_source": None if found is None else found[2],
            "error": error,
        }
        return Finding(
            "inconsistent-checkpoints",
            f"checkpoints of sizes {small.size} and {large.size} are inconsistent: {error}",
            evidence,
            scope=f"{small.note}\x00{large.note}",
        )
