"""The signed 15-entry Tessera test log (../shared/vectors/tessera/testdata/log) verifies with
our note, checkpoint, tile and proof code."""

from __future__ import annotations

from pathlib import Path

import pytest

from plc.tlog.checkpoint import open_checkpoint
from plc.tlog.hashing import EMPTY_ROOT, leaf_hash
from plc.tlog.note import open_note, parse_verifier_key
from plc.tlog.proof import verify_consistency, verify_inclusion
from plc.tlog.tiles import (
    Tile,
    consistency_proof_from_tiles,
    decode_entry_bundle,
    inclusion_proof_from_tiles,
    parse_tile_path,
    root_from_tiles,
    tiles_for_size,
    verify_tiles,
)

from . import reference
from .helpers import TESSERA_LOG

# Public half of the key in Tessera's testdata/build_log.sh (see ../shared/vectors/README.md).
VKEY = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx"
ORIGIN = "example.com/log/testdata"
SIZES = range(16)


def fetch(path: str) -> bytes:
    return (TESSERA_LOG / path).read_bytes()


def _checkpoint_path(tree_size: int) -> Path:
    return TESSERA_LOG / f"checkpoint.{tree_size}"


def test_log_is_present() -> None:
    assert all(_checkpoint_path(n).is_file() for n in SIZES)


@pytest.mark.parametrize("tree_size", SIZES)
def test_checkpoint_opens_and_root_matches_entries_and_tiles(tree_size: int) -> None:
    verifier = parse_verifier_key(VKEY)
    note_text = _checkpoint_path(tree_size).read_text("utf-8")
    note = open_note(note_text, verifier)
    assert [(s.name, s.key_id) for s in note.signatures] == [(ORIGIN, 0x33D7B496)]
    checkpoint = open_checkpoint(note_text, verifier, origin=ORIGIN)
    assert checkpoint.tree_size == tree_size
    if tree_size == 0:
        assert checkpoint.root_hash == EMPTY_ROOT
    else:
        bundle = Tile(0, 0, tree_size, entries=True)
        entries = decode_entry_bundle(fetch(bundle.path), width=tree_size)
        assert reference.mth([leaf_hash(e) for e in entries]) == checkpoint.root_hash
    assert root_from_tiles(tree_size, fetch) == checkpoint.root_hash
    seen: list[bytes] = []
    verify_tiles(
        tree_size,
        checkpoint.root_hash,
        fetch,
        on_entries=lambda first, entries: seen.extend(entries),
    )
    assert len(seen) == tree_size
    assert [t.path for t in tiles_for_size(tree_size)] == (
        [f"tile/0/000.p/{tree_size}"] if tree_size else []
    )


def test_latest_checkpoint_is_size_15() -> None:
    assert (TESSERA_LOG / "checkpoint").read_bytes() == _checkpoint_path(15).read_bytes()


def test_entries_are_the_build_script_words() -> None:
    entries = decode_entry_bundle(fetch("tile/entries/000.p/15"), width=15)
    assert entries[:3] == [b"one", b"two", b"three"]
    assert entries[-1] == b"fivten"


def test_every_tile_path_parses_canonically() -> None:
    paths = [
        p.relative_to(TESSERA_LOG).as_posix()
        for p in (TESSERA_LOG / "tile").rglob("*")
        if p.is_file()
    ]
    assert len(paths) == 30
    for path in paths:
        assert parse_tile_path(path).path == path


def test_proofs_from_tiles_verify_against_checkpoints() -> None:
    verifier = parse_verifier_key(VKEY)
    roots = [
        open_checkpoint(_checkpoint_path(n).read_text("utf-8"), verifier).root_hash for n in SIZES
    ]
    entries = decode_entry_bundle(fetch("tile/entries/000.p/15"), width=15)
    for new_size in range(1, 16):
        for leaf_index in range(new_size):
            proof = inclusion_proof_from_tiles(leaf_index, new_size, fetch)
            verify_inclusion(
                leaf_hash(entries[leaf_index]), leaf_index, new_size, proof, roots[new_size]
            )
        for old_size in range(1, new_size + 1):
            proof = consistency_proof_from_tiles(old_size, new_size, fetch)
            verify_consistency(old_size, new_size, roots[old_size], roots[new_size], proof)
