"""Strict standard base64 (RFC 4648 §4, padded) for hashes, keys and signatures.

Python's :func:`base64.b64decode` is lenient by default (it skips junk, accepts non-zero
padding bits); every text format of the tlog needs one canonical spelling per value, so
decoding here accepts a string only if encoding the result gives the same string back.
"""

from __future__ import annotations

import base64
import binascii

from plc.tlog.hashing import HASH_SIZE

__all__ = ["decode_b64", "decode_hash_b64", "encode_b64"]


def encode_b64(data: bytes) -> str:
    """Return ``data`` as standard padded base64 text (RFC 4648 §4)."""
    return base64.b64encode(data).decode("ascii")


def decode_b64(text: str) -> bytes:
    """Decode canonical standard padded base64 (RFC 4648 §4).

    Rejects the URL-safe alphabet, missing or extra padding, non-zero padding bits,
    whitespace (CR/LF included) and non-ASCII characters.

    Raises:
        ValueError: ``text`` is not the canonical encoding of any byte string.
    """
    if not text.isascii():
        raise ValueError("base64 text is not ASCII")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64: {exc}") from None
    if encode_b64(data) != text:  # non-zero padding bits or other non-canonical spelling
        raise ValueError("non-canonical base64")
    return data


def decode_hash_b64(text: str) -> bytes:
    """Decode canonical standard base64 of exactly one 32-byte hash.

    Raises:
        ValueError: not canonical base64, or not 32 bytes once decoded.
    """
    data = decode_b64(text)
    if len(data) != HASH_SIZE:
        raise ValueError(f"hash is {len(data)} bytes, expected {HASH_SIZE}")
    return data
