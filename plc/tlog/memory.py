"""In-memory :class:`~plc.tlog.tree.HashReader` implementations (pure, no I/O).

- :class:`MemoryHashStore`: a whole tree in a list; for tests, the auditor's replay and tools.
- :class:`OverlayHashReader`: a base reader plus hashes appended in the current batch but not
  yet visible through the base (e.g. written in the still-open transaction); lets a store
  compute the new root or proofs before the batch is flushed.
"""

from __future__ import annotations

from collections.abc import Sequence

from plc.tlog.errors import InvalidTlogRequest
from plc.tlog.tree import (
    HashReader,
    append_leaves,
    read_hashes_checked,
    root_hash,
    stored_hash_count,
)

__all__ = ["MemoryHashStore", "OverlayHashReader"]


class MemoryHashStore:
    """A tlog kept entirely in memory as its list of stored hashes.

    Attributes:
        tree_size: number of leaves appended so far.
    """

    def __init__(self) -> None:
        self._hashes: list[bytes] = []
        self.tree_size = 0

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """Return the stored hashes at ``indexes`` (see :class:`~plc.tlog.tree.HashReader`).

        Raises:
            InvalidTlogRequest: an index outside ``0 .. stored_hash_count(tree_size) - 1``.
        """
        size = len(self._hashes)
        out = []
        for i in indexes:
            if not 0 <= i < size:
                raise InvalidTlogRequest(
                    f"stored hash index {i} not in a tree of {self.tree_size} leaves"
                )
            out.append(self._hashes[i])
        return out

    def append(self, leaf_hashes: Sequence[bytes]) -> list[bytes]:
        """Append leaves (by their 32-byte leaf hashes); return the newly stored hashes."""
        new = append_leaves(self.tree_size, leaf_hashes, self)
        self._hashes.extend(new)
        self.tree_size += len(leaf_hashes)
        return new

    def root_hash(self, tree_size: int | None = None) -> bytes:
        """Return the root hash at ``tree_size`` (default: the current size)."""
        return root_hash(self.tree_size if tree_size is None else tree_size, self)

    @property
    def stored_hashes(self) -> Sequence[bytes]:
        """All stored hashes, by stored hash index (read-only view by convention)."""
        return self._hashes


class OverlayHashReader:
    """A reader that serves indexes >= ``start_index`` from ``hashes`` and the rest from
    ``base``, with at most one ``base.read_hashes`` call per call.

    Typical use inside a store's append transaction::

        start = stored_hash_count(tree_size)
        new = append_leaves(tree_size, leaf_hashes, db_reader)      # reads the old tree only
        overlay = OverlayHashReader(db_reader, start, new)
        new_root = root_hash(tree_size + len(leaf_hashes), overlay)

    Args:
        base: reader of the stored hashes below ``start_index``.
        start_index: stored hash index of ``hashes[0]`` (``stored_hash_count(old_size)``).
        hashes: the hashes stored from ``start_index`` on, in order.
    """

    def __init__(self, base: HashReader, start_index: int, hashes: Sequence[bytes]) -> None:
        if start_index < 0:
            raise InvalidTlogRequest(f"stored hash index must be >= 0, got {start_index}")
        self._base = base
        self._start = start_index
        self._hashes = list(hashes)

    @classmethod
    def for_append(
        cls, base: HashReader, old_size: int, new_hashes: Sequence[bytes]
    ) -> OverlayHashReader:
        """Overlay the hashes returned by :func:`~plc.tlog.tree.append_leaves` on a tree of
        ``old_size`` leaves."""
        return cls(base, stored_hash_count(old_size), new_hashes)

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """Return the hashes at ``indexes``, reading from ``base`` only those below the overlay.

        Raises:
            InvalidTlogRequest: an index beyond the end of the overlay.
            HashReaderError: ``base`` broke its contract.
        """
        below = [i for i in indexes if i < self._start]
        from_base = iter(read_hashes_checked(self._base, below))
        end = self._start + len(self._hashes)
        out = []
        for i in indexes:
            if i < self._start:
                out.append(next(from_base))
            elif i < end:
                out.append(self._hashes[i - self._start])
            else:
                raise InvalidTlogRequest(f"stored hash index {i} is beyond the overlay end {end}")
        return out
