"""The RFC 6962 tree of the entries the auditor read, kept in its state file.

Leaf ``i`` is the ``i``-th line read (for an honest directory: the line with ``seq = i + 1``,
design.md decision 5). The tree math is the core's (:mod:`plc.tlog.tree`, stored-hash layout
of golang.org/x/mod/sumdb/tlog); this module only stores the hashes: the stored hashes written
while appending leaves ``256 k .. 256 k + 255`` are concatenated into one ``tree_chunk`` row
``k`` (about 16 KiB), so the state grows by ~64 bytes per op and memory stays flat (a small
LRU of chunks plus the chunks changed since the last flush).

With every stored hash on disk, the root at any size already read, the leaf hash of any
entry, and inclusion / consistency proofs over the entries can be computed locally
(:func:`plc.tlog.tree.root_hash`, :func:`plc.tlog.proof.consistency_proof`).

The state keeps leaf hashes, not lines: evidence that needs a line read earlier fetches it
again, and :func:`verified_line` keeps it only if it hashes to the committed leaf of its
``seq`` — a directory cannot put other bytes into evidence against itself.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from plc.tlog.hashing import HASH_SIZE, leaf_hash
from plc.tlog.tree import (
    append_leaves,
    root_hash,
    split_stored_hash_index,
    stored_hash_count,
    stored_hash_index,
)

CHUNK_LEAVES = 256
"""Leaves per ``tree_chunk`` row."""

_CACHE_CHUNKS = 64


def _chunk_base(chunk: int) -> int:
    """Stored hash index of the first hash of ``chunk``."""
    return stored_hash_count(chunk * CHUNK_LEAVES)


class TreeStore:
    """A :class:`plc.tlog.tree.HashReader` over the state file's ``tree_chunk`` rows.

    Args:
        conn: the state connection.
        tree_size: the number of leaves the state vouches for (``meta.tree_size``); rows
            written beyond it by an interrupted run are dropped.
        readonly: never write (another auditor's state, read by ``compare``).
    """

    def __init__(self, conn: sqlite3.Connection, tree_size: int, *, readonly: bool = False) -> None:
        self._conn = conn
        self.tree_size = tree_size
        self._cache: OrderedDict[int, list[bytes]] = OrderedDict()
        self._dirty: dict[int, list[bytes]] = {}
        last = tree_size // CHUNK_LEAVES
        if not readonly:
            conn.execute("DELETE FROM tree_chunk WHERE chunk > ?", (last,))
        keep = stored_hash_count(tree_size) - _chunk_base(last)
        hashes = self._chunk(last)
        if len(hashes) != keep:
            if len(hashes) < keep:
                raise sqlite3.DatabaseError(
                    f"state tree is short: chunk {last} has {len(hashes)} hashes, need {keep}"
                )
            self._dirty[last] = hashes[:keep]
            self._cache.pop(last, None)

    def _chunk(self, chunk: int) -> list[bytes]:
        dirty = self._dirty.get(chunk)
        if dirty is not None:
            return dirty
        cached = self._cache.get(chunk)
        if cached is not None:
            self._cache.move_to_end(chunk)
            return cached
        row = self._conn.execute(
            "SELECT hashes FROM tree_chunk WHERE chunk = ?", (chunk,)
        ).fetchone()
        blob = bytes(row[0]) if row is not None else b""
        hashes = [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]
        self._cache[chunk] = hashes
        if len(self._cache) > _CACHE_CHUNKS:
            self._cache.popitem(last=False)
        return hashes

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """Return the stored hashes at ``indexes`` (the HashReader contract).

        Raises:
            IndexError: an index not stored (beyond the tree).
        """
        out = []
        for index in indexes:
            level, n = split_stored_hash_index(index)
            leaf = ((n + 1) << level) - 1
            chunk = leaf // CHUNK_LEAVES
            out.append(self._chunk(chunk)[index - _chunk_base(chunk)])
        return out

    def append(self, leaf_hashes: Sequence[bytes]) -> None:
        """Append leaves (32-byte leaf hashes) to the tree (kept in memory until
        :meth:`flush`)."""
        if not leaf_hashes:
            return
        new = append_leaves(self.tree_size, leaf_hashes, self)
        pos = 0
        for leaf in range(self.tree_size, self.tree_size + len(leaf_hashes)):
            count = 1 + ((leaf ^ (leaf + 1)).bit_length() - 1)  # 1 + trailing ones
            chunk = leaf // CHUNK_LEAVES
            target = self._dirty.get(chunk)
            if target is None:
                target = self._dirty[chunk] = list(self._chunk(chunk))
                self._cache.pop(chunk, None)
            target.extend(new[pos : pos + count])
            pos += count
        self.tree_size += len(leaf_hashes)

    def flush(self) -> None:
        """Write the changed chunks (inside the caller's transaction); they stay changed
        until :meth:`committed` (a rolled-back transaction leaves them to the next flush)."""
        if not self._dirty:
            return
        self._conn.executemany(
            "INSERT OR REPLACE INTO tree_chunk (chunk, hashes) VALUES (?, ?)",
            [(chunk, b"".join(hashes)) for chunk, hashes in self._dirty.items()],
        )

    def committed(self) -> None:
        """Mark the chunks written by the last :meth:`flush` as stored (call after COMMIT)."""
        for chunk, hashes in self._dirty.items():
            self._cache[chunk] = hashes
        self._dirty.clear()
        while len(self._cache) > _CACHE_CHUNKS:
            self._cache.popitem(last=False)

    def root(self, tree_size: int | None = None) -> bytes:
        """The RFC 6962 root hash of the first ``tree_size`` leaves (default: all)."""
        size = self.tree_size if tree_size is None else tree_size
        if size > self.tree_size:
            raise IndexError(f"tree size {size} is beyond the {self.tree_size} leaves read")
        return root_hash(size, self)

    def leaf_hash(self, leaf_index: int) -> bytes:
        """The stored leaf hash of leaf ``leaf_index``."""
        if not 0 <= leaf_index < self.tree_size:
            raise IndexError(f"leaf {leaf_index} is not in a tree of {self.tree_size}")
        return self.read_hashes([stored_hash_index(0, leaf_index)])[0]


class LineSource(Protocol):
    """Fetches one line again (:class:`auditor.sources.LineFetcher`)."""

    def line(self, seq: int, position: int | None) -> bytes | None:
        """The line of ``seq`` (at byte ``position`` of a file) as served now, or None."""
        ...


def leaves_of_seq(conn: sqlite3.Connection, seq: int) -> list[int]:
    """Leaf indexes of the lines read with ``seq`` (one, or more for a repeated ``seq``).

    Inverse of ``auditor.state.seq_of_leaf``: leaf ``i`` has ``seq`` ``i + 1`` until the
    first row of ``leaf_seq``; a row ``(leaf b, seq s)`` starts a run where leaf ``b + k`` has
    ``seq`` ``s + k`` until the next row.
    """
    rows = conn.execute(
        "SELECT leaf + (? - seq) FROM (SELECT leaf, seq, LEAD(leaf) OVER (ORDER BY leaf) "
        "AS next FROM leaf_seq) WHERE seq <= ? AND (next IS NULL OR leaf + (? - seq) < next)",
        (seq, seq, seq),
    ).fetchall()
    leaves = [int(r[0]) for r in rows]
    first = conn.execute("SELECT MIN(leaf) FROM leaf_seq").fetchone()[0]
    if seq >= 1 and (first is None or seq - 1 < int(first)):
        leaves.insert(0, seq - 1)
    return leaves


def stored_leaf_hash(conn: sqlite3.Connection, leaf: int, tree_size: int) -> bytes | None:
    """The committed leaf hash of ``leaf`` from its ``tree_chunk`` row, or None when ``leaf``
    is not below ``tree_size`` (the size the state vouches for) or not stored."""
    if not 0 <= leaf < tree_size:
        return None
    chunk = leaf // CHUNK_LEAVES
    row = conn.execute("SELECT hashes FROM tree_chunk WHERE chunk = ?", (chunk,)).fetchone()
    if row is None:
        return None
    at = (stored_hash_index(0, leaf) - _chunk_base(chunk)) * HASH_SIZE
    found = bytes(row[0])[at : at + HASH_SIZE]
    return found if len(found) == HASH_SIZE else None


def check_line(conn: sqlite3.Connection, seq: int, line: bytes) -> bool | None:
    """Is ``line`` what was read as ``seq``? True: its leaf hash is the committed leaf of a
    line read with ``seq``; False: such leaves are committed and ``line`` is none of them;
    None: no leaf with ``seq`` is committed yet (read in a batch still in flight).

    Reads in one transaction when the connection is not in one (a consistent snapshot of
    ``meta.tree_size``, ``leaf_seq`` and ``tree_chunk``, which the coordinator commits
    together).
    """
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'tree_size'").fetchone()
        tree_size = int(row[0]) if row is not None else 0
        wanted = leaf_hash(line)
        known: bool | None = None
        for leaf in leaves_of_seq(conn, seq):
            stored = stored_leaf_hash(conn, leaf, tree_size)
            if stored is not None:
                if stored == wanted:
                    return True
                known = False
        return known
    finally:
        if own:
            conn.execute("COMMIT")


def verified_line(
    conn: sqlite3.Connection, source: LineSource, seq: int, position: int | None
) -> bytes | None:
    """The line of ``seq`` fetched again from ``source``, only if it is the line read then
    (:func:`check_line` is True); None otherwise (not served, other bytes, not committed)."""
    line = source.line(seq, position)
    if line is None or not check_line(conn, seq, line):
        return None
    return line
