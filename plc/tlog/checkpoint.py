"""C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): the signed tree head of the tlog.

A checkpoint is a signed note (:mod:`plc.tlog.note`) whose text is::

    <origin>\\n
    <tree size, ASCII decimal, no leading zeros>\\n
    <root hash, standard padded base64 of 32 bytes>\\n
    [<extension line>\\n ...]

Parsing is strict: one spelling per value (the size and the root must print back
identically), so two different texts never mean the same checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from plc.errors import echo
from plc.tlog.encoding import decode_hash_b64, encode_b64
from plc.tlog.errors import MalformedCheckpoint, OriginMismatch
from plc.tlog.hashing import HASH_SIZE
from plc.tlog.note import Signer, Verifier, open_note, parse_note_unsafe, sign_note

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "format_checkpoint",
    "open_checkpoint",
    "open_log_checkpoint",
    "parse_checkpoint",
    "parse_checkpoint_unsafe",
    "sign_checkpoint",
]

MAX_TREE_SIZE = 2**63 - 1
"""Largest tree size accepted (fits a signed 64-bit column and Go's int64)."""

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_MAX_SIZE_DIGITS = len(str(MAX_TREE_SIZE))


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: which log (``origin``), how many leaves, and the RFC 6962 root hash.

    Attributes:
        origin: the log's identity, the first line (for this directory: ``PLC_LOG_ORIGIN``).
        tree_size: number of leaves (leaf indexes ``0 .. tree_size - 1``, ``seq`` 1 ..
            ``tree_size``).
        root_hash: 32-byte root hash of the first ``tree_size`` leaves.
        extensions: optional extension lines (not recommended; this log writes none).
    """

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()


def _check_line(line: str, what: str) -> None:
    if not line:
        raise MalformedCheckpoint(f"checkpoint {what} is empty")
    if any(ord(ch) < 0x20 for ch in line):
        raise MalformedCheckpoint(f"checkpoint {what} contains a control character")


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """Return the note text of ``checkpoint`` (ends with a newline), per C2SP tlog-checkpoint.

    Raises:
        MalformedCheckpoint: empty origin or extension line, a control character, a tree
            size outside ``0 .. MAX_TREE_SIZE`` or a root hash that is not 32 bytes.
    """
    _check_line(checkpoint.origin, "origin")
    if not 0 <= checkpoint.tree_size <= MAX_TREE_SIZE:
        raise MalformedCheckpoint(f"checkpoint tree size out of range: {checkpoint.tree_size}")
    if len(checkpoint.root_hash) != HASH_SIZE:
        raise MalformedCheckpoint(
            f"checkpoint root hash is {len(checkpoint.root_hash)} bytes, expected {HASH_SIZE}"
        )
    for line in checkpoint.extensions:
        _check_line(line, "extension line")
    lines = [
        checkpoint.origin,
        str(checkpoint.tree_size),
        encode_b64(checkpoint.root_hash),
        *checkpoint.extensions,
    ]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text (the signed text, not the whole note) strictly.

    Args:
        text: e.g. ``Note.text`` of an opened note.

    Raises:
        MalformedCheckpoint: fewer than three lines, no final newline, empty origin or
            extension line, a control character, a tree size with a sign, leading zeros or
            other non-decimal characters or above ``MAX_TREE_SIZE``, or a root hash that is
            not the canonical standard padded base64 of exactly 32 bytes.
    """
    if not text.endswith("\n"):
        raise MalformedCheckpoint("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint(f"checkpoint has {len(lines)} lines, expected at least 3")
    origin, size_text, root_text, *extensions = lines
    _check_line(origin, "origin")
    # C2SP tlog-checkpoint: ASCII decimal, no leading zeroes (unless the tree is empty).
    # The length first: int() refuses more than 4,300 digits with ValueError, and a signed
    # note may carry any size line (an auditor must not crash on a hostile directory's).
    if (
        len(size_text) > _MAX_SIZE_DIGITS
        or not _DECIMAL.fullmatch(size_text)
        or int(size_text) > MAX_TREE_SIZE
    ):
        raise MalformedCheckpoint(f"checkpoint tree size is not canonical: {echo(size_text)}")
    try:
        root_hash = decode_hash_b64(root_text)
    except ValueError as exc:
        raise MalformedCheckpoint(f"checkpoint root hash: {exc}") from None
    for line in extensions:
        _check_line(line, "extension line")
    return Checkpoint(origin, int(size_text), root_hash, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, *signers: Signer) -> str:
    """Return the signed note of ``checkpoint`` (the text served at ``/checkpoint``).

    The signer's key name SHOULD equal the origin (C2SP tlog-checkpoint); not enforced.

    Raises:
        MalformedCheckpoint: see :func:`format_checkpoint`.
    """
    return sign_note(format_checkpoint(checkpoint), *signers)


def open_checkpoint(
    note_text: str | bytes,
    verifiers: Verifier | Iterable[Verifier],
    *,
    origin: str | None = None,
) -> Checkpoint:
    """Verify a signed checkpoint note and parse its text.

    Args:
        note_text: the whole signed note.
        verifiers: the log's key(s); other signatures (e.g. witnesses) are ignored.
        origin: if given, the origin the checkpoint must carry.

    Raises:
        MalformedNote, SignatureError, UnknownKey, MalformedKey: see
            :func:`plc.tlog.note.open_note`.
        MalformedCheckpoint: the signed text is not a checkpoint.
        OriginMismatch: ``origin`` given and different.
    """
    checkpoint = parse_checkpoint(open_note(note_text, verifiers).text)
    if origin is not None and checkpoint.origin != origin:
        raise OriginMismatch(origin, checkpoint.origin)
    return checkpoint


def open_log_checkpoint(note_text: str | bytes, verifiers: Iterable[Verifier]) -> Checkpoint:
    """:func:`open_checkpoint` with the log's own key: of ``verifiers``, only those named
    after the checkpoint's origin count (C2SP tlog-checkpoint: a log signs under its origin),
    so a witness's or another log's key, given alongside, cannot vouch for the log's
    checkpoints.

    Raises:
        As :func:`open_checkpoint`; UnknownKey also when no verifier is named after the
        checkpoint's origin.
    """
    # Only the origin line is read before the signature is checked: a note whose signed
    # text was altered fails as a bad signature, not as a malformed checkpoint.
    text = parse_note_unsafe(note_text).text
    origin = text.split("\n", 1)[0]
    named = [v for v in verifiers if v.name == origin]
    if not named:
        parse_checkpoint(text)  # a text that is no checkpoint says so, not "unknown key"
    return open_checkpoint(note_text, named, origin=origin)


def parse_checkpoint_unsafe(note_text: str | bytes) -> Checkpoint:
    """Parse a signed checkpoint note WITHOUT verifying its signatures.

    Only for same-process use (e.g. reading back the log's own latest checkpoint); anything
    received from elsewhere goes through :func:`open_checkpoint`.

    Raises:
        MalformedNote, MalformedCheckpoint: the note or its text does not parse.
    """
    return parse_checkpoint(parse_note_unsafe(note_text).text)
