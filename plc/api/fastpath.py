"""The hot per-DID routes (``POST /{did}``, ``GET /{did}``, ``/data``, ``/log``,
``/log/audit``, ``/log/last``) served without FastAPI's stack.

FastAPI's routing, dependency solving and middleware layers cost about as much CPU per
request as the work of a resolve, and a PDS's update is ``GET /{did}/log/last`` then
``POST /{did}``. :class:`PlcApp` (the app :func:`plc.api.app.create_app` builds) answers these
routes from plain ASGI handlers and hands every other request to FastAPI. The FastAPI routes
in :mod:`plc.api.routes.did` stay: they describe the API in the OpenAPI document and serve
whatever the fast path declines (a ``root_path``, a path another route owns, ``HEAD``). Both
paths share :mod:`plc.api.bodies`, :func:`error_message` and the :class:`Directory` reads, and
answer with the same status codes, headers (``Access-Control-Allow-Origin: *`` included) and
bodies.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

from fastapi import FastAPI
from starlette.routing import BaseRoute
from starlette.types import Message, Receive, Scope, Send

from plc.api.bodies import (
    Refusal,
    body_codec,
    content_type_refusal,
    declared_over_drain_limit,
    read_body,
    take_post_body,
)
from plc.api.errors import error_message, message_response
from plc.api.etag import ETAG, conditional_headers, is_fresh, weak_etag
from plc.api.responses import DID_LD_JSON, JSON, TEXT, only_real_answers
from plc.errors import PlcError, echo
from plc.service import Directory

log = logging.getLogger("plc.api")


_ACAO = (b"access-control-allow-origin", b"*")
_OK_HEADERS = [(b"content-length", b"2"), (b"content-type", TEXT.encode()), _ACAO]


class ClientGone(Exception):
    """The client disconnected before its request body was read."""


async def _receive_chunks(receive: Receive, first: Message | None = None) -> AsyncIterator[bytes]:
    """The request body's chunks (``first``: a message already received)."""
    while True:
        message = first if first is not None else await receive()
        first = None
        if message["type"] == "http.request":
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return
        elif message["type"] == "http.disconnect":
            raise ClientGone


async def _receive_body(declared: str | None, receive: Receive, limit: int) -> bytes | None:
    """:func:`read_body` over ASGI messages (``declared``: the Content-Length header); a body
    that came whole in one message (the usual case) is taken as it is."""
    if declared_over_drain_limit(declared):
        # Before receive(): a client that sent "Expect: 100-continue" is invited to upload
        # by the server's first receive, and this body would be refused anyway.
        return None
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")
        return body if len(body) <= limit else None
    return await read_body(declared, _receive_chunks(receive, message), limit)


def _post_headers(scope: Scope) -> tuple[bytes | None, str | None, bytes | None]:
    """The first Content-Type (raw), Content-Length and Content-Encoding (raw) of a
    request, in one pass."""
    content_type: bytes | None = None
    length: bytes | None = None
    encoding: bytes | None = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            if content_type is None:
                content_type = value
        elif key == b"content-length":
            if length is None:
                length = value
        elif key == b"content-encoding" and encoding is None:
            encoding = value
    return content_type, None if length is None else str(length.decode("latin-1")), encoding


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_message(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    response = message_response(status, message, headers)
    await _send(send, status, [*response.raw_headers, _ACAO], bytes(response.body))


Handler = Callable[[Scope, Receive, Send, str], Awaitable[None]]

DID_ROUTES: dict[tuple[str, str], str] = {
    ("POST", ""): "/{did}",
    ("GET", ""): "/{did}",
    ("GET", "/data"): "/{did}/data",
    ("GET", "/log"): "/{did}/log",
    ("GET", "/log/audit"): "/{did}/log/audit",
    ("GET", "/log/last"): "/{did}/log/last",
}
"""(method, path after the DID) → the FastAPI route the fast path stands in for."""


class PlcApp(FastAPI):
    """FastAPI with the per-DID routes (:data:`DID_ROUTES`) served by plain ASGI handlers.

    A request takes the fast path when it is HTTP, has no ``root_path``, its path starts with
    ``/``, its method and the part of its path after the first
    segment name one of :data:`DID_ROUTES`, and that first segment (the DID) is not the first
    segment of any other route of the app (so FastAPI would route it to the same
    ``/{did}…`` endpoint too).

    In front of both paths, five rules of the reference's Express router: one trailing ``/``
    is dropped (``/x/`` is ``/x``), a path ending in a newline matches no literal route
    (:meth:`_newline_path`), a path with an encoded slash in a DID route's segments is
    routed on its raw segments (:meth:`_encoded_slash`), a DID that does not decode is 400
    (:func:`_undecodable_did`), and literal segments ignore case (:func:`_case_folded`).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._taken: frozenset[str] | None = None
        self._handlers: dict[tuple[str, str], Handler] = {
            ("POST", ""): self._post,
            ("GET", ""): self._reader(Directory.document, DID_LD_JSON),
            ("GET", "/data"): self._reader(Directory.data, JSON),
            ("GET", "/log"): self._reader(Directory.op_log, JSON),
            ("GET", "/log/audit"): self._reader(Directory.audit_log, JSON),
            ("GET", "/log/last"): self._reader(Directory.last_op, JSON),
        }
        self._did_handlers = dict(self._handlers)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, with only the statuses the app really answers
        (:func:`plc.api.responses.only_real_answers`)."""
        if self.openapi_schema is None:
            self.openapi_schema = only_real_answers(super().openapi())
        return self.openapi_schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            taken = self._taken if self._taken is not None else self._taken_segments()
            path: str = scope["path"]
            if path[-1:] == "/" and len(path) > 1:
                # The reference's Express routes are not strict: "/x/" is served as "/x".
                # (FastAPI would answer 307 to a URL built from the Host header.)
                scope = _without_trailing_slash(scope)
                path = scope["path"]
            if path[-1:] == "\n" and scope["method"] != "OPTIONS":
                await self._newline_path(scope, receive, send, path)
                return
            raw = scope.get("raw_path")
            if (
                scope["method"] != "OPTIONS"  # a CORS preflight, answered by the middleware
                and isinstance(raw, bytes)
                and b"%" in raw
                and (
                    # Express decodes the DID after matching on the raw path, %2F included.
                    await _undecodable_did(scope, send, raw, taken)
                    or (
                        b"%2f" in raw.lower()
                        and await self._encoded_slash(scope, receive, send, raw, taken)
                    )
                )
            ):
                return
            slash = path.find("/", 1)
            did = path[1:] if slash < 0 else path[1:slash]
            suffix = "" if slash < 0 else path[slash:]
            if (suffix and suffix not in _SUFFIXES) or (did[:1] in _CASED_FIRST and not suffix):
                scope, suffix = _case_folded(scope, did, suffix)
                did = scope["path"][1 : len(scope["path"]) - len(suffix)]  # "export" is taken
            handler = self._handlers.get((scope["method"], suffix))
            if (
                handler is not None
                and did
                and did not in taken
                and path[0] == "/"
                and not scope.get("root_path")
            ):
                await self._serve(handler, scope, receive, send, did)
                return
        elif scope["type"] == "websocket":
            path = scope["path"]
            if path[-1:] == "\n":
                await send({"type": "websocket.close", "code": 1008})  # no route: 403
                return
            if path[-1:] == "/" and len(path) > 1:
                scope = _without_trailing_slash(scope)  # as for HTTP: /x/ is /x
        await super().__call__(scope, receive, send)

    async def _newline_path(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """Route a path that ends in a newline (``%0A``) as Express does. Starlette's route
        patterns end in ``$``, which also matches before a final newline, so FastAPI would
        serve ``/export%0A`` as ``/export``; Express matches no literal route then: one
        segment is a DID (``GET /export%0A`` is 404 "DID not registered"), anything else
        matches no route (404)."""
        method = scope["method"]
        did = path[1:]
        handler = None
        if "/" not in did:
            handler = self._did_handlers.get(("GET" if method == "HEAD" else method, ""))
        if handler is None:
            await _send_message(send, 404, "Not Found")
            return
        if method == "HEAD":
            send = headers_only(send)
        await self._serve(handler, scope, receive, send, did)

    async def _encoded_slash(
        self, scope: Scope, receive: Receive, send: Send, raw: bytes, taken: frozenset[str]
    ) -> bool:
        """Route a path with an encoded slash (``%2F``) in a DID route's segments as Express
        does: on the raw path's segments, each decoded after matching. ``/{did}%2Fdata`` is
        then ``GET /{did}`` of the DID ``did:plc:…/data`` (not registered: 404), where routing
        on the decoded path would serve ``/data``. True when answered here; paths whose first
        segment belongs to another route are left to the usual routing."""
        segments = [unquote(part.decode("ascii", "replace")) for part in raw.split(b"/")[1:]]
        did, rest = segments[0], segments[1:]
        if not did or did in taken or not any("/" in part for part in segments):
            return False
        method = scope["method"]
        handler = None
        if not any("/" in part for part in rest):
            suffix = "".join("/" + part for part in rest).lower()  # literal: any case
            handler = self._did_handlers.get(("GET" if method == "HEAD" else method, suffix))
        if handler is None:
            await _send_message(send, 404, "Not Found")
            return True
        if method == "HEAD":
            send = headers_only(send)
        await self._serve(handler, scope, receive, send, did)
        return True

    def _taken_segments(self) -> frozenset[str]:
        """First path segments of the app's routes other than :data:`DID_ROUTES` (computed
        once, at first use).

        A handler is dropped when its route is not in the app. The fast path turns itself
        off when the routes cannot all be listed, or when another route whose first segment
        is a parameter could match a fast path too (its rest has a parameter or is one of
        the fast suffixes): it could not tell which route a path belongs to. A route like
        ``/{did}/log/proof`` cannot, and stays with FastAPI."""
        if self._taken is None:
            routes = _route_methods(self.routes)
            if routes is None:
                routes = {}
            self._handlers = {
                (method, suffix): handler
                for (method, suffix), handler in self._handlers.items()
                if DID_ROUTES[method, suffix] in routes
                and method in (routes[DID_ROUTES[method, suffix]] or {method})
            }
            suffixes = {suffix for _, suffix in DID_ROUTES}
            segments: set[str] = set()
            for path in routes.keys() - set(DID_ROUTES.values()):
                first, _, rest = path[1:].partition("/")
                if "{" not in first:
                    segments.add(first)
                elif "{" in rest or ("/" + rest if rest else "") in suffixes:
                    self._handlers = {}
            self._taken = frozenset(segments)
        return self._taken

    def _reader(self, read: Callable[[Directory, str], bytes], media_type: str) -> Handler:
        """A handler answering 200 with ``read(directory, did)`` as the body and its ETag, or
        304 to a request whose ``If-None-Match`` names that ETag (:mod:`plc.api.etag`)."""
        content_type = media_type.encode()

        async def handle(scope: Scope, receive: Receive, send: Send, did: str) -> None:
            directory: Directory = self.state.directory
            body = await directory.run(read, directory, did)
            etag = (ETAG, weak_etag(body))
            if is_fresh(*conditional_headers(scope["headers"]), etag[1]):
                await _send(send, 304, [etag, _ACAO], b"")
                return
            length = (b"content-length", b"%d" % len(body))
            await _send(send, 200, [etag, length, (b"content-type", content_type), _ACAO], body)

        return handle

    async def _serve(
        self, handler: Handler, scope: Scope, receive: Receive, send: Send, did: str
    ) -> None:
        try:
            await handler(scope, receive, send, did)
        except ClientGone:
            return
        except PlcError as exc:
            await _send_message(send, *error_message(exc))
        except Exception as exc:  # noqa: BLE001 - answer 500 without detail, as the app does
            log.error("unhandled error", exc_info=exc)
            await _send_message(send, 500, "Internal Server Error")

    async def _post(self, scope: Scope, receive: Receive, send: Send, did: str) -> None:
        state = self.state
        directory: Directory = state.directory
        content_type, declared, encoding = _post_headers(scope)
        settings = state.settings
        body = await take_post_body(
            directory,
            None
            if content_type == b"application/json"
            else content_type_refusal(
                "" if content_type is None else content_type.decode("latin-1")
            ),
            lambda: _receive_body(declared, receive, settings.max_body_bytes),
            None if encoding is None else encoding.decode("latin-1"),
            settings.body_timeout_s,
            settings.max_body_bytes,
            None
            if content_type is None or content_type == b"application/json"
            else body_codec(content_type.decode("latin-1")),
        )
        if isinstance(body, Refusal):
            await _send_message(send, body.status, body.message, body.headers)
            return
        await directory.submit_body(did, body)
        await _send(send, 200, _OK_HEADERS, b"OK")


def headers_only(send: Send) -> Send:
    """``send`` for a HEAD answered as a GET: the status and headers (Content-Length
    included) go out, the body does not."""

    async def send_headers(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b""}
        await send(message)

    return send_headers


_SUFFIXES = frozenset(suffix for _, suffix in DID_ROUTES)
_LITERAL_FIRST = frozenset({"export", "_health"})
"""The reference's routes whose first segment is a literal (its Express router matches them
ignoring case, as it does the literal segments after a DID)."""
_CASED_FIRST = frozenset("Ee_")


def _case_folded(scope: Scope, did: str, suffix: str) -> tuple[Scope, str]:
    """``scope`` routed as the reference's Express router does, which ignores case in
    literal segments: ``/{did}/LOG`` is ``/{did}/log`` and ``/EXPORT`` is ``/export`` (the
    DID itself is never folded). Also the suffix to route on."""
    if suffix:
        folded = suffix.lower()
        if folded not in _SUFFIXES:
            return scope, suffix
        return {**scope, "path": f"/{did}{folded}"}, folded
    folded = did.lower()
    if folded == did or folded not in _LITERAL_FIRST:
        return scope, suffix
    return {**scope, "path": f"/{folded}"}, suffix


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_SUSPECT_ESCAPE = re.compile(rb"%(?![0-7][0-9A-Fa-f])")
"""A ``%`` not followed by an ASCII character's escape: a bad escape or a byte over 0x7F."""


async def _undecodable_did(scope: Scope, send: Send, raw: bytes, taken: frozenset[str]) -> bool:
    """Answer 400 as Express does when a DID route matched the raw path and its DID
    parameter does not decode (a ``%`` without two hex digits after it, or bytes that are
    not UTF-8): ``Failed to decode param '…'`` (the raw segment); a decoder that replaced
    them would answer 404 for a DID that is not what was sent. True when answered."""
    parts = raw.split(b"/")
    segment = parts[1] if len(parts) > 1 else b""
    if _SUSPECT_ESCAPE.search(segment) is None:  # no escape, or only ASCII ones: it decodes
        return False
    suffix = "".join("/" + part.decode("ascii", "replace").lower() for part in parts[2:])
    method = "GET" if scope["method"] == "HEAD" else scope["method"]
    if (method, suffix) not in DID_ROUTES:  # no route matched: no parameter is decoded
        return False
    text = segment.decode("ascii", "replace")
    if text in taken:
        return False
    try:
        if _BAD_ESCAPE.search(segment) is None:
            unquote_to_bytes(segment).decode("utf-8")
            return False
    except UnicodeDecodeError:
        pass
    if scope["method"] == "HEAD":
        send = headers_only(send)
    await _send_message(send, 400, f"Failed to decode param '{echo(text)}'")
    return True


def _without_trailing_slash(scope: Scope) -> Scope:
    """``scope`` with one trailing ``/`` taken off its path (and raw path)."""
    raw = scope.get("raw_path")
    trimmed = {**scope, "path": scope["path"][:-1]}
    if isinstance(raw, bytes) and raw.endswith(b"/"):
        trimmed["raw_path"] = raw[:-1]
    return trimmed


def _route_methods(routes: list[BaseRoute]) -> dict[str, set[str] | None] | None:
    """Every route's full path (included routers expanded) → its methods (None: any method,
    as a mount's), or None if a route has no path."""
    try:  # FastAPI >= 0.16x keeps included routers as one entry each
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older versions copy every route into app.routes
        found = [(getattr(r, "path", None), getattr(r, "methods", None)) for r in routes]
    else:
        found = [(c.path, c.methods) for c in iter_route_contexts(routes)]
    methods: dict[str, set[str] | None] = {}
    for path, route_methods in found:
        if not isinstance(path, str):
            return None
        known = methods.get(path, set())
        merged = None if known is None or route_methods is None else known | set(route_methods)
        methods[path] = merged
    return methods
