"""Inclusion and consistency proofs: building them from stored hashes, and verifying them.

Building follows RFC 6962 §2.1.1 (``PATH``, "Merkle audit path") and §2.1.2 (``PROOF`` /
``SUBPROOF``); verifying follows the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2, whose
steps are numbered in the code. Proofs are lists of 32-byte hashes, deepest node first.
Verification raises (never returns a bool): :class:`~plc.tlog.errors.RootMismatch` when the
calculated root differs, :class:`~plc.tlog.errors.InclusionProofError` /
:class:`~plc.tlog.errors.ConsistencyProofError` when the proof cannot fit the sizes at all,
:class:`~plc.tlog.errors.MalformedProof` for a hash that is not 32 bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from plc.tlog.errors import (
    ConsistencyProofError,
    InclusionProofError,
    InvalidTlogRequest,
    MalformedProof,
    RootMismatch,
)
from plc.tlog.hashing import EMPTY_ROOT, HASH_SIZE, node_hash
from plc.tlog.tree import HashReader, read_hashes_checked, subtree_hashes

__all__ = [
    "consistency_proof",
    "inclusion_proof",
    "inclusion_proofs",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]


def _split(width: int) -> int:
    """RFC 6962 §2.1: k, the largest power of two smaller than ``width`` (``width`` > 1)."""
    return 1 << ((width - 1).bit_length() - 1)


def _inclusion_ranges(leaf_index: int, tree_size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PATH(leaf_index, D[0:tree_size]), deepest first."""
    lo, hi = 0, tree_size
    siblings: list[tuple[int, int]] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if leaf_index < lo + k:  # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
            siblings.append((lo + k, hi))
            hi = lo + k
        else:  # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
            siblings.append((lo, lo + k))
            lo += k
    siblings.reverse()
    return siblings


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PROOF(old_size, D[0:new_size]) (0 < old < new)."""
    lo, hi = 0, new_size
    complete = True  # SUBPROOF's b: is D[lo:hi]'s old part the whole old tree?
    siblings: list[tuple[int, int]] = []
    head: list[tuple[int, int]] = []
    while True:
        if old_size == hi:  # SUBPROOF(m, D[m], b) = {} if b else {MTH(D[m])}
            if not complete:
                head.append((lo, hi))
            break
        k = _split(hi - lo)
        if old_size - lo <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            siblings.append((lo + k, hi))
            hi = lo + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            siblings.append((lo, lo + k))
            lo += k
            complete = False
    siblings.reverse()
    return head + siblings


def inclusion_proof(leaf_index: int, tree_size: int, reader: HashReader) -> list[bytes]:
    """Return the inclusion proof (RFC 6962 §2.1.1 audit path) of a leaf in a tree.

    Makes one ``read_hashes`` call (for at most about 2 * log2(tree_size) hashes).

    Args:
        leaf_index: 0-based index of the leaf (``seq - 1``).
        tree_size: size of the tree the proof is for; ``reader`` must hold at least that.
        reader: stored hashes.

    Returns:
        32-byte hashes, deepest first; empty for a tree of one leaf.

    Raises:
        InvalidTlogRequest: not ``0 <= leaf_index < tree_size``.
        HashReaderError: ``reader`` broke its contract.
    """
    if not 0 <= leaf_index < tree_size:
        raise InvalidTlogRequest(f"leaf index {leaf_index} is not in a tree of {tree_size} leaves")
    return subtree_hashes(_inclusion_ranges(leaf_index, tree_size), reader)


def inclusion_proofs(
    leaf_indexes: Sequence[int], tree_size: int, reader: HashReader
) -> list[list[bytes]]:
    """Return :func:`inclusion_proof` of each leaf in ``leaf_indexes``, with one
    ``read_hashes`` call for them all that asks for each stored hash once (the leaves of one
    DID share the upper part of their paths; a proof per query made a DID of 3,000 ops take
    a second).

    Raises:
        InvalidTlogRequest: a leaf not in ``0 <= leaf_index < tree_size``.
        HashReaderError: ``reader`` broke its contract.
    """
    for leaf_index in leaf_indexes:
        if not 0 <= leaf_index < tree_size:
            raise InvalidTlogRequest(
                f"leaf index {leaf_index} is not in a tree of {tree_size} leaves"
            )
    paths = [_inclusion_ranges(leaf_index, tree_size) for leaf_index in leaf_indexes]
    hashes = subtree_hashes([r for path in paths for r in path], _ReadOnce(reader))
    proofs = []
    start = 0
    for path in paths:
        proofs.append(hashes[start : start + len(path)])
        start += len(path)
    return proofs


class _ReadOnce:
    """A ``HashReader`` that asks ``base`` for each distinct index once."""

    def __init__(self, base: HashReader) -> None:
        self._base = base

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        distinct = sorted(set(indexes))
        found = dict(zip(distinct, read_hashes_checked(self._base, distinct), strict=True))
        return [found[index] for index in indexes]


def consistency_proof(old_size: int, new_size: int, reader: HashReader) -> list[bytes]:
    """Return the consistency proof (RFC 6962 §2.1.2) from ``old_size`` to ``new_size``.

    Makes one ``read_hashes`` call, or none when the sizes are equal (the proof is empty).

    Raises:
        InvalidTlogRequest: ``old_size`` is 0 (no such proof exists: RFC 6962 §2.1.2 defines
            PROOF for 0 < m), or ``old_size > new_size``.
        HashReaderError: ``reader`` broke its contract.
    """
    if old_size <= 0:
        raise InvalidTlogRequest(f"consistency proof from tree size {old_size} does not exist")
    if old_size > new_size:
        raise InvalidTlogRequest(
            f"consistency proof from tree size {old_size} to smaller size {new_size}"
        )
    if old_size == new_size:
        return []
    return subtree_hashes(_consistency_ranges(old_size, new_size), reader)


def _check_hashes(proof: Sequence[bytes]) -> None:
    for position, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise MalformedProof(
                f"proof hash {position} is {len(h)} bytes, expected {HASH_SIZE}",
                position=position,
                actual=len(h),
            )


def root_from_inclusion_proof(
    leaf_hash: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """Return the root implied by an inclusion proof (RFC 9162 §2.1.3.2 steps 1-4).

    Raises:
        MalformedProof: ``leaf_hash`` or a proof hash is not 32 bytes.
        InclusionProofError: ``leaf_index`` not in ``[0, tree_size)``, or the proof has the
            wrong number of hashes for that position (``expected``/``actual`` = lengths).
    """
    if len(leaf_hash) != HASH_SIZE:
        raise MalformedProof(
            f"leaf hash is {len(leaf_hash)} bytes, expected {HASH_SIZE}", actual=len(leaf_hash)
        )
    _check_hashes(proof)
    # 1. leaf_index must be smaller than tree_size.
    if not 0 <= leaf_index < tree_size:
        raise InclusionProofError(
            f"leaf index {leaf_index} is not in a tree of {tree_size} leaves",
            leaf_index=leaf_index,
            tree_size=tree_size,
        )
    # The path has one hash per level where the leaf's and the last leaf's paths differ
    # ("inner"), plus one per left-hand complete subtree above that ("border").
    inner = (leaf_index ^ (tree_size - 1)).bit_length()
    expected_length = inner + (leaf_index >> inner).bit_count()
    if len(proof) != expected_length:
        raise InclusionProofError(
            f"inclusion proof for leaf {leaf_index} of {tree_size} has {len(proof)} hashes, "
            f"expected {expected_length}",
            leaf_index=leaf_index,
            tree_size=tree_size,
            expected=expected_length,
            actual=len(proof),
        )
    # 2. fn = leaf_index, sn = tree_size - 1.  3. r = hash.
    fn, sn = leaf_index, tree_size - 1
    r = leaf_hash
    # 4. For each p in the inclusion path:
    for p in proof:
        if sn == 0:  # 4a. (unreachable after the length check; kept as the RFC states it)
            raise InclusionProofError(
                "inclusion proof is too long",
                leaf_index=leaf_index,
                tree_size=tree_size,
            )
        if fn & 1 or fn == sn:  # 4b.
            r = node_hash(p, r)  # 4b.i.
            if not fn & 1:  # 4b.ii.
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)  # 4b. otherwise i.
        fn >>= 1  # 4c.
        sn >>= 1
    # 5. (first half) sn must be 0.
    if sn != 0:
        raise InclusionProofError(
            "inclusion proof is too short", leaf_index=leaf_index, tree_size=tree_size
        )
    return r


def verify_inclusion(
    leaf_hash: bytes,
    leaf_index: int,
    tree_size: int,
    proof: Sequence[bytes],
    root: bytes,
) -> None:
    """Verify that ``leaf_hash`` is leaf ``leaf_index`` of the tree with ``root``
    (RFC 9162 §2.1.3.2).

    Args:
        leaf_hash: 32-byte leaf hash (:func:`plc.tlog.hashing.leaf_hash` of the line).
        leaf_index: 0-based position (``seq - 1``).
        tree_size: size of the tree ``root`` belongs to.
        proof: the inclusion path, 32-byte hashes, deepest first.
        root: the trusted root hash (e.g. from a verified checkpoint).

    Raises:
        MalformedProof, InclusionProofError: see :func:`root_from_inclusion_proof`.
        RootMismatch: the calculated root is not ``root`` (step 5).
    """
    calculated = root_from_inclusion_proof(leaf_hash, leaf_index, tree_size, proof)
    # 5. r must equal root_hash.
    if calculated != root:
        raise RootMismatch(root, calculated)


def _consistency_length(old_size: int, new_size: int) -> int:
    """Number of hashes in PROOF(old_size, D[new_size]) for 0 < old_size < new_size."""
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = ((old_size - 1) >> inner).bit_count()
    shift = (old_size & -old_size).bit_length() - 1  # trailing zeros of old_size
    # The subtree of 2**shift leaves ending at old_size is the seed of the proof; it is sent
    # as the first hash unless it is the whole old tree (old_size a power of two).
    seed = 0 if old_size == 1 << shift else 1
    return seed + (inner - shift) + border


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Verify that the tree ``(old_size, old_root)`` is a prefix of ``(new_size, new_root)``
    (RFC 9162 §2.1.4.2).

    Equal sizes need an empty proof and equal roots (and the empty root for size 0). A
    proof from size 0 to a larger size is refused: it would prove nothing (RFC 6962 §2.1.2
    defines proofs for 0 < old_size only).

    Args:
        old_size, new_size: the two tree sizes, ``0 <= old_size <= new_size``.
        old_root, new_root: the two trusted root hashes.
        proof: the consistency proof, 32-byte hashes.

    Raises:
        MalformedProof: a proof hash is not 32 bytes.
        ConsistencyProofError: sizes out of order, old size 0 with a larger new size,
            non-empty proof for equal sizes, or a proof of the wrong length.
        RootMismatch: a calculated root differs (``what`` says which: old or new).
    """
    _check_hashes(proof)
    if not 0 <= old_size <= new_size:
        raise ConsistencyProofError(
            f"tree sizes out of order: old {old_size}, new {new_size}",
            old_size=old_size,
            new_size=new_size,
        )
    if old_size == new_size:
        if proof:
            raise ConsistencyProofError(
                f"consistency proof between equal tree sizes must be empty, has {len(proof)}",
                old_size=old_size,
                new_size=new_size,
                expected=0,
                actual=len(proof),
            )
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise RootMismatch(old_root, EMPTY_ROOT, what="old root hash")
        if new_root != old_root:
            raise RootMismatch(new_root, old_root, what="new root hash")
        return
    if old_size == 0:
        raise ConsistencyProofError(
            "consistency proof from an empty tree proves nothing",
            old_size=old_size,
            new_size=new_size,
        )
    expected_length = _consistency_length(old_size, new_size)
    if len(proof) != expected_length:
        raise ConsistencyProofError(
            f"consistency proof from {old_size} to {new_size} has {len(proof)} hashes, "
            f"expected {expected_length}",
            old_size=old_size,
            new_size=new_size,
            expected=expected_length,
            actual=len(proof),
        )
    path = list(proof)
    # 1. An empty path fails (cannot happen here: expected_length >= 1).
    # 2. If first is an exact power of 2, prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = old_size - 1, new_size - 1
    # 4. If LSB(fn) is set, shift both right until it is not.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr = sr = the first value of the path.
    fr = sr = path[0]
    # 6. For each subsequent value c:
    for c in path[1:]:
        if sn == 0:  # 6a. (unreachable after the length check; kept as the RFC states it)
            raise ConsistencyProofError(
                "consistency proof is too long", old_size=old_size, new_size=new_size
            )
        if fn & 1 or fn == sn:  # 6b.
            fr = node_hash(c, fr)  # 6b.i.
            sr = node_hash(c, sr)  # 6b.ii.
            if not fn & 1:  # 6b.iii.
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)  # 6b. otherwise i.
        fn >>= 1  # 6c.
        sn >>= 1
    # 7. fr == first_hash, sr == second_hash, sn == 0.
    if sn != 0:
        raise ConsistencyProofError(
            "consistency proof is too short", old_size=old_size, new_size=new_size
        )
    if fr != old_root:
        raise RootMismatch(old_root, fr, what="old root hash")
    if sr != new_root:
        raise RootMismatch(new_root, sr, what="new root hash")
