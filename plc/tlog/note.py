"""C2SP signed-note (c2sp.org/signed-note) with Ed25519 signatures, and its key texts.

A signed note is a text ending in a newline, a blank line, and one or more signature lines
(here the Tessera test log's checkpoint, signature shortened)::

    example.com/log/testdata
    15
    rKbDipCvhuX1GZ7g5BBe8sA6BbJ7ja/1nk427v383cs=

    — example.com/log/testdata M9e0luh4jTG+UMBqOUo9/q+yAEvx1ilBEniMvjf1zfcBOhg+CKubMt53MvI...

Each signature line is an em dash (U+2014), a space, the key name, a space and
``base64(key ID (4 bytes, big-endian) || signature)``. Only Ed25519 (signature type 0x01) is
supported; its key ID is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``.

Key texts are the ones golang.org/x/mod/sumdb/note reads and writes:

- verifier key: ``<name>+<key ID, 8 lowercase hex>+<base64(0x01 || 32-byte public key)>``
- signer key: ``PRIVATE+KEY+<name>+<key ID hex>+<base64(0x01 || 32-byte Ed25519 seed)>``

The base64 part may itself contain ``+``, so a verifier key is split on its first two ``+``
only. All base64 is standard, padded and must be canonical.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from plc.errors import echo
from plc.tlog.encoding import decode_b64, encode_b64
from plc.tlog.errors import (
    InvalidTlogRequest,
    MalformedKey,
    MalformedNote,
    SignatureError,
    UnknownKey,
)

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "Signer",
    "Verifier",
    "generate_signer",
    "key_id",
    "open_note",
    "parse_note_unsafe",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_note",
]

ALG_ED25519 = 0x01
"""C2SP signed-note signature type byte of Ed25519."""

MAX_SIGNATURES = 100
"""Most signature lines accepted in one note (the spec requires accepting at least 16)."""

SIGNATURE_PREFIX = "\u2014 "
"""Start of every signature line: em dash (U+2014) and a space."""

_ED25519_PUBLIC_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")


def _is_valid_key_name(name: str) -> bool:
    """C2SP signed-note: key names are non-empty, without Unicode spaces or ``+``."""
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() or ord(ch) < 0x20 for ch in name)
        and _is_utf8(name)
    )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def key_id(name: str, public_key: bytes) -> int:
    """Return the 32-bit key ID of an Ed25519 key.

    C2SP signed-note: ``key ID = SHA-256(key name || 0x0A || 0x01 || public key)[:4]``,
    read as a big-endian uint32.

    Args:
        name: the key name (a valid key name; not checked here).
        public_key: the 32-byte Ed25519 public key.
    """
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    ).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 note verifier: key name, key ID and 32-byte public key.

    Build one with :func:`parse_verifier_key` or :meth:`Signer.verifier`.
    """

    name: str
    key_id: int
    public_key: bytes

    def verify(self, message: bytes, signature: bytes) -> None:
        """Verify an Ed25519 ``signature`` (64 bytes, without key ID) over ``message``.

        Raises:
            SignatureError: wrong length or the signature does not verify.
        """
        try:
            if len(signature) != _ED25519_SIGNATURE_SIZE:
                raise InvalidSignature
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            raise SignatureError(
                f"invalid signature by {echo(self.name)}+{self.key_id:08x}",
                key_name=self.name,
                key_id=self.key_id,
            ) from None

    @property
    def key_text(self) -> str:
        """The verifier key text ``<name>+<8 hex>+<base64(0x01 || public key)>``."""
        return f"{self.name}+{self.key_id:08x}+{encode_b64(bytes([ALG_ED25519]) + self.public_key)}"


class Signer:
    """An Ed25519 note signer. Its ``repr`` never shows the private key.

    Args:
        name: the key name (for a log: its origin).
        seed: the 32-byte Ed25519 private key seed (RFC 8032).

    Raises:
        MalformedKey: invalid name or seed length.
    """

    def __init__(self, name: str, seed: bytes) -> None:
        if not _is_valid_key_name(name):
            raise MalformedKey(f"invalid key name: {echo(name)}")
        if len(seed) != 32:
            raise MalformedKey(f"Ed25519 seed must be 32 bytes, got {len(seed)}")
        self._private_key = Ed25519PrivateKey.from_private_bytes(seed)
        self._seed = seed
        self.name = name
        self.public_key = self._private_key.public_key().public_bytes_raw()
        self.key_id = key_id(name, self.public_key)

    @classmethod
    def generate(cls, name: str) -> Signer:
        """Return a signer with a fresh random key (from the OS random source)."""
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    def __repr__(self) -> str:
        return f"Signer({self.name!r}, key_id={self.key_id:08x})"

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature (RFC 8032) of ``message``."""
        return self._private_key.sign(message)

    @property
    def verifier(self) -> Verifier:
        """The matching :class:`Verifier`."""
        return Verifier(self.name, self.key_id, self.public_key)

    @property
    def key_text(self) -> str:
        """The secret signer key text ``PRIVATE+KEY+<name>+<8 hex>+<base64(0x01 || seed)>``."""
        return (
            f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+"
            f"{encode_b64(bytes([ALG_ED25519]) + self._seed)}"
        )


def generate_signer(name: str) -> tuple[str, str]:
    """Generate an Ed25519 key pair for key name ``name``.

    Returns:
        ``(signer_key_text, verifier_key_text)`` in the golang.org/x/mod/sumdb/note format.

    Raises:
        MalformedKey: ``name`` is not a valid key name.
    """
    signer = Signer.generate(name)
    return signer.key_text, signer.verifier.key_text


def _decode_key_material(b64: str, kind: str) -> bytes:
    try:
        raw = decode_b64(b64)
    except ValueError:
        raise MalformedKey(f"{kind} key: malformed base64") from None
    if len(raw) != 1 + _ED25519_PUBLIC_KEY_SIZE or raw[0] != ALG_ED25519:
        raise MalformedKey(f"{kind} key: not an Ed25519 key (type 0x01 and 32 bytes)")
    return raw[1:]


def _check_name_and_id(name: str, id_hex: str, kind: str) -> int:
    if not _is_valid_key_name(name):
        raise MalformedKey(f"{kind} key: invalid key name {echo(name)}")
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise MalformedKey(f"{kind} key: key ID must be 8 lowercase hex digits")
    return int(id_hex, 16)


def parse_verifier_key(text: str) -> Verifier:
    """Parse verifier key text ``<name>+<8 lowercase hex key ID>+<base64(0x01 || pub)>``.

    Raises:
        MalformedKey: wrong structure, name, hex, base64, key type or length, or a key ID
            that does not match the name and public key.
    """
    parts = text.split("+", 2)  # the base64 part may contain "+": split on the first two only
    if len(parts) != 3:
        raise MalformedKey("verifier key: expected <name>+<key ID>+<key>")
    name, id_hex, b64 = parts
    claimed = _check_name_and_id(name, id_hex, "verifier")
    public_key = _decode_key_material(b64, "verifier")
    if key_id(name, public_key) != claimed:
        raise MalformedKey("verifier key: key ID does not match the name and key")
    return Verifier(name, claimed, public_key)


def parse_signer_key(text: str) -> Signer:
    """Parse signer key text ``PRIVATE+KEY+<name>+<8 hex>+<base64(0x01 || seed)>``.

    Raises:
        MalformedKey: wrong structure, name, hex, base64, key type or length, or a key ID
            that does not match the name and derived public key. The message never contains
            key material.
    """
    parts = text.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise MalformedKey("signer key: expected PRIVATE+KEY+<name>+<key ID>+<key>")
    name, id_hex, b64 = parts[2], parts[3], parts[4]
    claimed = _check_name_and_id(name, id_hex, "signer")
    signer = Signer(name, _decode_key_material(b64, "signer"))
    if signer.key_id != claimed:
        raise MalformedKey("signer key: key ID does not match the name and key")
    return signer


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID and the signature bytes (without the key ID)."""

    name: str
    key_id: int
    signature: bytes

    @property
    def line(self) -> str:
        """The signature line as it appears in a note, with its final newline."""
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{SIGNATURE_PREFIX}{self.name} {encode_b64(blob)}\n"


@dataclass(frozen=True)
class Note:
    """An opened note.

    Attributes:
        text: the signed text, with its final newline, without the blank separator line.
        signatures: signatures by known keys, all verified.
        unverified_signatures: signatures by keys the caller does not know (ignored).
    """

    text: str
    signatures: tuple[NoteSignature, ...]
    unverified_signatures: tuple[NoteSignature, ...]


def _check_text(text: str, what: str) -> None:
    # C2SP signed-note: valid UTF-8, no ASCII control characters other than newline.
    if not _is_utf8(text):
        raise MalformedNote(f"{what} is not valid UTF-8")
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise MalformedNote(f"{what} contains a control character")


def sign_note(text: str, *signers: Signer) -> str:
    """Return the signed note: ``text``, a blank line and one signature line per signer.

    Args:
        text: the note text, non-empty, ending in a newline, valid per C2SP signed-note.
        signers: one or more signers, in the order their lines should appear.

    Raises:
        MalformedNote: ``text`` is empty, lacks the final newline or has control characters.
        InvalidTlogRequest: no signer given.
    """
    if not signers:
        raise InvalidTlogRequest("sign_note needs at least one signer")
    _check_text(text, "note text")
    if not text.endswith("\n"):
        raise MalformedNote("note text must end with a newline")
    message = text.encode("utf-8")
    lines = [NoteSignature(s.name, s.key_id, s.sign(message)).line for s in signers]
    return text + "\n" + "".join(lines)


def _split_note(note_text: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and parsed signature lines (nothing verified)."""
    if isinstance(note_text, bytes):
        try:
            note_text = note_text.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNote("note is not valid UTF-8") from None
    _check_text(note_text, "note")
    # The text ends at the last blank line; the signature block follows it.
    split = note_text.rfind("\n\n")
    if split < 0:
        raise MalformedNote("note has no blank line before its signatures")
    text, block = note_text[: split + 1], note_text[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedNote("note signature block is empty or lacks a final newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"note has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise MalformedNote("note signature line does not start with an em dash and space")
        name, space, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not space or not _is_valid_key_name(name):
            raise MalformedNote(f"note signature line has an invalid key name: {echo(name)}")
        try:
            blob = decode_b64(b64)
        except ValueError:
            raise MalformedNote("note signature is not canonical base64") from None
        if len(blob) < 5:
            raise MalformedNote("note signature is shorter than a key ID and one byte")
        signatures.append(NoteSignature(name, int.from_bytes(blob[:4], "big"), blob[4:]))
    return text, signatures


def parse_note_unsafe(note_text: str | bytes) -> Note:
    """Parse a signed note WITHOUT verifying any signature (all are ``unverified``).

    Only for evidence handling and same-process use: the text of an unverified note must
    not be trusted.

    Raises:
        MalformedNote: the note does not parse.
    """
    text, signatures = _split_note(note_text)
    return Note(text, (), tuple(signatures))


def open_note(note_text: str | bytes, verifiers: Verifier | Iterable[Verifier]) -> Note:
    """Parse a signed note and verify it against known keys (C2SP signed-note).

    Signatures by unknown keys (name and key ID not both matching a known verifier) are
    ignored and returned as ``unverified_signatures``. Every signature by a known key must
    verify, and at least one must exist.

    Args:
        note_text: the whole note (str, or bytes that must be UTF-8).
        verifiers: the known keys.

    Returns:
        The note with its verified signatures (repeated identical lines counted once).

    Raises:
        MalformedNote: the note does not parse.
        MalformedKey: two known verifiers share a name and key ID.
        SignatureError: a known key's signature does not verify.
        UnknownKey: no signature is by a known key.
    """
    known: dict[tuple[str, int], Verifier] = {}
    for v in [verifiers] if isinstance(verifiers, Verifier) else verifiers:
        if known.setdefault((v.name, v.key_id), v) != v:
            raise MalformedKey(f"ambiguous verifiers for {echo(v.name)}+{v.key_id:08x}")
    text, signatures = _split_note(note_text)
    message = text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        verifier.verify(message, sig.signature)
        if sig not in verified:
            verified.append(sig)
    if not verified:
        raise UnknownKey(
            "note has no signature by a known key",
            expected=tuple(known),
            actual=tuple((s.name, s.key_id) for s in signatures),
        )
    return Note(text, tuple(verified), tuple(unverified))
