"""Where one request ends and the next begins, over real connections to a live server: the
bytes of a body never change the framing (no request hidden in a body is run), an Upgrade
header is ignored however the head arrives, an answer owed to an earlier request is sent
before an error that follows it, and a request answered before its body was read cannot
hold its connection for good (review of plc.api.http_server)."""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from plc.api.http_server import UNSUPPORTED_UPGRADE, _head_end, served_settings

from ..conftest import LiveServer
from ..helpers import new_did, update
from .test_http_protocol import _http_refused, _raw_exchange


def _statuses(answer: bytes) -> list[bytes]:
    """The status lines in the bytes a connection received, in order (an answer's body need
    not end with a newline: the next status line may follow it on the same line)."""
    return re.findall(rb"HTTP/1\.1 [0-9]{3} [^\r]*", answer)


def _post(path: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


_LAST = b"GET /_health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_a_request_hidden_in_a_body_is_not_run(live_server: LiveServer) -> None:
    # Each "\r\nupgrade:" of a body was renamed to a longer header name, so the last bytes of
    # the body came out as a request of the sender's own: it was run, and stored its op.
    did, genesis, _ = new_did("smuggled")
    hidden = _post(f"/{did}", orjson.dumps(genesis))
    body = b"x" + b"\r\nupgrade: y" * (len(hidden) // 10 + 1) + hidden
    for content_type in ("text/plain", "application/json"):
        answer = _raw_exchange(live_server.port, _post("/did:plc:zzz", body, content_type) + _LAST)
        statuses = _statuses(answer)
        assert len(statuses) == 2, answer  # the POST's refusal, then /_health; nothing else
        assert statuses[0].startswith(b"HTTP/1.1 400 ") and statuses[1] == b"HTTP/1.1 200 OK"
    with httpx.Client(base_url=live_server.url) as http:
        assert http.get(f"/{did}/log/last").status_code == 404
        assert http.get("/export?after=0").content == b""


def _sent_in_two(port: int, request: bytes, cut: int) -> bytes:
    """``request`` sent in two writes, cut at ``cut``, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request[:cut])
        time.sleep(0.05)  # two reads on the server's side
        sock.sendall(request[cut:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("upgrade", [b"h2c", b"websocket"])
def test_an_upgrade_header_cut_across_reads_is_still_ignored(
    live_server: LiveServer, upgrade: bytes
) -> None:
    # The rename saw only an "Upgrade" header that came whole in one read: cut in two, the
    # POST lost its body (h2c) or was never answered (websocket).
    did, genesis, _ = new_did(f"cut-{upgrade.decode()}")
    body = orjson.dumps(genesis)
    request = (
        (
            f"POST /{did} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Connection: Upgrade, close\r\nUpgrade: "
        ).encode()
        + upgrade
        + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    cut = request.index(b"Upgrade: ") + 3
    assert _sent_in_two(live_server.port, request, cut).startswith(b"HTTP/1.1 200 ")
    read = (
        f"GET /{did}/data HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\n"
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ).encode()
    answer = _sent_in_two(live_server.port, read, read.index(b"Upgrade: w") + 2)
    assert answer.startswith(b"HTTP/1.1 200 ") and did.encode() in answer, answer[:200]


def test_an_upgrade_pipelined_behind_a_chunked_body_is_refused_after_the_first_answer(
    live_server: LiveServer,
) -> None:
    # A chunked body's end is found by the parser, so a head behind it in the same read is
    # not rewritten: the parser would skip its body. It is refused, after the first answer.
    chunked = (
        b"POST /did:plc:zzz HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    )
    upgrade = (
        b"POST /did:plc:zzz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    before = _http_refused(live_server).get("UnsupportedUpgrade", 0.0)
    answer = _raw_exchange(live_server.port, chunked + upgrade)
    statuses = _statuses(answer)
    assert [s[:12] for s in statuses] == [b"HTTP/1.1 400"] * 2, answer
    assert answer.endswith(orjson.dumps({"message": UNSUPPORTED_UPGRADE}))
    first_answer = answer.split(b"HTTP/1.1 400 ")[1]
    assert b"Content-Type must be application/json" in first_answer, answer
    connect = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    assert _raw_exchange(live_server.port, connect).endswith(
        orjson.dumps({"message": UNSUPPORTED_UPGRADE})
    )
    assert _http_refused(live_server)["UnsupportedUpgrade"] - before == 2


def test_a_malformed_request_behind_a_post_waits_for_the_posts_answer(
    live_server: LiveServer,
) -> None:
    # The parser's refusal of the second request was written at once, while the first was
    # being committed: the client lost the POST's answer, though its op was stored.
    did, genesis, keys = new_did("pipelined-bad")
    with httpx.Client(base_url=live_server.url) as http:
        assert http.post(f"/{did}", json=genesis).status_code == 200
    moved = orjson.dumps(update(genesis, keys[0], also_known_as=["at://moved.test"]))
    answer = _raw_exchange(live_server.port, _post(f"/{did}", moved) + b"BAD REQUEST\r\n\r\n")
    statuses = _statuses(answer)
    assert [s[:12] for s in statuses] == [b"HTTP/1.1 200", b"HTTP/1.1 400"], answer
    assert answer.endswith(b'{"message":"Invalid HTTP request received."}')
    with httpx.Client(base_url=live_server.url) as http:
        assert len(http.get(f"/{did}/log/audit").json()) == 2


@pytest.fixture
def quick_body_timeout(
    app_factory,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LiveServer]:
    monkeypatch.setenv("PLC_BODY_TIMEOUT_S", "0.3")
    served_settings.cache_clear()
    try:
        with LiveServer(app_factory()) as server:
            yield server
    finally:
        served_settings.cache_clear()


@pytest.mark.parametrize(
    "head",
    [
        b"POST /did:plc:zzz HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n",
        b"GET /_health HTTP/1.1\r\nHost: x\r\n",
    ],
    ids=["refused by its content type", "a GET with a body"],
)
def test_a_request_answered_before_its_body_cannot_hold_the_connection(
    quick_body_timeout: LiveServer, head: bytes
) -> None:
    # Answered before the body was read, then one byte now and then: uvicorn's keep-alive
    # timer is stopped by each byte, and nothing else timed the connection (slowloris).
    before = _http_refused(quick_body_timeout).get("UnreadBodyTimeout", 0.0)
    with socket.create_connection(("127.0.0.1", quick_body_timeout.port), timeout=10) as sock:
        sock.sendall(head + b"Content-Length: 1000000\r\n\r\nx")
        assert sock.recv(65536).startswith(b"HTTP/1.1 ")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 5:
            try:
                sock.sendall(b"x")
                sock.settimeout(0.1)
                closed = sock.recv(1) == b""
            except TimeoutError:
                continue
            except OSError:  # reset: closed too
                closed = True
            if closed:
                break
        assert closed, "the connection was held open"
        assert time.monotonic() - started < 3
    assert _http_refused(quick_body_timeout)["UnreadBodyTimeout"] - before == 1


def test_a_client_gone_mid_body_on_the_framework_path_is_no_server_error(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    # POST /export is the framework's route, not the fast path's: Starlette's
    # ClientDisconnect reached the catch-all, a 500 and two ERROR tracebacks per client.
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
                sock.sendall(
                    b"POST /export HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 100\r\n\r\n{"a"'
                )
                time.sleep(0.1)
        time.sleep(0.3)
        with httpx.Client(base_url=live_server.url) as http:
            assert http.get("/_health").status_code == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"", -1),
        (b"\r\n", -1),
        (b"GET / HTTP/1.1\r\nA: b\r\n", -1),
        (b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody\r\n\r\n", 24),
        (b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 22),  # empty lines before a request line
        (b"GET / HTTP/1.1\n\nbody", 16),  # bare LF line ends
        (b"GET / HTTP/1.1\r\nA: b\n\r\nbody", 23),
        (b"GET / HTTP/1.1\r\nA: b\n\nx\r\n\r\n", 22),  # the first blank line ends the head
    ],
)
def test_where_a_head_ends(data: bytes, end: int) -> None:
    assert _head_end(data) == end


def test_a_malformed_chunked_body_is_refused_at_once_and_once(live_server: LiveServer) -> None:
    # The refusal of a body's bytes was held back as if they began a later request: a POST
    # waited out the body timeout (408), and a route that reads no body answered twice.
    bad_chunk = b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\nzz\r\n'
    for head in (
        b"POST /did:plc:aaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\n",
        b"GET /_health HTTP/1.1\r\nHost: x\r\n",
    ):
        started = time.monotonic()
        answer = _raw_exchange(live_server.port, head + bad_chunk)
        assert time.monotonic() - started < 5
        assert _statuses(answer) == [b"HTTP/1.1 400 Bad Request"], answer
        assert answer.endswith(b'{"message":"Invalid HTTP request received."}')


_PIPELINED_POST = b"POST /did:plc:zzz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
"""The head of a POST pipelined behind another, up to its framing headers."""


def _behind_a_genesis(port: int, seed: str, second: bytes) -> tuple[str, bytes]:
    """A new DID, and the answers to its genesis POST with ``second`` pipelined behind it."""
    did, genesis, _ = new_did(seed)
    return did, _raw_exchange(port, _post(f"/{did}", orjson.dumps(genesis)) + second)


def test_a_pipelined_request_still_reading_its_body_gets_its_own_answer(
    quick_body_timeout: LiveServer,
) -> None:
    # The drain timer was armed for the next request as the first was answered, and closed
    # the connection before that request's own 408.
    second = _PIPELINED_POST + b'Content-Length: 100\r\n\r\n{"a":'
    _, answer = _behind_a_genesis(quick_body_timeout.port, "pipelined-slow-body", second)
    assert [s[:12] for s in _statuses(answer)] == [b"HTTP/1.1 200", b"HTTP/1.1 408"], answer


def test_a_malformed_body_behind_a_request_being_answered_waits_for_that_answer(
    live_server: LiveServer,
) -> None:
    bad = _PIPELINED_POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"
    did, answer = _behind_a_genesis(live_server.port, "pipelined-bad-body", bad)
    assert [s[:12] for s in _statuses(answer)] == [b"HTTP/1.1 200", b"HTTP/1.1 400"], answer
    with httpx.Client(base_url=live_server.url) as http:
        assert http.get(f"/{did}/log/last").status_code == 200


def test_a_websocket_upgrade_behind_requests_still_to_answer_is_refused_after_them(
    live_server: LiveServer,
) -> None:
    # Switched at once, the connection carried HTTP answers inside the WebSocket after the
    # 101 (fuzzing): such an upgrade must come on a connection of its own.
    health = b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n"
    upgrade = (
        b"GET /export/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    answer = _raw_exchange(live_server.port, health * 3 + upgrade)
    statuses = [s[:12] for s in _statuses(answer)]
    assert statuses == [b"HTTP/1.1 200"] * 3 + [b"HTTP/1.1 400"], answer
    assert answer.endswith(orjson.dumps({"message": UNSUPPORTED_UPGRADE}))


@pytest.mark.parametrize(
    "first_bytes",
    [b"hello world\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b'{"a":"b"}'],
    ids=["garbage line", "TLS client hello", "a body without its head"],
)
def test_bytes_no_request_begins_with_are_refused_at_once(
    live_server: LiveServer, first_bytes: bytes
) -> None:
    # Withheld until a blank line, they were answered 408 after the head timeout (60 s).
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(first_bytes)
        answer = sock.recv(65536)
        assert time.monotonic() - started < 2
    assert answer.startswith(b"HTTP/1.1 400 "), answer


def test_a_head_is_capped_by_its_parsed_size_and_may_come_a_byte_at_a_time(
    live_server: LiveServer,
) -> None:
    # 16,377 bytes of URL, names and values (the cap is 16,384) with the request line and line
    # ends above the cap: served, as before the head was withheld.
    near_cap = b"GET /_health HTTP/1.1\r\nX-Big: " + b"b" * 16341 + b"\r\nConnection: close\r\n\r\n"
    assert len(near_cap) > served_settings().max_header_bytes
    assert _raw_exchange(live_server.port, near_cap).startswith(b"HTTP/1.1 200 ")
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        for byte in b"GET /_health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
            sock.sendall(bytes([byte]))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer
