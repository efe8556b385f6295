"""Shared test helpers: paths of the shared vectors and cached in-memory trees."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from plc.tlog.hashing import leaf_hash
from plc.tlog.memory import MemoryHashStore

# /work/main/tests/tlog/helpers.py -> parents[2] is the repo root; the shared vectors live
# beside it in ../shared/vectors (never copied into the repo).
VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors"
MERKLE_VECTORS = VECTORS / "merkle" / "testdata"
TESSERA_LOG = VECTORS / "tessera" / "testdata" / "log"


def entry(i: int) -> bytes:
    """A cheap, distinct entry for leaf i."""
    return b"entry %d" % i


@cache
def leaf_hashes(tree_size: int) -> tuple[bytes, ...]:
    """Leaf hashes of entries 0 .. tree_size - 1."""
    return tuple(leaf_hash(entry(i)) for i in range(tree_size))


@cache
def memory_tree(tree_size: int) -> MemoryHashStore:
    """An in-memory tree of ``tree_size`` cheap leaves (shared: do not append to it)."""
    store = MemoryHashStore()
    store.append(leaf_hashes(tree_size))
    return store


def flip_bit(data: bytes, bit: int) -> bytes:
    """Return ``data`` with bit number ``bit`` (0 = MSB of byte 0) inverted."""
    out = bytearray(data)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


class CountingReader:
    """Wraps a reader and records every read_hashes call."""

    def __init__(self, base: MemoryHashStore) -> None:
        self.base = base
        self.calls: list[list[int]] = []

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        self.calls.append(list(indexes))
        return self.base.read_hashes(indexes)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
