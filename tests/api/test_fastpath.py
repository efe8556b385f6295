"""The fast path (``plc.api.fastpath``) answers ``POST /{did}`` and the per-DID reads exactly as
the FastAPI routes do: same status, headers (in order) and body, and the same stored state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from plc.api.app import create_app
from plc.api.fastpath import DID_ROUTES, PlcApp
from plc.keys import Curve
from plc.signing import cid_of, sign_operation

from ..conftest import Clock, make_settings
from ..helpers import new_did, update

DID, GENESIS, KEYS = new_did("fastpath")
OTHER, OTHER_GENESIS, OTHER_KEYS = new_did("fastpath-p256", Curve.P256)
JSON = {"content-type": "application/json"}
SUFFIXES = ("", "/data", "/log", "/log/audit", "/log/last")
SUFFIX_ROUTES = [f"/{{did}}{suffix}" for suffix in SUFFIXES]


def _reads(did: str) -> list[tuple[str, str, bytes, dict[str, str]]]:
    return [("GET", f"/{did}{suffix}", b"", {}) for suffix in SUFFIXES]


@cache
def _requests() -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(method, path, body, headers): good and bad writes and reads, in order (built once:
    P-256 signatures are randomised)."""
    first = update(GENESIS, KEYS[0], also_known_as=["at://fp2.example.com"])
    second = update(first, KEYS[1], also_known_as=["at://fp3.example.com"])
    misplaced = sign_operation({"type": "plc_tombstone", "prev": cid_of(second)}, OTHER_KEYS[0])
    tombstone = sign_operation(
        {"type": "plc_tombstone", "prev": cid_of(OTHER_GENESIS)}, OTHER_KEYS[0]
    )
    return [
        *_reads(DID),
        ("POST", f"/{DID}", orjson.dumps(GENESIS), JSON),
        ("POST", f"/{DID}", orjson.dumps(GENESIS), JSON),  # idempotent re-submission
        ("GET", f"/{DID}", b"", {}),
        ("POST", f"/{DID}", orjson.dumps(first), {"content-type": "application/did+json"}),
        ("POST", f"/{DID}", orjson.dumps(second), {"content-type": "text/plain"}),
        ("POST", f"/{DID}", orjson.dumps(second), {}),
        ("POST", f"/{DID}", b"{", JSON),
        ("POST", f"/{DID}", b"", JSON),
        ("POST", f"/{DID}", b"[]", JSON),
        ("POST", f"/{DID}", b'{"a":"\\ud800"}', JSON),
        ("POST", f"/{DID}", b"x" * 200_000, JSON),
        ("POST", f"/{DID}", orjson.dumps(second), {**JSON, "content-encoding": "br"}),
        ("POST", f"/{DID}", b"not gzip", {**JSON, "content-encoding": "gzip"}),
        ("POST", f"/{DID}", orjson.dumps({**second, "sig": "A" * 86}), JSON),
        ("POST", f"/{DID}", orjson.dumps(second), JSON),
        *_reads(DID),
        ("POST", f"/{OTHER}", orjson.dumps(GENESIS), JSON),  # DID and op disagree
        ("POST", f"/{OTHER}", orjson.dumps(OTHER_GENESIS), JSON),
        ("GET", f"/{OTHER}", b"", {}),
        ("POST", f"/{OTHER}", orjson.dumps(misplaced), JSON),  # prev is not the head
        ("POST", f"/{OTHER}", orjson.dumps(tombstone), JSON),
        *_reads(OTHER),
        *_reads("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"),
        ("GET", "/not-a-did", b"", {}),
        ("GET", "/did%3Aplc%3Ax%00y", b"", {}),
        ("POST", "/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", orjson.dumps(GENESIS), JSON),
        ("GET", f"/{DID.upper()}", b"", {}),
        ("GET", "/_health", b"", {}),
        ("GET", "/export", b"", {}),
        ("POST", "/export", b"{}", JSON),
        ("GET", f"/{DID}/", b"", {}),
        ("GET", f"/{DID}/log/", b"", {}),
        ("GET", f"/{DID}/log/last/x", b"", {}),
        ("GET", f"/{DID}/Data", b"", {}),
        ("POST", f"/{DID}/data", orjson.dumps(second), JSON),
        ("GET", "/export/log", b"", {}),
        ("GET", "/_health/data", b"", {}),
        ("GET", "/did%3Aplc%3Ax%00y/log/audit", b"", {}),
        ("GET", "//log", b"", {}),
        ("GET", "/export%0A", b"", {}),
        ("GET", "/_health%0A", b"", {}),
        ("GET", "/%0A", b"", {}),
        ("GET", "/openapi.json%0A", b"", {}),
        ("GET", f"/{DID}%0A", b"", {}),
        ("GET", f"/{DID}/log%0A", b"", {}),
        ("GET", f"/{DID}%2Flog", b"", {}),
        ("HEAD", f"/{DID}", b"", {}),
        ("HEAD", f"/{DID}/log/audit", b"", {}),
        ("OPTIONS", f"/{DID}", b"", {"access-control-request-method": "POST"}),
    ]


def _transcript(client: TestClient) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    out = []
    for method, path, body, headers in _requests():
        response = client.request(method, path, content=body, headers=headers)
        out.append((response.status_code, list(response.headers.items()), response.content))
    out.append((0, [], client.get("/export?after=0").content))
    refusals = [
        line for line in client.get("/metrics").text.splitlines() if "refused_total{" in line
    ]
    out.append((0, [], "\n".join(refusals).encode()))
    return out


@pytest.fixture
def two_apps(
    sqlite_url: str, tmp_path: Path, clock: Clock
) -> Iterator[tuple[TestClient, TestClient]]:
    """An app with the fast path and one without, on SQLite databases of their own (the
    routes do not depend on the backend)."""
    other_url = f"sqlite:///{tmp_path / 'slow.sqlite3'}"
    with (
        TestClient(create_app(make_settings(sqlite_url), clock=clock)) as fast,
        TestClient(create_app(make_settings(other_url), clock=clock)) as slow,
    ):
        yield fast, slow


def test_fast_and_slow_paths_answer_the_same(two_apps: tuple[TestClient, TestClient]) -> None:
    fast, slow = two_apps
    assert isinstance(slow.app, PlcApp)
    slow.app._handlers = {}  # every request through FastAPI's routes
    assert _transcript(fast) == _transcript(slow)


def wait_for_validation_process(client: TestClient) -> None:
    """Block until the app's validation process is ready (it starts in the background)."""
    validator = client.app.state.directory.validator  # type: ignore[attr-defined]
    assert validator is not None
    deadline = time.monotonic() + 60
    while not validator.available:
        assert time.monotonic() < deadline, "validation process never became ready"
        time.sleep(0.05)


def test_validation_process_answers_as_the_server_does(
    sqlite_url: str, tmp_path: Path, clock: Clock
) -> None:
    """Every request of the transcript, validated in a child process (POSTs) or not at all:
    same statuses, headers and bodies, same stored log (429s, 400s and 409s included)."""
    other_url = f"sqlite:///{tmp_path / 'inline.sqlite3'}"
    with (
        TestClient(
            create_app(make_settings(sqlite_url, validation_process=True), clock=clock)
        ) as in_child,
        TestClient(create_app(make_settings(other_url), clock=clock)) as inline,
    ):
        wait_for_validation_process(in_child)
        assert inline.app.state.directory.validator is None  # type: ignore[attr-defined]
        assert _transcript(in_child) == _transcript(inline)
        posts = [r for r in _requests() if r[0] == "POST" and r[1].count("/") == 1]
        validated = in_child.app.state.directory.validator.validated  # type: ignore[attr-defined]
        assert validated >= len(posts) - 5  # all but the bodies refused before validation


def test_fast_path_takes_the_did_routes_only(client: TestClient) -> None:
    app = client.app
    assert isinstance(app, PlcApp)
    taken = app._taken_segments()
    assert {"export", "_health", "tlog", "xrpc"} <= taken and "{did}" not in taken
    assert set(app._handlers) == set(DID_ROUTES)


class _BareApp(PlcApp):
    def _serves(self) -> set[tuple[str, str]]:
        """The (method, suffix) pairs the fast path answers."""
        self._taken_segments()
        return set(self._handlers)


def _bare_app(*paths: str) -> _BareApp:
    """A PlcApp with GET routes at ``paths`` only."""
    app = _BareApp()
    for path in paths:
        app.add_api_route(path, lambda: None, methods=["GET"])
    return app


def test_fast_path_steps_aside_for_a_parameterised_first_segment() -> None:
    """A route like ``/{name}/log`` could own ``/did:plc:…/log`` too: no fast path at all;
    ``/{name}/feed`` could not, and leaves it alone."""
    assert _bare_app(*SUFFIX_ROUTES, "/{name}/log")._serves() == set()
    assert _bare_app(*SUFFIX_ROUTES, "/{name}/{item}")._serves() == set()
    assert _bare_app(*SUFFIX_ROUTES, "/{name}/feed")._serves() == {
        key for key in DID_ROUTES if key[0] == "GET"
    }


def test_fast_path_drops_a_route_the_app_lacks() -> None:
    serves = _bare_app("/{did}", "/{did}/log", "/export")._serves()
    assert serves == {("GET", ""), ("GET", "/log")}


def test_client_disconnect_mid_body_stores_nothing(client: TestClient) -> None:
    import anyio

    app = client.app
    assert isinstance(app, PlcApp)
    sent: list[dict[str, Any]] = []
    messages = [
        {"type": "http.request", "body": orjson.dumps(GENESIS)[:10], "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/{DID}",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    anyio.run(app, scope, receive, send)
    assert sent == []
    assert client.get("/export?after=0").content == b""


def _call(app: PlcApp, path: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """POST ``chunks`` (one ASGI message each) straight to the app; (status, body)."""
    import anyio

    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    anyio.run(app, scope, receive, send)
    return int(sent[0]["status"]), bytes(sent[1]["body"])


def test_body_in_several_messages(client: TestClient) -> None:
    app = client.app
    assert isinstance(app, PlcApp)
    body = orjson.dumps(GENESIS)
    oversized = [b" " * 60_000, b" " * 60_000, body]
    assert _call(app, f"/{DID}", oversized) == (413, b'{"message":"request entity too large"}')
    assert _call(app, f"/{DID}", [body[:7], b"", body[7:50], body[50:]]) == (200, b"OK")
    assert client.get(f"/{DID}").status_code == 200


def test_path_without_leading_slash_is_not_a_did(client: TestClient) -> None:
    """An ASGI server may hand on a request target that is not an absolute path; the fast
    path must not read its first character as the slash (FastAPI answers 404)."""
    app = client.app
    assert isinstance(app, PlcApp)
    assert _call(app, "X" + DID, [orjson.dumps(GENESIS)])[0] == 404
    assert client.get("/export?after=0").content == b""


def test_unexpected_failure_is_a_500_message_on_both_paths(
    sqlite_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (here: a document read that raises) answers 500 ``{"message"}`` with no detail
    and the CORS header, whether the fast path or FastAPI's route served it."""
    from plc.service import Directory

    def broken(_directory: Directory, _did: str) -> bytes:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(Directory, "document", broken)  # before the apps bind their readers
    answers = []
    for fast_path in (True, False):
        app = create_app(make_settings(sqlite_url), clock=clock)
        assert isinstance(app, PlcApp)
        if not fast_path:
            app._handlers = {}
        with TestClient(app, raise_server_exceptions=False) as client:
            answers.append(client.get(f"/{DID}"))
    for response in answers:
        assert response.status_code == 500
        assert response.json() == {"message": "Internal Server Error"}
        assert b"secret" not in response.content
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["content-type"] == "application/json; charset=utf-8"


@pytest.mark.parametrize("declared", ["\u00b2", "1\u00b2", "\u0663" * 9])
def test_a_content_length_of_non_ascii_digits_is_not_trusted(declared: str) -> None:
    # httptools refuses such a header today; behind a laxer HTTP server "²".isdigit() would
    # have reached int() and raised (a 500), and Arabic-Indic digits would have been read as
    # a length. Either way the body itself is what counts.
    import asyncio

    from plc.api.bodies import read_body
    from plc.api.fastpath import _receive_body

    async def chunks() -> Any:
        yield b'{"a":'
        yield b"1}"

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b'{"a":1}', "more_body": False}

    async def both() -> tuple[bytes | None, bytes | None]:
        return await read_body(declared, chunks(), 1000), await _receive_body(
            declared, receive, 1000
        )

    assert asyncio.run(both()) == (b'{"a":1}', b'{"a":1}')


def test_a_content_length_of_5000_digits_is_over_the_limit_not_an_error() -> None:
    # int() refuses more than 4300 digits (a ValueError, a 500); such a length is refused as
    # too large (413) before anything is read.
    import asyncio

    from plc.api.bodies import read_body
    from plc.api.fastpath import _receive_body

    async def chunks() -> Any:
        raise AssertionError("nothing is read")
        yield b""

    async def receive() -> dict[str, Any]:
        raise AssertionError("nothing is received")

    async def both() -> tuple[bytes | None, bytes | None]:
        declared = "9" * 5000
        return await read_body(declared, chunks(), 1000), await _receive_body(
            declared, receive, 1000
        )

    assert asyncio.run(both()) == (None, None)
