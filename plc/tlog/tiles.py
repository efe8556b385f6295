"""C2SP tlog-tiles (c2sp.org/tlog-tiles): serving tiles from stored hashes, and checking
fetched tiles with nothing but a fetch function.

The formats (:class:`Tile`, paths, entry bundles) live in :mod:`plc.tlog.tile_format` and are
re-exported here, so ``from plc.tlog.tiles import ...`` covers the whole tiles API.

Server side: :func:`tile_hashes` reads one tile with one ``read_hashes`` call.

Client side (auditor): everything needs only ``fetch(path) -> bytes``, where ``path`` is a
tile path such as ``tile/0/x001/067.p/9``; the caller adds its URL prefix or directory,
decompresses, and lets its own errors (404, I/O) propagate. Nothing fetched is trusted: a
root computed from tiles means something only once it is compared with the root of a verified
checkpoint (:func:`verify_tiles` does that; proofs computed from tiles are checked with
:func:`plc.tlog.proof.verify_inclusion` / ``verify_consistency`` against such roots).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from plc.tlog.errors import EntryMismatch, InvalidTlogRequest, RootMismatch, TileError
from plc.tlog.hashing import EMPTY_ROOT, leaf_hash, node_hash
from plc.tlog.proof import consistency_proof, inclusion_proof
from plc.tlog.tile_format import (
    MAX_ENTRY_SIZE,
    MAX_TILE_LEVEL,
    TILE_HEIGHT,
    TILE_WIDTH,
    Tile,
    decode_entry_bundle,
    encode_entry_bundle,
    entry_bundles_for_size,
    format_tile_index,
    is_tile_in_tree,
    parse_tile_path,
    perfect_subtree_hash,
    split_tile,
    tile_levels,
    tiles_for_size,
)
from plc.tlog.tree import (
    HashReader,
    read_hashes_checked,
    split_stored_hash_index,
    stored_hash_index,
    validate_tree_size,
)

__all__ = [
    "MAX_ENTRY_SIZE",
    "MAX_TILE_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Fetch",
    "Tile",
    "TileHashReader",
    "consistency_proof_from_tiles",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "entry_bundles_for_size",
    "format_tile_index",
    "inclusion_proof_from_tiles",
    "is_tile_in_tree",
    "parse_tile_path",
    "perfect_subtree_hash",
    "root_from_tiles",
    "split_tile",
    "tile_hashes",
    "tile_levels",
    "tiles_for_size",
    "verify_tiles",
]

Fetch = Callable[[str], bytes]
"""``fetch(tile_path) -> bytes``: returns the (decompressed) content at a tile path."""


def tile_hashes(tile: Tile, reader: HashReader) -> bytes:
    """Return a hash tile's content from stored hashes: ``width`` 32-byte hashes, concatenated.

    Makes one ``read_hashes`` call: the stored hashes of nodes ``(8 * L, N * 256 + i)`` for
    ``i < width``. Check :func:`is_tile_in_tree` first; ``reader`` must hold them.

    Raises:
        InvalidTlogRequest: ``tile`` is an entry bundle.
        HashReaderError: ``reader`` broke its contract.
    """
    if tile.entries:
        raise InvalidTlogRequest("an entry bundle has no stored hashes")
    level = TILE_HEIGHT * tile.level
    first = tile.index * TILE_WIDTH
    indexes = [stored_hash_index(level, first + i) for i in range(tile.width)]
    return b"".join(read_hashes_checked(reader, indexes))


def _tile_at(level: int, index: int, tree_size: int) -> Tile:
    """The tile ``(level, index)`` as it exists in a tree of ``tree_size`` (full or partial)."""
    full, partial = divmod(tree_size >> (TILE_HEIGHT * level), TILE_WIDTH)
    if index < full:
        return Tile(level, index)
    if index == full and partial:
        return Tile(level, index, partial)
    raise InvalidTlogRequest(f"tile {level}/{index} is not in a tree of {tree_size} leaves")


class TileHashReader:
    """A :class:`~plc.tlog.tree.HashReader` over the tiles of a tree of ``tree_size`` leaves.

    Stored hash ``(level, n)`` with ``level = 8 * L + r`` is computed from level-``L`` tile
    hashes ``n * 2**r .. (n + 1) * 2**r - 1``. Each tile is fetched at most once (cached).
    Use it with :func:`~plc.tlog.proof.inclusion_proof`, ``consistency_proof`` or
    ``root_hash`` for sizes up to ``tree_size``.

    Raises (from ``read_hashes``):
        InvalidTlogRequest: a hash of a subtree not complete at ``tree_size``.
        TileError: a fetched tile of the wrong length.
    """

    def __init__(self, tree_size: int, fetch: Fetch) -> None:
        validate_tree_size(tree_size)
        self.tree_size = tree_size
        self._fetch = fetch
        self._tiles: dict[Tile, list[bytes]] = {}

    def tile(self, level: int, index: int) -> list[bytes]:
        """Return the hashes of tile ``(level, index)`` at this tree size (fetched once)."""
        tile = _tile_at(level, index, self.tree_size)
        hashes = self._tiles.get(tile)
        if hashes is None:
            hashes = split_tile(self._fetch(tile.path), tile)
            self._tiles[tile] = hashes
        return hashes

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """Return the stored hashes at ``indexes``, computed from tiles."""
        out = []
        for index in indexes:
            level, n = split_stored_hash_index(index)
            if (n + 1) << level > self.tree_size:
                raise InvalidTlogRequest(
                    f"stored hash {index} is not in a tree of {self.tree_size} leaves"
                )
            tile_level, r = divmod(level, TILE_HEIGHT)
            first = n << r  # position of the first covered hash at tree level 8 * tile_level
            hashes = self.tile(tile_level, first // TILE_WIDTH)
            offset = first % TILE_WIDTH
            out.append(perfect_subtree_hash(hashes[offset : offset + (1 << r)]))
        return out


def _partial_subtrees(hashes: Sequence[bytes]) -> list[bytes]:
    """Hashes of the complete subtrees a partial tile's hashes form, left to right."""
    parts = []
    offset = 0
    for r in range(TILE_HEIGHT - 1, -1, -1):
        if len(hashes) >> r & 1:
            parts.append(perfect_subtree_hash(hashes[offset : offset + (1 << r)]))
            offset += 1 << r
    return parts


def _fold(parts: Sequence[bytes]) -> bytes:
    """Right fold with node_hash: the root of consecutive complete subtrees, largest first."""
    h = parts[-1]
    for left in reversed(parts[:-1]):
        h = node_hash(left, h)
    return h


def root_from_tiles(tree_size: int, fetch: Fetch) -> bytes:
    """Compute the root hash of a tree of ``tree_size`` leaves from its partial tiles.

    The tree is the sequence of complete subtrees given by the 1 bits of ``tree_size``;
    those of heights ``8 * L .. 8 * L + 7`` are made of the hashes in the partial tile of
    level ``L``, so one fetch per level with a partial tile suffices (none for size 0). The
    result is untrusted until compared with a verified checkpoint's root.

    Raises:
        InvalidTlogRequest: negative ``tree_size``.
        TileError: a fetched tile of the wrong length.
    """
    levels = tile_levels(tree_size)
    if levels == 0:
        return EMPTY_ROOT
    parts: list[bytes] = []
    for level in range(levels - 1, -1, -1):
        full, partial = divmod(tree_size >> (TILE_HEIGHT * level), TILE_WIDTH)
        if partial:
            tile = Tile(level, full, partial)
            parts += _partial_subtrees(split_tile(fetch(tile.path), tile))
    return _fold(parts)


def _check_entry_bundle(tile: Tile, hashes: Sequence[bytes], fetch: Fetch) -> list[bytes]:
    bundle = Tile(0, tile.index, tile.width, entries=True)
    entries = decode_entry_bundle(fetch(bundle.path), width=tile.width, path=bundle.path)
    first = tile.index * TILE_WIDTH
    for i, (entry, expected) in enumerate(zip(entries, hashes, strict=True)):
        actual = leaf_hash(entry)
        if actual != expected:
            raise EntryMismatch(
                field="leaf hash", expected=expected, actual=actual, leaf_index=first + i
            )
    return entries


def verify_tiles(
    tree_size: int,
    root_hash: bytes,
    fetch: Fetch,
    *,
    check_entries: bool = False,
    on_entries: Callable[[int, list[bytes]], None] | None = None,
) -> None:
    """Check every tile of a tree against its (verified) root hash, fsck-style.

    1. Fetch every hash tile, level 0 first; check each is ``32 * width`` bytes.
    2. Check every hash of a level ``L >= 1`` tile equals the hash of the full level
       ``L - 1`` tile below it (recomputed), so every tile is bound to level 0.
    3. Recompute the root from the partial tiles and compare it with ``root_hash``.
    4. If ``check_entries`` (or ``on_entries``): fetch each entry bundle and check that its
       entries' leaf hashes are the level-0 tile's hashes; ``on_entries(first_leaf_index,
       entries)`` then receives each verified bundle, in order.

    Args:
        tree_size: size from a verified checkpoint.
        root_hash: root hash from the same checkpoint.
        fetch: ``fetch(path) -> bytes`` for tile paths.

    Raises:
        InvalidTlogRequest: negative ``tree_size``.
        TileError: a tile of the wrong length or differing from the level below.
        MalformedEntryBundle: an entry bundle that does not decode or has the wrong count.
        EntryMismatch: an entry whose leaf hash is not the level-0 tile's hash.
        RootMismatch: the root recomputed from the tiles is not ``root_hash``.
    """
    check_entries = check_entries or on_entries is not None
    below: list[bytes] | None = None  # level 8L hashes recomputed from the full tiles below
    parts_by_level: list[list[bytes]] = []
    for level in range(tile_levels(tree_size)):
        full, partial = divmod(tree_size >> (TILE_HEIGHT * level), TILE_WIDTH)
        recomputed: list[bytes] = []
        parts: list[bytes] = []
        for index in range(full + (1 if partial else 0)):
            tile = Tile(level, index, TILE_WIDTH if index < full else partial)
            hashes = split_tile(fetch(tile.path), tile)  # 1.
            if below is not None:  # 2.
                first = index * TILE_WIDTH
                for i, h in enumerate(hashes):
                    if h != below[first + i]:
                        source = Tile(level - 1, first + i).path
                        raise TileError(
                            f"tile {tile.path} hash {i} is not the hash of tile {source}",
                            path=tile.path,
                            expected=below[first + i],
                            actual=h,
                        )
            if level == 0 and check_entries:  # 4.
                entries = _check_entry_bundle(tile, hashes, fetch)
                if on_entries is not None:
                    on_entries(index * TILE_WIDTH, entries)
            if tile.is_partial:
                parts = _partial_subtrees(hashes)
            else:
                recomputed.append(perfect_subtree_hash(hashes))
        parts_by_level.append(parts)
        below = recomputed
    # 3. Complete subtrees from the highest level down are the tree, left to right.
    all_parts = [h for parts in reversed(parts_by_level) for h in parts]
    calculated = _fold(all_parts) if all_parts else EMPTY_ROOT
    if calculated != root_hash:
        raise RootMismatch(root_hash, calculated)


def inclusion_proof_from_tiles(leaf_index: int, tree_size: int, fetch: Fetch) -> list[bytes]:
    """Compute an inclusion proof (RFC 6962 §2.1.1) from the tiles of a tree of ``tree_size``.

    Verify it with :func:`plc.tlog.proof.verify_inclusion` against a checkpoint root.

    Raises:
        InvalidTlogRequest: ``leaf_index`` not in ``[0, tree_size)``.
        TileError: a fetched tile of the wrong length.
    """
    return inclusion_proof(leaf_index, tree_size, TileHashReader(tree_size, fetch))


def consistency_proof_from_tiles(old_size: int, new_size: int, fetch: Fetch) -> list[bytes]:
    """Compute a consistency proof (RFC 6962 §2.1.2) from the tiles of a tree of ``new_size``.

    Raises:
        InvalidTlogRequest: ``old_size`` 0 or larger than ``new_size``.
        TileError: a fetched tile of the wrong length.
    """
    return consistency_proof(old_size, new_size, TileHashReader(new_size, fetch))
