"""Read endpoints: shapes, content types, CORS, 404s, export paging in both modes."""

from __future__ import annotations

from datetime import timedelta

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from plc.signing import cid_of, sign_operation, tombstone

from ..conftest import Clock, LiveServer
from ..helpers import new_did, update


def _register(client: TestClient, clock: Clock, seed: str) -> tuple[str, list[dict], list]:  # type: ignore[type-arg]
    did, genesis, keys = new_did(seed)
    assert client.post(f"/{did}", json=genesis).status_code == 200
    clock.advance(timedelta(seconds=1))
    op1 = update(genesis, keys[0], also_known_as=[f"at://{seed}2.example.com"])
    assert client.post(f"/{did}", json=op1).status_code == 200
    clock.advance(timedelta(seconds=1))
    return did, [genesis, op1], keys


def test_read_endpoints(client: TestClient, clock: Clock) -> None:
    did, ops, _ = _register(client, clock, "reader")
    doc = client.get(f"/{did}")
    assert doc.status_code == 200
    assert doc.headers["content-type"] == "application/did+ld+json; charset=utf-8"
    assert doc.headers["access-control-allow-origin"] == "*"
    assert doc.json()["alsoKnownAs"] == ["at://reader2.example.com"]
    data = client.get(f"/{did}/data").json()
    assert data == {
        "did": did,
        "verificationMethods": ops[1]["verificationMethods"],
        "rotationKeys": ops[1]["rotationKeys"],
        "alsoKnownAs": ["at://reader2.example.com"],
        "services": ops[1]["services"],
    }
    assert client.get(f"/{did}/log").json() == ops
    assert client.get(f"/{did}/log/last").json() == ops[1]
    audit = client.get(f"/{did}/log/audit").json()
    assert [a["cid"] for a in audit] == [cid_of(o) for o in ops]
    assert list(audit[0]) == ["did", "operation", "cid", "nullified", "createdAt"]


def test_tombstoned_did(client: TestClient, clock: Clock) -> None:
    did, ops, keys = _register(client, clock, "gone")
    tomb = sign_operation(tombstone(cid_of(ops[1])), keys[0])
    assert client.post(f"/{did}", json=tomb).status_code == 200
    for path in (f"/{did}", f"/{did}/data"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json() == {"message": f"DID not available: {did}"}
    assert client.get(f"/{did}/log/last").json() == tomb
    assert len(client.get(f"/{did}/log/audit").json()) == 3


@pytest.mark.parametrize(
    "path",
    [
        "/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
        "/DID:PLC:AAAA",
        "/whatever",
        "/did:plc:x/log",
        "/did:plc:x/log/audit",
        "/did:plc:x/log/last",
        "/did:plc:x/data",
    ],
)
def test_unregistered_answers_404_with_message(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    segment = path.split("/")[1]
    assert response.json() == {"message": f"DID not registered: {segment}"}


def test_path_did_is_not_case_folded(client: TestClient, clock: Clock) -> None:
    did, _, _ = _register(client, clock, "casey")
    assert client.get(f"/{did.upper()}").status_code == 404
    assert client.get(f"/{did}").status_code == 200


def test_unmatched_routes_have_message_bodies(client: TestClient) -> None:
    response = client.get("/a/b/c/d")
    assert response.status_code == 404 and "message" in response.json()
    # A method no route takes is an unmatched route, as in the reference's Express router.
    for method in ("DELETE", "PUT", "PATCH"):
        response = client.request(method, "/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")
        assert response.status_code == 404 and response.json() == {"message": "Not Found"}
    assert client.post("/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/data").status_code == 404
    xrpc = client.get("/xrpc/com.atproto.identity.refreshIdentity")
    assert xrpc.status_code == 405
    assert xrpc.json() == {"error": "InvalidRequest", "message": "Method Not Allowed"}


@pytest.mark.parametrize(
    "path", ["/xrpc/com.atproto.identity.nonexistent", "/xrpc/com.atproto.server.describeServer"]
)
def test_an_xrpc_method_not_served_is_method_not_implemented(client: TestClient, path: str) -> None:
    """As XRPC servers answer (501); a 404 means "no XRPC server here" to XRPC clients."""
    for response in (client.get(path), client.post(path, json={})):
        assert response.status_code == 501
        assert response.json() == {
            "error": "MethodNotImplemented",
            "message": "Method Not Implemented",
        }
        assert response.headers["access-control-allow-origin"] == "*"


def test_export_sequence_mode(client: TestClient, clock: Clock) -> None:
    dids = [_register(client, clock, f"exp{i}")[0] for i in range(3)]
    body = client.get("/export?after=0")
    assert body.headers["content-type"] == "application/jsonlines"
    lines = body.content.split(b"\n")
    assert not body.content.endswith(b"\n")
    assert [orjson.loads(line)["seq"] for line in lines] == list(range(1, 7))
    first = orjson.loads(lines[0])
    assert list(first) == ["did", "cid", "seq", "createdAt", "operation", "type"]
    assert first["type"] == "sequenced_op" and first["did"] == dids[0]
    page = client.get("/export?after=2&count=2").content.split(b"\n")
    assert [orjson.loads(line)["seq"] for line in page] == [3, 4]
    assert client.get("/export?after=6").content == b""
    # the same bytes as stored, every time
    assert client.get("/export?after=0").content == body.content


def test_export_time_mode(client: TestClient, clock: Clock) -> None:
    _register(client, clock, "legacyexp")
    lines = client.get("/export").content.split(b"\n")
    entries = [orjson.loads(line) for line in lines]
    assert [list(e) for e in entries] == [["did", "cid", "createdAt", "operation", "nullified"]] * 2
    after = entries[0]["createdAt"]
    assert len(client.get(f"/export?after={after}").content.split(b"\n")) == 1
    # Offsets that carry a moment past Python's years 1-9999 (JavaScript's Date reads them):
    # before every op, after every op; never a 500.
    everything = client.get("/export", params={"after": "0001-01-01T00:00:00+14:00"})
    assert everything.status_code == 200 and everything.content.split(b"\n") == lines
    # Date-only forms, as JavaScript's Date reads them (UTC midnight, the 1st of a month).
    for early in ("2000-01-01", "2000-01"):
        response = client.get("/export", params={"after": early})
        assert response.status_code == 200 and response.content.split(b"\n") == lines
    assert client.get("/export", params={"after": "2000-13"}).status_code == 400
    # RFC 2822, as JavaScript's toUTCString writes it and plc.directory's new Date() reads it
    rfc_2822 = client.get("/export", params={"after": "Sat, 01 Jan 2000 00:00:00 GMT"})
    assert rfc_2822.status_code == 200 and rfc_2822.content.split(b"\n") == lines
    for late in (
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:59:59.999-00:01",
        "9999-12",
        "+275760-09-13T00:00:00.000Z",  # ECMAScript's expanded years (were 400)
    ):
        nothing = client.get("/export", params={"after": late})
        assert nothing.status_code == 200 and nothing.content == b""
    for early in ("-000001-01-01T00:00:00Z", "0000-01-01", "2000-01-01T24:00:00Z"):
        response = client.get("/export", params={"after": early})
        assert response.status_code == 200 and response.content.split(b"\n") == lines, early
    for invalid in ("2000-01-01T24:00:01Z", "+275760-09-13T00:00:00.001Z", "-000000-01-01"):
        assert client.get("/export", params={"after": invalid}).status_code == 400, invalid


def test_export_after_a_seq_no_log_reaches_is_empty(client: TestClient) -> None:
    did, genesis, _ = new_did("far-after")
    assert client.post(f"/{did}", json=genesis).status_code == 200
    for after in ("9" * 19, "1" + "0" * 99):  # as the reference (and the stream's cursor)
        response = client.get(f"/export?after={after}")
        assert response.status_code == 200 and response.content == b"", after
    # leading zeros count for nothing: 0…0 is after=0, not a seq past the log
    line = client.get("/export?after=0").content
    assert line.startswith(b'{"did"')
    assert client.get("/export?after=" + "0" * 40).content == line


@pytest.mark.parametrize(
    "query, message",
    [
        ("count=0", "Invalid count parameter"),
        ("count=1001", "Invalid count parameter"),
        ("count=abc", "Invalid count parameter"),
        ("count=-1", "Invalid count parameter"),
        ("after=notatime", "Invalid after parameter"),
        ("after=" + "9" * 101, "Invalid after parameter"),
        # ISO forms Python reads and JavaScript's Date does not (nor the reference).
        ("after=2026-11-30T05:37:59.342Z%00", "Invalid after parameter"),
        ("after=2026-W48-1", "Invalid after parameter"),
        ("after=2026-11-30T05:37:59,342", "Invalid after parameter"),
        ("after=2026-334", "Invalid after parameter"),
        ("after=20261130T053759", "Invalid after parameter"),
    ],
)
def test_export_bad_parameters(client: TestClient, query: str, message: str) -> None:
    response = client.get(f"/export?{query}")
    assert response.status_code == 400 and response.json() == {"message": message}


def test_health(client: TestClient) -> None:
    response = client.get("/_health")
    assert response.status_code == 200 and "version" in response.json()


def test_head_answers_as_get_without_the_body(live_server: LiveServer) -> None:
    """HEAD of every GET route: the GET's status and headers (Content-Length included), no
    body; over a real server, so the connection stays usable after each answer."""
    did, op, _keys = new_did("head")
    with httpx.Client(base_url=live_server.url) as http:
        assert http.post(f"/{did}", json=op).status_code == 200
        paths = [f"/{did}", f"/{did}/data", f"/{did}/log", f"/{did}/log/audit"]
        paths += [f"/{did}/log/last", "/export?after=0", "/_health", "/did:plc:unknown"]
        for path in paths:
            got, head = http.get(path), http.head(path)
            assert head.status_code == got.status_code, path
            assert head.content == b"", path
            for name in ("content-type", "content-length", "access-control-allow-origin"):
                assert head.headers.get(name) == got.headers.get(name), (path, name)
        assert http.head("/export?count=0").status_code == 400
        assert http.get(f"/{did}").json()["id"] == did  # the connection still frames well
