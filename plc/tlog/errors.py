"""Errors of the tlog: every failed check raises one of these, with its evidence attached.

All verification failures are :class:`plc.errors.VerificationError` subclasses (the auditor
turns them into findings); the one request error is an :class:`plc.errors.InvalidInput` (400)::

    VerificationError
    ├── RootMismatch            calculated root != expected root (inclusion, consistency, tiles)
    ├── InclusionProofError     proof cannot fit (leaf_index, tree_size): wrong length, bad index
    ├── ConsistencyProofError   proof cannot fit (old_size, new_size): wrong length, bad sizes
    ├── MalformedProof          a proof / leaf hash that is not 32 bytes or not strict base64
    ├── HashReaderError         a HashReader broke its contract (count or length of hashes)
    ├── MalformedKey            signer / verifier key text that does not parse
    ├── MalformedNote           signed-note text that does not parse
    ├── SignatureError          a known key's signature does not verify
    ├── UnknownKey              no signature of the note is by a known key
    ├── MalformedCheckpoint     checkpoint body that does not parse strictly
    ├── OriginMismatch          checkpoint origin is not the expected one
    ├── TileError               tile content wrong (length, hashes differ from recomputed ones)
    │   ├── MalformedTilePath   non-canonical tile path
    │   └── MalformedEntryBundle entry bundle that does not decode
    ├── EntryMismatch           an entry's content or leaf hash differs from what it must be
    └── MalformedBundle         a /{did}/log/proof response of the wrong shape
    InvalidInput
    └── InvalidTlogRequest      leaf index >= tree size, consistency from 0 or backwards, ...

Attributes named ``expected`` / ``actual`` hold the raw values (bytes, ints or strings);
messages show hashes in standard base64 and cut user-supplied text with :func:`plc.errors.echo`.
"""

from __future__ import annotations

import base64

from plc.errors import InvalidInput, VerificationError, echo

__all__ = [
    "ConsistencyProofError",
    "DidMismatch",
    "EntryMismatch",
    "HashReaderError",
    "InclusionProofError",
    "InvalidTlogRequest",
    "MalformedBundle",
    "MalformedCheckpoint",
    "MalformedEntryBundle",
    "MalformedKey",
    "MalformedNote",
    "MalformedProof",
    "MalformedTilePath",
    "OriginMismatch",
    "RootMismatch",
    "SignatureError",
    "TileError",
    "UnknownKey",
]


def _show(value: object) -> str:
    """Render a value for a message: bytes as standard base64, the rest via :func:`echo`."""
    if isinstance(value, bytes):
        return echo(base64.b64encode(value).decode("ascii"))
    return echo(value)


class InvalidTlogRequest(InvalidInput):
    """A tlog question with no answer (400): leaf index >= tree size, consistency from size 0
    or from a larger to a smaller tree, a tile or hash beyond the tree, an entry too long."""


class RootMismatch(VerificationError):
    """The root calculated from a proof or from tiles differs from the expected root.

    Attributes:
        expected: the root that was claimed (from a checkpoint or the caller), bytes.
        actual: the root calculated from the evidence, bytes.
        what: which root, e.g. ``"root hash"``, ``"old root hash"``, ``"new root hash"``.
    """

    def __init__(self, expected: bytes, actual: bytes, *, what: str = "root hash") -> None:
        super().__init__(f"{what} mismatch: expected {_show(expected)}, calculated {_show(actual)}")
        self.expected = expected
        self.actual = actual
        self.what = what


class InclusionProofError(VerificationError):
    """An inclusion proof that cannot belong to ``(leaf_index, tree_size)``.

    Attributes:
        leaf_index, tree_size: the claimed position and tree size.
        expected, actual: e.g. the expected and actual proof length (``None`` if not a count).
    """

    def __init__(
        self,
        message: str,
        *,
        leaf_index: int,
        tree_size: int,
        expected: int | None = None,
        actual: int | None = None,
    ) -> None:
        super().__init__(message)
        self.leaf_index = leaf_index
        self.tree_size = tree_size
        self.expected = expected
        self.actual = actual


class ConsistencyProofError(VerificationError):
    """A consistency proof that cannot belong to ``(old_size, new_size)``.

    Attributes:
        old_size, new_size: the two tree sizes.
        expected, actual: e.g. the expected and actual proof length (``None`` if not a count).
    """

    def __init__(
        self,
        message: str,
        *,
        old_size: int,
        new_size: int,
        expected: int | None = None,
        actual: int | None = None,
    ) -> None:
        super().__init__(message)
        self.old_size = old_size
        self.new_size = new_size
        self.expected = expected
        self.actual = actual


class MalformedProof(VerificationError):
    """A proof element or leaf hash that is not a 32-byte hash (or not strict base64).

    Attributes:
        position: index of the bad element in the proof, or ``None`` for the leaf hash.
        expected: the required length in bytes (32).
        actual: the length found, or ``None`` if the text did not decode.
    """

    def __init__(
        self,
        message: str,
        *,
        position: int | None = None,
        expected: int = 32,
        actual: int | None = None,
    ) -> None:
        super().__init__(message)
        self.position = position
        self.expected = expected
        self.actual = actual


class HashReaderError(VerificationError):
    """A :class:`plc.tlog.tree.HashReader` returned the wrong number or size of hashes.

    Attributes:
        expected: the number of hashes asked for (or 32 for a length problem).
        actual: the number returned (or the bad length).
    """

    def __init__(self, message: str, *, expected: int, actual: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class MalformedKey(VerificationError):
    """Signer or verifier key text that does not parse, or whose key ID does not match."""


class MalformedNote(VerificationError):
    """Signed-note text that does not follow C2SP signed-note (structure, base64, names)."""


class SignatureError(VerificationError):
    """A signature by a known key does not verify over the note text.

    Attributes:
        key_name: the key name of the signature line.
        key_id: the 32-bit key ID of the signature line.
    """

    def __init__(self, message: str, *, key_name: str, key_id: int) -> None:
        super().__init__(message)
        self.key_name = key_name
        self.key_id = key_id


class UnknownKey(VerificationError):
    """No signature of the note is by a known key, so the note must be rejected.

    Attributes:
        expected: ``(name, key_id)`` of every known verifier.
        actual: ``(name, key_id)`` of every signature line found in the note.
    """

    def __init__(
        self,
        message: str,
        *,
        expected: tuple[tuple[str, int], ...],
        actual: tuple[tuple[str, int], ...],
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class MalformedCheckpoint(VerificationError):
    """A checkpoint body that does not follow C2SP tlog-checkpoint strictly."""


class OriginMismatch(VerificationError):
    """A checkpoint whose origin line is not the expected origin.

    Attributes:
        expected, actual: the two origins (strings).
    """

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            f"checkpoint origin mismatch: expected {_show(expected)}, got {_show(actual)}"
        )
        self.expected = expected
        self.actual = actual


class DidMismatch(VerificationError):
    """A ``/{did}/log/proof`` bundle about another DID than the one asked for.

    Attributes:
        expected, actual: the two DIDs (strings).
    """

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"bundle DID mismatch: expected {_show(expected)}, got {_show(actual)}")
        self.expected = expected
        self.actual = actual


class TileError(VerificationError):
    """A tile (or entry bundle) whose content is wrong.

    Attributes:
        path: the tile path (``tile/0/x001/234.p/7``), or ``""`` if unknown.
        expected, actual: what was required and what was found (byte lengths or hashes).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        expected: object = None,
        actual: object = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.expected = expected
        self.actual = actual


class MalformedTilePath(TileError):
    """A tile path that is not the canonical C2SP tlog-tiles encoding."""


class MalformedEntryBundle(TileError):
    """An entry bundle that does not decode (truncated length prefix or entry, wrong count)."""


class EntryMismatch(VerificationError):
    """An entry whose content or leaf hash differs from what it must be.

    Attributes:
        field: what differs: ``"leaf hash"``, ``"did"``, ``"seq"`` or ``"type"``.
        expected, actual: the required and the found value.
        leaf_index: the entry's leaf index (``seq - 1``).
    """

    def __init__(self, *, field: str, expected: object, actual: object, leaf_index: int) -> None:
        super().__init__(
            f"entry {field} mismatch at leaf index {leaf_index}: "
            f"expected {_show(expected)}, got {_show(actual)}"
        )
        self.field = field
        self.expected = expected
        self.actual = actual
        self.leaf_index = leaf_index


class MalformedBundle(VerificationError):
    """A ``GET /{did}/log/proof`` response that does not have the documented shape."""
