"""Bad input of every kind: a 4xx with a {"message"} body, never a 500, nothing stored."""

from __future__ import annotations

import gzip
import socket
import zlib

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from plc.signing import sign_operation

from ..conftest import LiveServer
from ..helpers import new_did, update

DID, GENESIS, KEYS = new_did("bad-input")
_JSON = {"content-type": "application/json"}


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-path"])
def post_path(request: pytest.FixtureRequest, app_factory):  # type: ignore[no-untyped-def]
    """``app_factory`` with POST /{did} served by the fast path, or by FastAPI's route."""

    def build(**overrides: object) -> object:
        app = app_factory(**overrides)
        if not request.param:
            app._handlers = {}  # the same requests through FastAPI's routes
        return app

    return build


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


def test_body_limit_is_the_references_100kb(client: TestClient) -> None:
    # express.json({limit: '100kb'}) reads 100kb as 102,400 bytes: a body of exactly that
    # size is read (the op, padded with whitespace, is accepted), one byte more is 413.
    op = orjson.dumps(GENESIS)
    over = op[:-1] + b" " * (102_401 - len(op)) + b"}"
    assert client.post(f"/{DID}", content=over, headers=_JSON).status_code == 413
    _nothing_stored(client)
    padded = op[:-1] + b" " * (102_400 - len(op)) + b"}"
    assert len(padded) == 102_400
    assert client.post(f"/{DID}", content=padded, headers=_JSON).status_code == 200


def test_trailing_slash_is_the_same_route_never_a_redirect(client: TestClient) -> None:
    assert client.post(f"/{DID}/", json=GENESIS).status_code == 200
    evil = {"host": "evil.example"}
    for path in (f"/{DID}", f"/{DID}/data", f"/{DID}/log/audit", "/export", "/_health"):
        plain = client.get(path, follow_redirects=False)
        slashed = client.get(path + "/", headers=evil, follow_redirects=False)
        assert slashed.status_code == plain.status_code == 200, path
        assert "location" not in slashed.headers
        if path != "/_health":
            assert slashed.content == plain.content, path
    twice = client.get(f"/{DID}//", headers=evil, follow_redirects=False)
    assert twice.status_code == 404 and "location" not in twice.headers
    assert "message" in twice.json()


@pytest.mark.parametrize("path", [f"/{DID}", f"/{DID}/log/audit", "/export", "/nowhere"])
def test_every_options_is_a_cors_preflight(client: TestClient, path: str) -> None:
    bare = client.options(path)
    assert bare.status_code == 204 and bare.content == b""
    assert bare.headers["access-control-allow-origin"] == "*"
    assert "POST" in bare.headers["access-control-allow-methods"]
    asked = client.options(
        path,
        headers={
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert asked.status_code == 204
    assert asked.headers["access-control-allow-headers"] == "content-type"


def test_expect_continue_is_not_invited_for_a_body_that_will_be_refused(
    live_server: LiveServer,
) -> None:
    # A client announcing 5 MB with "Expect: 100-continue" waits for the server's go-ahead;
    # it must get the 413 instead of an invitation to upload.
    request = (
        f"POST /{DID} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert b"100 Continue" not in answer


def test_a_stalled_body_is_408_and_the_connection_closed(post_path) -> None:  # type: ignore[no-untyped-def]
    # Headers announce 100 bytes, 10 arrive, then nothing: the request is answered 408 once
    # the body timeout passes instead of being held open for good.
    app = post_path(body_timeout_s=0.3)
    head = (
        f"POST /{DID} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n"
    ).encode()
    with LiveServer(app) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head + b'{"type": "')
            answer = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break  # the server closed the connection after answering
                answer += chunk
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/export?after=0").content == b""  # nothing stored
            metrics = http.get("/metrics").text
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert 'plc_ops_refused_total{reason="BodyTimeout"} 1.0' in metrics
    assert answer.endswith(b'{"message":"Request timeout: the body did not arrive in time"}')


def _assert_answer(client: TestClient, path: str, status: int, message: str) -> None:
    """GET ``path`` answers ``status`` with ``message`` and CORS; HEAD the same, no body."""
    answer = client.get(path)
    assert answer.status_code == status, path
    assert answer.json() == {"message": message}
    assert answer.headers["access-control-allow-origin"] == "*"
    head = client.head(path)
    assert head.status_code == status and head.content == b""


def test_an_encoded_slash_stays_inside_the_did_segment(client: TestClient) -> None:
    # Express matches routes on the raw path and decodes each parameter afterwards:
    # /{did}%2Fdata is GET /:did for the DID "did:plc:…/data", which is not registered.
    assert client.post(f"/{DID}", json=GENESIS).status_code == 200
    cases = ((f"/{DID}%2Fdata", f"{DID}/data"), (f"/{DID}%2flog%2Flast", f"{DID}/log/last"))
    for raw, did in cases:
        _assert_answer(client, raw, 404, f"DID not registered: {did}")
    nested = client.get(f"/{DID}%2Fx/log/audit")
    assert nested.json() == {"message": f"DID not registered: {DID}/x"}
    assert client.get(f"/{DID}/log%2Faudit").json() == {"message": "Not Found"}
    assert client.get("/export%2Fx").json() == {"message": "DID not registered: export/x"}
    refused = client.post(f"/{DID}%2Fx", json=update(GENESIS, KEYS[0]))
    assert refused.status_code == 400
    assert len(client.get(f"/{DID}/log/audit").json()) == 1  # nothing else stored
    assert client.get(f"/{DID}/data").status_code == 200  # the plain path is unaffected


def test_an_encoded_slash_does_not_stop_a_cors_preflight(client: TestClient) -> None:
    for path in ("/a%2Fb", f"/{DID}%2Fdata"):
        asked = client.options(path, headers={"access-control-request-method": "GET"})
        assert asked.status_code == 204, path
        assert "GET" in asked.headers["access-control-allow-methods"]


def test_a_path_ending_in_a_newline_matches_no_literal_route(client: TestClient) -> None:
    # Starlette's route patterns end in "$", which also matches before a final newline, so
    # /export%0A was served as /export. Express matches no literal route: one segment is a
    # DID, anything longer no route.
    assert client.post(f"/{DID}", json=GENESIS).status_code == 200
    for segment in ("export", "_health", "metrics", "docs", "tlog", DID):
        response = client.get(f"/{segment}%0A")
        assert response.status_code == 404, segment
        assert response.json() == {"message": f"DID not registered: {segment}\n"}
        assert client.head(f"/{segment}%0A").status_code == 404
    for path in (
        f"/{DID}/data%0A",
        f"/{DID}/log%0A",
        f"/{DID}/log/audit%0A",
        f"/{DID}/log/proof%0A",
        "/tlog/checkpoint%0A",
        f"/xrpc/com.atproto.identity.resolveDid%0A?did={DID}",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"message": "Not Found"}, path
        assert response.headers["access-control-allow-origin"] == "*"
    refused = client.post("/export%0A", json=GENESIS)
    assert refused.status_code == 400 and "message" in refused.json()
    assert len(client.get(f"/{DID}/log/audit").json()) == 1  # nothing else stored
    assert client.get(f"/{DID}/data").status_code == 200


def test_gzip_and_deflate_bodies_are_inflated_as_body_parser_does(post_path) -> None:  # type: ignore[no-untyped-def]
    app = post_path()
    plain = orjson.dumps(GENESIS)
    with TestClient(app) as client:

        def post(body: bytes, encoding: str) -> httpx.Response:
            headers = {**_JSON, "content-encoding": encoding}
            return client.post(f"/{DID}", content=body, headers=headers)

        assert post(gzip.compress(plain), "gzip").status_code == 200
        assert post(zlib.compress(plain), "Deflate").status_code == 200  # already stored
        assert post(plain, "identity").status_code == 200
        unsupported = post(plain, "br")
        assert unsupported.status_code == 415
        assert unsupported.json() == {"message": 'unsupported content encoding "br"'}
        assert post(b"\x1f\x8b not really gzip", "gzip").json() == {
            "message": "Invalid compressed body"
        }
        assert post(gzip.compress(plain)[:-4], "gzip").status_code == 400  # truncated
        # A few hundred bytes that inflate past the body limit: refused, not inflated.
        bomb = gzip.compress(b"{" + b" " * 5_000_000 + b"}")
        assert len(bomb) < 10_000
        assert post(bomb, "gzip").status_code == 413
        assert len(client.get(f"/{DID}/log/audit").json()) == 1


def test_a_byte_order_mark_before_the_json_is_skipped(post_path) -> None:  # type: ignore[no-untyped-def]
    # The reference's body parser decodes with iconv-lite, which drops a leading BOM.
    app = post_path()
    did, genesis, _ = new_did("bom")
    with TestClient(app) as client:
        body = b"\xef\xbb\xbf" + orjson.dumps(genesis)
        answer = client.post(f"/{did}", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 200, answer.text
        assert client.get(f"/{did}/log/last").json() == genesis
        twice = b"\xef\xbb\xbf" + body  # one mark only
        refused = client.post(
            f"/{did}", content=twice, headers={"content-type": "application/json"}
        )
        assert refused.status_code == 400


def test_a_stalled_refresh_identity_body_is_408_and_the_connection_closed(app_factory) -> None:  # type: ignore[no-untyped-def]
    head = (
        b"POST /xrpc/com.atproto.identity.refreshIdentity HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    with LiveServer(app_factory(body_timeout_s=0.3)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head + b'{"identifier":')
            answer = b""
            while chunk := sock.recv(4096):  # until the server closes the connection
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert answer.endswith(
        b'{"error":"InvalidRequest","message":"Request timeout: the body did not arrive in time"}'
    )


def test_a_charset_other_than_utf_is_415_as_body_parser_answers(post_path) -> None:  # type: ignore[no-untyped-def]
    app = post_path()
    did, genesis, _ = new_did("charset")
    with TestClient(app) as client:
        for charset in ("latin1", "ISO-8859-1", '"windows-1252"'):
            answer = client.post(
                f"/{did}",
                content=orjson.dumps(genesis),
                headers={"content-type": f"application/json; charset={charset}"},
            )
            assert answer.status_code == 415, charset
            expected = charset.strip('"').upper()
            assert answer.json() == {"message": f'unsupported charset "{expected}"'}
        assert client.get(f"/{did}").status_code == 404  # nothing stored
        ok = client.post(
            f"/{did}",
            content=orjson.dumps(genesis),
            headers={"content-type": 'application/json; charset="UTF-8"'},
        )
        assert ok.status_code == 200
        metrics = client.get("/metrics").text
    assert 'plc_ops_refused_total{reason="UnsupportedCharset"} 3.0' in metrics


def test_a_body_in_another_utf_is_read_as_body_parser_reads_it(post_path) -> None:  # type: ignore[no-untyped-def]
    """body-parser decodes any charset iconv-lite knows of the utf-* family (a byte order
    mark dropped); one no UTF codec reads is 415, bytes invalid in the declared one 400."""
    app = post_path()
    with TestClient(app) as client:
        for n, (charset, codec) in enumerate(
            [
                ("utf-16", "utf-16"),  # with its BOM
                ("UTF-16LE", "utf-16-le"),
                ('"utf-16be"', "utf-16-be"),
                ("utf-32", "utf-32"),
                ("utf-16", "utf-16-be"),  # no BOM: the order read off the zero bytes
                ("utf-32", "utf-32-be"),
                ("utf-16", "utf-16-le"),
                ("utf-16le", "invalid"),  # a lone surrogate at the end: refused below
            ]
        ):
            did, genesis, _ = new_did(f"utf{n}")
            body = orjson.dumps(genesis).decode()
            if codec == "invalid":
                content = body.encode("utf-16-le") + b"\x00\xd8"
            elif n == 1:
                content = ("\ufeff" + body).encode("utf-16-le")
            else:
                content = body.encode(codec)
            answer = client.post(
                f"/{did}",
                content=content,
                headers={"content-type": f"application/json; charset={charset}"},
            )
            if codec == "invalid":
                assert answer.status_code == 400, answer.text
                assert answer.json()["message"] == "Malformed JSON body: not valid UTF-16-LE"
                assert client.get(f"/{did}").status_code == 404
            else:
                assert answer.status_code == 200, (charset, answer.text)
                assert client.get(f"/{did}/log/last").json() == genesis
        unknown = client.post(
            f"/{did}",
            content=b"{}",
            headers={"content-type": "application/json; charset=utf-9"},
        )
        assert unknown.status_code == 415
        assert unknown.json() == {"message": 'unsupported charset "UTF-9"'}


def test_a_did_that_does_not_decode_is_refused_as_express_refuses_it(
    client: TestClient,
) -> None:
    """The reference's Express router decodes a route's parameter after matching and
    answers 400 when it does not decode; before, the bytes were replaced (U+FFFD) and the
    404 named a DID that was not the one sent."""
    for path, segment in (
        ("/%E0%A4%A", "%E0%A4%A"),  # an escape cut short
        ("/did:plc:%zz/log", "did:plc:%zz"),  # no hex digits
        ("/did:plc:%FF%FE/log/audit", "did:plc:%FF%FE"),  # not UTF-8
    ):
        _assert_answer(client, path, 400, f"Failed to decode param '{segment}'")
    refused = client.post("/did:plc:%zz", json=GENESIS)
    assert refused.json() == {"message": "Failed to decode param 'did:plc:%zz'"}
    assert client.get("/export?after=0").content == b""  # nothing stored
    # No route matched (a method or a path no DID route has): nothing is decoded, 404.
    assert client.get("/%zz/unknown").status_code == 404
    assert client.delete("/%zz").status_code == 404
    # A DID sent percent-encoded, as @did-plc/lib's client sends it, still decodes.
    encoded = "/" + DID.replace(":", "%3A")
    assert client.get(encoded).json() == {"message": f"DID not registered: {DID}"}


def test_literal_route_segments_ignore_case_as_express_does(client: TestClient) -> None:
    """Express routes ignore case in their literal segments; a DID is never case-folded."""
    assert client.post(f"/{DID}", json=GENESIS).status_code == 200
    for literal in ("/LOG", "/Log/Audit", "/DATA", "/log/LAST"):
        answer = client.get(f"/{DID}{literal}")
        assert answer.status_code == 200, literal
        assert answer.content == client.get(f"/{DID}{literal.lower()}").content
        assert client.head(f"/{DID}{literal}").status_code == 200
    assert client.get("/EXPORT?after=0").headers["content-type"] == "application/jsonlines"
    assert client.get("/Export?after=0").content == client.get("/export?after=0").content
    assert client.get("/_HEALTH").json() == client.get("/_health").json()
    assert client.get(f"/{DID.upper()}").status_code == 404
    assert client.get(f"/{DID}/LOG/proof").status_code == 404  # no such reference route


def test_an_encoded_slash_changes_neither_decoding_nor_case_folding(client: TestClient) -> None:
    """Express matches on the raw path, %2F included, then decodes the DID, and ignores the
    case of literal segments there too."""
    for path, segment in (
        ("/did:plc:%ZZ%2Fx", "did:plc:%ZZ%2Fx"),
        ("/did:plc:%FF%2Fx/log", "did:plc:%FF%2Fx"),
        ("/%E0%A4%A%2F", "%E0%A4%A%2F"),
    ):
        answer = client.get(path)
        assert answer.status_code == 400, path
        assert answer.json() == {"message": f"Failed to decode param '{segment}'"}
    for literal in ("/log", "/LOG"):
        answer = client.get(f"/did:plc:abc%2Fdef{literal}")
        assert answer.json() == {"message": "DID not registered: did:plc:abc/def"}, literal


def test_an_empty_json_body_is_read_as_an_empty_object(client: TestClient) -> None:
    """As the reference's JSON body parser reads it (an empty body is ``{}``); a body of
    whitespace is still malformed JSON."""
    empty = client.post(f"/{DID}", content=b"", headers={"content-type": "application/json"})
    assert empty.status_code == 400
    assert empty.json() == {"message": "Not a valid operation: {}"}
    blank = client.post(f"/{DID}", content=b" ", headers={"content-type": "application/json"})
    assert blank.json()["message"].startswith("Malformed JSON body")
    assert client.get("/export?after=0").content == b""  # nothing stored
