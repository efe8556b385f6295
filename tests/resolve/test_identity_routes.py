"""The XRPC identity endpoints, mounted on a small app with a real resolver behind them."""

from __future__ import annotations

import gzip
import time
from typing import Any

import httpx
import pytest

from plc.errors import Unavailable
from plc.resolve import IdentityResolver
from tests.resolve.conftest import (
    DID_A,
    DID_T,
    WELL_KNOWN,
    ClientFactory,
    FakeClock,
    MemoryPlcSource,
    ResolverFactory,
    app_with,
)
from tests.resolve.servers import LocalDns, LocalHttp

pytestmark = pytest.mark.anyio

XRPC = "/xrpc/com.atproto.identity."


def assert_xrpc_error(response: httpx.Response, name: str, status: int = 400) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == name
    assert isinstance(body["message"], str)
    return str(body["message"])


@pytest.fixture
def alice(dns: LocalDns, plc_source: MemoryPlcSource) -> None:
    dns.zone.txt("_atproto.alice.test", f"did={DID_A}")
    plc_source.add(DID_A, "alice.test")
    plc_source.tombstoned.add(DID_T)


async def test_resolve_handle(
    alice: None, make_resolver: ResolverFactory, client_for: ClientFactory
) -> None:
    client = client_for(make_resolver())
    response = await client.get(XRPC + "resolveHandle", params={"handle": "Alice.Test"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"did": DID_A}
    message = assert_xrpc_error(
        await client.get(XRPC + "resolveHandle", params={"handle": "nobody.test"}),
        "HandleNotFound",
    )
    assert message == "Unable to resolve handle"
    assert_xrpc_error(await client.get(XRPC + "resolveHandle"), "InvalidRequest")
    assert_xrpc_error(await client.get(XRPC + "resolveHandle?handle="), "InvalidRequest")
    assert_xrpc_error(
        await client.get(XRPC + "resolveHandle", params={"handle": "jo_hn.test"}),
        "InvalidRequest",
    )
    assert_xrpc_error(
        await client.get(XRPC + "resolveHandle?handle=alice.test&handle=bob.test"),
        "InvalidRequest",
    )
    assert_xrpc_error(
        await client.get(XRPC + "resolveHandle", params={"handle": "laptop.local"}),
        "HandleNotFound",
    )


async def test_resolve_did(
    alice: None,
    plc_source: MemoryPlcSource,
    make_resolver: ResolverFactory,
    client_for: ClientFactory,
) -> None:
    client = client_for(make_resolver())
    response = await client.get(XRPC + "resolveDid", params={"did": DID_A})
    assert response.status_code == 200
    assert response.json() == {"didDoc": plc_source.documents[DID_A]}
    assert_xrpc_error(
        await client.get(XRPC + "resolveDid", params={"did": DID_T}), "DidDeactivated"
    )
    assert_xrpc_error(
        await client.get(XRPC + "resolveDid", params={"did": "did:plc:" + "z" * 24}), "DidNotFound"
    )
    assert_xrpc_error(
        await client.get(XRPC + "resolveDid", params={"did": "did:web:missing.test"}),
        "DidNotFound",
    )
    assert_xrpc_error(
        await client.get(XRPC + "resolveDid", params={"did": "alice"}), "InvalidRequest"
    )
    assert_xrpc_error(await client.get(XRPC + "resolveDid"), "InvalidRequest")


async def test_user_input_is_never_echoed_unbounded(
    make_resolver: ResolverFactory, client_for: ClientFactory
) -> None:
    client = client_for(make_resolver())
    huge = "did:x:" + "A" * 5000 + "!"
    message = assert_xrpc_error(
        await client.get(XRPC + "resolveDid", params={"did": huge}), "InvalidRequest"
    )
    assert len(message) < 300
    message = assert_xrpc_error(
        await client.get(XRPC + "resolveIdentity", params={"identifier": "@" * 5000}),
        "InvalidRequest",
    )
    assert len(message) < 300


async def test_resolve_identity(
    alice: None,
    plc_source: MemoryPlcSource,
    make_resolver: ResolverFactory,
    client_for: ClientFactory,
) -> None:
    client = client_for(make_resolver())
    expected = {"did": DID_A, "handle": "alice.test", "didDoc": plc_source.documents[DID_A]}
    for identifier in ("alice.test", "ALICE.test", DID_A):
        response = await client.get(XRPC + "resolveIdentity", params={"identifier": identifier})
        assert response.status_code == 200
        assert response.json() == expected
    assert_xrpc_error(
        await client.get(XRPC + "resolveIdentity", params={"identifier": "nobody.test"}),
        "HandleNotFound",
    )
    assert_xrpc_error(
        await client.get(XRPC + "resolveIdentity", params={"identifier": DID_T}), "DidDeactivated"
    )
    assert_xrpc_error(
        await client.get(XRPC + "resolveIdentity", params={"identifier": "did:plc:" + "z" * 24}),
        "DidNotFound",
    )
    assert_xrpc_error(
        await client.get(XRPC + "resolveIdentity", params={"identifier": "email@example.com"}),
        "InvalidRequest",
    )
    assert_xrpc_error(await client.get(XRPC + "resolveIdentity"), "InvalidRequest")


async def test_slow_handle_gives_handle_invalid_with_200_within_budget(
    dns: LocalDns,
    http: LocalHttp,
    plc_source: MemoryPlcSource,
    make_resolver: ResolverFactory,
    client_for: ClientFactory,
) -> None:
    plc_source.add(DID_A, "sleepy.test")
    dns.zone.a("sleepy.test", "127.0.0.1")
    http.route("sleepy.test", WELL_KNOWN, body=DID_A.encode(), delay_s=10)
    client = client_for(make_resolver(time_budget_s=0.5, request_timeout_s=5))
    started = time.monotonic()
    response = await client.get(XRPC + "resolveIdentity", params={"identifier": DID_A})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["handle"] == "handle.invalid"
    assert elapsed < 1.2
    assert http.count("sleepy.test", WELL_KNOWN) == 1  # it was tried, and given up on


async def test_refresh_identity_bypasses_caches(
    alice: None, dns: LocalDns, make_resolver: ResolverFactory, client_for: ClientFactory
) -> None:
    clock = FakeClock()
    client = client_for(make_resolver(clock=clock, cache_ttl_s=600, negative_cache_ttl_s=600))
    url = XRPC + "resolveIdentity"
    assert (await client.get(url, params={"identifier": "alice.test"})).status_code == 200
    assert (await client.get(url, params={"identifier": "alice.test"})).status_code == 200
    assert dns.zone.count("_atproto.alice.test") == 1
    response = await client.post(XRPC + "refreshIdentity", json={"identifier": "alice.test"})
    assert response.status_code == 200
    assert response.json()["did"] == DID_A
    assert dns.zone.count("_atproto.alice.test") == 2
    # negative entries too
    assert_xrpc_error(await client.get(url, params={"identifier": "new.test"}), "HandleNotFound")
    dns.zone.txt("_atproto.new.test", f"did={DID_A}")
    assert_xrpc_error(await client.get(url, params={"identifier": "new.test"}), "HandleNotFound")
    response = await client.post(XRPC + "refreshIdentity", json={"identifier": "new.test"})
    assert response.status_code == 200
    assert response.json()["handle"] == "handle.invalid"  # DID_A claims alice.test, not new.test
    assert response.json()["did"] == DID_A


async def test_refresh_identity_input_errors(
    alice: None, make_resolver: ResolverFactory, client_for: ClientFactory
) -> None:
    client = client_for(make_resolver())
    url = XRPC + "refreshIdentity"
    # Each refusal says what is wrong with the input.
    for body, message in (
        ({}, 'Input must have the property "identifier"'),
        ({"identifier": 5}, "Input/identifier must be a string"),
        ({"identifier": None}, "Input/identifier must be a string"),
        ({"identifier": ""}, "Input/identifier must be a handle or a DID"),
    ):
        response = await client.post(url, json=body)
        assert_xrpc_error(response, "InvalidRequest")
        assert response.json()["message"] == message, body
    assert_xrpc_error(await client.post(url, json=["alice.test"]), "InvalidRequest")
    assert_xrpc_error(
        await client.post(url, content=b"{bad", headers={"content-type": "application/json"}),
        "InvalidRequest",
    )
    assert_xrpc_error(
        await client.post(
            url, content=b'{"identifier":"alice.test"}', headers={"content-type": "text/plain"}
        ),
        "InvalidRequest",
    )
    # The identifier as a query parameter (no body, no Content-Type): say what is expected.
    bare = await client.post(url, params={"identifier": "alice.test"})
    assert_xrpc_error(bare, "InvalidRequest")
    assert bare.json()["message"].startswith("Request encoding (Content-Type) required")
    assert '{"identifier"' in bare.json()["message"]
    big = b'{"identifier":"' + b"a" * 20_000 + b'"}'
    assert_xrpc_error(
        await client.post(url, content=big, headers={"content-type": "application/json"}),
        "InvalidRequest",
        413,
    )
    brotli = {"content-type": "application/json", "content-encoding": "br"}
    assert_xrpc_error(await client.post(url, content=b"{}", headers=brotli), "InvalidRequest", 415)
    # As on POST /{did}: gzip bodies are read, and a UTF-8 byte order mark is skipped.
    zipped = {"content-type": "application/json", "content-encoding": "gzip"}
    gzipped = gzip.compress(b'\xef\xbb\xbf{"identifier":"alice.test"}')
    assert (await client.post(url, content=gzipped, headers=zipped)).json()[
        "handle"
    ] == "alice.test"
    assert_xrpc_error(await client.post(url, json={"identifier": DID_T}), "DidDeactivated")
    response = await client.post(
        url,
        content=b'{"identifier":"alice.test"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


async def test_unavailable_store_is_503(
    make_resolver: ResolverFactory, client_for: ClientFactory
) -> None:
    class Down:
        async def get_document(self, did: str, deadline: float | None = None) -> dict[str, Any]:
            raise Unavailable("database is locked")

    client = client_for(IdentityResolver(make_resolver().settings, Down()))
    response = await client.get(XRPC + "resolveDid", params={"did": DID_A})
    assert_xrpc_error(response, "Unavailable", 503)


def test_openapi_describes_the_methods(make_resolver: ResolverFactory) -> None:
    schema = app_with(make_resolver()).openapi()
    paths = schema["paths"]
    for method in ("resolveHandle", "resolveDid", "resolveIdentity"):
        operation = paths[f"{XRPC}{method}"]["get"]
        assert {"200", "400"} <= set(operation["responses"])
        assert operation["parameters"][0]["in"] == "query"
    refresh = paths[f"{XRPC}refreshIdentity"]["post"]
    assert refresh["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "identifier"
    ]
