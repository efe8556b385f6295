"""HTTP response bodies decoded in bounded steps (RFC 9110 §8.4 content codings), for the
commands that read other servers' answers (``plc import``, ``plc-audit``).

httpx decodes each network read whole before a caller can count it: 13 kB of stacked gzip or
32 kB of zstd became gigabytes before any size cap was checked. Here a compressed body comes
out in pieces of at most :data:`DECODE_STEP` bytes, so a cap checked after each piece holds
within one step; only ``gzip`` and ``deflate`` are undone, and one of them at most (what
:data:`ACCEPT_ENCODING` asks for). Pure: iterators of bytes in and out, no I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Any

DECODE_STEP = 1 << 18
"""Most bytes one decompression step produces (256 KiB)."""

ACCEPT_ENCODING = "gzip, deflate"
"""The codings to ask for (RFC 9110 §12.5.3): the ones :func:`decoded` undoes."""


class ContentCodingError(ValueError):
    """A body that cannot be decoded: an unsupported or stacked coding, or bad data."""


def codings(header: str) -> list[str]:
    """The content codings of a ``Content-Encoding`` value, in the order they were applied
    (RFC 9110 §8.4), lower-case, ``identity`` left out."""
    parts = (part.strip().lower() for part in header.split(","))
    return [coding for coding in parts if coding not in ("", "identity")]


def decoded(raw: Iterable[bytes], header: str) -> Iterator[bytes]:
    """The body ``raw`` (as received) decoded as ``header`` (a ``Content-Encoding`` value)
    says, in pieces of at most :data:`DECODE_STEP` bytes when compressed.

    Raises:
        ContentCodingError: a coding other than identity, ``gzip`` or ``deflate`` (zlib
            format, or raw deflate as some servers send), more than one, or data that does
            not decode: bytes after the end of a deflate stream or that are no gzip member,
            or a compressed body that stops before its end.
    """
    applied = codings(header)
    if not applied:
        yield from raw
        return
    if len(applied) > 1 or applied[0] not in ("gzip", "x-gzip", "deflate"):
        raise ContentCodingError(f"unsupported content-encoding {header.strip()[:100]!r}")
    yield from _inflated(raw, gzip=applied[0] != "deflate")


def _is_zlib_header(head: bytes) -> bool:
    """Whether two bytes open a zlib stream (RFC 1950 §2.2: deflate method, check bits)."""
    return head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


def _inflated(raw: Iterable[bytes], *, gzip: bool) -> Iterator[bytes]:
    """``raw`` inflated step by step. A gzip body may hold several members, one after the
    other (RFC 1952 §2.2); a deflate body is one zlib or raw deflate stream, told apart by
    its first two bytes. Nothing is fed to a finished decompressor: the bytes after a member
    start the next one (or are an error), so they are decoded, and capped, as they come."""
    decompressor: Any = None
    pending = b""
    for chunk in raw:
        data = pending + chunk
        pending = b""
        # A step that filled its output may leave output inside zlib with no input left.
        full = False
        while data or (full and not decompressor.eof):
            if decompressor is None or decompressor.eof:
                if decompressor is not None and not gzip:
                    raise ContentCodingError("data after the end of the deflate stream")
                if gzip:
                    decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
                elif len(data) < 2:
                    pending = data  # the zlib header needs both bytes
                    break
                else:
                    zlib_format = _is_zlib_header(data)
                    decompressor = zlib.decompressobj(zlib.MAX_WBITS if zlib_format else -15)
            try:
                piece = decompressor.decompress(data, DECODE_STEP)
            except zlib.error as exc:
                raise ContentCodingError(str(exc)) from exc
            full = len(piece) == DECODE_STEP
            if decompressor.eof:
                data = decompressor.unused_data
            else:
                if not piece and len(decompressor.unconsumed_tail) == len(data):
                    raise ContentCodingError("the compressed data does not advance")
                data = decompressor.unconsumed_tail
            if piece:
                yield piece
    if pending or (decompressor is not None and not decompressor.eof):
        raise ContentCodingError("the compressed answer ends before its end")
