"""uvicorn's WebSocket protocol (the sans-I/O ``websockets`` one) with two changes for
``/export/stream``, the one WebSocket route:

- a deadline on writes a client does not read: when the socket's buffers stay full for
  ``PLC_STREAM_SEND_TIMEOUT_S`` the connection is aborted. uvicorn's own keep-alive timeout
  and close only ``close()`` the transport, which waits for the unread data forever, so a
  client that stopped reading kept its socket, its buffered megabytes and a server shutdown
  waiting for as long as it liked;
- a text frame that is not UTF-8 is logged as one warning line (uvicorn logs an error with a
  traceback: any client could fill the log with them); the client is still closed with 1007;
- a handshake answered with a denial response (the 400 of a bad ``cursor``) counts as
  completed: uvicorn logged "ASGI callable returned without completing handshake." at error
  level for each, so any client could fill the error log with them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from plc.api.http_server import client_text, served_settings

log = logging.getLogger("plc.stream")

MAX_MESSAGE_BYTES = 64 * 1024
"""Largest message a stream client may send (it sends nothing the server reads; uvicorn's
default, 16 MiB, let 40 clients make the server hold over a gigabyte)."""


class StreamWebSocketProtocol(WebSocketsSansIOProtocol):
    """The WebSocket protocol ``plc serve`` runs (module docstring)."""

    _stalled: asyncio.TimerHandle | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled is None:
            timeout_s = served_settings().stream_send_timeout_s
            self._stalled = self.loop.call_later(timeout_s, self._abort_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_stall()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_stall()
        super().connection_lost(exc)

    def _cancel_stall(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def _abort_stalled(self) -> None:
        self._stalled = None
        log.warning(
            "stream client left sent data unread: connection aborted",
            extra={
                "fields": {
                    "client": client_text(self.client),
                    "timeout_s": served_settings().stream_send_timeout_s,
                }
            },
        )
        self.transport.abort()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True  # answered, if not upgraded: nothing to log

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = b"".join(self.frames)
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                log.warning(
                    "stream client sent a text frame that is not UTF-8: closed with 1007",
                    extra={"fields": {"client": client_text(self.client)}},
                )
                self.frames = []
                if self.conn.close_sent is None:  # websockets may have failed it already
                    self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()
