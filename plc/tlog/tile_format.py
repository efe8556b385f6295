"""C2SP tlog-tiles (c2sp.org/tlog-tiles): tile paths, tile contents and entry bundles.

A tile has height 8: the tile ``(L, N)`` holds up to 256 consecutive hashes of tree level
``8 * L``, those at positions ``N * 256 .. N * 256 + W - 1``, i.e. the Merkle tree hashes of
``D[(N * 256 + i) * 256**L : (N * 256 + i + 1) * 256**L]``. A full tile has 256 hashes
(8,192 bytes); the rightmost tile of a level is partial, ``W = floor(tree_size / 256**L) mod
256`` hashes wide, and only exists if ``W > 0``. Paths::

    tile/<L>/<N>[.p/<W>]          hash tile, L in 0..63, W in 1..255 (partial tiles only)
    tile/entries/<N>[.p/<W>]      entry bundle: the leaves behind level-0 tile N

``N`` is written as 3-digit groups, all but the last prefixed with ``x``: 1234067 ->
``x001/x234/067``. An entry bundle is the entries, each prefixed by its length as a big-endian
uint16. In this tlog the entries are the export lines (leaf ``i`` = ``seq`` ``i + 1``).

This module holds the formats only (values, paths, byte layouts); :mod:`plc.tlog.tiles`
reads tiles from stored hashes and verifies fetched ones, and re-exports everything here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

from plc.tlog.errors import InvalidTlogRequest, MalformedEntryBundle, MalformedTilePath, TileError
from plc.tlog.hashing import HASH_SIZE, node_hash
from plc.tlog.tree import validate_tree_size

__all__ = [
    "MAX_ENTRY_SIZE",
    "MAX_TILE_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "entry_bundles_for_size",
    "format_tile_index",
    "is_tile_in_tree",
    "parse_tile_path",
    "perfect_subtree_hash",
    "split_tile",
    "tile_levels",
    "tiles_for_size",
]

TILE_HEIGHT = 8
"""Levels of the Merkle tree covered by one tile (C2SP tlog-tiles fixes it to 8)."""

TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes in a full tile (256), and entries in a full entry bundle."""

MAX_TILE_LEVEL = 63
"""Highest tile level allowed in a path."""

MAX_INDEX_GROUPS = 7
"""Most 3-digit groups in a tile index (indexes below 10**21). A log of 2**64 leaves has
level-0 tiles up to 2**56 (17 digits, 6 groups), so no real tile is refused; the cap keeps
a path of thousands of groups from reaching ``int()`` (which refuses over 4,300 digits)."""

MAX_ENTRY_SIZE = 0xFFFF
"""Longest entry an entry bundle can hold (its length prefix is a uint16), in bytes."""

_TILE_PATH = re.compile(
    r"tile/(?P<level>entries|0|[1-9][0-9]?)/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


@dataclass(frozen=True)
class Tile:
    """A hash tile or an entry bundle.

    Attributes:
        level: tile level ``L`` (0..63): the tile holds hashes of tree level ``8 * L``.
            Always 0 for an entry bundle.
        index: ``N``, the tile's position within its level (>= 0).
        width: number of hashes (or entries), 1..256; 256 is a full tile.
        entries: ``True`` for the entry bundle ``tile/entries/<N>``.

    Raises:
        InvalidTlogRequest: a field out of range.
    """

    level: int
    index: int
    width: int = TILE_WIDTH
    entries: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_TILE_LEVEL or (self.entries and self.level != 0):
            raise InvalidTlogRequest(f"invalid tile level {self.level}")
        if self.index < 0 or not 1 <= self.width <= TILE_WIDTH:
            raise InvalidTlogRequest(f"invalid tile index {self.index} or width {self.width}")

    @property
    def is_partial(self) -> bool:
        """Whether the tile has fewer than 256 hashes."""
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        """The canonical path, e.g. ``tile/0/x001/x234/067.p/8`` (no prefix, no leading /)."""
        level = "entries" if self.entries else str(self.level)
        suffix = f".p/{self.width}" if self.is_partial else ""
        return f"tile/{level}/{format_tile_index(self.index)}{suffix}"

    @property
    def leaf_range(self) -> range:
        """The leaf indexes the tile's hashes (or entries) cover: ``D[start:end]``."""
        span = TILE_WIDTH**self.level
        start = self.index * TILE_WIDTH * span
        return range(start, start + self.width * span)


def format_tile_index(index: int) -> str:
    """Return ``index`` as 3-digit path groups, all but the last prefixed with ``x``.

    ``0 -> "000"``, ``5 -> "005"``, ``1234067 -> "x001/x234/067"``.

    Raises:
        InvalidTlogRequest: ``index`` < 0.
    """
    if index < 0:
        raise InvalidTlogRequest(f"invalid tile index {index}")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def parse_tile_path(path: str) -> Tile:
    """Parse a canonical tile path (``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``).

    The path has no URL prefix and no leading slash.

    Raises:
        MalformedTilePath: anything but the exact canonical form: leading zeros in ``L`` or
            ``W``, a ``W`` outside 1..255, ``L`` above 63, an index group that is not 3
            digits, a missing or extra ``x``, a leading ``x000/`` group, trailing text; an
            index of more than :data:`MAX_INDEX_GROUPS` groups.
    """
    m = _TILE_PATH.fullmatch(path)
    if m is None:
        raise MalformedTilePath("malformed tile path", path=path)
    level_text, index_text, width_text = m.group("level", "index", "width")
    if index_text.count("/") >= MAX_INDEX_GROUPS:
        raise MalformedTilePath("tile index out of range", path=path)
    entries = level_text == "entries"
    level = 0 if entries else int(level_text)
    width = TILE_WIDTH if width_text is None else int(width_text)
    if level > MAX_TILE_LEVEL or (width_text is not None and width >= TILE_WIDTH):
        raise MalformedTilePath("tile level or width out of range", path=path)
    index = int(index_text.replace("x", "").replace("/", ""))
    tile = Tile(level, index, width, entries)
    if tile.path != path:  # e.g. "x000/005" for 5
        raise MalformedTilePath("non-canonical tile index", path=path)
    return tile


def _level_tiles(level: int, tree_size: int, entries: bool) -> Iterator[Tile]:
    full, partial = divmod(tree_size >> (TILE_HEIGHT * level), TILE_WIDTH)
    for index in range(full):
        yield Tile(level, index, TILE_WIDTH, entries)
    if partial:
        yield Tile(level, full, partial, entries)


def tile_levels(tree_size: int) -> int:
    """Return how many tile levels a tree of ``tree_size`` leaves has (0 for the empty tree).

    Raises:
        InvalidTlogRequest: negative ``tree_size``.
    """
    validate_tree_size(tree_size)
    return (tree_size.bit_length() + TILE_HEIGHT - 1) // TILE_HEIGHT


def tiles_for_size(tree_size: int) -> Iterator[Tile]:
    """Return an iterator over every hash tile of a tree of ``tree_size`` leaves, by level,
    then index.

    E.g. 70,000 leaves: 273 full level-0 tiles, a level-0 tile of width 112, a full level-1
    tile, a level-1 tile of width 17 and a level-2 tile of width 1 (C2SP tlog-tiles).

    Raises:
        InvalidTlogRequest: negative ``tree_size`` (at the call, not on iteration).
    """
    levels = tile_levels(tree_size)
    return chain.from_iterable(_level_tiles(lv, tree_size, False) for lv in range(levels))


def entry_bundles_for_size(tree_size: int) -> Iterator[Tile]:
    """Return an iterator over every entry bundle of a tree of ``tree_size`` leaves.

    Raises:
        InvalidTlogRequest: negative ``tree_size``.
    """
    validate_tree_size(tree_size)
    return _level_tiles(0, tree_size, entries=True)


def is_tile_in_tree(tile: Tile, tree_size: int) -> bool:
    """Whether a tree of ``tree_size`` leaves determines ``tile`` (so it may be served).

    A partial tile of width ``W`` is determined by every tree at least as large as the one
    that first made it the rightmost tile, so it stays servable after the tree grows.

    Raises:
        InvalidTlogRequest: negative ``tree_size``.
    """
    validate_tree_size(tree_size)
    available = tree_size >> (TILE_HEIGHT * tile.level)
    return tile.index * TILE_WIDTH + tile.width <= available


def split_tile(data: bytes, tile: Tile) -> list[bytes]:
    """Split fetched tile content into its 32-byte hashes.

    Raises:
        TileError: ``data`` is not exactly ``32 * tile.width`` bytes (``expected``/``actual``
            are byte lengths).
    """
    if len(data) != HASH_SIZE * tile.width:
        raise TileError(
            f"tile {tile.path} is {len(data)} bytes, expected {HASH_SIZE * tile.width}",
            path=tile.path,
            expected=HASH_SIZE * tile.width,
            actual=len(data),
        )
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def perfect_subtree_hash(hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash over ``hashes`` (a power-of-two count of same-level
    node hashes), by hashing pairs level by level (RFC 6962 §2.1 on a complete subtree)."""
    level = list(hashes)
    if not level or len(level) & (len(level) - 1):
        raise InvalidTlogRequest(f"not a complete subtree: {len(level)} hashes")
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Return an entry bundle: each entry prefixed with its big-endian uint16 length.

    Raises:
        InvalidTlogRequest: an entry longer than :data:`MAX_ENTRY_SIZE` bytes, or more than
            256 entries.
    """
    if len(entries) > TILE_WIDTH:
        raise InvalidTlogRequest(f"an entry bundle holds at most {TILE_WIDTH} entries")
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_SIZE:
            raise InvalidTlogRequest(f"entry of {len(entry)} bytes does not fit a bundle")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def decode_entry_bundle(data: bytes, *, width: int | None = None, path: str = "") -> list[bytes]:
    """Split an entry bundle into its entries.

    Args:
        data: the bundle bytes (already decompressed).
        width: if given, the number of entries the bundle must hold.
        path: the bundle's path, for error messages.

    Raises:
        MalformedEntryBundle: a truncated length prefix or entry, or the wrong number of
            entries (``expected``/``actual`` = counts).
    """
    entries = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise MalformedEntryBundle("entry bundle ends inside a length prefix", path=path)
        size = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + size > len(data):
            raise MalformedEntryBundle(
                "entry bundle ends inside an entry",
                path=path,
                expected=size,
                actual=len(data) - pos,
            )
        entries.append(data[pos : pos + size])
        pos += size
    if width is not None and len(entries) != width:
        raise MalformedEntryBundle(
            f"entry bundle has {len(entries)} entries, expected {width}",
            path=path,
            expected=width,
            actual=len(entries),
        )
    return entries
