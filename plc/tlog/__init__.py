"""The tlog: the directory's global RFC 6962 Merkle log, as pure functions (no I/O, no clock).

Leaf index and ``seq``
----------------------
The tlog has one leaf per sequenced operation, in ``seq`` order and without gaps. The leaf
bytes are the exact stored export line (``sequenced_op`` JSON, UTF-8) of that operation, and::

    leaf_index = seq - 1        (seq starts at 1, leaf indexes at 0; design.md decision 5)

so a tree of ``tree_size`` leaves covers ``seq`` 1 .. ``tree_size``. This is the only place the
relation is defined; use :func:`leaf_index_for_seq` / :func:`seq_for_leaf_index` rather than
writing ``- 1`` by hand.

Modules (each depends only on those above it)::

    errors      VerificationError subclasses carrying expected/actual values
    hashing     leaf_hash, node_hash, EMPTY_ROOT (RFC 6962 §2.1)
    encoding    strict standard base64 (RFC 4648 §4) used by every text format here
    tree        stored-hash layout (golang.org/x/mod/sumdb/tlog style), append, root_hash
    memory      in-memory HashReaders: MemoryHashStore, OverlayHashReader
    proof       inclusion / consistency proofs and their verification (RFC 6962, RFC 9162)
    note        C2SP signed-note with Ed25519 (sign_note, open_note, key texts)
    checkpoint  C2SP tlog-checkpoint body format, parse, sign, open
    tile_format C2SP tlog-tiles values: Tile, paths, entry bundles
    tiles       tiles from stored hashes; tile-only root, proofs and verifier (re-exports
                tile_format)
    bundle      verification of a ``GET /{did}/log/proof`` response

Sizes are counts of leaves; hashes are 32-byte ``bytes`` (SHA-256) unless a name says
otherwise.
"""

from __future__ import annotations

__all__ = ["leaf_index_for_seq", "seq_for_leaf_index"]


def leaf_index_for_seq(seq: int) -> int:
    """Return the 0-based leaf index of the operation with export ``seq`` (``seq - 1``).

    Args:
        seq: the operation's ``seq``, >= 1.

    Raises:
        ValueError: ``seq`` < 1 (a programming error: ``seq`` values come from the store).
    """
    if seq < 1:
        raise ValueError(f"seq must be >= 1, got {seq}")
    return seq - 1


def seq_for_leaf_index(leaf_index: int) -> int:
    """Return the export ``seq`` of the leaf at ``leaf_index`` (``leaf_index + 1``).

    Raises:
        ValueError: ``leaf_index`` < 0.
    """
    if leaf_index < 0:
        raise ValueError(f"leaf index must be >= 0, got {leaf_index}")
    return leaf_index + 1
