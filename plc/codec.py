"""Encodings the did:plc method is built from: DAG-CBOR, CIDv1, strict base64url, base32.

Pure functions over bytes and strings. DAG-CBOR is delegated to ``libipld`` (canonical map key
order: length first, then bytewise; definite lengths; no floats or tags appear in ops).

Sources: did:plc spec v0.3 "Operation Serialization, Signing, and Validation"; RFC 4648 §3.5
(base64url without padding, zero pad bits) and §6 (base32); CIDv1 = multicodec dag-cbor 0x71,
multihash sha2-256 0x12, multibase base32 lower ``b``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

import libipld
import orjson

from plc.errors import MalformedEncoding, echo

CID_PREFIX = b"\x01\x71\x12\x20"
"""CIDv1 header of every op CID: version 1, dag-cbor (0x71), sha2-256 (0x12), 32-byte digest."""

_CID_RE = re.compile(r"b[a-z2-7]{58}")
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{85}[AQgw]")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


def encode_dag_cbor(value: Any) -> bytes:
    """DAG-CBOR encode a JSON-like value (dicts, lists, str, None) canonically.

    Raises:
        MalformedEncoding: the value holds something DAG-CBOR cannot encode, or is nested
            deeper than the encoder recurses.
    """
    try:
        return libipld.encode_dag_cbor(value)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise MalformedEncoding(f"Value cannot be encoded as DAG-CBOR: {echo(str(exc))}") from exc


def decode_dag_cbor(data: bytes) -> Any:
    """Decode DAG-CBOR bytes strictly (libipld refuses non-canonical input).

    Raises:
        MalformedEncoding: not valid canonical DAG-CBOR.
    """
    try:
        return libipld.decode_dag_cbor(data)
    except (ValueError, TypeError) as exc:
        raise MalformedEncoding(f"Invalid DAG-CBOR: {echo(str(exc))}") from exc


def b32_lower(data: bytes) -> str:
    """RFC 4648 §6 base32, lower case, without ``=`` padding (libipld's multibase encoder:
    ~15x faster than ``base64.b32encode``, and this runs for every CID and DID)."""
    return str(libipld.encode_multibase("b", data))[1:]


def cid_for_cbor(cbor: bytes) -> str:
    """CIDv1 string (``bafyrei…``, 59 chars) of DAG-CBOR bytes: dag-cbor, sha2-256, base32."""
    return "b" + b32_lower(CID_PREFIX + hashlib.sha256(cbor).digest())


def canonical_cid(text: str) -> str:
    """The base32 form (``b…``) of a CIDv1 written in base58btc (``z…``) or base36 (``k…``);
    any other text unchanged.

    CIDs are compared by value, not by text (plc-spec-notes.md §1.6: the reference compares
    ``CID.parse(prev).equals(cid)``, and multiformats' ``CID.parse`` reads base32, base58btc and
    base36 without being given a decoder). Stored op CIDs are always base32, so a ``prev`` in
    another of those bases names the same op once rewritten. Text that is not such a CIDv1
    written exactly as that base writes it (other bases, CIDv0, garbage, bytes after the CID,
    upper-case base36: ``CID.parse`` refuses the last two) is returned as it is and matches
    no stored op.
    """
    if text[:1] not in ("z", "k"):
        return text
    try:
        if libipld.decode_cid(text)["version"] != 1:
            return text
        canonical = str(libipld.encode_cid(text))
        # libipld reads a CID off the front of the bytes and ignores the rest, and reads
        # base36 in either case: only a text that is the CID's own spelling names it.
        if libipld.encode_multibase(text[0], libipld.decode_multibase(canonical)[1]) != text:
            return text
        return canonical
    except ValueError:
        return text


def parse_cid(text: str) -> bytes:
    """Parse an op CID string strictly and return its 32-byte sha2-256 digest.

    Only the canonical form a did:plc directory produces is accepted: CIDv1, dag-cbor,
    sha2-256, multibase base32 lower (``b``).

    Raises:
        MalformedEncoding: anything else (other bases, codecs, hashes, bad characters).
    """
    if not isinstance(text, str) or not _CID_RE.fullmatch(text):
        raise MalformedEncoding(f"Invalid CID: {echo(text)}")
    raw = base64.b32decode(text[1:].upper() + "======")
    if not raw.startswith(CID_PREFIX) or len(raw) != 36:
        raise MalformedEncoding(f"Invalid CID: {echo(text)}")
    if b32_lower(raw) != text[1:]:
        raise MalformedEncoding(f"Invalid CID: {echo(text)}")
    return raw[4:]


def decode_b64url_strict(text: str) -> bytes:
    """Decode unpadded base64url with zero pad bits and no whitespace (RFC 4648 §3.5).

    Raises:
        MalformedEncoding: padding, CR/LF or other non-alphabet characters, non-zero pad bits,
            or an impossible length.
    """
    if not isinstance(text, str) or not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise MalformedEncoding("Invalid base64url encoding")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedEncoding("Invalid base64url encoding") from exc
    if encode_b64url(raw) != text:
        raise MalformedEncoding("Invalid base64url encoding: non-zero padding bits")
    return raw


def encode_b64url(data: bytes) -> str:
    """Unpadded base64url of ``data``."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def decode_signature(sig: str) -> bytes:
    """Decode an op ``sig``: 86 chars of unpadded base64url with zero pad bits → 64 bytes r‖s.

    The fast path is one full-match regex that captures every encoding rule of spec v0.2.1;
    anything it refuses is re-checked with the general decoder for a precise message.

    Raises:
        MalformedEncoding: any deviation (padding, newline, pad bits, other length).
    """
    if isinstance(sig, str) and _SIG_RE.fullmatch(sig):
        return base64.urlsafe_b64decode(sig + "==")
    raw = decode_b64url_strict(sig)
    raise MalformedEncoding(f"Invalid signature length: expected 64 bytes, got {len(raw)}")


_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def has_bad_unicode(value: Any) -> bool:
    """True if any string in ``value`` holds U+0000 or a lone surrogate (refused: such strings
    encode differently across implementations or cannot be stored).

    One ``orjson`` encoding does both checks: it refuses surrogates, and writes U+0000 as the
    escape ``\\u0000`` (preceded by an even number of backslashes).
    """
    try:
        encoded = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return True
    return b"\\u0000" in encoded and _JSON_NUL.search(encoded) is not None
