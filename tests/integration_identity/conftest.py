"""Fixtures of the end-to-end identity tests: the real app on a live loopback server, with its
resolver pointed at a real DNS server and a real HTTP server on 127.0.0.1, and helpers that
register DIDs by POSTing signed operations to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest

from plc.api.app import create_app
from plc.keys import PrivateKey
from plc.resolve import ResolverSettings
from plc.signing import cid_of, sign_operation, tombstone
from tests.conftest import Clock, LiveServer, make_settings
from tests.helpers import new_did, update
from tests.resolve.servers import LocalDns, LocalHttp

XRPC = "/xrpc/com.atproto.identity."


def resolver_settings_for(dns: LocalDns, http: LocalHttp, **overrides: Any) -> ResolverSettings:
    """Resolver settings pointing at the local servers, private networks allowed."""
    values: dict[str, Any] = {
        "dns_nameservers": ["127.0.0.1"],
        "dns_port": dns.port,
        "handle_http_scheme": "http",
        "handle_http_port": http.port,
        "did_web_http_scheme": "http",
        "did_web_http_port": http.port,
        "allow_private_networks": True,
        "time_budget_s": 3.0,
        "request_timeout_s": 2.0,
    }
    values.update(overrides)
    return ResolverSettings(**values)


@dataclass
class Account:
    """A DID registered in the directory: its keys and accepted ops (newest last)."""

    did: str
    keys: list[PrivateKey]
    ops: list[dict[str, Any]] = field(default_factory=list)


class Directory:
    """A live directory server and a client that registers, updates and tombstones DIDs."""

    def __init__(self, server: LiveServer, clock: Clock) -> None:
        self.server = server
        self.url = server.url
        self.clock = clock
        self.http = httpx.Client(base_url=server.url, timeout=10)

    def post(self, did: str, op: dict[str, Any]) -> None:
        response = self.http.post(f"/{did}", json=op)
        assert response.status_code == 200, response.text
        self.clock.advance(timedelta(seconds=1))

    def register(self, seed: str, handle: str, **kwargs: Any) -> Account:
        did, genesis, keys = new_did(seed, handle=handle, **kwargs)
        self.post(did, genesis)
        return Account(did, keys, [genesis])

    def update(self, account: Account, **changes: Any) -> None:
        op = update(account.ops[-1], account.keys[0], **changes)
        self.post(account.did, op)
        account.ops.append(op)

    def tombstone(self, account: Account) -> None:
        op = sign_operation(tombstone(cid_of(account.ops[-1])), account.keys[0])
        self.post(account.did, op)
        account.ops.append(op)

    def document(self, did: str) -> dict[str, Any]:
        """What ``GET /{did}`` serves (asserting 200)."""
        response = self.http.get(f"/{did}")
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    def xrpc(self, method: str, **params: str) -> httpx.Response:
        return self.http.get(XRPC + method, params=params)

    def close(self) -> None:
        self.http.close()


DirectoryFactory = Callable[..., Directory]


@pytest.fixture
def directory_factory(dns: LocalDns, http: LocalHttp, clock: Clock) -> Iterator[DirectoryFactory]:
    """``directory_factory(db_url, **resolver_overrides)`` -> a started :class:`Directory`."""
    opened: list[tuple[Directory, LiveServer]] = []

    def make(db_url: str, **overrides: Any) -> Directory:
        app = create_app(
            make_settings(db_url),
            clock=clock,
            resolver_settings=resolver_settings_for(dns, http, **overrides),
        )
        server = LiveServer(app).__enter__()
        directory = Directory(server, clock)
        opened.append((directory, server))
        return directory

    yield make
    for directory, server in opened:
        directory.close()
        server.__exit__(None, None, None)


@pytest.fixture
def directory(directory_factory: DirectoryFactory, db_url: str) -> Directory:
    """A live directory on a fresh database (SQLite, and PostgreSQL when reachable)."""
    return directory_factory(db_url)


@pytest.fixture
def sqlite_directory(directory_factory: DirectoryFactory, sqlite_url: str) -> Directory:
    """A live directory on a fresh SQLite database."""
    return directory_factory(sqlite_url)
