"""Inclusion and consistency proofs: the shared RFC 6962/9162 vectors, the naive reference,
and mutations (plc.tlog.proof)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plc.errors import VerificationError
from plc.tlog.errors import (
    ConsistencyProofError,
    InclusionProofError,
    InvalidTlogRequest,
    MalformedProof,
    RootMismatch,
)
from plc.tlog.hashing import EMPTY_ROOT
from plc.tlog.proof import (
    consistency_proof,
    inclusion_proof,
    inclusion_proofs,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from plc.tlog.tree import HashReader

from . import reference
from .helpers import MERKLE_VECTORS, flip_bit, leaf_hashes, memory_tree

BIG = 3000  # leaves of the shared tree the properties draw sizes from


def _cases(kind: str) -> list[Path]:
    return sorted((MERKLE_VECTORS / kind).rglob("*.json"))


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _proof(case: dict[str, Any]) -> list[bytes]:
    return [_b64(h) for h in case["proof"] or []]  # "proof": null means an empty proof


def test_vector_sets_are_present() -> None:
    # Guard against a moved directory silently turning the parametrized tests into no-ops.
    assert len(_cases("inclusion")) + len(_cases("consistency")) == 196


@pytest.mark.parametrize(
    "path", _cases("inclusion"), ids=lambda p: str(p.relative_to(MERKLE_VECTORS))
)
def test_inclusion_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (_b64(case["leafHash"]), case["leafIdx"], case["treeSize"], _proof(case))
    if case["wantErr"]:
        with pytest.raises(VerificationError):
            verify_inclusion(*args, _b64(case["root"]))
    else:
        verify_inclusion(*args, _b64(case["root"]))


@pytest.mark.parametrize(
    "path", _cases("consistency"), ids=lambda p: str(p.relative_to(MERKLE_VECTORS))
)
def test_consistency_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]), _proof(case))
    if case["wantErr"]:
        with pytest.raises(VerificationError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_exhaustive_small_trees_match_reference() -> None:
    store = memory_tree(64)
    leaves = leaf_hashes(64)
    for tree_size in range(1, 65):
        root = reference.mth(leaves[:tree_size])
        for leaf_index in range(tree_size):
            proof = inclusion_proof(leaf_index, tree_size, store)
            assert proof == reference.path(leaf_index, leaves[:tree_size])
            verify_inclusion(leaves[leaf_index], leaf_index, tree_size, proof, root)
        for old_size in range(1, tree_size + 1):
            proof = consistency_proof(old_size, tree_size, store)
            assert proof == reference.proof(old_size, leaves[:tree_size])
            verify_consistency(old_size, tree_size, reference.mth(leaves[:old_size]), root, proof)


@st.composite
def _size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    tree_size = draw(st.integers(min_value=1, max_value=BIG))
    return tree_size, draw(st.integers(min_value=0, max_value=tree_size - 1))


@st.composite
def _two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new_size = draw(st.integers(min_value=2, max_value=BIG))
    return draw(st.integers(min_value=1, max_value=new_size - 1)), new_size


@settings(deadline=None, max_examples=80)
@given(_size_and_index())
def test_inclusion_proofs_verify_and_match_reference(case: tuple[int, int]) -> None:
    tree_size, leaf_index = case
    store = memory_tree(BIG)
    leaves = leaf_hashes(BIG)[:tree_size]
    proof = inclusion_proof(leaf_index, tree_size, store)
    assert proof == reference.path(leaf_index, leaves)
    root = reference.mth(leaves)
    assert root_from_inclusion_proof(leaves[leaf_index], leaf_index, tree_size, proof) == root
    verify_inclusion(leaves[leaf_index], leaf_index, tree_size, proof, root)


class _CountingReader:
    """Counts the ``read_hashes`` calls and the indexes asked of ``base``."""

    def __init__(self, base: HashReader) -> None:
        self.base = base
        self.calls: list[Sequence[int]] = []

    def read_hashes(self, indexes: Sequence[int]) -> Sequence[bytes]:
        self.calls.append(indexes)
        return self.base.read_hashes(indexes)


@settings(deadline=None, max_examples=60)
@given(st.integers(min_value=1, max_value=BIG), st.data())
def test_many_inclusion_proofs_in_one_read_are_the_proofs_one_by_one(
    tree_size: int, data: st.DataObject
) -> None:
    leaves = st.integers(min_value=0, max_value=tree_size - 1)
    indexes = data.draw(st.lists(leaves, max_size=40))
    store = _CountingReader(memory_tree(BIG))
    proofs = inclusion_proofs(indexes, tree_size, store)
    assert proofs == [inclusion_proof(i, tree_size, memory_tree(BIG)) for i in indexes]
    assert len(store.calls) <= 1
    for asked in store.calls:
        assert len(asked) == len(set(asked))  # each stored hash asked for once
    with pytest.raises(InvalidTlogRequest):
        inclusion_proofs([*indexes, tree_size], tree_size, store)


@settings(deadline=None, max_examples=80)
@given(_two_sizes())
def test_consistency_proofs_verify_and_match_reference(case: tuple[int, int]) -> None:
    old_size, new_size = case
    store = memory_tree(BIG)
    leaves = leaf_hashes(BIG)
    proof = consistency_proof(old_size, new_size, store)
    assert proof == reference.proof(old_size, leaves[:new_size])
    verify_consistency(
        old_size, new_size, store.root_hash(old_size), store.root_hash(new_size), proof
    )


@settings(deadline=None, max_examples=80)
@given(_size_and_index(), st.data())
def test_any_bit_flip_breaks_inclusion(case: tuple[int, int], data: st.DataObject) -> None:
    tree_size, leaf_index = case
    store = memory_tree(BIG)
    leaf = leaf_hashes(BIG)[leaf_index]
    proof = inclusion_proof(leaf_index, tree_size, store)
    root = store.root_hash(tree_size)
    bit = data.draw(st.integers(min_value=0, max_value=255), label="bit")
    target = data.draw(st.sampled_from(["leaf", "root", *range(len(proof))]), label="target")
    if target == "leaf":
        leaf = flip_bit(leaf, bit)
    elif target == "root":
        root = flip_bit(root, bit)
    else:
        assert isinstance(target, int)
        proof[target] = flip_bit(proof[target], bit)
    with pytest.raises(RootMismatch):
        verify_inclusion(leaf, leaf_index, tree_size, proof, root)


@settings(deadline=None, max_examples=80)
@given(_two_sizes(), st.data())
def test_any_bit_flip_breaks_consistency(case: tuple[int, int], data: st.DataObject) -> None:
    old_size, new_size = case
    store = memory_tree(BIG)
    proof = consistency_proof(old_size, new_size, store)
    old_root, new_root = store.root_hash(old_size), store.root_hash(new_size)
    bit = data.draw(st.integers(min_value=0, max_value=255), label="bit")
    target = data.draw(st.sampled_from(["old", "new", *range(len(proof))]), label="target")
    if target == "old":
        old_root = flip_bit(old_root, bit)
    elif target == "new":
        new_root = flip_bit(new_root, bit)
    else:
        assert isinstance(target, int)
        proof[target] = flip_bit(proof[target], bit)
    with pytest.raises(RootMismatch):
        verify_consistency(old_size, new_size, old_root, new_root, proof)


def test_inclusion_structural_errors() -> None:
    store = memory_tree(100)
    leaf = leaf_hashes(100)[37]
    proof = inclusion_proof(37, 100, store)
    root = store.root_hash(100)
    with pytest.raises(InclusionProofError) as info:
        verify_inclusion(leaf, 37, 100, [*proof, proof[0]], root)
    assert (info.value.expected, info.value.actual) == (len(proof), len(proof) + 1)
    with pytest.raises(InclusionProofError):
        verify_inclusion(leaf, 37, 100, proof[:-1], root)
    with pytest.raises(InclusionProofError):
        verify_inclusion(leaf, 100, 100, proof, root)
    with pytest.raises(InclusionProofError):
        verify_inclusion(leaf, -1, 100, proof, root)
    with pytest.raises(MalformedProof) as bad:
        verify_inclusion(leaf, 37, 100, [proof[0][:31], *proof[1:]], root)
    assert (bad.value.position, bad.value.actual) == (0, 31)
    with pytest.raises(MalformedProof) as bad:
        verify_inclusion(leaf + b"\x00", 37, 100, proof, root)
    assert bad.value.position is None
    with pytest.raises(RootMismatch) as mismatch:
        verify_inclusion(leaf, 37, 100, proof, EMPTY_ROOT)
    assert (mismatch.value.expected, mismatch.value.actual) == (EMPTY_ROOT, root)


def test_consistency_structural_errors() -> None:
    store = memory_tree(100)
    r40, r100 = store.root_hash(40), store.root_hash(100)
    proof = consistency_proof(40, 100, store)
    with pytest.raises(ConsistencyProofError) as info:
        verify_consistency(40, 100, r40, r100, proof[:-1])
    assert (info.value.expected, info.value.actual) == (len(proof), len(proof) - 1)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(100, 40, r100, r40, proof)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(0, 100, EMPTY_ROOT, r100, proof)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(40, 40, r40, r40, proof)
    with pytest.raises(MalformedProof):
        verify_consistency(40, 100, r40, r100, [b"\x00" * 33, *proof[1:]])
    with pytest.raises(RootMismatch) as mismatch:
        verify_consistency(40, 100, r100, r100, proof)
    assert mismatch.value.what == "old root hash"
    # Equal sizes: empty proof and equal roots; the empty tree has the empty root.
    verify_consistency(40, 40, r40, r40, [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(RootMismatch):
        verify_consistency(40, 40, r40, r100, [])
    with pytest.raises(RootMismatch):
        verify_consistency(0, 0, r40, r40, [])


def test_proof_generation_rejects_impossible_requests() -> None:
    store = memory_tree(100)
    for leaf_index, tree_size in ((100, 100), (-1, 100), (0, 0)):
        with pytest.raises(InvalidTlogRequest):
            inclusion_proof(leaf_index, tree_size, store)
    for old_size, new_size in ((0, 10), (11, 10), (-1, 10)):
        with pytest.raises(InvalidTlogRequest):
            consistency_proof(old_size, new_size, store)
    assert consistency_proof(10, 10, store) == []
