"""How uvicorn serves the app: its options, and the HTTP protocol that answers a request the
parser refuses with ``{"message": ...}`` like every other error, and caps the request head.

uvicorn answers malformed HTTP (a bad request line, an invalid header, a bad
``Content-Length``) itself, before the app sees a request, with a plain-text 400; and its
httptools protocol puts no limit on the request head, so a client could make it hold an
endless header in memory, nor on the time a head may take (its keep-alive timer starts only
after a response). The reference (Node's ``http``) answers malformed requests with a bare 400,
heads over ``maxHeaderSize`` (16 KiB) with 431 and heads slower than ``headersTimeout`` (60 s)
with 408, closing the connection each time.
We answer the same statuses and close, with the body and CORS header every other answer of
this API has (design.md decision 1: bad input of any kind is a 4xx with a message). The app
never sees these requests, so they are counted here (``plc_http_refused_total`` in
``/metrics``) and each is logged once: uvicorn's own warning for a malformed request, ours
(``plc.http``, with the client's address and the limit) for an oversized or a late head.

The parser also takes every ``Connection: upgrade`` request for a protocol switch; only a
WebSocket upgrade of ``GET /export/stream`` is one here, every other ``Upgrade`` header is
ignored, as Node does (:meth:`JsonErrorHttpProtocol._unsupported_upgrades_ignored`). For that
a request head is handed to the parser only once it is whole, and only the head is rewritten:
the bytes of a body are never touched, so they cannot change where one request ends and the
next begins (RFC 9112 §6.3). A body of known length is handed over up to its end, so the head
of a request pipelined behind it is treated alike; one behind a chunked body that asks for an
upgrade after all is answered 400 and the connection closed.

An error answered while an earlier request of the connection is still being answered (a
malformed request pipelined behind a POST) waits for that answer. A request answered before
its body was read (a refusal by its headers) must send the rest of its body within
``PLC_BODY_TIMEOUT_S``, or the connection is closed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from plc.api.responses import JSON
from plc.config import Settings
from plc.metrics import HTTP_REFUSED

log = logging.getLogger("plc.http")
_SILENT = logging.getLogger("plc.http.silenced")
_SILENT.disabled = True

KEEP_ALIVE_S = 90
"""Idle keep-alive timeout, seconds (the reference's ``server.keepAliveTimeout``)."""
HEAD_TOO_LARGE = "Request header fields too large"
"""Message of the 431 answered to a request head over ``PLC_MAX_HEADER_BYTES``."""
HEAD_TIMEOUT = "Request head not received in time"
"""Message of the 408 answered when a request head is slower than ``PLC_HEAD_TIMEOUT_S``."""

UNSUPPORTED_UPGRADE = "Unsupported upgrade request (send it on a connection of its own)"
"""Message of the 400 answered to an ``Upgrade`` request that could not be served as plain
HTTP (one pipelined behind a chunked body), or a protocol switch other than the stream's."""

_UPGRADE_HEADER = re.compile(rb"\nupgrade([ \t]*:)([^\r\n]*)", re.IGNORECASE)
_STREAM_PATH = b"/export/stream"

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _head_end(data: bytes, resume: int = 0) -> int:
    """Index just past the blank line that ends the request head at the start of ``data``
    (CRLF or bare LF line ends; empty lines before a request line are skipped, as the parser
    skips them); -1 while it has not arrived. ``resume``: where to search from, a search up to
    there having found nothing (so a head arriving a byte at a time costs linear time). Two
    substring searches (about 0.5 µs for a usual POST): a regular expression took 3 µs."""
    start = 0
    if data[:1] in (b"\r", b"\n"):
        start = len(data) - len(data.lstrip(b"\r\n"))
    start = max(start, resume)
    crlf = data.find(b"\n\r\n", start)
    bare = data.find(b"\n\n", start, len(data) if crlf < 0 else crlf + 2)
    if bare >= 0:
        return bare + 2
    return -1 if crlf < 0 else crlf + 3


_REQUEST_LINE_START = re.compile(
    rb"[\r\n]*(?:[A-Z]{1,20}(?: (?:[^\x00-\x20]+(?: (?:H(?:T(?:T(?:P(?:/[0-9.]{0,3})?)?)?)?"
    rb"(?:\r?\n.*)?)?)?)?)?)?",
    re.DOTALL,
)
"""What a request's first bytes can be: empty lines, then ``METHOD SP target SP HTTP/x.y`` or
a beginning of it, then anything (headers)."""


def _may_begin_request(data: bytes) -> bool:
    """Whether ``data`` (an incomplete head) can still become a request: the parser refuses
    anything else at once, so it is not withheld until a head timeout."""
    return _REQUEST_LINE_START.fullmatch(data[:300]) is not None or len(data) > 300


def _is_stream_request(head: bytes) -> bool:
    """Whether a raw request head is a ``GET`` of a path that starts ``/export/stream``, where
    a WebSocket upgrade is taken (the stream's route decides the rest: ``/export/stream/`` is
    the route, ``/export/stream%0A`` is refused 403 by the WebSocket handshake)."""
    return head.lstrip(b"\r\n").startswith(b"GET " + _STREAM_PATH)


@functools.cache
def served_settings() -> Settings:
    """The settings the connection protocols of this process read (head limits, the stream's
    send timeout), read once: uvicorn builds the protocols itself, and each worker process
    reads the environment ``plc serve`` hands down."""
    return Settings()


def client_text(client: tuple[str, int] | None) -> str | None:
    """``host:port`` of a protocol's peer, for log lines."""
    return f"{client[0]}:{client[1]}" if client else None


class JsonErrorHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with JSON parse-error answers and a cap on the head.

    An incomplete head is measured by the bytes withheld for it, so memory stays within the
    cap plus one read however the head is sent. A whole head longer than the cap (pipelined
    ones included) is measured by its parsed parts (URL, names, values), as Node measures
    it; below the cap that sum is skipped (0.7 µs a request). A head pipelined behind a
    chunked body goes to the parser as it comes and is measured from the reads after that
    body only, so it may pass the cap by the share of the body's read.
    """

    _in_head = True
    _head_bytes = 0
    _head_timer: asyncio.TimerHandle | None = None
    _head_begun = False
    _pending: bytearray
    """Bytes of a request head that has not arrived whole, withheld from the parser (one per
    connection: made in :meth:`connection_made`)."""
    _scanned = 0
    """Where the search for the end of the withheld head resumes (it was not before)."""
    _body_left: int | None = None
    """Bytes of the current request's body still to hand the parser before the next head
    can begin; None when unknown (chunked) or no body is being read."""
    _drain_timer: asyncio.TimerHandle | None = None
    _deferred: tuple[int, str] | None = None
    """An error answer waiting for the answer to an earlier request of the connection."""
    _failed = False
    _upgrade_refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._pending = bytearray()
        super().connection_made(transport)
        # uvicorn times a connection out only once a response has been sent; a client that
        # connects and never finishes a head would hold its socket for good (slowloris).
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._stop_drain_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._failed:  # the parser refused the stream; an answer and a close are on the way
            return
        self._unset_keepalive_if_required()
        limit = served_settings().max_header_bytes
        if self._in_head:
            self._head_bytes += len(data)
        while data:
            if self._in_head and not self._head_begun:
                if self._pending:
                    self._pending += data  # a bytearray: each read appended, not copied
                    data = bytes(self._pending)
                    self._pending = bytearray()
                end = _head_end(data, self._scanned)
                if end < 0:
                    if len(data) > limit:
                        if not self.transport.is_closing():
                            self._refuse_head()
                        return
                    if not _may_begin_request(data):
                        # Bytes no request starts with (garbage, TLS): the parser refuses
                        # them now instead of after the head timeout.
                        self._scanned = 0
                        self._feed(data)
                        return
                    self._pending = bytearray(data)  # the parser gets the head once whole
                    self._scanned = max(0, len(data) - 2)
                    if self._head_timer is None:
                        self._start_head_timer()
                    return
                self._scanned = 0
                head, data = data[:end], data[end:]
                # measured by its parsed parts in on_headers_complete, as Node measures it
                self._head_bytes = max(self._head_bytes, end)
                if _UPGRADE_HEADER.search(head):  # any case (0.4 µs a head)
                    head = self._unsupported_upgrades_ignored(head)
                if not self._feed(head):
                    return
                self._body_left = None if self._in_head else self._declared_length()
            elif self._body_left is not None and not self._in_head:
                part, data = data[: self._body_left], data[self._body_left :]
                self._body_left -= len(part)
                if not self._feed(part):
                    return
            else:
                # A chunked body's end is the parser's to find: the rest goes to it whole
                # (a head pipelined behind it is not rewritten; see on_headers_complete).
                if not self._feed(data):
                    return
                data = b""
        if self._in_head and self._head_begun:
            if self._head_bytes > limit:
                if not self.transport.is_closing():
                    self._refuse_head()
            elif self._head_timer is None:
                self._start_head_timer()

    def _feed(self, data: bytes) -> bool:
        """Hand ``data`` to the parser; False when it refused the request (answered) or the
        connection switched protocols, so the rest of the read is not for it."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return False
        except httptools.HttpParserUpgrade:
            # on_headers_complete lets only the stream's WebSocket upgrade get here
            self.handle_websocket_upgrade()
            return False
        return True

    def _declared_length(self) -> int | None:
        """The Content-Length of the request whose head was just parsed (None: chunked)."""
        chunked = False
        length: int | None = None
        for name, value in self.headers:
            if name == b"transfer-encoding":
                chunked = True
            elif name == b"content-length":
                length = int(value)  # the parser refused any other form
        return None if chunked else length

    def _unsupported_upgrades_ignored(self, head: bytes) -> bytes:
        """The request head ``head`` with every ``Upgrade`` header renamed unless it asks for
        a WebSocket on the one WebSocket route. The parser takes any ``Connection: upgrade``
        request for an upgrade and stops at its head, so the body of ``POST /{did}`` with
        ``Upgrade: h2c`` (what ``curl --http2`` sends) was lost, and one with ``Upgrade:
        websocket`` was handed to the WebSocket protocol and never answered. Node serves both
        as plain HTTP requests, and so do we."""
        stream = _is_stream_request(head)

        def rename(match: re.Match[bytes]) -> bytes:
            if stream and match.group(2).strip().lower() == b"websocket":
                return match.group(0)
            return b"\nx-ignored-upgrade" + match.group(1) + match.group(2)

        return _UPGRADE_HEADER.sub(rename, head)

    def _start_head_timer(self) -> None:
        timeout_s = served_settings().head_timeout_s
        self._head_timer = self.loop.call_later(timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._start_head_timer()  # the previous answer is still being written: not now
            return
        if self.cycle is not None and not self._head_begun and not self._pending:
            return  # an idle kept-alive connection: uvicorn's keep-alive timer closes it
        self._refuse(408, "HeadTimeout", HEAD_TIMEOUT, timeout_s=served_settings().head_timeout_s)

    def on_message_begin(self) -> None:
        self._head_begun = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        self._head_begun = False
        if self.parser.should_upgrade() and (
            not self._takes_stream_upgrade() or self._owes_earlier_answer()
        ):
            # An Upgrade header left in place (a head pipelined behind a chunked body), a
            # CONNECT, or a WebSocket upgrade pipelined behind requests still to be answered
            # (their answers would go into the WebSocket): the parser would skip this
            # request's body and the rest of the stream.
            self._upgrade_refused = True
            self.logger = _SILENT
            raise _HeadRefused
        # Only when the reads that carried the head (and maybe a body) pass the cap is the
        # head itself measured: its parsed parts, ": " and CRLF per header. Most requests
        # skip the sum. Refused while still "in the head": the refusal is of a request of
        # its own, after the answers owed to earlier ones.
        limit = served_settings().max_header_bytes
        if (
            self._head_bytes > limit
            and len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            > limit
        ):
            self._refuse_head()
            # Stop the parser here: nothing of this request may reach the app. uvicorn
            # takes the exception for a parse error and would log it as one.
            self.logger = _SILENT
            raise _HeadRefused
        self._in_head, self._head_bytes = False, 0
        super().on_headers_complete()

    def _takes_stream_upgrade(self) -> bool:
        return (
            self._should_upgrade()
            and self.parser.get_method() == b"GET"
            and self.url.startswith(_STREAM_PATH)
        )

    def on_message_complete(self) -> None:
        self._in_head = True
        self._body_left = None
        self._stop_drain_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # With requests queued, uvicorn starts the next one now; otherwise the request that
        # was answered is the last one parsed.
        starts_next = bool(self.pipeline)
        answered = None if starts_next else self.cycle
        super().on_response_complete()
        if self.transport.is_closing() or starts_next:
            return
        if self._deferred is not None:  # every earlier request has had its answer
            status, message = self._deferred
            self._deferred = None
            self._write_error(status, message)
        elif (
            answered is not None
            and answered.response_complete
            and answered.more_body
            and self._drain_timer is None
        ):
            # Answered before its body was read: the rest of the body is read and dropped,
            # but only within the body timeout (one byte now and then held it for good).
            timeout_s = served_settings().body_timeout_s
            self._drain_timer = self.loop.call_later(timeout_s, self._drain_timed_out)

    def _drain_timed_out(self) -> None:
        self._drain_timer = None
        if not self.transport.is_closing():
            HTTP_REFUSED.labels(reason="UnreadBodyTimeout").inc()
            self.transport.close()

    def _stop_drain_timer(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request its parser refuses (``msg`` is uvicorn's fixed
        text); also reached when :meth:`on_headers_complete` stops the parser, after the 431
        or for an upgrade it does not take."""
        self._failed = True
        if self.transport.is_closing() or self._deferred is not None:
            return
        if self._upgrade_refused:
            HTTP_REFUSED.labels(reason="UnsupportedUpgrade").inc()
            self.send_error_response(400, UNSUPPORTED_UPGRADE)
        else:
            HTTP_REFUSED.labels(reason="MalformedRequest").inc()
            self.send_error_response(400, msg)

    def _refuse_head(self) -> None:
        self._refuse(
            431,
            "HeadTooLarge",
            HEAD_TOO_LARGE,
            logged="Request head over the limit refused",
            limit_bytes=served_settings().max_header_bytes,
        )

    def _refuse(
        self, status: int, reason: str, message: str, logged: str | None = None, **fields: object
    ) -> None:
        """Count (``plc_http_refused_total{reason}``), log once (``logged``, else
        ``message``) with the client's address and ``fields``, answer ``status`` with
        ``message`` and close."""
        HTTP_REFUSED.labels(reason=reason).inc()
        extra = {"fields": {"status": status, **fields, "client": client_text(self.client)}}
        log.warning(logged or message, extra=extra)
        self.send_error_response(status, message)

    def send_error_response(self, status: int, message: str) -> None:
        """Answer ``status`` with ``{"message": message}`` and close the connection, once the
        answers to the connection's earlier requests have been sent (they were accepted
        before this one was refused: a pipelined client would otherwise lose them)."""
        self._failed = True
        if self._owes_earlier_answer():
            if self._deferred is None:
                self._deferred = (status, message)
                self.flow.pause_reading()
            return
        self._write_error(status, message)

    def _owes_earlier_answer(self) -> bool:
        """Whether a request before the one being refused still awaits its answer. Bytes
        refused while a head is awaited begin a request of their own: every request before
        it counts. Bytes refused in a body belong to the last request parsed, which gets no
        answer of its own: it is taken out of the queue, and only the requests before it
        count (one being answered, or answered but for its body: answered at once)."""
        if self._in_head:
            return bool(self.pipeline) or (
                self.cycle is not None and not self.cycle.response_complete
            )
        queued = [entry for entry in self.pipeline if entry[0] is self.cycle]
        for entry in queued:
            self.pipeline.remove(entry)
        return bool(queued)

    def _write_error(self, status: int, message: str) -> None:
        body = orjson.dumps({"message": message})
        head = [b"HTTP/1.1 %d %s" % (status, _REASONS[status])]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [
            b"content-type: " + JSON.encode(),
            b"content-length: " + str(len(body)).encode(),
            b"access-control-allow-origin: *",
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


def uvicorn_options(settings: Settings | None = None) -> dict[str, Any]:
    """The keyword arguments ``plc serve`` gives ``uvicorn.run`` / ``uvicorn.Config`` besides
    the app, host, port and workers (``settings``: default read from the environment)."""
    # here, not at the top: ws_protocol imports this module
    from plc.api.ws_protocol import MAX_MESSAGE_BYTES, StreamWebSocketProtocol

    settings = settings or Settings()
    return {
        "http": JsonErrorHttpProtocol,
        "ws": StreamWebSocketProtocol,
        "ws_max_size": MAX_MESSAGE_BYTES,
        "ws_per_message_deflate": settings.stream_compression,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        "log_config": None,
        "access_log": False,
        "timeout_keep_alive": KEEP_ALIVE_S,
    }
