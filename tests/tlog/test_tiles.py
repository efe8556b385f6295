"""C2SP tlog-tiles: paths, tiles from stored hashes, entry bundles and the tile-only verifier
(plc.tlog.tiles, plc.tlog.tile_format)."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plc.errors import VerificationError
from plc.tlog.errors import (
    EntryMismatch,
    InvalidTlogRequest,
    MalformedEntryBundle,
    MalformedTilePath,
    RootMismatch,
    TileError,
)
from plc.tlog.hashing import EMPTY_ROOT
from plc.tlog.proof import consistency_proof, inclusion_proof
from plc.tlog.tiles import (
    MAX_ENTRY_SIZE,
    Tile,
    TileHashReader,
    consistency_proof_from_tiles,
    decode_entry_bundle,
    encode_entry_bundle,
    entry_bundles_for_size,
    format_tile_index,
    inclusion_proof_from_tiles,
    is_tile_in_tree,
    parse_tile_path,
    root_from_tiles,
    split_tile,
    tile_hashes,
    tile_levels,
    tiles_for_size,
    verify_tiles,
)
from plc.tlog.tree import stored_hash_index

from . import reference
from .helpers import entry, leaf_hashes, memory_tree

BIG = 70_000  # > 65,536: level-0, level-1 and level-2 tiles, full and partial
SMALL = 3 * 256 + 5  # 3 full level-0 tiles, a partial of 5, a level-1 tile of width 3


@cache
def served(tree_size: int) -> dict[str, bytes]:
    """Every hash tile and entry bundle of a tree of cheap entries, by path."""
    store = memory_tree(tree_size)
    files = {t.path: tile_hashes(t, store) for t in tiles_for_size(tree_size)}
    for bundle in entry_bundles_for_size(tree_size):
        files[bundle.path] = encode_entry_bundle([entry(i) for i in bundle.leaf_range])
    return files


def _mutated(tree_size: int, path: str, byte: int) -> dict[str, bytes]:
    files = dict(served(tree_size))
    data = bytearray(files[path])
    data[byte % len(data)] ^= 0x01
    files[path] = bytes(data)
    return files


# ---- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "text"),
    [(0, "000"), (5, "005"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067")],
)
def test_format_tile_index(index: int, text: str) -> None:
    assert format_tile_index(index) == text


@pytest.mark.parametrize(
    ("path", "tile"),
    [
        ("tile/0/000", Tile(0, 0)),
        ("tile/0/005.p/7", Tile(0, 5, 7)),
        ("tile/1/x001/x234/067", Tile(1, 1234067)),
        ("tile/2/x001/x234/067.p/255", Tile(2, 1234067, 255)),
        ("tile/63/000.p/1", Tile(63, 0, 1)),
        ("tile/entries/x001/000", Tile(0, 1000, entries=True)),
        ("tile/entries/000.p/15", Tile(0, 0, 15, entries=True)),
    ],
)
def test_parse_tile_path(path: str, tile: Tile) -> None:
    assert parse_tile_path(path) == tile
    assert tile.path == path


@settings(deadline=None, max_examples=60)
@given(
    level=st.integers(min_value=0, max_value=63),
    index=st.integers(min_value=0, max_value=10**12),
    width=st.integers(min_value=1, max_value=256),
    entries=st.booleans(),
)
def test_tile_path_round_trip(level: int, index: int, width: int, entries: bool) -> None:
    tile = Tile(0 if entries else level, index, width, entries)
    assert parse_tile_path(tile.path) == tile


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/5",
        "tile/0/0005",
        "tile/00/000",
        "tile/01/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/data/000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/07",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000.p/1/",
        "tile/0/x000/005",
        "tile/0/x001",
        "tile/0/001/234",
        "tile/0/X001/234",
        "tile/0/x001/x234",
        "/tile/0/000",
        "tile/0/000/",
        "tile/entries/000.p/",
        "tile/0/\u0660\u0660\u0660",
        "tile/0/000\n",
        "",
    ],
)
def test_parse_tile_path_rejects_non_canonical(path: str) -> None:
    with pytest.raises(MalformedTilePath):
        parse_tile_path(path)


def test_tile_index_groups_are_capped() -> None:
    # The largest index of 7 groups parses; 8 groups, or the thousands of groups a hostile
    # path can hold (int() refuses over 4,300 digits with a ValueError), are malformed.
    assert parse_tile_path("tile/0/" + "x999/" * 6 + "999") == Tile(0, 10**21 - 1)
    for groups in (7, 1450):
        with pytest.raises(MalformedTilePath, match="out of range"):
            parse_tile_path("tile/0/" + "x999/" * groups + "999")


def test_invalid_tile_values() -> None:
    for level, index, width in [(64, 0, 1), (-1, 0, 1), (0, -1, 1), (0, 0, 0), (0, 0, 257)]:
        with pytest.raises(InvalidTlogRequest):
            Tile(level, index, width)
    with pytest.raises(InvalidTlogRequest):
        Tile(1, 0, entries=True)
    with pytest.raises(InvalidTlogRequest):
        format_tile_index(-1)


def test_tiles_for_size_follows_the_spec_examples() -> None:
    tiles = list(tiles_for_size(70_000))
    assert [t for t in tiles if t.level == 0 and not t.is_partial] == [
        Tile(0, i) for i in range(273)
    ]
    assert [t for t in tiles if t.is_partial or t.level > 0] == [
        Tile(0, 273, 112),
        Tile(1, 0),
        Tile(1, 1, 17),
        Tile(2, 0, 1),
    ]
    assert list(tiles_for_size(256)) == [Tile(0, 0), Tile(1, 0, 1)]
    assert list(tiles_for_size(0)) == []
    assert [tile_levels(n) for n in (0, 1, 255, 256, 65_535, 65_536)] == [0, 1, 1, 2, 2, 3]
    for call in (tiles_for_size, entry_bundles_for_size, tile_levels):
        with pytest.raises(InvalidTlogRequest):
            call(-1)
    with pytest.raises(InvalidTlogRequest):
        is_tile_in_tree(Tile(0, 0), -1)
    with pytest.raises(InvalidTlogRequest):
        verify_tiles(-1, EMPTY_ROOT, served(SMALL).__getitem__)
    with pytest.raises(InvalidTlogRequest):
        root_from_tiles(-1, served(SMALL).__getitem__)
    assert list(entry_bundles_for_size(300)) == [
        Tile(0, 0, entries=True),
        Tile(0, 1, 44, entries=True),
    ]


def test_is_tile_in_tree() -> None:
    assert is_tile_in_tree(Tile(0, 0, 5), 5)
    assert is_tile_in_tree(Tile(0, 0, 5), 300)  # an older partial tile stays determined
    assert not is_tile_in_tree(Tile(0, 0, 6), 5)
    assert not is_tile_in_tree(Tile(0, 1), 300)
    assert is_tile_in_tree(Tile(1, 0, 1), 256)
    assert not is_tile_in_tree(Tile(1, 0, 2), 511)
    assert Tile(1, 1, 17).leaf_range == range(65_536 + 0, 65_536 + 17 * 256)


# ---- tile contents from stored hashes ------------------------------------------------------


def test_tile_hashes_of_every_level() -> None:
    leaves = leaf_hashes(BIG)
    files = served(BIG)
    assert files["tile/0/000"] == b"".join(leaves[:256])
    assert files["tile/0/272"] == b"".join(leaves[272 * 256 : 273 * 256])
    assert files["tile/0/273.p/112"] == b"".join(leaves[273 * 256 :])
    level1 = split_tile(files["tile/1/000"], Tile(1, 0))
    assert level1[0] == reference.mth(leaves[:256])
    assert level1[255] == reference.mth(leaves[255 * 256 : 256 * 256])
    level1_partial = split_tile(files["tile/1/001.p/17"], Tile(1, 1, 17))
    assert level1_partial[16] == reference.mth(leaves[(256 + 16) * 256 : (256 + 17) * 256])
    (level2,) = split_tile(files["tile/2/000.p/1"], Tile(2, 0, 1))
    assert level2 == reference.mth(leaves[:65_536])
    with pytest.raises(InvalidTlogRequest):
        tile_hashes(Tile(0, 0, entries=True), memory_tree(BIG))


def test_verify_tiles_accepts_the_served_tree() -> None:
    files = served(BIG)
    root = memory_tree(BIG).root_hash()
    assert root == reference.mth(leaf_hashes(BIG))
    assert root_from_tiles(BIG, files.__getitem__) == root
    firsts: list[int] = []
    verify_tiles(BIG, root, files.__getitem__, on_entries=lambda first, e: firsts.append(first))
    assert firsts == list(range(0, BIG, 256))
    verify_tiles(0, EMPTY_ROOT, files.__getitem__)
    assert root_from_tiles(0, files.__getitem__) == EMPTY_ROOT
    with pytest.raises(RootMismatch) as info:
        verify_tiles(BIG, EMPTY_ROOT, files.__getitem__)
    assert (info.value.expected, info.value.actual) == (EMPTY_ROOT, root)


def _targets() -> list[str]:
    paths = [p for p in served(BIG) if not p.startswith("tile/entries/")]
    level0_full = [p for p in paths if p.startswith("tile/0/") and ".p/" not in p]
    return [p for p in paths if p not in level0_full] + level0_full[::34]


@pytest.mark.parametrize("path", _targets())
def test_altering_a_byte_of_a_tile_is_detected(path: str) -> None:
    files = _mutated(BIG, path, len(served(BIG)[path]) // 2)
    with pytest.raises((TileError, RootMismatch)):
        verify_tiles(BIG, memory_tree(BIG).root_hash(), files.__getitem__)


@settings(deadline=None, max_examples=12)
@given(st.data())
def test_altering_any_byte_of_any_tile_is_detected(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(sorted(served(BIG))), label="path")
    byte = data.draw(st.integers(min_value=0, max_value=8191), label="byte")
    files = _mutated(BIG, path, byte)
    with pytest.raises((TileError, RootMismatch, EntryMismatch)):
        verify_tiles(BIG, memory_tree(BIG).root_hash(), files.__getitem__, check_entries=True)


def test_every_tile_of_a_small_tree_at_several_bytes() -> None:
    root = memory_tree(SMALL).root_hash()
    for path, content in served(SMALL).items():
        entries = path.startswith("tile/entries/")
        for byte in (0, len(content) // 3, len(content) - 1):
            files = _mutated(SMALL, path, byte)
            with pytest.raises(VerificationError) as info:
                verify_tiles(SMALL, root, files.__getitem__, check_entries=entries)
            expected = (
                (EntryMismatch, MalformedEntryBundle) if entries else (TileError, RootMismatch)
            )
            assert isinstance(info.value, expected), (path, byte, info.value)


def test_wrong_length_and_missing_entries() -> None:
    files = dict(served(SMALL))
    root = memory_tree(SMALL).root_hash()
    files["tile/0/003.p/5"] = files["tile/0/003.p/5"][:-1]
    with pytest.raises(TileError) as info:
        verify_tiles(SMALL, root, files.__getitem__)
    assert (info.value.path, info.value.expected, info.value.actual) == (
        "tile/0/003.p/5",
        160,
        159,
    )
    files = dict(served(SMALL))
    files["tile/entries/001"] = encode_entry_bundle([entry(i) for i in range(256, 511)])
    with pytest.raises(MalformedEntryBundle):
        verify_tiles(SMALL, root, files.__getitem__, check_entries=True)
    with pytest.raises(KeyError):  # the fetch function's own errors propagate
        verify_tiles(SMALL + 1, root, served(SMALL).__getitem__)


# ---- proofs from tiles -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leaf_index", "tree_size"),
    [
        (0, BIG),
        (255, BIG),
        (256, BIG),
        (65_535, BIG),
        (65_536, BIG),
        (BIG - 1, BIG),
        (1234, 65_536),
    ],
)
def test_inclusion_proof_from_tiles(leaf_index: int, tree_size: int) -> None:
    files = served(BIG)
    expected = inclusion_proof(leaf_index, tree_size, memory_tree(BIG))
    assert inclusion_proof_from_tiles(leaf_index, tree_size, files.__getitem__) == expected


def test_consistency_proof_from_tiles() -> None:
    files = served(BIG)
    for old_size in (1, 255, 256, 257, 65_535, 65_536, 69_999):
        expected = consistency_proof(old_size, BIG, memory_tree(BIG))
        assert consistency_proof_from_tiles(old_size, BIG, files.__getitem__) == expected


def test_tile_reader_refuses_hashes_beyond_the_tree() -> None:
    reader = TileHashReader(SMALL, served(SMALL).__getitem__)
    subtree = reference.mth(leaf_hashes(SMALL)[512:768])
    assert reader.read_hashes([stored_hash_index(8, 2)]) == [subtree]
    with pytest.raises(InvalidTlogRequest):
        reader.read_hashes([stored_hash_index(0, SMALL)])  # leaf SMALL is not in the tree
    with pytest.raises(InvalidTlogRequest):
        reader.read_hashes([stored_hash_index(3, 96)])  # leaves 768..775: incomplete
    with pytest.raises(InvalidTlogRequest):
        reader.tile(0, 4)


# ---- entry bundles ---------------------------------------------------------------------------


def test_entry_bundle_round_trip_and_errors() -> None:
    entries = [b"", b"a", b"\x00" * 300, b"x" * MAX_ENTRY_SIZE]
    data = encode_entry_bundle(entries)
    assert data[:2] == b"\x00\x00" and data[2:5] == b"\x00\x01a"
    assert decode_entry_bundle(data) == entries
    assert decode_entry_bundle(data, width=4) == entries
    with pytest.raises(MalformedEntryBundle) as info:
        decode_entry_bundle(data, width=5)
    assert (info.value.expected, info.value.actual) == (5, 4)
    with pytest.raises(MalformedEntryBundle):
        decode_entry_bundle(data[:-1])
    with pytest.raises(MalformedEntryBundle):
        decode_entry_bundle(b"\x00")
    with pytest.raises(InvalidTlogRequest):
        encode_entry_bundle([b"x" * (MAX_ENTRY_SIZE + 1)])
    with pytest.raises(InvalidTlogRequest):
        encode_entry_bundle([b""] * 257)
    assert decode_entry_bundle(b"") == []
