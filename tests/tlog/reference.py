"""A naive, recursive transcription of RFC 6962 §2.1 (MTH, PATH, PROOF/SUBPROOF).

Only for testing the stored-hash implementation in :mod:`plc.tlog`: it re-hashes from the
leaves on every call and shares no code with it (it does its own SHA-256 prefixing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves."""
    n = len(leaf_hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hashes[0]
    k = _k(n)
    return node(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


def path(m: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the audit path of leaf m."""
    n = len(leaf_hashes)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return path(m, leaf_hashes[:k]) + [mth(leaf_hashes[k:])]
    return path(m - k, leaf_hashes[k:]) + [mth(leaf_hashes[:k])]


def subproof(m: int, leaf_hashes: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b)."""
    n = len(leaf_hashes)
    if m == n:
        return [] if b else [mth(leaf_hashes)]
    k = _k(n)
    if m <= k:
        return subproof(m, leaf_hashes[:k], b) + [mth(leaf_hashes[k:])]
    return subproof(m - k, leaf_hashes[k:], False) + [mth(leaf_hashes[:k])]


def proof(m: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) for 0 < m <= n."""
    return subproof(m, leaf_hashes, True)
