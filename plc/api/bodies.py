"""Request bodies of POSTs, as both paths (:mod:`plc.api.fastpath` and the FastAPI routes) and
the XRPC ``refreshIdentity`` take them: bounded in size and in time, inflated per their
Content-Encoding as the reference's body-parser does, and refused with a :class:`Refusal`
(408, 413, 415 or 400) that says why; design.md decision 1."""

from __future__ import annotations

import asyncio
import codecs
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple

from plc.errors import echo

if TYPE_CHECKING:
    from plc.service import Directory

DRAIN_LIMIT = 1 << 20
"""Bytes of an oversized body read (and dropped) before answering 413."""


TIMEOUT_MESSAGE = "Request timeout: the body did not arrive in time"
"""Message of the 408 answered when a body is slower than ``body_timeout_s``."""


def is_json(content_type: str) -> bool:
    """True for ``application/json`` and ``application/…+json`` (parameters ignored)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def declared_over_drain_limit(declared: str | None) -> bool:
    """True when a Content-Length of ASCII digits is over :data:`DRAIN_LIMIT` ("²".isdigit()
    is True and int() refuses it; int() also refuses over 4,300 digits, and anything past 18
    is over any limit)."""
    return (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and (len(declared) > 18 or int(declared) > DRAIN_LIMIT)
    )


async def read_body(
    declared_length: str | None, chunks: AsyncIterator[bytes], limit: int
) -> bytes | None:
    """The body, or None when it is over ``limit`` bytes (drained up to :data:`DRAIN_LIMIT`;
    a declared length over that is refused without reading)."""
    if declared_over_drain_limit(declared_length):
        return None
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > DRAIN_LIMIT:
            break
        if size <= limit:
            parts.append(chunk)
    if size > limit:
        return None
    return b"".join(parts)


class UnsupportedEncoding(Exception):
    """A Content-Encoding other than identity, gzip or deflate (415)."""

    def __init__(self, encoding: str) -> None:
        super().__init__(f'unsupported content encoding "{echo(encoding)}"')
        self.message = str(self)


class CorruptEncoding(Exception):
    """A gzip or deflate body that does not inflate (400)."""

    message = "Invalid compressed body"


def decode_content(encoding: str | None, body: bytes, limit: int) -> bytes | None:
    """The body as sent before its Content-Encoding (``identity``, ``gzip`` or ``deflate``,
    which the reference's body-parser inflates), or None when the inflated body is over
    ``limit`` bytes (413: the limit applies to what is parsed, so a small compressed body
    cannot inflate into a large one).

    Raises:
        UnsupportedEncoding: any other encoding (415).
        CorruptEncoding: the body does not inflate as its encoding says (400).
    """
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in ("gzip", "deflate"):
        raise UnsupportedEncoding(name)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if name == "gzip" else zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise CorruptEncoding from exc
    if len(inflated) > limit:
        return None
    if not inflater.eof or inflater.unused_data:
        raise CorruptEncoding
    return inflated


class Refusal(NamedTuple):
    """A POST refused before it reaches the directory (its body's transport, not its op)."""

    status: int
    message: str
    headers: dict[str, str] | None
    reason: str
    """What ``plc_ops_refused_total`` counts it as (``GET /metrics``)."""


NOT_JSON = Refusal(400, "Content-Type must be application/json", None, "UnsupportedContentType")


_UTF_CODECS = frozenset(
    {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "utf-7"}
)
"""Python's names of the UTF charsets a body may declare (what iconv-lite, behind the
reference's body-parser, decodes)."""


def _declared_charset(content_type: str) -> str | None:
    """The ``charset`` parameter of a Content-Type, lower case and unquoted; None without."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _utf_codec(charset: str) -> str | None:
    """Python's codec name of a UTF charset (``utf-16le`` → ``utf-16-le``); None for a
    charset that is not ``utf-…`` or that no UTF codec reads."""
    if not charset.startswith("utf-"):
        return None
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return None
    return name if name in _UTF_CODECS else None


def content_type_refusal(content_type: str) -> Refusal | None:
    """Why a POST with this Content-Type is refused before its body is read, or None: 400
    unless it is JSON (:func:`is_json`), 415 for a charset other than a UTF one, as the
    reference's body-parser answers (``unsupported charset "LATIN1"``)."""
    if not is_json(content_type):
        return NOT_JSON
    charset = _declared_charset(content_type)
    if charset is not None and _utf_codec(charset) is None:
        message = f'unsupported charset "{echo(charset.upper())}"'
        return Refusal(415, message, None, "UnsupportedCharset")
    return None


def body_codec(content_type: str) -> str | None:
    """The codec a POST body of this (accepted) Content-Type is to be read with when it is
    not UTF-8 (``utf-16``, ``utf-32-be``, …; :func:`to_utf8`), else None."""
    charset = _declared_charset(content_type)
    codec = None if charset is None else _utf_codec(charset)
    return None if codec == "utf-8" else codec


def _byte_order(body: bytes, codec: str) -> str:
    """The codec for a ``utf-16`` / ``utf-32`` body without a byte order mark: big-endian when
    its first character (ASCII in any JSON text) has its zero bytes first, as iconv-lite
    guesses from where the zero bytes fall; little-endian otherwise (Python's codecs would
    take the machine's order). Any other codec, or a body with a BOM, as it is."""
    if codec == "utf-16" and body[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16-be" if body[:1] == b"\0" and body[1:2] != b"\0" else "utf-16-le"
    if codec == "utf-32" and body[:4] not in (b"\xff\xfe\0\0", b"\0\0\xfe\xff"):
        return "utf-32-be" if body[:3] == b"\0\0\0" else "utf-32-le"
    return codec


def to_utf8(body: bytes, codec: str) -> bytes | Refusal:
    """``body``, declared in the UTF ``codec``, as UTF-8 (a byte order mark dropped, as
    iconv-lite drops it); a 400 refusal when it is not valid in that codec."""
    try:
        text = body.decode(_byte_order(body, codec))
    except UnicodeDecodeError:
        message = f"Malformed JSON body: not valid {codec.upper()}"
        return Refusal(400, message, None, "MalformedCharset")
    return text.removeprefix("\ufeff").encode("utf-8", "surrogatepass")


async def take_post_body(
    directory: Directory,
    refused: Refusal | None,
    read: Callable[[], Awaitable[bytes | None]],
    encoding: str | None,
    timeout_s: float,
    limit: int,
    codec: str | None = None,
) -> bytes | Refusal:
    """A POST body as both paths take it: ``refused``, the refusal of its Content-Type
    (:func:`content_type_refusal`), when there is one, else :func:`take_body` of ``read()``
    (the body reader, made only for a body that will be read), read as UTF-8 from ``codec``
    (:func:`body_codec`) when one is given. A refusal is counted in the directory's metrics
    (if any) beside the refused ops."""
    body = refused if refused is not None else await take_body(read(), encoding, timeout_s, limit)
    if codec is not None and not isinstance(body, Refusal):
        body = to_utf8(body, codec)
    if isinstance(body, Refusal) and directory.metrics is not None:
        directory.metrics.refused_body(body.reason)
    return body


async def take_body(
    read: Awaitable[bytes | None], encoding: str | None, timeout_s: float, limit: int
) -> bytes | Refusal:
    """``read`` (a body reader returning None over the limit) within ``timeout_s``, then
    inflated per its Content-Encoding (:func:`decode_content`).

    Returns the body, or the refusal: 408 (too slow; a stalled body would otherwise hold its
    request and connection for good), 413 (over ``limit`` bytes, before or after inflating),
    415 (an encoding other than identity, gzip or deflate) or 400 (a corrupt compressed body).
    """
    try:
        async with asyncio.timeout(timeout_s):
            body = await read
    except TimeoutError:
        return Refusal(408, TIMEOUT_MESSAGE, {"connection": "close"}, "BodyTimeout")
    if body is not None and encoding is not None:
        try:
            body = decode_content(encoding, body, limit)
        except UnsupportedEncoding as exc:
            return Refusal(415, exc.message, None, "UnsupportedEncoding")
        except CorruptEncoding:
            return Refusal(400, CorruptEncoding.message, None, "CorruptEncoding")
    if body is None:
        return Refusal(413, "request entity too large", {"connection": "close"}, "BodyTooLarge")
    return body
