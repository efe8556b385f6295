"""RFC 6962 Merkle tree hashing with SHA-256 (RFC 6962 §2.1, unchanged in RFC 9162 §2.1.1).

Every hash is 32 bytes. The leaf and interior-node prefixes keep a leaf from ever hashing
like an interior node (second-preimage resistance).
"""

from __future__ import annotations

import hashlib

__all__ = ["EMPTY_ROOT", "HASH_SIZE", "LEAF_PREFIX", "NODE_PREFIX", "leaf_hash", "node_hash"]

HASH_SIZE = 32
"""Length of every tlog hash in bytes (SHA-256)."""

LEAF_PREFIX = b"\x00"
"""RFC 6962 §2.1: prefix of a leaf hash input."""

NODE_PREFIX = b"\x01"
"""RFC 6962 §2.1: prefix of an interior node hash input."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""RFC 6962 §2.1: MTH({}) = SHA-256() for the empty tree (``e3b0c442…b855``)."""


def leaf_hash(data: bytes) -> bytes:
    """Return the leaf hash of ``data`` (for the tlog: the exact export line bytes).

    Args:
        data: the leaf input, any length.

    Returns:
        32 bytes.
    """
    # RFC 6962 §2.1: MTH({d(0)}) = SHA-256(0x00 || d(0))
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the hash of the interior node with children ``left`` and ``right``.

    Args:
        left, right: 32-byte child hashes (not checked here; callers pass stored or proof
            hashes whose length they have checked).

    Returns:
        32 bytes.
    """
    # RFC 6962 §2.1: MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
    return hashlib.sha256(NODE_PREFIX + left + right).digest()
