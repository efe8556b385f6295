"""did:key parsing and ECDSA signatures for the two curves did:plc rotation keys may use.

- secp256k1 ("k256"): multicodec ``0xe7`` (varint ``e7 01``), did:keys start ``zQ3s``; verified
  with ``coincurve`` (libsecp256k1).
- NIST P-256 ("p256"): multicodec ``0x1200`` (varint ``80 24``), did:keys start ``zDna``;
  verified with ``cryptography``.

Signatures are 64 bytes ``r‖s`` (never DER) and must be low-S (``s ≤ n/2``) on both curves: we
check that ourselves because OpenSSL accepts high-S. Other did:key types (Ed25519, BLS, …) are
recognised only so a verification method can be described; they never verify an op.

Sources: atproto Cryptography spec; ``@atproto/crypto`` 0.4.3 behaviour as summarised in
plc-spec-notes.md §2; did:plc spec v0.2.1 (low-S, compact signatures).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

import base58
import coincurve
import libipld
from coincurve._libsecp256k1 import lib as _secp
from coincurve.ecdsa import deserialize_compact
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from plc.errors import MalformedEncoding, UnsupportedKeyType, echo

DID_KEY_PREFIX = "did:key:"


class Curve(Enum):
    """The curves a did:plc rotation key may use."""

    K256 = "k256"
    P256 = "p256"


_MULTICODEC = {Curve.K256: b"\xe7\x01", Curve.P256: b"\x80\x24"}
_ORDER = {
    Curve.K256: 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    Curve.P256: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
}
_HALF_ORDER = {curve: n // 2 for curve, n in _ORDER.items()}
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
"""The signature algorithm of both curves (an immutable descriptor, built once)."""
_OTHER_PREFIXES = {
    b"\xed\x01": "ed25519",
    b"\xeb\x01": "bls12_381-g2",
    b"\x81\x24": "p384",
    b"\x85\x24": "rsa",
}


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A parsed k256 or p256 did:key.

    Attributes:
        curve: which curve.
        compressed: the 33-byte SEC1 compressed point (0x02/0x03 ‖ X).
        did_key: the canonical ``did:key:z…`` text.
    """

    curve: Curve
    compressed: bytes
    did_key: str
    _native: Any

    def verifies(self, data: bytes, sig: bytes) -> bool:
        """True if ``sig`` (64 bytes r‖s, low-S) is a valid ECDSA-SHA256 signature of ``data``.

        A wrong length, a zero or out-of-range ``r``/``s`` or a high ``s`` is simply "does not
        verify"; callers that need a reason decode the signature with ``codec.decode_signature``.
        """
        if len(sig) != 64:
            return False
        r = int.from_bytes(sig[:32], "big")
        s = int.from_bytes(sig[32:], "big")
        if not (0 < r < _ORDER[self.curve] and 0 < s <= _HALF_ORDER[self.curve]):
            return False
        if self.curve is Curve.K256:
            # libsecp256k1 directly (coincurve's verify takes DER: a compact -> DER -> parsed
            # round trip per call); r and s are in range, so the compact parse succeeds.
            native = self._native
            try:
                raw = deserialize_compact(sig)
            except ValueError:
                return False
            digest = hashlib.sha256(data).digest()
            return bool(
                _secp.secp256k1_ecdsa_verify(native.context.ctx, raw, digest, native.public_key)
            )
        try:
            self._native.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)
        except _CryptoInvalidSignature:
            return False
        return True


def _b58btc_decode(body: str) -> bytes:
    """Decode base58btc (Bitcoin alphabet) text; raises ValueError. libipld's Rust decoder is
    ~10x faster than the pure-Python one and this runs on every submitted key."""
    code, raw = libipld.decode_multibase("z" + body)
    if code != "z":
        raise ValueError("not base58btc")
    return bytes(raw)


@lru_cache(maxsize=65536)
def multikey_type(did_key: str) -> str | None:
    """The key type of any syntactically valid ``did:key:z…`` (``k256``, ``p256``, ``ed25519``,
    …), or None when the text is not a did:key or its multicodec is unknown. Never raises."""
    if not isinstance(did_key, str) or not did_key.startswith(DID_KEY_PREFIX + "z"):
        return None
    try:
        raw = _b58btc_decode(did_key[len(DID_KEY_PREFIX) + 1 :])
    except ValueError:
        return None
    for curve, prefix in _MULTICODEC.items():
        if raw.startswith(prefix):
            return curve.value
    return _OTHER_PREFIXES.get(raw[:2])


@lru_cache(maxsize=65536)
def is_valid_multikey_text(did_key: str) -> bool:
    """True if ``did_key`` is ``did:key:`` + ``z`` + non-empty valid base58btc (the only check
    plc.directory applies to verification-method keys, spec v0.2)."""
    if not isinstance(did_key, str) or not did_key.startswith(DID_KEY_PREFIX + "z"):
        return False
    body = did_key[len(DID_KEY_PREFIX) + 1 :]
    if not body:
        return False
    try:
        _b58btc_decode(body)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=65536)
def parse_did_key(did_key: str) -> PublicKey:
    """Parse a k256 or p256 ``did:key`` with a 33-byte compressed point.

    Results are cached: the same few keys sign most ops.

    Raises:
        MalformedEncoding: not ``did:key:z`` + base58btc, or not a valid curve point.
        UnsupportedKeyType: a did:key of another type, or an uncompressed point.
    """
    if not isinstance(did_key, str) or not did_key.startswith(DID_KEY_PREFIX):
        raise MalformedEncoding(f"Incorrect prefix for did:key: {echo(did_key)}")
    body = did_key[len(DID_KEY_PREFIX) :]
    if not body.startswith("z"):
        raise MalformedEncoding(f"Incorrect prefix for multikey: {echo(did_key)}")
    try:
        raw = _b58btc_decode(body[1:])
    except ValueError as exc:
        raise MalformedEncoding(f"Invalid base58btc in did:key: {echo(did_key)}") from exc
    for curve, prefix in _MULTICODEC.items():
        if raw.startswith(prefix):
            point = raw[len(prefix) :]
            if len(point) != 33 or point[0] not in (2, 3):
                raise UnsupportedKeyType(f"Expected 33 byte compress pubkey: {echo(did_key)}")
            native = _load_point(curve, point, did_key)
            return PublicKey(curve, point, did_key, native)
    raise UnsupportedKeyType(f"Unsupported key type: {echo(did_key)}")


def _native_point(curve: Curve, point: bytes) -> Any:
    """The library's public key of a SEC1 point (either form); raises ValueError when it is
    not a point of ``curve``."""
    if curve is Curve.K256:
        return coincurve.PublicKey(point)
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def _compress(native: Any) -> bytes:
    """The 33-byte compressed SEC1 point of a library public key (either curve)."""
    if isinstance(native, coincurve.PublicKey):
        return bytes(native.format(compressed=True))
    compressed: bytes = native.public_bytes(
        encoding=serialization.Encoding.X962,
        format=serialization.PublicFormat.CompressedPoint,
    )
    return compressed


def _load_point(curve: Curve, point: bytes, did_key: str) -> Any:
    try:
        return _native_point(curve, point)
    except ValueError as exc:
        raise MalformedEncoding(f"Invalid curve point in did:key: {echo(did_key)}") from exc


def compressed_point(curve: Curve, point: bytes) -> bytes:
    """The 33-byte compressed form of a SEC1 point of ``curve`` given in either form (the
    uncompressed ``04‖X‖Y`` of legacy documents included); the libraries check the curve.

    Raises:
        MalformedEncoding: not a point of ``curve``.
    """
    try:
        return _compress(_native_point(curve, point))
    except ValueError as exc:
        raise MalformedEncoding(f"Invalid {curve.value} curve point") from exc


def format_did_key(curve: Curve, compressed: bytes) -> str:
    """``did:key:z…`` text of a 33-byte compressed point."""
    return DID_KEY_PREFIX + "z" + base58.b58encode(_MULTICODEC[curve] + compressed).decode()


class PrivateKey:
    """A signing key for tests, clients and load generation (never used by the server).

    ``sign`` returns 64 bytes r‖s, always low-S, over SHA-256 of the data.
    """

    def __init__(self, curve: Curve, secret: bytes) -> None:
        self.curve = curve
        self.secret = secret
        if curve is Curve.K256:
            self._k256 = coincurve.PrivateKey(secret)
            compressed = _compress(self._k256.public_key)
        else:
            self._p256 = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())
            compressed = _compress(self._p256.public_key())
        self.did_key = format_did_key(curve, compressed)

    @classmethod
    def generate(cls, curve: Curve = Curve.K256) -> PrivateKey:
        """A fresh random key on ``curve``."""
        if curve is Curve.K256:
            return cls(curve, coincurve.PrivateKey().secret)
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(curve, key.private_numbers().private_value.to_bytes(32, "big"))

    @classmethod
    def from_seed(cls, seed: bytes | str, curve: Curve = Curve.K256) -> PrivateKey:
        """A deterministic key derived from ``seed`` (tests and fixtures only)."""
        material = seed.encode() if isinstance(seed, str) else seed
        n = _ORDER[curve]
        value = int.from_bytes(hashlib.sha256(material).digest(), "big") % (n - 1) + 1
        return cls(curve, value.to_bytes(32, "big"))

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 signature of ``data`` as 64 bytes r‖s with low S."""
        if self.curve is Curve.K256:
            return self._k256.sign_recoverable(data)[:64]
        r, s = decode_dss_signature(self._p256.sign(data, ec.ECDSA(hashes.SHA256())))
        n = _ORDER[Curve.P256]
        if s > n // 2:
            s = n - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
