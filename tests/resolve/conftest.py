"""Fixtures of the resolver tests: live DNS and HTTP servers, settings pointing at them, an
in-memory did:plc source, and a resolver factory."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from plc.api.routes.identity import router
from plc.config import Settings
from plc.errors import DidNotAvailable, DidNotRegistered
from plc.resolve import IdentityResolver, ResolverSettings
from tests.resolve.servers import LocalDns, LocalHttp

WELL_KNOWN = "/.well-known/atproto-did"
DID_JSON = "/.well-known/did.json"

DID_A = "did:plc:" + "a" * 24
DID_B = "did:plc:" + "b" * 24
DID_C = "did:plc:" + "c" * 24
DID_T = "did:plc:" + "t" * 24  # tombstoned


def plc_document(did: str, *also_known_as: str) -> dict[str, Any]:
    """A did:plc document in the §5 shape, claiming ``also_known_as`` (``at://`` added)."""
    return {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "alsoKnownAs": [a if "://" in a else f"at://{a}" for a in also_known_as],
        "verificationMethod": [],
        "service": [],
    }


class MemoryPlcSource:
    """A ``PlcDocumentSource`` over a dict; ``tombstoned`` DIDs raise ``DidNotAvailable``."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.tombstoned: set[str] = set()
        self.calls: Counter[str] = Counter()

    def add(self, did: str, *also_known_as: str) -> dict[str, Any]:
        self.documents[did] = plc_document(did, *also_known_as)
        return self.documents[did]

    async def get_document(self, did: str, deadline: float | None = None) -> dict[str, Any]:
        self.calls[did] += 1
        if did in self.tombstoned:
            raise DidNotAvailable(f"DID not available: {did}")
        if did not in self.documents:
            raise DidNotRegistered(f"DID not registered: {did}")
        return self.documents[did]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def _http_server_2() -> Iterator[LocalHttp]:
    server = LocalHttp("127.0.0.2")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def http2(_http_server_2: LocalHttp) -> Iterator[LocalHttp]:
    """A second HTTP server, on 127.0.0.2 (for redirect-to-private tests)."""
    _http_server_2.reset()
    yield _http_server_2
    _http_server_2.reset()


@pytest.fixture
def plc_source() -> MemoryPlcSource:
    return MemoryPlcSource()


SettingsFactory = Callable[..., ResolverSettings]


@pytest.fixture
def make_settings(dns: LocalDns, http: LocalHttp) -> SettingsFactory:
    """Settings pointing at the local servers; private networks allowed unless overridden."""

    def make(**overrides: Any) -> ResolverSettings:
        values: dict[str, Any] = {
            "dns_nameservers": ["127.0.0.1"],
            "dns_port": dns.port,
            "handle_http_scheme": "http",
            "handle_http_port": http.port,
            "did_web_http_scheme": "http",
            "did_web_http_port": http.port,
            "allow_private_networks": True,
            "time_budget_s": 2.0,
            "request_timeout_s": 1.0,
        }
        values.update(overrides)
        return ResolverSettings(**values)

    return make


ResolverFactory = Callable[..., IdentityResolver]


@pytest.fixture
def make_resolver(make_settings: SettingsFactory, plc_source: MemoryPlcSource) -> ResolverFactory:
    """``make_resolver(clock=..., **setting_overrides)`` -> a resolver on the local servers."""

    def make(clock: Callable[[], float] | None = None, **overrides: Any) -> IdentityResolver:
        settings = make_settings(**overrides)
        if clock is None:
            return IdentityResolver(settings, plc_source)
        return IdentityResolver(settings, plc_source, clock=clock)

    return make


class FakeClock:
    """Monotonic seconds that only move when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


ClientFactory = Callable[..., Any]
"""``client_for(resolver)`` -> an ``httpx.AsyncClient`` on the identity routes."""


def app_with(resolver: IdentityResolver) -> FastAPI:
    """A small app serving only the identity routes, with ``resolver`` behind them."""
    app = FastAPI()
    app.include_router(router)
    app.state.identity_resolver = resolver
    app.state.settings = Settings()  # the routes read PLC_BODY_TIMEOUT_S from it
    return app


@pytest.fixture
async def client_for() -> AsyncIterator[ClientFactory]:
    clients: list[httpx.AsyncClient] = []

    def make(resolver: IdentityResolver) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app_with(resolver))
        client = httpx.AsyncClient(transport=transport, base_url="http://directory.test")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
