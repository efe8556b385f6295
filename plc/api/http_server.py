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
ignored, as Node does (:meth:`JsonErrorHttpProtocol._unsupported_upgrades_ignored`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from typing import Any

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

_UPGRADE_HEADER = re.compile(rb"\r\nupgrade([ \t]*:)([^\r\n]*)", re.IGNORECASE)
_WEBSOCKET_REQUEST = b"GET /export/stream"

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


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

    The head is measured from the bytes received while it is incomplete, so memory stays
    within the cap plus one read however the head is sent. When those reads pass the cap
    but the head is complete (it came with its body in one read), the head itself is
    measured by its parsed parts (URL, names, values); below the cap that sum is skipped
    (0.7 µs a request). A pipelined head whose first bytes shared a read with the previous
    request is measured from its later reads only, so it may pass the cap by that share.
    """

    _in_head = True
    _head_bytes = 0
    _head_timer: asyncio.TimerHandle | None = None
    _websocket_route = False
    _head_start = b""
    _head_begun = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn times a connection out only once a response has been sent; a client that
        # connects and never finishes a head would hold its socket for good (slowloris).
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes == len(data):  # this read starts a head
                self._head_start = data[: len(_WEBSOCKET_REQUEST)]
            elif len(self._head_start) < len(_WEBSOCKET_REQUEST):  # its request line was cut
                self._head_start += data[: len(_WEBSOCKET_REQUEST) - len(self._head_start)]
            self._websocket_route = self._head_start == _WEBSOCKET_REQUEST
            if _UPGRADE_HEADER.search(data):  # any case (0.2 µs a read)
                data = self._unsupported_upgrades_ignored(data)
        super().data_received(data)
        if self._in_head and (self._head_bytes or self._head_begun):
            if self._head_bytes > served_settings().max_header_bytes:
                if not self.transport.is_closing():
                    self._refuse_head()
            elif self._head_timer is None:
                # A head left incomplete on a kept-alive connection, maybe pipelined behind
                # a request of the same read (most heads arrive whole, and no timer is made).
                self._start_head_timer()

    def _unsupported_upgrades_ignored(self, data: bytes) -> bytes:
        """``data`` with every ``Upgrade`` header renamed unless it asks for a WebSocket on
        the one WebSocket route. The parser takes any ``Connection: upgrade`` request for an
        upgrade and stops at its head, so the body of ``POST /{did}`` with ``Upgrade: h2c``
        (what ``curl --http2`` sends) was lost, and one with ``Upgrade: websocket`` was
        handed to the WebSocket protocol and never answered. Node serves both as plain HTTP
        requests, and so do we."""

        def rename(match: re.Match[bytes]) -> bytes:
            if self._websocket_route and match.group(2).strip().lower() == b"websocket":
                return match.group(0)
            return b"\r\nx-ignored-upgrade" + match.group(1) + match.group(2)

        return _UPGRADE_HEADER.sub(rename, data)

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
        if self.cycle is not None and not self._head_begun and self._head_bytes == 0:
            return  # an idle kept-alive connection: uvicorn's keep-alive timer closes it
        self._refuse(408, "HeadTimeout", HEAD_TIMEOUT, timeout_s=served_settings().head_timeout_s)

    def on_message_begin(self) -> None:
        self._head_begun = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        self._head_begun = False
        received, self._in_head, self._head_bytes = self._head_bytes, False, 0
        # Only when the reads that carried the head (and maybe a body) pass the cap is the
        # head itself measured: its parsed parts, ": " and CRLF per header. Most requests
        # skip the sum.
        limit = served_settings().max_header_bytes
        if (
            received > limit
            and len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            > limit
        ):
            self._refuse_head()
            # Stop the parser here: nothing of this request may reach the app. uvicorn
            # takes the exception for a parse error and would log it as one.
            self.logger = _SILENT
            raise _HeadRefused
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request its parser refuses (``msg`` is uvicorn's fixed
        text); also reached when :meth:`on_headers_complete` stops the parser, after the 431."""
        if not self.transport.is_closing():
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
        """Answer ``status`` with ``{"message": message}`` and close the connection."""
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
