"""Entity tags and conditional GET for the read endpoints (RFC 9110 §8.8.3, §13.1.2).

The reference server is an Express app, and Express tags every body it sends with a weak
ETag and answers ``304 Not Modified`` to a GET or HEAD whose ``If-None-Match`` names it
(plc-spec-notes.md §4, "Global"). Clients and caches that revalidate a DID document, a log
or an export page therefore get an empty 304 instead of the body when nothing changed.

The tag has Express's form, ``W/"<body length, hex>-<SHA-1 of the body, base64, 27
characters>"``, so that the same bytes get the same tag here as there.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

ETAG = b"etag"
IF_NONE_MATCH = b"if-none-match"
CACHE_CONTROL = b"cache-control"


def weak_etag(body: bytes) -> bytes:
    """The weak entity tag of a response body (bytes in, the header value as ASCII bytes)."""
    digest = base64.b64encode(hashlib.sha1(body, usedforsecurity=False).digest())[:27]
    return b'W/"%x-%s"' % (len(body), digest)


def is_fresh(if_none_match: bytes | None, cache_control: bytes | None, etag: bytes) -> bool:
    """True if a GET or HEAD carrying these request headers (raw values, or None when
    absent) may be answered 304 for a body tagged ``etag``.

    ``If-None-Match`` is a comma-separated list of entity tags or ``*`` and is compared weakly
    (RFC 9110 §8.8.3.2: ``W/`` is ignored on both sides). A request with
    ``Cache-Control: no-cache`` always gets the body: it is an end-to-end reload, and Express
    answers it that way too. Malformed lists simply match nothing."""
    if not if_none_match:
        return False
    if cache_control is not None and any(
        directive.strip().lower() == b"no-cache" for directive in cache_control.split(b",")
    ):
        return False
    tag = _opaque(etag)
    for candidate in if_none_match.split(b","):
        candidate = candidate.strip()
        if candidate == b"*" or _opaque(candidate) == tag:
            return True
    return False


def _opaque(tag: bytes) -> bytes:
    """The opaque part of an entity tag (the quoted string, ``W/`` dropped)."""
    return tag[2:] if tag[:2] == b"W/" else tag


def conditional_headers(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[bytes | None, bytes | None]:
    """``If-None-Match`` and ``Cache-Control`` of a request's raw headers (ASGI's lower-case
    names), in one pass; a header sent on several lines is one comma-separated list
    (RFC 9110 §5.3)."""
    if_none_match: bytes | None = None
    cache_control: bytes | None = None
    for key, value in headers:
        if key == IF_NONE_MATCH:
            if_none_match = value if if_none_match is None else if_none_match + b"," + value
        elif key == CACHE_CONTROL:
            cache_control = value if cache_control is None else cache_control + b"," + value
    return if_none_match, cache_control


def tagged_response(request: Request, body: bytes, media_type: str) -> Response:
    """A 200 carrying ``body`` and its ETag, or an empty 304 with the ETag when the request's
    ``If-None-Match`` names it (:func:`is_fresh`)."""
    etag = weak_etag(body)
    if is_fresh(*conditional_headers(request.headers.raw), etag):
        return Response(status_code=304, headers={"etag": etag.decode("ascii")})
    return Response(body, media_type=media_type, headers={"etag": etag.decode("ascii")})
