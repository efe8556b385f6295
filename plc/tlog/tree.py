"""Stored-hash layout of the tlog's Merkle tree, appends and root hashes.

The layout follows golang.org/x/mod/sumdb/tlog: every hash of a *complete* subtree is stored
exactly once, in a dense sequence indexed by a "stored hash index". Appending the leaf with
leaf index ``n`` stores ``1 + t`` hashes, where ``t`` is the number of trailing 1 bits of
``n``: the leaf hash, then the hashes of the subtrees of height 1 .. ``t`` that the leaf
completes. A tree of ``tree_size`` leaves therefore has ``2 * tree_size - popcount(tree_size)``
stored hashes, and they never change once written.

Coordinates: the node ``(level, n)`` is the root of the complete subtree of height ``level``
covering leaf indexes ``[n * 2**level, (n + 1) * 2**level)``; level 0 nodes are leaf hashes.

Storage enters only through :class:`HashReader`; every function makes at most one
``read_hashes`` call, so a database-backed reader costs one query. Hashes are 32-byte
``bytes`` (:mod:`plc.tlog.hashing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from plc.tlog.errors import HashReaderError, InvalidTlogRequest
from plc.tlog.hashing import EMPTY_ROOT, HASH_SIZE, node_hash

__all__ = [
    "HashReader",
    "append_leaves",
    "read_hashes_checked",
    "root_hash",
    "split_stored_hash_index",
    "stored_hash_count",
    "stored_hash_index",
    "stored_hashes_for_append",
    "subtree_hashes",
    "validate_tree_size",
]


class HashReader(Protocol):
    """Read access to stored hashes (the only way storage enters the tree math).

    ``read_hashes(indexes)`` MUST return one 32-byte hash per requested stored hash index, in
    the order requested. Callers here ask for each index at most once per call and only for
    indexes below :func:`stored_hash_count` of a tree size the store has reached; an index
    the store does not hold is the store's error to raise.
    """

    def read_hashes(self, indexes: Sequence[int]) -> Sequence[bytes]:
        """Return the stored hashes at ``indexes`` (same length, same order)."""
        ...


def read_hashes_checked(reader: HashReader, indexes: Sequence[int]) -> list[bytes]:
    """Call ``reader.read_hashes(indexes)`` and check its contract.

    Makes no call when ``indexes`` is empty.

    Raises:
        HashReaderError: the reader returned the wrong number of hashes, or one that is not
            32 bytes.
    """
    if not indexes:
        return []
    hashes = list(reader.read_hashes(indexes))
    if len(hashes) != len(indexes):
        raise HashReaderError(
            f"tlog: read_hashes({len(indexes)} indexes) returned {len(hashes)} hashes",
            expected=len(indexes),
            actual=len(hashes),
        )
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise HashReaderError(
                f"tlog: read_hashes returned a {len(h)}-byte hash",
                expected=HASH_SIZE,
                actual=len(h),
            )
    return hashes


def validate_tree_size(tree_size: int) -> None:
    """Raise :class:`~plc.tlog.errors.InvalidTlogRequest` unless ``tree_size`` >= 0."""
    if tree_size < 0:
        raise InvalidTlogRequest(f"tree size must be >= 0, got {tree_size}")


def stored_hash_index(level: int, n: int) -> int:
    """Return the stored hash index of node ``(level, n)``.

    The node is stored right after the leaf that completes it, the leaf with index
    ``m = (n + 1) * 2**level - 1``; the hashes of leaves ``0 .. m - 1`` take
    ``stored_hash_count(m)`` slots, the leaf hash of ``m`` comes next, then the nodes of
    levels 1, 2, ... it completes. Hence ``index = stored_hash_count(m) + level``.

    Args:
        level: height of the node, >= 0.
        n: position of the node within its level, >= 0.

    Raises:
        InvalidTlogRequest: ``level`` or ``n`` is negative.
    """
    if level < 0 or n < 0:
        raise InvalidTlogRequest(f"invalid tree coordinates (level={level}, n={n})")
    last_leaf = ((n + 1) << level) - 1
    return stored_hash_count(last_leaf) + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """Return the node ``(level, n)`` stored at ``index``; the inverse of
    :func:`stored_hash_index`.

    Raises:
        InvalidTlogRequest: ``index`` is negative.
    """
    if index < 0:
        raise InvalidTlogRequest(f"stored hash index must be >= 0, got {index}")
    # Find the leaf m whose append wrote this index: the largest m with
    # stored_hash_count(m) <= index. stored_hash_count(m) <= 2m, so m >= index // 2, and
    # stored_hash_count(m + 1) - stored_hash_count(m) = 1 + trailing ones of m >= 1, so the
    # loop runs at most about log2(index) times.
    leaf = index // 2
    while stored_hash_count(leaf + 1) <= index:
        leaf += 1
    level = index - stored_hash_count(leaf)
    return level, leaf >> level


def stored_hash_count(tree_size: int) -> int:
    """Return how many hashes are stored for a tree of ``tree_size`` leaves.

    Equals ``sum(1 + trailing_ones(m) for m in range(tree_size))``, which telescopes to
    ``2 * tree_size - popcount(tree_size)``. It is also the stored hash index of the leaf
    hash of leaf ``tree_size`` (the next one to be appended).

    Raises:
        InvalidTlogRequest: ``tree_size`` is negative.
    """
    validate_tree_size(tree_size)
    return 2 * tree_size - tree_size.bit_count()


def append_leaves(start_size: int, leaf_hashes: Sequence[bytes], reader: HashReader) -> list[bytes]:
    """Return the hashes to store when appending ``leaf_hashes`` to a tree of ``start_size``.

    The result goes, in order, to stored hash indexes ``stored_hash_count(start_size)`` ..
    ``stored_hash_count(start_size + len(leaf_hashes)) - 1``; it is exactly the
    concatenation of :func:`stored_hashes_for_append` for each leaf in turn. Hashes that the
    batch itself produces are never read back: ``reader`` is asked (in one call, or none)
    only for the roots of complete subtrees of the old tree that the batch extends, at most
    ``popcount(start_size)`` of them.

    Args:
        start_size: number of leaves already in the tree (>= 0).
        leaf_hashes: the new leaves' hashes (:func:`plc.tlog.hashing.leaf_hash`), 32 bytes
            each, leaf indexes ``start_size`` .. ``start_size + len(leaf_hashes) - 1``.
        reader: stored hashes of the tree of ``start_size`` leaves.

    Raises:
        InvalidTlogRequest: negative ``start_size`` or a leaf hash that is not 32 bytes.
        HashReaderError: ``reader`` broke its contract.
    """
    validate_tree_size(start_size)
    for h in leaf_hashes:
        if len(h) != HASH_SIZE:
            raise InvalidTlogRequest(f"leaf hash must be {HASH_SIZE} bytes, got {len(h)}")
    end_size = start_size + len(leaf_hashes)

    # The old tree is the sequence of complete subtrees given by the 1 bits of start_size,
    # largest (leftmost) first; the one of height `level` is node (level, (start_size >>
    # level) - 1). It is hashed into a larger subtree during this batch iff its right
    # sibling, covering leaves up to ((start_size >> level) + 1) << level (exclusive), is
    # complete at end_size. Only those hashes are read.
    levels = [lv for lv in range(start_size.bit_length() - 1, -1, -1) if start_size >> lv & 1]
    wanted = [lv for lv in levels if ((start_size >> lv) + 1) << lv <= end_size]
    indexes = [stored_hash_index(lv, (start_size >> lv) - 1) for lv in wanted]
    old = dict(zip(wanted, read_hashes_checked(reader, indexes), strict=True))
    stack: list[tuple[int, bytes | None]] = [(lv, old.get(lv)) for lv in levels]

    # Append leaf by leaf, merging equal-height subtrees on the right edge (a compact
    # range); every merge produces the next stored hash (RFC 6962 §2.1 node hash).
    new_hashes: list[bytes] = []
    for h in leaf_hashes:
        new_hashes.append(h)
        level, current = 0, h
        while stack and stack[-1][0] == level:
            left = stack.pop()[1]
            assert left is not None, "tlog: frontier hash needed but not read"
            current = node_hash(left, current)
            level += 1
            new_hashes.append(current)
        stack.append((level, current))
    return new_hashes


def stored_hashes_for_append(leaf_index: int, leaf_hash: bytes, reader: HashReader) -> list[bytes]:
    """Return the ``1 + trailing_ones(leaf_index)`` hashes to store when appending one leaf.

    They go to stored hash indexes ``stored_hash_count(leaf_index)`` onwards: the leaf hash,
    then the hashes of the subtrees of heights 1, 2, ... completed by this leaf. Makes one
    ``read_hashes`` call for ``trailing_ones(leaf_index)`` hashes (none if it is 0).

    Args:
        leaf_index: index of the new leaf = current tree size.
        leaf_hash: the new leaf's 32-byte hash.
        reader: stored hashes of the tree of ``leaf_index`` leaves.

    Raises:
        InvalidTlogRequest: negative ``leaf_index`` or a leaf hash that is not 32 bytes.
        HashReaderError: ``reader`` broke its contract.
    """
    return append_leaves(leaf_index, [leaf_hash], reader)


def root_hash(tree_size: int, reader: HashReader) -> bytes:
    """Return the RFC 6962 Merkle tree hash of the first ``tree_size`` leaves.

    Makes one ``read_hashes`` call for ``popcount(tree_size)`` <= 1 + log2(tree_size) hashes
    (the complete subtrees of the decomposition of ``tree_size`` into powers of two), and
    none for the empty tree.

    Raises:
        InvalidTlogRequest: negative ``tree_size``.
        HashReaderError: ``reader`` broke its contract.
    """
    validate_tree_size(tree_size)
    if tree_size == 0:
        return EMPTY_ROOT  # RFC 6962 §2.1: MTH({}) = SHA-256()
    return subtree_hashes([(0, tree_size)], reader)[0]


def _subtree_nodes(lo: int, hi: int) -> list[tuple[int, int]]:
    """Split the leaf range ``[lo, hi)`` into complete subtrees ``(level, n)``, largest first."""
    if not 0 <= lo < hi:
        raise InvalidTlogRequest(f"invalid leaf range [{lo}, {hi})")
    if lo and (lo & -lo) < hi - lo:
        # RFC 6962 hashes D[lo:hi] as one subtree only if it starts at a multiple of a power
        # of two >= its width; other ranges have no Merkle tree hash of their own.
        raise InvalidTlogRequest(f"leaf range [{lo}, {hi}) is not a subtree")
    nodes = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        nodes.append((level, lo >> level))
        lo += 1 << level
    return nodes


def subtree_hashes(ranges: Sequence[tuple[int, int]], reader: HashReader) -> list[bytes]:
    """Return MTH(D[lo:hi]) for each leaf range ``(lo, hi)``, with one ``read_hashes`` call.

    Each range must be a subtree in the sense of RFC 6962 §2.1 proofs: ``0 <= lo < hi`` and
    ``lo`` a multiple of a power of two that is >= ``hi - lo`` (``lo == 0`` always works).
    Such a range is the concatenation of at most ``log2(hi - lo) + 1`` complete subtrees of
    decreasing height, and its hash is their right fold with :func:`node_hash`. ``reader``
    must hold a tree of at least ``max(hi)`` leaves.

    Raises:
        InvalidTlogRequest: a range that is empty, negative or not a subtree.
        HashReaderError: ``reader`` broke its contract.
    """
    plans = [_subtree_nodes(lo, hi) for lo, hi in ranges]
    hashes = read_hashes_checked(
        reader, [stored_hash_index(level, n) for plan in plans for level, n in plan]
    )
    result = []
    pos = 0
    for plan in plans:
        part = hashes[pos : pos + len(plan)]
        pos += len(plan)
        h = part[-1]
        for left in reversed(part[:-1]):
            h = node_hash(left, h)
        result.append(h)
    return result
