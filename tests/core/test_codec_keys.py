"""Encodings and keys against third-party fixtures (atproto-interop-tests, spec notes)."""

from __future__ import annotations

import base64
import json

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plc.codec import (
    cid_for_cbor,
    decode_b64url_strict,
    decode_signature,
    encode_b64url,
    encode_dag_cbor,
    parse_cid,
)
from plc.errors import MalformedEncoding, UnsupportedKeyType
from plc.keys import Curve, PrivateKey, multikey_type, parse_did_key

from ..conftest import SHARED_VECTORS

CRYPTO = SHARED_VECTORS / "atproto-interop-tests" / "crypto"
DATA_MODEL = SHARED_VECTORS / "atproto-interop-tests" / "data-model"


def _std_b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize(
    "case",
    json.loads((CRYPTO / "signature-fixtures.json").read_text()),
    ids=lambda c: c["comment"],
)
def test_signature_fixtures(case: dict[str, str]) -> None:
    key = parse_did_key(case["publicKeyDid"])
    verified = key.verifies(_std_b64(case["messageBase64"]), _std_b64(case["signatureBase64"]))
    assert verified is case["validSignature"]


@pytest.mark.parametrize(
    "case",
    json.loads((CRYPTO / "w3c_didkey_K256.json").read_text()),
    ids=lambda c: c["publicDidKey"],
)
def test_k256_did_key_from_private(case: dict[str, str]) -> None:
    private = PrivateKey(Curve.K256, bytes.fromhex(case["privateKeyBytesHex"]))
    assert private.did_key == case["publicDidKey"]
    assert parse_did_key(case["publicDidKey"]).curve is Curve.K256


def test_p256_did_key_from_private() -> None:
    import base58

    for case in json.loads((CRYPTO / "w3c_didkey_P256.json").read_text()):
        private = PrivateKey(Curve.P256, base58.b58decode(case["privateKeyBytesBase58"]))
        assert private.did_key == case["publicDidKey"]
        assert parse_did_key(case["publicDidKey"]).curve is Curve.P256


@pytest.mark.parametrize(
    "case", json.loads((DATA_MODEL / "data-model-fixtures.json").read_text()), ids=str
)
def test_data_model_fixtures(case: dict[str, object]) -> None:
    from libipld import decode_dag_cbor

    cbor = _std_b64(str(case["cbor_base64"]))
    value = decode_dag_cbor(cbor)
    assert encode_dag_cbor(value) == cbor
    assert cid_for_cbor(cbor) == case["cid"]


def test_spec_vector_unsigned_tombstone() -> None:
    unsigned = {
        "type": "plc_tombstone",
        "prev": "bafyreihqa4o4gsyai22ydms6j4cua6yr6tuc7trq2temvnycadk2daniru",
    }
    assert encode_dag_cbor(unsigned).hex() == (
        "a26470726576783b62616679726569687161346f346773796169323279646d73366a346375613679"
        "7236747563377472713274656d766e796361646b3264616e69727564747970656d706c635f746f6d"
        "6273746f6e65"
    )


def test_known_did_keys() -> None:
    k256 = parse_did_key("did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF")
    assert k256.curve is Curve.K256 and k256.compressed[0] == 2
    p256 = parse_did_key("did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo")
    assert p256.curve is Curve.P256 and p256.compressed[0] == 3
    ed = "did:key:z6MkjwbBXZnFqL8su24wGL2Fdjti6GSLv9SWdYGswfazUPm9"
    assert multikey_type(ed) == "ed25519"
    with pytest.raises(UnsupportedKeyType):
        parse_did_key(ed)


@pytest.mark.parametrize(
    "text",
    [
        "did:web:example.com",
        "did:key:Q3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF",
        "did:key:z0OIl",
        "did:key:z",
        "blah",
        # the legacy uncompressed form is not a did:key
        "did:key:zQYEBzXeuTM9UR3rfvNag6L3RNAs5pQZyYPsomTsgQhsxLdEgCrPTLgFna8yqCnxPpNT7DBk6Ym3dgPKNu86vt9GR",
    ],
)
def test_bad_did_keys(text: str) -> None:
    with pytest.raises((MalformedEncoding, UnsupportedKeyType)):
        parse_did_key(text)


@pytest.mark.parametrize(
    "sig",
    [
        "A" * 86 + "\n",
        "A" * 85 + "B",  # non-zero pad bits
        "A" * 86 + "==",
        "A" * 84,
        "A" * 88,
        "+" * 86,
        "A" * 85 + "\u00e9",
    ],
)
def test_decode_signature_is_strict(sig: str) -> None:
    with pytest.raises(MalformedEncoding):
        decode_signature(sig)


@given(st.binary(max_size=80))
def test_b64url_round_trip(data: bytes) -> None:
    assert decode_b64url_strict(encode_b64url(data)) == data


@given(st.binary(min_size=64, max_size=64))
def test_signature_round_trip(data: bytes) -> None:
    assert decode_signature(encode_b64url(data)) == data


def test_parse_cid() -> None:
    cid = "bafyreifafe44xylxagcom47xb3lrya5pysu3b7zfjmmmitiuimhmgmerze"
    assert len(parse_cid(cid)) == 32
    for bad in [
        cid.upper(),
        "z" + cid[1:],
        cid[:-1],
        cid + "a",
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
    ]:
        with pytest.raises(MalformedEncoding):
            parse_cid(bad)


@pytest.mark.parametrize("curve", [Curve.K256, Curve.P256])
def test_sign_is_low_s_and_verifies(curve: Curve) -> None:
    key = PrivateKey.from_seed("low-s", curve)
    public = parse_did_key(key.did_key)
    for i in range(30):
        message = f"message {i}".encode()
        sig = key.sign(message)
        assert public.verifies(message, sig)
        assert not public.verifies(message + b"x", sig)


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.one_of(st.none(), st.text(max_size=12), st.lists(st.text(max_size=5), max_size=3)),
        max_size=6,
    )
)
def test_cbor2_canonical_agrees_with_libipld(value: dict[str, object]) -> None:
    assert cbor2.dumps(value, canonical=True) == encode_dag_cbor(value)
