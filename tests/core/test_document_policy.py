"""DID documents against a real plc.directory document, and the admission policy."""

from __future__ import annotations

import json
from datetime import timedelta

import libipld
import pytest

from plc.document import format_data, format_did_document
from plc.errors import OperationTooLarge, PolicyViolation, RateLimited
from plc.keys import Curve, PrivateKey
from plc.operation import DocumentData, normalize, parse_operation
from plc.policy import PolicySettings, validate_admission, validate_rate_limit
from plc.signing import create_did, sign_operation
from plc.timestamps import parse_timestamp

from ..conftest import SHARED_VECTORS
from ..helpers import key

INDIGO = SHARED_VECTORS / "indigo" / "atproto" / "identity" / "testdata"


def test_document_matches_plc_directory() -> None:
    expected = json.loads((INDIGO / "did_plc_doc.json").read_text())
    state = DocumentData(
        rotation_keys=(),
        verification_methods={
            "atproto": "did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"
        },
        also_known_as=("at://atproto.com",),
        services={
            "atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": "https://bsky.social"}
        },
    )
    document = format_did_document(expected["id"], state)
    assert json.dumps(document) == json.dumps(expected)  # same keys in the same order


def test_document_contexts_and_order() -> None:
    p256 = key("p", Curve.P256).did_key
    k256 = key("k").did_key
    ed = "did:key:z6MkjwbBXZnFqL8su24wGL2Fdjti6GSLv9SWdYGswfazUPm9"
    state = DocumentData((), {"zz_long": p256, "b": ed, "a": k256, "atproto": k256}, (), {})
    document = format_did_document("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", state)
    assert [m["id"].split("#")[1] for m in document["verificationMethod"]] == [
        "a",
        "b",
        "atproto",
        "zz_long",
    ]
    assert document["@context"][2:] == [
        "https://w3id.org/security/suites/secp256k1-2019/v1",
        "https://w3id.org/security/suites/ecdsa-2019/v1",
    ]
    data = format_data("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", state)
    assert list(data) == ["did", "verificationMethods", "rotationKeys", "alsoKnownAs", "services"]


def test_keys_that_do_not_parse_add_no_suite_context() -> None:
    # The multicodec says k256 or p256, the point does not parse (plc-spec-notes.md §5:
    # unparseable keys add nothing; the reference's parseDidKey fails on them).
    short_k256 = "did:key:" + libipld.encode_multibase("z", b"\xe7\x01\x02" + bytes(5))
    off_curve_p256 = "did:key:" + libipld.encode_multibase("z", b"\x80\x24\x02" + b"\xff" * 32)
    state = DocumentData((), {"a": short_k256, "b": off_curve_p256}, (), {})
    document = format_did_document("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", state)
    assert document["@context"] == [
        "https://www.w3.org/ns/did/v1",
        "https://w3id.org/security/multikey/v1",
    ]
    assert [m["publicKeyMultibase"] for m in document["verificationMethod"]] == [
        short_k256.removeprefix("did:key:"),
        off_curve_p256.removeprefix("did:key:"),
    ]


POLICY = PolicySettings()


def _genesis(**overrides: object) -> dict:  # type: ignore[type-arg]
    rotation = [key("policy-0"), key("policy-1")]
    _, op = create_did(rotation)
    unsigned = {k: v for k, v in op.items() if k != "sig"}
    unsigned.update(overrides)
    return sign_operation(unsigned, rotation[0])


def test_policy_accepts_ordinary_op_and_ed25519_method() -> None:
    ed = "did:key:z6MkjwbBXZnFqL8su24wGL2Fdjti6GSLv9SWdYGswfazUPm9"
    op = _genesis(verificationMethods={"atproto": ed}, alsoKnownAs=["anything goes", "at://x"])
    validate_admission(parse_operation(op), POLICY)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"rotationKeys": [key(f"k{i}").did_key for i in range(6)]},
            "Too many rotationKey entries (max 5)",
        ),
        ({"rotationKeys": []}, "Too few rotationKey entries (min 1)"),
        ({"rotationKeys": [key("d").did_key, key("d").did_key]}, "duplicate rotationKey entry"),
        (
            {"rotationKeys": ["did:key:z6MkjwbBXZnFqL8su24wGL2Fdjti6GSLv9SWdYGswfazUPm9"]},
            "Invalid rotationKey",
        ),
        ({"alsoKnownAs": [f"at://{i}" for i in range(11)]}, "To many alsoKnownAs entries (max 10)"),
        ({"alsoKnownAs": ["at://a", "at://a"]}, "duplicate alsoKnownAs entry"),
        ({"alsoKnownAs": ["a" * 259]}, "alsoKnownAs entry too long (max 258)"),
        (
            {"services": {f"s{i}": {"type": "t", "endpoint": "e"} for i in range(11)}},
            "To many service entries",
        ),
        ({"services": {"s" * 33: {"type": "t", "endpoint": "e"}}}, "Service id too long (max 32)"),
        ({"services": {"s": {"type": "t" * 257, "endpoint": "e"}}}, "Service type too long"),
        ({"services": {"s": {"type": "t", "endpoint": "e" * 513}}}, "Service endpoint too long"),
        (
            {"verificationMethods": {f"v{i}": key("v").did_key for i in range(11)}},
            "Too many Verification Method entries",
        ),
        ({"verificationMethods": {"v" * 33: key("v").did_key}}, "Verification Method id too long"),
        (
            {"verificationMethods": {"atproto": "did:key:z" + "1" * 300}},
            "Verification Method key too long",
        ),
        ({"verificationMethods": {"atproto": "did:banana"}}, "Invalid verificationMethod key"),
        ({"verificationMethods": {"atproto": "did:key:B0O"}}, "Invalid verificationMethod key"),
    ],
)
def test_policy_refusals(overrides: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(PolicyViolation) as refused:
        validate_admission(parse_operation(_genesis(**overrides)), POLICY)
    assert refused.value.message.startswith(message)


EMOJI = "\U0001f600"  # outside the BMP: two UTF-16 code units, as JavaScript counts length


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"alsoKnownAs": ["at://" + EMOJI * 127]}, "alsoKnownAs entry too long (max 258)"),
        ({"services": {EMOJI * 17: {"type": "t", "endpoint": "e"}}}, "Service id too long"),
        ({"services": {"s": {"type": EMOJI * 129, "endpoint": "e"}}}, "Service type too long"),
        ({"services": {"s": {"type": "t", "endpoint": EMOJI * 257}}}, "Service endpoint too"),
        ({"verificationMethods": {EMOJI * 17: key("v").did_key}}, "Verification Method id"),
    ],
)
def test_length_limits_count_utf16_units(overrides: dict, message: str) -> None:  # type: ignore[type-arg]
    # Each value is within the limit in code points and over it in UTF-16 units (the
    # reference's `.length`): plc.directory refuses these, so we do too.
    with pytest.raises(PolicyViolation) as refused:
        validate_admission(parse_operation(_genesis(**overrides)), POLICY)
    assert refused.value.message.startswith(message)


def test_length_limits_accept_the_exact_utf16_maximum() -> None:
    validate_admission(
        parse_operation(
            _genesis(
                alsoKnownAs=["at://" + EMOJI * 126 + "a"],  # 5 + 252 + 1 = 258 units
                services={EMOJI * 16: {"type": "é" * 256, "endpoint": EMOJI * 256}},
                verificationMethods={EMOJI * 16: key("v").did_key},
            )
        ),
        POLICY,
    )


def test_policy_size_limit_is_exact() -> None:
    relaxed = POLICY.model_copy(update={"max_also_known_as_length": 10_000})
    sizes = {}
    for n in range(3500, 3800):
        op = _genesis(alsoKnownAs=["x" * n])
        sizes[len(parse_operation(op).signed_cbor)] = op
    validate_admission(parse_operation(sizes[4000]), relaxed)
    with pytest.raises(OperationTooLarge):
        validate_admission(parse_operation(sizes[4001]), relaxed)


def test_rate_limit_windows_and_retry_after() -> None:
    now = parse_timestamp("2026-01-01T12:00:00.000Z")
    stamps = [now - timedelta(minutes=50) + timedelta(minutes=i) for i in range(10)]
    with pytest.raises(RateLimited) as limited:
        validate_rate_limit(stamps, now, POLICY)
    assert limited.value.message == "To many operations within last hour (max 10)"
    assert 600 <= limited.value.retry_after_s <= 601  # the oldest leaves the hour in 10 min
    validate_rate_limit(stamps[1:], now, POLICY)
    day = [now - timedelta(hours=23) + timedelta(minutes=40 * i) for i in range(30)]
    day = [t for t in day if t < now - timedelta(hours=1)][:30]
    validate_rate_limit(day[:29], now, POLICY)
    validate_rate_limit(stamps, now, POLICY.model_copy(update={"enabled": False}))


def test_retry_after_is_the_longest_wait_of_the_full_windows() -> None:
    # 20 ops spread over the last day, then 10 in the last hour: the hour frees up in 10
    # minutes, the day only when its oldest op leaves it; a client told to come back in 10
    # minutes would be refused again.
    now = parse_timestamp("2026-01-01T12:00:00.000Z")
    day = [now - timedelta(hours=20) + timedelta(minutes=30 * i) for i in range(20)]
    hour = [now - timedelta(minutes=50) + timedelta(minutes=i) for i in range(10)]
    with pytest.raises(RateLimited) as limited:
        validate_rate_limit(day + hour, now, POLICY)
    assert limited.value.message == "To many operations within last day (max 30)"
    assert limited.value.retry_after_s == 4 * 3600 + 1  # the oldest op is 20 h old
    later = now + timedelta(seconds=limited.value.retry_after_s)
    validate_rate_limit(day + hour, later, POLICY)  # admitted at the time the answer gave


def test_legacy_create_refused_for_new_ops() -> None:
    legacy = {
        "type": "create",
        "signingKey": key("l").did_key,
        "recoveryKey": key("l2").did_key,
        "handle": "x.test",
        "service": "https://pds",
        "prev": None,
    }
    op = parse_operation(sign_operation(legacy, key("l2")))
    with pytest.raises(PolicyViolation):
        validate_admission(op, POLICY)
    assert PrivateKey  # imported for type use in helpers


@pytest.mark.parametrize(
    ("handle", "expected"),
    [
        ("x.test", "at://x.test"),
        ("at://x.test", "at://x.test"),
        ("http://x.test", "at://x.test"),
        ("https://x.test", "at://x.test"),
        # The reference's ensureAtprotoPrefix: at:// first kept; else the first http:// and
        # then the first https:// removed wherever they are (String.replace), at:// added.
        ("http://at://a.test", "at://at://a.test"),
        ("https://http://a.test", "at://a.test"),
        ("a.http://test", "at://a.test"),
        ("http://https://a.test", "at://a.test"),
        ("https://https://a.test", "at://https://a.test"),
    ],
)
def test_legacy_handle_becomes_an_at_uri_as_the_reference_makes_it(
    handle: str, expected: str
) -> None:
    legacy = {
        "type": "create",
        "signingKey": key("l").did_key,
        "recoveryKey": key("l2").did_key,
        "handle": handle,
        "service": "pds.test",
        "prev": None,
    }
    state = normalize(parse_operation(sign_operation(legacy, key("l2"))))
    assert state is not None
    assert state.also_known_as == (expected,)
    assert state.services["atproto_pds"]["endpoint"] == "https://pds.test"
