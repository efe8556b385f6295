"""The directory client against hostile and rate-limiting servers (real ones on 127.0.0.1):
every request has a total deadline and a cap on its decoded body, and rate limits are waited
out as ``Retry-After`` asks (seconds or an HTTP-date, capped)."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import threading
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from auditor.audit import AuditOptions, sync_directory
from auditor.client import MAX_RETRY_AFTER_S, DirectoryClient, retry_after_s
from auditor.errors import AuditFailed, DirectoryUnreachable
from auditor.options import HttpLimits
from plc.content_coding import DECODE_STEP
from tests.conftest import LiveServer

from ..helpers import dripping_head, new_did
from .conftest import line_for


def _slow_loris(request: Request) -> Response:
    async def drip() -> AsyncIterator[bytes]:
        for _ in range(300):  # a byte every 0.2 s, for a minute at most
            yield b" "
            await asyncio.sleep(0.2)

    return StreamingResponse(drip(), media_type="application/jsonlines")


def test_a_head_that_drips_in_fails_the_request_at_its_deadline() -> None:
    # the deadline was checked only as body chunks came: a head a byte at a time passed it
    with dripping_head(seconds=15) as url:
        client = DirectoryClient(url, retries=0, limits=HttpLimits(deadline_s=1.0))
        started = time.monotonic()
        with pytest.raises(DirectoryUnreachable, match="longer than 1 s"):
            client.export_page(0)
        assert time.monotonic() - started < 10
        client.close()


def _gzip_bomb(request: Request) -> Response:
    body = gzip.compress(b"\n" * (64 << 20), 9)  # 64 MiB of line feeds in ~64 kB
    headers = {"content-encoding": "gzip"}
    return Response(body, media_type="application/jsonlines", headers=headers)


def test_a_server_that_sends_a_byte_now_and_then_fails_the_request_at_its_deadline() -> None:
    app = Starlette(routes=[Route("/export", _slow_loris)])
    outcome: list[BaseException | None] = []

    def fetch(url: str) -> None:
        client = DirectoryClient(url, retries=1, limits=HttpLimits(deadline_s=1.0))
        try:
            client.export_page(0)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)
        finally:
            client.close()

    with LiveServer(app) as server:  # type: ignore[arg-type]
        started = time.monotonic()
        worker = threading.Thread(target=fetch, args=(server.url,), daemon=True)
        worker.start()
        worker.join(timeout=20)  # was: never (each byte resets the read timeout)
        assert not worker.is_alive(), "the request has no deadline"
    assert time.monotonic() - started < 10
    (error,) = outcome
    assert isinstance(error, DirectoryUnreachable)
    assert "longer than 1 s" in str(error)


def test_a_gzip_bomb_is_refused_past_the_body_cap(tmp_path: Path) -> None:
    app = Starlette(routes=[Route("/export", _gzip_bomb)])
    options = AuditOptions(
        workers=0, progress=False, http_limits=HttpLimits(max_body_bytes=1 << 20)
    )
    with LiveServer(app) as server:  # type: ignore[arg-type]
        with pytest.raises(AuditFailed, match=r"larger than 1048576 bytes \(decoded\)"):
            sync_directory(server.url, tmp_path / "state.sqlite3", options)
    assert not (tmp_path / "state.sqlite3").exists()  # refused before anything is stored


def _rate_limited(window_s: float, form: str) -> Starlette:
    """``/export`` answers 429 for ``window_s`` after the first request (``Retry-After`` in
    ``form``: seconds, an HTTP-date, or none), then one export line."""
    did, genesis, _ = new_did("limited")
    line = line_for(did, genesis, 1, "2025-01-01T00:00:00.000Z")
    until: list[float] = []

    def export(request: Request) -> Response:
        now = time.time()
        if not until:
            until.append(now + window_s)
        if now < until[0]:
            headers = {}
            if form == "seconds":
                headers["retry-after"] = str(int(window_s))
            elif form == "date":
                headers["retry-after"] = email.utils.formatdate(until[0] + 1, usegmt=True)
            return Response(b'{"message":"slow down"}', status_code=429, headers=headers)
        after = int(request.query_params.get("after", "0"))
        return Response(line if after == 0 else b"", media_type="application/jsonlines")

    return Starlette(routes=[Route("/export", export)])


@pytest.mark.parametrize("form", ["seconds", "date", "none"])
def test_rate_limits_are_waited_out(form: str) -> None:
    # Limited for 4 s: the old backoff (0.2 s doubling, 4 retries) gave up after about 3 s.
    with LiveServer(_rate_limited(4.0, form)) as server:  # type: ignore[arg-type]
        client = DirectoryClient(server.url)
        try:
            started = time.monotonic()
            assert len(client.export_page(0)) == 1
            waited = time.monotonic() - started
        finally:
            client.close()
    assert waited >= 3.5
    if form != "none":  # waited what it was asked, not longer
        assert waited < 7.0


def test_retry_after_forms_and_cap() -> None:
    def answer(status: int, value: str) -> httpx.Response:
        return httpx.Response(status, headers={"retry-after": value})

    now = 1_700_000_000.0
    assert retry_after_s(answer(429, "7"), now) == 7.0
    assert retry_after_s(answer(503, "7"), now) == 7.0
    assert retry_after_s(answer(500, "7"), now) is None  # only 429 and 503 ask to wait
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_s(answer(429, date), now) == 30.0
    assert retry_after_s(answer(429, email.utils.formatdate(now - 30, usegmt=True)), now) == 0
    assert retry_after_s(answer(429, "86400"), now) == MAX_RETRY_AFTER_S
    far = email.utils.formatdate(now + 86400, usegmt=True)
    assert retry_after_s(answer(429, far), now) == MAX_RETRY_AFTER_S
    assert retry_after_s(answer(429, "soon"), now) is None
    assert retry_after_s(answer(429, "-5"), now) is None
    # "²" is a digit to str.isdigit() but no number of seconds
    superscript = httpx.Response(429, headers=[(b"retry-after", b"\xb2")])
    assert retry_after_s(superscript, now) is None


def test_a_header_that_is_not_ascii_is_no_failure() -> None:
    # httpx decodes such a header as Latin-1; the client's rebuilt response must take it as is
    async def page(request: Request) -> Response:
        return Response(b"", media_type="application/jsonlines")

    class NoteInUtf8:
        def __init__(self, app: Starlette) -> None:
            self.app = app

        async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
            async def with_note(message):  # type: ignore[no-untyped-def]
                if message["type"] == "http.response.start":
                    headers = [*message["headers"], (b"x-note", "café".encode())]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, with_note)

    with LiveServer(NoteInUtf8(Starlette(routes=[Route("/export", page)]))) as server:  # type: ignore[arg-type]
        client = DirectoryClient(server.url, retries=0)
        try:
            assert client.export_page(0) == []
            answer = client.get("/export")
            assert answer.headers.raw[-1] == (b"x-note", "café".encode())
            assert "content-length" not in answer.headers  # it described the encoded body
        finally:
            client.close()


def _serving(body: bytes) -> Starlette:
    """``/export`` answers ``body`` (made before: the server runs in this process, and the
    test measures what the client allocates)."""

    def export(request: Request) -> Response:
        headers = {"content-encoding": "gzip"}
        return Response(body, media_type="application/jsonlines", headers=headers)

    return Starlette(routes=[Route("/export", export)])


_CODINGS = {
    "gzip": ("gzip", gzip.compress),
    "deflate": ("deflate", zlib.compress),
    "raw deflate": ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),
}


def _compressed_page(kind: str) -> Starlette:
    coding, compress = _CODINGS[kind]
    did, genesis, _ = new_did("compressed")
    line = line_for(did, genesis, 1, "2025-01-01T00:00:00.000Z")

    def export(request: Request) -> Response:
        after = int(request.query_params.get("after", "0"))
        body = compress(line if after == 0 else b"")
        headers = {"content-encoding": coding}
        return Response(body, media_type="application/jsonlines", headers=headers)

    return Starlette(routes=[Route("/export", export)])


def test_a_gzip_bomb_is_decoded_no_further_than_a_step_past_the_cap() -> None:
    cap = 1 << 20
    # 256 MiB of line feeds in ~250 kB: each 64 kB network read expands to about 64 MiB.
    bomb = gzip.compress(b"\n" * (256 << 20), 9)
    with LiveServer(_serving(bomb)) as server:  # type: ignore[arg-type]
        client = DirectoryClient(server.url, retries=0, limits=HttpLimits(max_body_bytes=cap))
        tracemalloc.start()
        try:
            with pytest.raises(AuditFailed, match=r"larger than 1048576 bytes \(decoded\)"):
                client.export_page(0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            client.close()
    # The body read, one decoding step and copies of them; decoding a whole 64 kB read at
    # once allocated 64 MiB and more.
    assert peak < cap + 8 * DECODE_STEP, peak


@pytest.mark.parametrize("kind", sorted(_CODINGS))
def test_a_compressed_answer_is_decoded(kind: str) -> None:
    with LiveServer(_compressed_page(kind)) as server:  # type: ignore[arg-type]
        client = DirectoryClient(server.url)
        try:
            (line,) = client.export_page(0)
        finally:
            client.close()
    assert line.startswith(b'{"did":"did:plc:')


def test_a_coding_not_asked_for_is_a_failed_request() -> None:
    def export(request: Request) -> Response:
        assert request.headers["accept-encoding"] == "gzip, deflate"
        return Response(b"?", headers={"content-encoding": "compress"})

    with LiveServer(Starlette(routes=[Route("/export", export)])) as server:  # type: ignore[arg-type]
        client = DirectoryClient(server.url, retries=0)
        try:
            with pytest.raises(DirectoryUnreachable, match="unsupported content-encoding"):
                client.export_page(0)
        finally:
            client.close()
