"""Admission policy through the API: rate limits (429 + Retry-After, recovery exempt),
rotation-key rules, op size; history stays valid with the policy off."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from plc.keys import Curve
from plc.signing import create_did, sign_operation

from ..conftest import Clock
from ..helpers import key, new_did, update

_JSON = {"content-type": "application/json"}


def test_eleventh_op_within_an_hour_is_429_and_recovery_still_accepted(
    client: TestClient, clock: Clock
) -> None:
    did, genesis, keys = new_did("rate")
    assert client.post(f"/{did}", json=genesis).status_code == 200
    ops = [genesis]
    for i in range(9):
        clock.advance(timedelta(minutes=1))
        op = update(ops[-1], keys[1], also_known_as=[f"at://rate{i}.test"])
        assert client.post(f"/{did}", json=op).status_code == 200
        ops.append(op)
    clock.advance(timedelta(minutes=1))
    eleventh = update(ops[-1], keys[1], also_known_as=["at://one-too-many.test"])
    limited = client.post(f"/{did}", json=eleventh)
    assert limited.status_code == 429
    assert limited.json() == {"message": "To many operations within last hour (max 10)"}
    assert 0 < int(limited.headers["retry-after"]) <= 3600
    # a recovery by a higher-authority key is exempt (it nullifies the last op)
    recovery = update(ops[-2], keys[0], also_known_as=["at://recovered.test"])
    assert client.post(f"/{did}", json=recovery).status_code == 200
    audit = client.get(f"/{did}/log/audit").json()
    assert [a["nullified"] for a in audit] == [False] * 9 + [True, False]
    # after the hour passes, ordinary ops are accepted again
    clock.advance(timedelta(hours=1))
    later = update(recovery, keys[1], also_known_as=["at://later.test"])
    assert client.post(f"/{did}", json=later).status_code == 200


def test_rotation_key_rules(client: TestClient) -> None:
    six = [key(f"six{i}") for i in range(6)]
    did, op = create_did(six)
    assert client.post(f"/{did}", json=op).status_code == 400
    dup = [key("dup"), key("dup")]
    did, op = create_did(dup)
    response = client.post(f"/{did}", json=op)
    assert response.status_code == 400 and "duplicate rotationKey" in response.json()["message"]
    p256 = [key("p-rot", Curve.P256), key("k-rot")]
    did, op = create_did(
        p256, signing_key="did:key:z6MkjwbBXZnFqL8su24wGL2Fdjti6GSLv9SWdYGswfazUPm9"
    )
    assert client.post(f"/{did}", json=op).status_code == 200  # Ed25519 verification method
    assert (
        client.get(f"/{did}")
        .json()["verificationMethod"][0]["publicKeyMultibase"]
        .startswith("z6Mk")
    )
    ed_rotation = sign_operation(
        {
            **{k: v for k, v in op.items() if k != "sig"},
            "rotationKeys": ["did:key:z6MkjwbBXZnFqL8su24wGL2Fdjti6GSLv9SWdYGswfazUPm9"],
        },
        p256[0],
    )
    assert (
        client.post("/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", json=ed_rotation)
        .json()["message"]
        .startswith("Invalid rotationKey")
    )


def test_free_form_also_known_as_accepted(client: TestClient) -> None:
    did, genesis, _ = new_did("freeform", handle="not a handle at all")
    assert client.post(f"/{did}", json=genesis).status_code == 200
    assert client.get(f"/{did}/data").json()["alsoKnownAs"] == ["at://not a handle at all"]


def test_resubmitting_a_stored_op_is_200_even_under_stricter_limits(app_factory) -> None:  # type: ignore[no-untyped-def]
    # Stored while the limit allowed it (or imported); the limit is then tightened. The op
    # is still the DID's, and re-submission stays idempotent rather than a policy refusal.
    did, genesis = create_did([key(f"wide{i}") for i in range(6)])
    with TestClient(app_factory(max_rotation_keys=10)) as relaxed:
        assert relaxed.post(f"/{did}", json=genesis).status_code == 200
    with TestClient(app_factory()) as strict:
        again = strict.post(f"/{did}", json=genesis)
        assert again.status_code == 200, again.text
        assert len(strict.get(f"/{did}/log/audit").json()) == 1
        # a new op under the tightened limit is still refused
        other, fresh = create_did([key(f"wider{i}") for i in range(6)])
        refused = strict.post(f"/{other}", json=fresh)
        assert refused.json() == {"message": "Too many rotationKey entries (max 5)"}


def test_oversized_invalid_op_is_refused_as_too_large(client: TestClient) -> None:
    # The reference checks the DAG-CBOR size before the schema (plc-spec-notes §3.1 step 2a):
    # an oversized op with an unknown field is "too large", a small one "not a valid operation".
    did, genesis, _ = new_did("oversized")
    big = {**genesis, "unknownField": "x" * 5000}
    response = client.post(f"/{did}", json=big)
    assert response.status_code == 400
    assert response.json() == {
        "message": "Operation too large (4000 bytes maximum in cbor encoding)"
    }
    small = client.post(f"/{did}", json={**genesis, "unknownField": "x"})
    assert small.status_code == 400
    assert small.json()["message"].startswith("Not a valid operation")
    deep = client.post(f"/{did}", content=b"[" * 1020 + b"]" * 1020, headers=_JSON)
    assert deep.status_code == 400 and "message" in deep.json()
    assert client.get(f"/{did}").status_code == 404
