"""Bad input of every kind: a 4xx with a {"message"} body, never a 500, nothing stored."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from plc.signing import sign_operation

from ..helpers import new_did, update

DID, GENESIS, KEYS = new_did("bad-input")


def _nothing_stored(client: TestClient) -> None:
    assert client.get("/export?after=0").content == b""


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"{", "application/json"),
        (b"", "application/json"),
        (b"null", "application/json"),
        (b"[]", "application/json"),
        (b"123", "application/json"),
        (b'"str"', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b'{"a":"\\ud800"}', "application/json"),
        (orjson.dumps(GENESIS), "text/plain"),
        (orjson.dumps(GENESIS), "application/x-www-form-urlencoded"),
        (orjson.dumps(GENESIS), ""),
        (orjson.dumps({**GENESIS, "sig": "not base64!"}), "application/json"),
        (orjson.dumps({**GENESIS, "sig": "A" * 86}), "application/json"),
        (orjson.dumps({**GENESIS, "sig": 5}), "application/json"),
        (orjson.dumps({**GENESIS, "prev": "not-a-cid"}), "application/json"),
        (orjson.dumps({**GENESIS, "rotationKeys": [None]}), "application/json"),
        (orjson.dumps({**GENESIS, "alsoKnownAs": ["\u0000"]}), "application/json"),
        (orjson.dumps({**GENESIS, "services": {"x": 1}}), "application/json"),
        (orjson.dumps({**GENESIS, "type": None}), "application/json"),
        (orjson.dumps({**GENESIS, "verificationMethods": []}), "application/json"),
        (b'{"type":"plc_operation","prev":null,"prev":null}', "application/json"),
        (orjson.dumps({**GENESIS, "sig": "\U0001f600" * 43}), "application/json"),
        (orjson.dumps({"x": 1e308}), "application/json"),
        (orjson.dumps({"x": 2**63}), "application/json"),
        (
            b'{"x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}',
            "application/json",
        ),
        # Nesting that orjson reads but cannot write back (over 255) and that Python's repr
        # cannot print (about 1000): the error message must not need either.
        *[(b'{"a":' + b"[" * n + b"]" * n + b"}", "application/json") for n in (300, 1000, 1020)],
        (b"[" * 5000 + b"]" * 5000, "application/json"),
    ],
)
def test_bad_bodies_are_400(client: TestClient, body: bytes, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(f"/{DID}", content=body, headers=headers)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert isinstance(message, str) and len(message) < 400
    _nothing_stored(client)


def test_huge_body_is_413(client: TestClient) -> None:
    big = orjson.dumps({**GENESIS, "alsoKnownAs": ["x" * 200_000]})
    response = client.post(f"/{DID}", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"message": "request entity too large"}
    _nothing_stored(client)


def test_oversized_op_under_body_limit_is_400(client: TestClient) -> None:
    op = sign_operation(
        {**{k: v for k, v in GENESIS.items() if k != "sig"}, "alsoKnownAs": ["y" * 5000]}, KEYS[0]
    )
    response = client.post(f"/{DID}", json=op)
    assert response.status_code == 400
    assert response.json()["message"].startswith("Operation too large")


@pytest.mark.parametrize(
    "path",
    ["/did:plc:" + "a" * 5000, "/%00", "/did:plc:%F0%9F%98%80", "/did:web:example.com", "/export2"],
)
def test_odd_paths_never_500(client: TestClient, path: str) -> None:
    get = client.get(path)
    assert get.status_code == 404 and len(get.json()["message"]) <= 250
    post = client.post(path, json=GENESIS)
    assert post.status_code == 400 and len(post.json()["message"]) <= 250
    _nothing_stored(client)


def test_messages_never_echo_unbounded_payloads(client: TestClient) -> None:
    op = {**GENESIS, "alsoKnownAs": ["z" * 50_000], "extra": "q" * 10_000}
    response = client.post(f"/{DID}", json=op)
    assert response.status_code == 400
    assert len(response.text) < 500


def test_resubmission_is_idempotent_and_nullified_resubmission_is_400(
    client: TestClient, clock
) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    assert client.post(f"/{DID}", json=GENESIS).status_code == 200
    assert client.post(f"/{DID}", json=GENESIS).status_code == 200
    assert client.get("/export?after=0").content.count(b"\n") == 0  # one line only
    clock.advance(timedelta(minutes=1))
    hijack = update(GENESIS, KEYS[1], also_known_as=["at://evil.test"])
    assert client.post(f"/{DID}", json=hijack).status_code == 200
    clock.advance(timedelta(minutes=1))
    recovery = update(GENESIS, KEYS[0], also_known_as=["at://good.test"])
    assert client.post(f"/{DID}", json=recovery).status_code == 200
    again = client.post(f"/{DID}", json=hijack)
    assert again.status_code == 400
    assert again.json()["message"].startswith("Operations not correctly ordered")
    assert len(client.get(f"/{DID}/log/audit").json()) == 3
