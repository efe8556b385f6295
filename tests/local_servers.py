"""Real DNS and HTTP servers on 127.0.0.1 shared by the resolution tests (a pytest plugin,
loaded by tests/conftest.py): one of each per session, emptied around every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.resolve.servers import LocalDns, LocalHttp


@pytest.fixture(scope="session")
def _dns_server() -> Iterator[LocalDns]:
    server = LocalDns()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _http_server() -> Iterator[LocalHttp]:
    server = LocalHttp("127.0.0.1")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dns(_dns_server: LocalDns) -> Iterator[LocalDns]:
    """The DNS server with an empty zone and zeroed counters."""
    _dns_server.zone.reset()
    yield _dns_server
    _dns_server.zone.reset()


@pytest.fixture
def http(_http_server: LocalHttp) -> Iterator[LocalHttp]:
    """The HTTP server on 127.0.0.1 with no routes and zeroed counters."""
    _http_server.reset()
    yield _http_server
    _http_server.reset()
