"""How ``Content-Encoding`` is undone (plc.content_coding, used by the directory client and
plc import): every gzip member of a body, zlib or raw deflate told apart by the first two
bytes even when they arrive one at a time, and an error (a failed request, retried) for what
does not decode whole: bytes after the end of a stream, a stream cut short, codings not asked
for. The decoding is a pure function of the chunks received; one test runs it against a real
server on 127.0.0.1."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from auditor.client import DirectoryClient
from plc.content_coding import DECODE_STEP, ContentCodingError, decoded
from tests.conftest import LiveServer

from ..helpers import new_did
from .conftest import line_for

BODY = os.urandom(3000) + b"\n" * (3 * DECODE_STEP) + os.urandom(5000)
"""Incompressible ends around a run that fills whole decoding steps."""


def _decode(chunks: list[bytes], header: str) -> bytes:
    return b"".join(decoded(iter(chunks), header))


def _split(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut after each of ``sizes`` bytes in turn (the last size repeated)."""
    out, at, index = [], 0, 0
    while at < len(data):
        size = sizes[min(index, len(sizes) - 1)]
        out.append(data[at : at + size])
        at, index = at + size, index + 1
    return out


COMPRESSED = {
    "gzip": gzip.compress(BODY),
    "deflate": zlib.compress(BODY),
    "raw deflate": zlib.compress(BODY, wbits=-zlib.MAX_WBITS),
}


@given(
    kind=st.sampled_from(sorted(COMPRESSED)),
    sizes=st.lists(st.integers(min_value=1, max_value=70_000), min_size=1, max_size=8),
)
def test_any_chunking_decodes_to_the_body(kind: str, sizes: list[int]) -> None:
    header = "gzip" if kind == "gzip" else "deflate"
    assert _decode(_split(COMPRESSED[kind], sizes), header) == BODY


def test_raw_deflate_whose_first_chunk_is_one_byte() -> None:
    raw = COMPRESSED["raw deflate"]
    assert _decode([raw[:1], raw[1:]], "deflate") == BODY


def test_every_gzip_member_is_decoded() -> None:
    members = gzip.compress(b"first\n") + gzip.compress(b"second\n") + gzip.compress(b"")
    assert _decode([members], "gzip") == b"first\nsecond\n"
    assert _decode(_split(members, [5]), "x-gzip") == b"first\nsecond\n"


def test_identity_in_the_list_is_no_coding() -> None:
    assert _decode([gzip.compress(b"page")], "GZip, identity") == b"page"
    assert _decode([b"page"], " identity ") == b"page"
    assert _decode([b""], "gzip") == b""  # an empty body says nothing to decode


@pytest.mark.parametrize(
    ("chunks", "header", "why"),
    [
        ([gzip.compress(b"page")[:-4]], "gzip", "ends before its end"),
        ([zlib.compress(b"page")[:-2]], "deflate", "ends before its end"),
        ([b"x"], "deflate", "ends before its end"),
        ([gzip.compress(b"page") + b"trailing"], "gzip", "incorrect header check"),
        ([zlib.compress(b"page"), b"trailing"], "deflate", "after the end of the deflate"),
        ([gzip.compress(b"page")], "gzip, gzip", "unsupported content-encoding"),
        ([b"page"], "br", "unsupported content-encoding"),
    ],
)
def test_what_does_not_decode_whole_is_an_error(chunks: list[bytes], header: str, why: str) -> None:
    with pytest.raises(ContentCodingError, match=why):
        _decode(chunks, header)


def test_bytes_after_a_stream_are_refused_as_they_come() -> None:
    """A tiny member followed by a flood: refused at the flood's first chunk, not buffered
    (zlib keeps what follows a finished stream, copying it on every call)."""
    seen = 0

    def flood() -> object:
        nonlocal seen
        yield zlib.compress(b"page")
        for _ in range(1000):
            seen += 1
            yield b"\0" * 65536

    with pytest.raises(ContentCodingError):
        for _ in decoded(flood(), "deflate"):  # type: ignore[arg-type]
            pass
    assert seen == 1


def test_a_page_in_two_gzip_members_is_read_whole() -> None:
    did, genesis, _ = new_did("members")
    lines = [line_for(did, genesis, 1, "2025-01-01T00:00:00.000Z")]
    body = lines[0]
    cut = len(body) // 2

    def export(request: Request) -> Response:
        after = int(request.query_params.get("after", "0"))
        payload = gzip.compress(body[:cut]) + gzip.compress(body[cut:]) if after == 0 else b""
        return Response(payload, headers={"content-encoding": "gzip"})

    with LiveServer(Starlette(routes=[Route("/export", export)])) as server:  # type: ignore[arg-type]
        client = DirectoryClient(server.url, retries=0)
        try:
            assert client.export_page(0) == lines
        finally:
            client.close()
