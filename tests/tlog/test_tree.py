"""Stored-hash layout, appends and root hashes (plc.tlog.tree, plc.tlog.memory)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plc.tlog.errors import HashReaderError, InvalidTlogRequest
from plc.tlog.hashing import EMPTY_ROOT
from plc.tlog.memory import MemoryHashStore, OverlayHashReader
from plc.tlog.proof import inclusion_proof
from plc.tlog.tree import (
    append_leaves,
    root_hash,
    split_stored_hash_index,
    stored_hash_count,
    stored_hash_index,
    stored_hashes_for_append,
    subtree_hashes,
)

from . import reference
from .helpers import CountingReader, leaf_hashes, memory_tree


def _trailing_ones(n: int) -> int:
    count = 0
    while n & 1:
        count += 1
        n >>= 1
    return count


def test_layout_matches_sumdb_order() -> None:
    # Leaf 0: (0,0). Leaf 1: (0,1), (1,0). Leaf 2: (0,2). Leaf 3: (0,3), (1,1), (2,0).
    expected = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0), (0, 4)]
    assert [split_stored_hash_index(i) for i in range(8)] == expected
    assert [stored_hash_index(level, n) for level, n in expected] == list(range(8))


def test_split_inverts_index_exhaustively() -> None:
    for index in range(6000):
        level, n = split_stored_hash_index(index)
        assert stored_hash_index(level, n) == index
    for level in range(12):
        for n in range(300):
            assert split_stored_hash_index(stored_hash_index(level, n)) == (level, n)


def test_stored_hash_count_matches_appends() -> None:
    count = 0
    for tree_size in range(600):
        assert stored_hash_count(tree_size) == count
        assert stored_hash_index(0, tree_size) == count  # next leaf hash goes here
        count += 1 + _trailing_ones(tree_size)


def test_root_hash_matches_reference_for_every_small_size() -> None:
    store = memory_tree(300)
    leaves = leaf_hashes(300)
    for tree_size in range(301):
        assert root_hash(tree_size, store) == reference.mth(leaves[:tree_size])
    assert root_hash(0, store) == EMPTY_ROOT


def test_root_hash_is_one_read_of_popcount_hashes() -> None:
    reader = CountingReader(memory_tree(1000))
    for tree_size in (1, 2, 3, 255, 256, 257, 999, 1000):
        reader.calls.clear()
        root_hash(tree_size, reader)
        assert len(reader.calls) == 1
        assert len(reader.calls[0]) == tree_size.bit_count()
    reader.calls.clear()
    assert root_hash(0, reader) == EMPTY_ROOT
    assert reader.calls == []


def test_single_append_reads_trailing_ones() -> None:
    store = memory_tree(600)
    for leaf_index in range(512):
        reader = CountingReader(store)
        new = stored_hashes_for_append(leaf_index, leaf_hashes(600)[leaf_index], reader)
        expected = store.stored_hashes[
            stored_hash_count(leaf_index) : stored_hash_count(leaf_index + 1)
        ]
        assert new == list(expected)
        wanted = _trailing_ones(leaf_index)
        assert [len(c) for c in reader.calls] == ([wanted] if wanted else [])


@settings(deadline=None, max_examples=60)
@given(
    start_size=st.integers(min_value=0, max_value=700),
    batch=st.integers(min_value=0, max_value=300),
)
def test_batched_append_equals_one_at_a_time(start_size: int, batch: int) -> None:
    store = memory_tree(1000)
    new_leaves = leaf_hashes(1000)[start_size : start_size + batch]
    reader = CountingReader(store)
    new = append_leaves(start_size, new_leaves, reader)
    # Equals the stored hashes of the one-leaf-at-a-time tree ...
    assert new == list(
        store.stored_hashes[stored_hash_count(start_size) : stored_hash_count(start_size + batch)]
    )
    # ... reads at most once, only below the batch, at most popcount(start_size) hashes.
    assert len(reader.calls) <= 1
    for call in reader.calls:
        assert len(call) <= start_size.bit_count()
        assert all(i < stored_hash_count(start_size) for i in call)


def test_one_at_a_time_store_equals_reference() -> None:
    one_by_one = MemoryHashStore()
    for h in leaf_hashes(257):
        one_by_one.append([h])
    assert list(one_by_one.stored_hashes) == list(memory_tree(257).stored_hashes)
    assert one_by_one.root_hash() == reference.mth(leaf_hashes(257))


def test_overlay_reader_serves_batch_and_base() -> None:
    base = memory_tree(100)
    counting = CountingReader(base)
    new = append_leaves(100, leaf_hashes(180)[100:], counting)
    overlay = OverlayHashReader.for_append(counting, 100, new)
    counting.calls.clear()
    assert root_hash(180, overlay) == reference.mth(leaf_hashes(180))
    assert counting.calls == []  # 128 + 32 + 16 + 4: every subtree completed in the batch
    assert root_hash(150, overlay) == reference.mth(leaf_hashes(150))
    assert inclusion_proof(5, 180, overlay) == inclusion_proof(5, 180, memory_tree(180))
    assert counting.calls  # the old subtrees come from the base ...
    for call in counting.calls:  # ... and only those
        assert all(i < stored_hash_count(100) for i in call)
    with pytest.raises(InvalidTlogRequest):
        overlay.read_hashes([stored_hash_count(180)])
    with pytest.raises(InvalidTlogRequest):
        OverlayHashReader(base, -1, [])


class _BadReader:
    def __init__(self, result: Sequence[bytes]) -> None:
        self.result = result

    def read_hashes(self, indexes: Sequence[int]) -> Sequence[bytes]:
        return self.result


def test_reader_contract_is_checked() -> None:
    with pytest.raises(HashReaderError) as info:
        root_hash(3, _BadReader([b"\x00" * 32]))
    assert (info.value.expected, info.value.actual) == (2, 1)
    with pytest.raises(HashReaderError) as info:
        root_hash(1, _BadReader([b"\x00" * 31]))
    assert (info.value.expected, info.value.actual) == (32, 31)


def test_invalid_arguments() -> None:
    store = memory_tree(10)
    with pytest.raises(InvalidTlogRequest):
        root_hash(-1, store)
    with pytest.raises(InvalidTlogRequest):
        stored_hash_index(-1, 0)
    with pytest.raises(InvalidTlogRequest):
        split_stored_hash_index(-1)
    with pytest.raises(InvalidTlogRequest):
        stored_hash_count(-1)
    with pytest.raises(InvalidTlogRequest):
        append_leaves(0, [b"short"], store)
    with pytest.raises(InvalidTlogRequest):
        subtree_hashes([(1, 4)], store)  # [1, 4) is not an RFC 6962 subtree
    with pytest.raises(InvalidTlogRequest):
        subtree_hashes([(3, 3)], store)
    with pytest.raises(InvalidTlogRequest):
        store.read_hashes([stored_hash_count(10)])


def test_subtree_hashes_match_reference() -> None:
    store = memory_tree(64)
    leaves = leaf_hashes(64)
    ranges = [(0, 64), (0, 13), (8, 13), (8, 16), (12, 13), (32, 64), (48, 57)]
    got = subtree_hashes(ranges, store)
    assert got == [reference.mth(leaves[lo:hi]) for lo, hi in ranges]


@settings(deadline=None, max_examples=40)
@given(tree_size=st.integers(min_value=0, max_value=3000))
def test_root_hash_matches_reference_at_random_sizes(tree_size: int) -> None:
    assert root_hash(tree_size, memory_tree(3000)) == reference.mth(leaf_hashes(3000)[:tree_size])
