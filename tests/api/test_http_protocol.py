"""The HTTP layer in front of the app (``plc.api.http_server``): malformed requests, request
heads too large or too slow, and Upgrade headers, over real connections to a live server;
each refusal a 4xx with a {"message"} body and the connection closed."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from plc.api.http_server import served_settings

from ..conftest import LiveServer
from ..helpers import new_did, update

DID, GENESIS, KEYS = new_did("bad-input")


def _raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` as is and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


MALFORMED_HTTP = {
    "garbage request line": b"\x16\x03\x01\x02\x00 hello\r\n\r\n",
    "bad Content-Length": (
        f"POST /{DID} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 12abc\r\n\r\n{}"
    ).encode(),
    "two Content-Lengths": (
        f"POST /{DID} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"
    ).encode(),
    "space in a header name": b"GET /_health HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED_HTTP.values(), ids=MALFORMED_HTTP.keys())
def test_malformed_http_is_a_json_400_and_the_connection_closed(
    live_server: LiveServer, request_bytes: bytes
) -> None:
    # uvicorn's parser refuses these before the app sees a request; the answer is still a
    # {"message"} body with the CORS header, as every other error of the API.
    answer = _raw_exchange(live_server.port, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 400 Bad Request", answer[:120]
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
    assert headers[b"content-type"] == b"application/json; charset=utf-8"
    assert headers[b"access-control-allow-origin"] == b"*"
    assert headers[b"connection"] == b"close"
    assert int(headers[b"content-length"]) == len(body)
    assert orjson.loads(body) == {"message": "Invalid HTTP request received."}
    with httpx.Client(base_url=live_server.url) as http:
        assert http.get("/export?after=0").content == b""  # nothing stored
        assert http.get("/_health").status_code == 200  # and the server still answers


def _http_refused(live_server: LiveServer) -> dict[str, float]:
    """``plc_http_refused_total`` by reason, as the server's ``/metrics`` shows it."""
    with httpx.Client(base_url=live_server.url) as http:
        text = http.get("/metrics").text
    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "plc_http_refused"
        for sample in family.samples
        if sample.name == "plc_http_refused_total"
    }


def test_requests_refused_by_the_http_server_are_counted_and_logged_once(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The app never sees these requests, so the protocol counts them itself. The counter is
    # the process's: other tests in this process may have counted before, hence the deltas.
    before = _http_refused(live_server)
    with caplog.at_level(logging.INFO):
        for request_bytes in MALFORMED_HTTP.values():
            _raw_exchange(live_server.port, request_bytes)
        _raw_exchange(live_server.port, _head_with(17_000))  # complete head, one read
        with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
            sock.sendall(b"GET /_health HTTP/1.1\r\nHost: x\r\nX-Big: ")
            for _ in range(20):  # up to 20 kB of an unfinished head, in pieces
                try:
                    sock.sendall(b"a" * 1024)
                except OSError:  # the server closed the connection
                    break
                time.sleep(0.005)
            assert sock.recv(65536).startswith(b"HTTP/1.1 431 ")
    after = _http_refused(live_server)
    assert after.get("MalformedRequest", 0) - before.get("MalformedRequest", 0) == len(
        MALFORMED_HTTP
    )
    assert after.get("HeadTooLarge", 0) - before.get("HeadTooLarge", 0) == 2
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    # Each oversized head is logged once, as what it is; uvicorn's "Invalid HTTP request"
    # line is kept for the malformed requests alone.
    assert messages.count(("plc.http", "Request head over the limit refused")) == 2
    assert messages.count(("uvicorn.error", "Invalid HTTP request received.")) == len(
        MALFORMED_HTTP
    )
    refused = [r for r in caplog.records if r.name == "plc.http"]
    assert all(r.fields["status"] == 431 and r.fields["limit_bytes"] == 16384 for r in refused)  # type: ignore[attr-defined]
    assert all(r.fields["client"].startswith("127.0.0.1:") for r in refused)  # type: ignore[attr-defined]


def _head_with(header_bytes: int) -> bytes:
    return b"GET /_health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * header_bytes + b"\r\n\r\n"


@pytest.mark.parametrize("many", [False, True], ids=["one 17 kB header", "400 small headers"])
def test_a_request_head_over_16_kib_is_431_and_the_connection_closed(
    live_server: LiveServer, many: bool
) -> None:
    # Node's maxHeaderSize (16 KiB), which the reference runs with; uvicorn has no limit and
    # would hold an endless head in memory.
    request_bytes = _head_with(17_000)
    if many:  # 400 headers of about 50 bytes: 20 kB in all
        headers = b"".join(b"X-H%03d: %s\r\n" % (i, b"b" * 40) for i in range(400))
        request_bytes = b"GET /_health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    answer = _raw_exchange(live_server.port, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:120]
    assert b"\r\nconnection: close" in head and b"\r\naccess-control-allow-origin: *" in head
    assert orjson.loads(body) == {"message": "Request header fields too large"}


def test_a_1_mb_head_is_cut_off_and_the_server_keeps_serving(live_server: LiveServer) -> None:
    # The server answers 431 and closes while the client is still sending, so the client may
    # see a reset before the answer (as with Node); either way the connection ends at once.
    answer = b""
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        try:
            sock.sendall(_head_with(1_000_000))
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:120]
    with httpx.Client(base_url=live_server.url) as http:
        assert http.get("/_health").status_code == 200


def test_a_head_sent_in_pieces_is_refused_once_over_the_limit(live_server: LiveServer) -> None:
    # Dribbled 1 kB at a time and never finished: refused as soon as 16 KiB have arrived,
    # not held until the client gives up.
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        sock.sendall(b"GET /_health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        answer = b""
        for _ in range(64):
            try:
                sock.sendall(b"a" * 1024)
            except OSError:  # the server closed the connection
                break
            time.sleep(0.005)
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:120]


def test_a_head_just_under_the_limit_and_a_large_body_are_served(
    live_server: LiveServer,
) -> None:
    # 15 kB of headers is served; a POST whose head and 100 kB body go out in one write is
    # read in full: the body does not count toward the head.
    with httpx.Client(base_url=live_server.url) as http:
        assert http.get("/_health", headers={"x-big": "a" * 15_000}).status_code == 200
    body = orjson.dumps({**GENESIS, "pad": "x" * 100_000})
    head = (
        f"POST /{DID} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = _raw_exchange(live_server.port, head + body)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:120]  # the op's own refusal
    # The op's size is measured on its parsed body: the body was read in full.
    assert answer.endswith(
        b'{"message":"Operation too large (4000 bytes maximum in cbor encoding)"}'
    )


def test_a_head_that_does_not_arrive_in_time_is_408_and_the_connection_closed(
    app_factory,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A connection that sends nothing, or a head without its final CRLF, used to be held open
    # for good (uvicorn times out only connections that have had an answer): slowloris.
    monkeypatch.setenv("PLC_HEAD_TIMEOUT_S", "0.3")
    served_settings.cache_clear()
    try:
        with LiveServer(app_factory()) as server:

            def answer_to(*parts: bytes) -> tuple[bytes, float]:
                started = time.monotonic()
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                    answer = b""
                    for part in parts[:-1]:  # each answered before the next is sent
                        sock.sendall(part)
                        answer += sock.recv(4096)
                    for part in parts[-1:]:
                        sock.sendall(part)
                    while chunk := sock.recv(4096):
                        answer += chunk
                return answer, time.monotonic() - started

            whole = b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n"
            before = _http_refused(server).get("HeadTimeout", 0.0)
            silent, waited = answer_to()
            partial, _ = answer_to(b"GET /_health HTTP/1.1\r\nHost: x\r\n")
            kept_alive, _ = answer_to(whole, b"GET /_health HTTP/1.1\r\n")
            pipelined, _ = answer_to(whole + b"GET /_health HTTP/1.1\r\nHo")  # one read
            after = _http_refused(server)["HeadTimeout"]
            with httpx.Client(base_url=server.url) as http:
                assert http.get("/_health").status_code == 200  # a prompt head is served
        for answer in (silent, partial):
            assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:80]
            assert answer.endswith(b'{"message":"Request head not received in time"}')
        assert 0.25 < waited < 5
        for answer in (kept_alive, pipelined):
            first, _, second = answer.partition(b"HTTP/1.1 408")
            assert first.startswith(b"HTTP/1.1 200 ") and second  # the first was answered
        assert after - before == 4
    finally:
        served_settings.cache_clear()


def test_an_upgrade_header_does_not_lose_a_request(live_server: LiveServer) -> None:
    # The HTTP parser takes any "Connection: upgrade" request for an upgrade and stops at its
    # head: POST /{did} with "Upgrade: h2c" (curl --http2) lost its body, one with "Upgrade:
    # websocket" was never answered. Node serves both as plain requests.
    did, genesis, keys = new_did("upgrade")
    body = orjson.dumps(genesis)
    second = orjson.dumps(update(genesis, keys[0], also_known_as=["at://upgrade-2.test"]))

    def post(upgrade: bytes, payload: bytes, name: bytes = b"Upgrade") -> bytes:
        request = (
            b"POST /" + did.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nConnection: Upgrade, HTTP2-Settings, close\r\n"
            + name
            + b": "
            + upgrade
            + b"\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )
        return _raw_exchange(live_server.port, request)

    assert post(b"h2c", body, b"uPgRaDe").startswith(b"HTTP/1.1 200 ")
    assert post(b"websocket", second).startswith(b"HTTP/1.1 200 ")
    plain = (
        f"GET /{did}/data HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, close\r\n"
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ).encode()
    answer = _raw_exchange(live_server.port, plain)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"at://upgrade-2.test"' in answer


def test_a_stream_upgrade_whose_request_line_is_split_across_reads_is_taken(
    live_server: LiveServer,
) -> None:
    """Whether an Upgrade header is kept depends on the request line: read whole even when
    its first bytes arrive alone (the upgrade was answered 426)."""
    request = (
        b"GET /export/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    for cut in (3, 7, 17, 40):
        with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
            sock.sendall(request[:cut])
            time.sleep(0.05)
            sock.sendall(request[cut:])
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 101 "), (cut, answer[:60])
