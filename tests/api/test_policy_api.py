"""Admission policy through the API: rate limits (429 + Retry-After, recovery exempt),
rotation-key rules, op size; history stays valid with the policy off."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from plc.keys import Curve
from plc.signing import create_did, sign_operation

from ..conftest import Clock
from ..helpers import key, new_did, update


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
