"""A TCP proxy on 127.0.0.1 in front of the local PostgreSQL, for tests of what the server
does when its connections misbehave: subclasses decide what happens to each chunk."""

from __future__ import annotations

import socket
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class PgProxy:
    """Forwards every connection to ``upstream``, one thread per direction.

    Subclasses override :meth:`opened` (state kept per connection) and :meth:`forward` (what
    becomes of one chunk read from ``source``: sent to ``sink``, held, dropped or cut)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def opened(self) -> Any:
        """State shared by a new connection's two directions."""
        return None

    def forward(
        self, data: bytes, source: socket.socket, sink: socket.socket, upstream: bool, state: Any
    ) -> bool:
        """Pass ``data`` on (``upstream``: from the client to PostgreSQL); False ends this
        direction."""
        sink.sendall(data)
        return True

    def url(self, pg_url: str) -> str:
        """``pg_url`` pointed at this proxy."""
        parts = urlsplit(pg_url)
        netloc = parts.netloc.replace(f":{parts.port}", f":{self.port}")
        return urlunsplit(parts._replace(netloc=netloc))

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            state = self.opened()
            for source, sink, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, upstream, state), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool, state: Any) -> None:
        try:
            while data := source.recv(65536):
                if not self.forward(data, source, sink, upstream, state):
                    return
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()


def upstream_of(pg_url: str) -> tuple[str, int]:
    """Host and port of a PostgreSQL URL."""
    parts = urlsplit(pg_url)
    return parts.hostname or "127.0.0.1", parts.port or 5432
