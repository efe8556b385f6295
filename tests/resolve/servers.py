"""Real network servers for the resolver tests: a DNS server (dnslib) and an HTTP server.

Both listen on loopback, on free ports, in daemon threads, and count every query or request
they receive, so tests can assert that something was (or was never) asked.
"""

from __future__ import annotations

import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer


def _quiet_logger() -> DNSLogger:
    return DNSLogger(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)


class Zone:
    """Records served by :class:`LocalDns`: ``{(name, type): [rdata, ...]}``, names lower-case."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[Any]] = {}
        self.delays: dict[str, float] = {}
        self.delayed_queries: dict[str, int] = {}
        self.queries: Counter[tuple[str, str]] = Counter()
        self.watched: set[tuple[str, str]] = set()
        self.in_flight: Counter[tuple[str, str]] = Counter()
        self.most_in_flight: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()
        self.release = threading.Event()

    def reset(self) -> None:
        with self.lock:
            self.records.clear()
            self.delays.clear()
            self.delayed_queries.clear()
            self.queries.clear()
            self.watched.clear()
            self.in_flight.clear()
            self.most_in_flight.clear()
        self.release.set()
        self.release = threading.Event()

    def txt(self, name: str, *values: str | list[str]) -> None:
        """Add one TXT record per value; a list value is one record of several strings."""
        for value in values:
            chunks = value if isinstance(value, list) else [value]
            self.records.setdefault((name.lower(), "TXT"), []).append(TXT(chunks))

    def a(self, name: str, *addresses: str) -> None:
        for address in addresses:
            rdata = AAAA(address) if ":" in address else A(address)
            kind = "AAAA" if ":" in address else "A"
            self.records.setdefault((name.lower(), kind), []).append(rdata)

    def slow(self, name: str, seconds: float, *, first: int | None = None) -> None:
        """Answer every query for ``name`` (or only its ``first`` ones, any type) only after
        ``seconds``, or when :attr:`release` is set (or at reset)."""
        self.delays[name.lower()] = seconds
        if first is not None:
            self.delayed_queries[name.lower()] = first

    def watch(self, suffix: str, kind: str) -> None:
        """Track how many ``kind`` queries for ``suffix`` and names under it are being answered
        at once (:meth:`most_concurrent`)."""
        with self.lock:
            self.watched.add((suffix.lower(), kind))

    def most_concurrent(self, suffix: str, kind: str) -> int:
        """The most watched queries (:meth:`watch`) that were being answered at once."""
        with self.lock:
            return self.most_in_flight[(suffix.lower(), kind)]

    def concurrent(self, suffix: str, kind: str) -> int:
        """Watched queries being answered now."""
        with self.lock:
            return self.in_flight[(suffix.lower(), kind)]

    def count_under(self, suffix: str, kind: str) -> int:
        """Queries of ``kind`` received for ``suffix`` and the names under it."""
        with self.lock:
            return sum(
                n
                for (qname, qtype), n in self.queries.items()
                if qtype == kind and _is_under(qname, suffix.lower())
            )

    def count(self, name: str, kind: str | None = None) -> int:
        with self.lock:
            return sum(
                n
                for (qname, qtype), n in self.queries.items()
                if qname == name.lower() and (kind is None or qtype == kind)
            )

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        del handler
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries[(qname, qtype)] += 1
            delay = self.delays.get(qname, 0.0)
            if qname in self.delayed_queries:
                if self.delayed_queries[qname] > 0:
                    self.delayed_queries[qname] -= 1
                else:
                    delay = 0.0
            answers = list(self.records.get((qname, qtype), []))
            exists = any(name == qname for name, _ in self.records)
            watches = [w for w in self.watched if w[1] == qtype and _is_under(qname, w[0])]
            for watch in watches:
                self.in_flight[watch] += 1
                self.most_in_flight[watch] = max(self.most_in_flight[watch], self.in_flight[watch])
        try:
            if delay:
                self.release.wait(delay)
        finally:
            with self.lock:
                for watch in watches:
                    self.in_flight[watch] -= 1
        for rdata in answers:
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=60))
        if not answers and not exists:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def _is_under(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


class LocalDns:
    """A dnslib server on 127.0.0.1 (UDP and TCP, same port) serving a :class:`Zone`."""

    def __init__(self) -> None:
        self.zone = Zone()
        for _attempt in range(50):  # a free UDP port whose TCP twin is free too
            self._udp = DNSServer(self.zone, address="127.0.0.1", port=0, logger=_quiet_logger())
            self.port: int = self._udp.server.server_address[1]
            try:
                self._tcp = DNSServer(
                    self.zone, address="127.0.0.1", port=self.port, tcp=True, logger=_quiet_logger()
                )
            except OSError:
                self._udp.server.server_close()
                continue
            return
        raise RuntimeError("no free port for the test DNS server")

    def start(self) -> None:
        self._udp.start_thread()
        self._tcp.start_thread()

    def stop(self) -> None:
        self.zone.release.set()
        for server in (self._udp, self._tcp):
            server.stop()
            server.server.server_close()


@dataclass
class Route:
    """What :class:`LocalHttp` answers for one (host, path)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    send_length: bool = True
    drip_s: float = 0.0
    """Send the body in ``DRIP_PIECES`` pieces with this pause before each (a server that
    answers slowly but never pauses long enough to trip a per-read timeout)."""


DRIP_PIECES = 10


class LocalHttp:
    """A threaded HTTP/1.0 server on ``address`` routing on (``Host`` without port, path);
    HTTPS when given a server-side ``tls`` context.

    Unknown routes answer 404. ``requests`` counts every request by (host, path);
    ``most_in_flight`` is the most requests it was answering at once.
    """

    def __init__(self, address: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: Counter[tuple[str, str]] = Counter()
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
                if host.startswith("["):
                    host = self.headers.get("Host", "")
                key = (host, self.path)
                with outer.lock:
                    outer.requests[key] += 1
                    outer.in_flight += 1
                    outer.most_in_flight = max(outer.most_in_flight, outer.in_flight)
                    route = outer.routes.get(key, Route(404, b'{"message":"not found"}'))
                try:
                    self._answer(route)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

            def _answer(self, route: Route) -> None:
                if route.delay_s:
                    outer.release.wait(route.delay_s)
                try:
                    self.send_response(route.status)
                    for name, value in route.headers.items():
                        self.send_header(name, value)
                    if route.send_length:
                        self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    if route.drip_s:
                        step = -(-len(route.body) // DRIP_PIECES)
                        for start in range(0, len(route.body), step):
                            outer.release.wait(route.drip_s)
                            self.wfile.write(route.body[start : start + step])
                    else:
                        self.wfile.write(route.body)
                except OSError:
                    pass  # the client gave up (timeouts are part of the tests)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                del format, args

        self._server = ThreadingHTTPServer((address, 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.address = address
        self.port: int = self._server.server_address[1]

    def route(self, host: str, path: str, **kwargs: Any) -> Route:
        route = Route(**kwargs)
        self.routes[(host.lower(), path)] = route
        return route

    def count(self, host: str | None = None, path: str | None = None) -> int:
        with self.lock:
            return sum(
                n
                for (h, p), n in self.requests.items()
                if (host is None or h == host.lower()) and (path is None or p == path)
            )

    def reset(self) -> None:
        with self.lock:
            self.routes.clear()
            self.requests.clear()
        self.release.set()
        self.release = threading.Event()

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
