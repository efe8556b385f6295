"""IdentityResolver: bidirectional verification, DID documents, caching, safety, time budget."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from plc.errors import Unavailable
from plc.resolve import (
    DidDeactivated,
    DidNotFound,
    HandleNotFound,
    IdentityResolver,
    InvalidRequest,
)
from tests.resolve.conftest import (
    DID_A,
    DID_B,
    DID_JSON,
    DID_T,
    WELL_KNOWN,
    FakeClock,
    MemoryPlcSource,
    ResolverFactory,
    plc_document,
)
from tests.resolve.servers import LocalDns, LocalHttp

pytestmark = pytest.mark.anyio


def web_document(did: str, *handles: str) -> bytes:
    return orjson.dumps(plc_document(did, *handles))


# -- bidirectional verification -------------------------------------------------------------


async def test_verified_handle_both_directions(
    dns: LocalDns, plc_source: MemoryPlcSource, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.alice.test", f"did={DID_A}")
    plc_source.add(DID_A, "Alice.Test")  # case-insensitive claim
    resolver = make_resolver()
    assert await resolver.resolve_handle("ALICE.test") == DID_A
    by_handle = await resolver.resolve_identity("alice.TEST")
    assert by_handle == {
        "did": DID_A,
        "handle": "alice.test",
        "didDoc": plc_source.documents[DID_A],
    }
    by_did = await resolver.resolve_identity(DID_A)
    assert by_did["handle"] == "alice.test"


async def test_handle_not_claimed_back(
    dns: LocalDns, plc_source: MemoryPlcSource, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.mallory.test", f"did={DID_A}")
    plc_source.add(DID_A, "alice.test")
    resolver = make_resolver()
    info = await resolver.resolve_identity("mallory.test")
    assert info["did"] == DID_A and info["handle"] == "handle.invalid"
    with pytest.raises(HandleNotFound, match="Unable to resolve handle") as err:
        await resolver.resolve_handle("mallory.test")
    assert "does not claim" in err.value.reason
    assert await resolver.resolve_handle("mallory.test", verify=False) == DID_A


async def test_did_whose_handle_points_elsewhere(
    dns: LocalDns, plc_source: MemoryPlcSource, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.bob.test", f"did={DID_B}")
    plc_source.add(DID_A, "bob.test")  # claims bob.test, but bob.test says DID_B
    info = await make_resolver().resolve_identity(DID_A)
    assert info["handle"] == "handle.invalid"


async def test_first_valid_at_uri_is_the_claimed_handle(
    dns: LocalDns, plc_source: MemoryPlcSource, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.second.test", f"did={DID_A}")
    dns.zone.txt("_atproto.third.test", f"did={DID_A}")
    plc_source.add(
        DID_A, "https://example.com", "at://not a handle", "at://second.test", "at://third.test"
    )
    resolver = make_resolver()
    assert (await resolver.resolve_identity(DID_A))["handle"] == "second.test"
    info = await resolver.resolve_identity("third.test")
    assert info["handle"] == "handle.invalid"  # not the *first* valid entry


async def test_document_without_handle(
    plc_source: MemoryPlcSource, make_resolver: ResolverFactory, dns: LocalDns
) -> None:
    plc_source.add(DID_A)
    info = await make_resolver().resolve_identity(DID_A)
    assert info["handle"] == "handle.invalid"
    plc_source.add(DID_B, "handle.invalid")  # syntactically valid, disallowed TLD
    assert (await make_resolver().resolve_identity(DID_B))["handle"] == "handle.invalid"
    assert dns.zone.count("_atproto.handle.invalid") == 0


async def test_unverifiable_handle_is_invalid_within_budget(
    dns: LocalDns, http: LocalHttp, plc_source: MemoryPlcSource, make_resolver: ResolverFactory
) -> None:
    plc_source.add(DID_A, "slow.test")
    dns.zone.slow("_atproto.slow.test", 10)
    dns.zone.a("slow.test", "127.0.0.1")
    http.route("slow.test", WELL_KNOWN, body=DID_A.encode(), delay_s=10)
    resolver = make_resolver(time_budget_s=0.5, request_timeout_s=5)
    started = time.monotonic()
    info = await resolver.resolve_identity(DID_A)
    elapsed = time.monotonic() - started
    assert info["did"] == DID_A and info["handle"] == "handle.invalid"
    assert 0.4 < elapsed < 1.2


# -- DID documents ------------------------------------------------------------------------


async def test_tombstoned_and_unknown_plc_dids(
    plc_source: MemoryPlcSource, make_resolver: ResolverFactory
) -> None:
    plc_source.tombstoned.add(DID_T)
    resolver = make_resolver()
    with pytest.raises(DidDeactivated):
        await resolver.resolve_did(DID_T)
    with pytest.raises(DidDeactivated):
        await resolver.resolve_identity(DID_T)
    with pytest.raises(DidNotFound):
        await resolver.resolve_did(DID_B)
    with pytest.raises(DidNotFound):
        await resolver.resolve_did("did:plc:tooshort")  # valid DID, impossible did:plc
    assert plc_source.calls["did:plc:tooshort"] == 0


async def test_handle_to_tombstoned_did(
    dns: LocalDns, plc_source: MemoryPlcSource, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.gone.test", f"did={DID_T}")
    plc_source.tombstoned.add(DID_T)
    resolver = make_resolver()
    with pytest.raises(DidDeactivated):
        await resolver.resolve_identity("gone.test")
    with pytest.raises(HandleNotFound):
        await resolver.resolve_handle("gone.test")


async def test_document_with_wrong_id_from_source(
    plc_source: MemoryPlcSource, make_resolver: ResolverFactory
) -> None:
    plc_source.documents[DID_A] = plc_document(DID_B)
    with pytest.raises(DidNotFound, match="id does not match"):
        await make_resolver().resolve_did(DID_A)


async def test_unavailable_source_propagates(make_resolver: ResolverFactory) -> None:
    class Down:
        async def get_document(self, did: str, deadline: float | None = None) -> dict[str, Any]:
            raise Unavailable("database is locked")

    resolver = IdentityResolver(make_resolver().settings, Down())
    with pytest.raises(Unavailable):
        await resolver.resolve_did(DID_A)


async def test_invalid_inputs(make_resolver: ResolverFactory) -> None:
    resolver = make_resolver()
    with pytest.raises(InvalidRequest):
        await resolver.resolve_did("did:PLC:abc")
    with pytest.raises(InvalidRequest):
        await resolver.resolve_handle("jo_hn.test")
    with pytest.raises(InvalidRequest):
        await resolver.resolve_identity("@alice.test")
    with pytest.raises(DidNotFound, match="Unsupported DID method"):
        await resolver.resolve_did("did:key:zQ3shZc2QzApp2oymGvQbzP8eKheVshBHbU4ZYjeXqwSKEn6N")


async def test_did_web(dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory) -> None:
    did = "did:web:web.test"
    dns.zone.a("web.test", "127.0.0.1")
    dns.zone.txt("_atproto.web.test", f"did={did}")
    http.route(
        "web.test",
        DID_JSON,
        body=web_document(did, "web.test"),
        headers={"Content-Type": "application/did+ld+json"},
    )
    resolver = make_resolver()
    document = await resolver.resolve_did(did)
    assert document["id"] == did
    info = await resolver.resolve_identity("web.test")
    assert info == {"did": did, "handle": "web.test", "didDoc": document}


async def test_did_web_with_mismatched_id(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.a("liar.test", "127.0.0.1")
    http.route("liar.test", DID_JSON, body=web_document("did:web:other.test", "liar.test"))
    with pytest.raises(DidNotFound, match="id does not match"):
        await make_resolver().resolve_did("did:web:liar.test")


async def test_did_web_failures(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.a("broken.test", "127.0.0.1")
    http.route("broken.test", DID_JSON, body=b"{not json")
    dns.zone.a("missing.test", "127.0.0.1")
    dns.zone.a("array.test", "127.0.0.1")
    http.route("array.test", DID_JSON, body=b"[]")
    resolver = make_resolver()
    for did in (
        "did:web:broken.test",
        "did:web:missing.test",
        "did:web:array.test",
        "did:web:nohost.test",
    ):
        with pytest.raises(DidNotFound):
            await resolver.resolve_did(did)
    for did in (
        "did:web:example.com:user:alice",  # path-based
        "did:web:example.com%3A8080",  # port on a non-localhost host
        "did:web:printer.local",  # disallowed TLD
        "did:web:localhost%3A1234",  # localhost while private networks are refused
    ):
        with pytest.raises(DidNotFound):
            await make_resolver(allow_private_networks=False).resolve_did(did)
    assert http.count() == 3  # broken, missing, array: nothing else was fetched


async def test_did_web_localhost_with_port_when_private_allowed(
    http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    did = f"did:web:localhost%3A{http.port}"
    http.route("localhost", DID_JSON, body=web_document(did))
    document = await make_resolver(did_web_http_scheme="https").resolve_did(did)
    assert document["id"] == did


# -- caching --------------------------------------------------------------------------------


async def test_second_lookup_within_ttl_makes_no_request(
    dns: LocalDns, http: LocalHttp, plc_source: MemoryPlcSource, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.cached.test", f"did={DID_A}")
    dns.zone.a("cached.test", "127.0.0.1")
    http.route("cached.test", WELL_KNOWN, body=DID_A.encode())
    plc_source.add(DID_A, "cached.test")
    clock = FakeClock()
    resolver = make_resolver(clock=clock, cache_ttl_s=60, negative_cache_ttl_s=5)
    assert (await resolver.resolve_identity("cached.test"))["handle"] == "cached.test"
    dns_before, http_before = dns.zone.count("_atproto.cached.test"), http.count("cached.test")
    assert dns_before == 1
    clock.advance(59)
    assert (await resolver.resolve_identity("cached.test"))["handle"] == "cached.test"
    assert (await resolver.resolve_identity(DID_A))["handle"] == "cached.test"
    assert await resolver.resolve_handle("cached.test") == DID_A
    assert dns.zone.count("_atproto.cached.test") == dns_before
    assert http.count("cached.test") == http_before
    clock.advance(2)  # past the TTL
    await resolver.resolve_identity("cached.test")
    assert dns.zone.count("_atproto.cached.test") == dns_before + 1


async def test_negative_answer_cached_for_its_own_ttl(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    clock = FakeClock()
    resolver = make_resolver(clock=clock, cache_ttl_s=60, negative_cache_ttl_s=5)
    with pytest.raises(HandleNotFound):
        await resolver.resolve_identity("late.test")
    assert dns.zone.count("_atproto.late.test") == 1
    dns.zone.txt("_atproto.late.test", f"did={DID_A}")  # record appears
    clock.advance(4)
    with pytest.raises(HandleNotFound):
        await resolver.resolve_identity("late.test")
    assert dns.zone.count("_atproto.late.test") == 1  # answered from the negative cache
    clock.advance(1.5)
    assert await resolver.resolve_handle("late.test", verify=False) == DID_A
    assert dns.zone.count("_atproto.late.test") == 2


async def test_refresh_bypasses_positive_and_negative_entries(
    dns: LocalDns, http: LocalHttp, plc_source: MemoryPlcSource, make_resolver: ResolverFactory
) -> None:
    clock = FakeClock()
    resolver = make_resolver(clock=clock, cache_ttl_s=600, negative_cache_ttl_s=600)
    plc_source.add(DID_A, "moving.test")
    plc_source.add(DID_B, "moving.test")
    with pytest.raises(HandleNotFound):
        await resolver.resolve_identity("moving.test")
    dns.zone.txt("_atproto.moving.test", f"did={DID_A}")
    info = await resolver.resolve_identity("moving.test", refresh=True)  # negative bypassed
    assert info["did"] == DID_A
    dns.zone.reset()
    dns.zone.txt("_atproto.moving.test", f"did={DID_B}")
    assert (await resolver.resolve_identity("moving.test"))["did"] == DID_A  # cached
    assert dns.zone.count("_atproto.moving.test") == 0
    info = await resolver.resolve_identity("moving.test", refresh=True)  # positive bypassed
    assert info["did"] == DID_B
    assert (await resolver.resolve_identity("moving.test"))["did"] == DID_B  # refreshed entry
    assert dns.zone.count("_atproto.moving.test") == 1


async def test_did_web_documents_are_cached(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    did = "did:web:cweb.test"
    dns.zone.a("cweb.test", "127.0.0.1")
    http.route("cweb.test", DID_JSON, body=web_document(did))
    clock = FakeClock()
    resolver = make_resolver(clock=clock)
    first = await resolver.resolve_did(did)
    first["mutated"] = True  # callers get copies
    second = await resolver.resolve_did(did)
    assert "mutated" not in second
    assert http.count("cweb.test", DID_JSON) == 1
    await resolver.resolve_did(did, refresh=True)
    assert http.count("cweb.test", DID_JSON) == 2


async def test_plc_documents_are_never_cached(
    plc_source: MemoryPlcSource, make_resolver: ResolverFactory
) -> None:
    plc_source.add(DID_A)
    resolver = make_resolver()
    await resolver.resolve_did(DID_A)
    plc_source.tombstoned.add(DID_A)
    with pytest.raises(DidDeactivated):
        await resolver.resolve_did(DID_A)
    assert plc_source.calls[DID_A] == 2


# -- safety with default settings -----------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1"])
async def test_private_a_records_are_never_fetched(
    address: str, dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.a("inside.test", address)
    http.route("inside.test", WELL_KNOWN, body=DID_A.encode())
    resolver = make_resolver(allow_private_networks=False)  # the default
    with pytest.raises(HandleNotFound) as err:
        await resolver.resolve_handle("inside.test", verify=False)
    assert "UnsafeAddress" in err.value.reason
    assert http.count() == 0


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1"])
async def test_txt_pointing_at_private_did_web_is_never_fetched(
    address: str, dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    did = "did:web:intranet.test"
    dns.zone.txt("_atproto.intranet.test", f"did={did}")
    dns.zone.a("intranet.test", address)
    http.route("intranet.test", DID_JSON, body=web_document(did, "intranet.test"))
    http.route("intranet.test", WELL_KNOWN, body=did.encode())
    resolver = make_resolver(allow_private_networks=False)
    with pytest.raises(DidNotFound):
        await resolver.resolve_identity("intranet.test")
    with pytest.raises(DidNotFound):
        await resolver.resolve_did(did)
    assert http.count() == 0


async def test_mixed_public_and_private_records_are_refused(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.a("mixed.test", "8.8.8.8", "127.0.0.1")
    with pytest.raises(HandleNotFound) as err:
        await make_resolver(allow_private_networks=False).resolve_handle("mixed.test", verify=False)
    assert "UnsafeAddress" in err.value.reason
    assert http.count() == 0


@pytest.mark.parametrize("port", ["\u00b2", "1\u00b2", "\u0663"])  # "²", "1²", Arabic-Indic 3
def test_did_web_port_digits_are_ascii_only(port: str) -> None:
    # str.isdigit() is True for these; int() refuses the first two and reads the third. A
    # port is ASCII digits or the DID is not served (never a ValueError, never port 3).
    from plc.resolve.did import DidWebLookup
    from plc.resolve.settings import ResolverSettings

    lookup = DidWebLookup(None, ResolverSettings(allow_private_networks=True))  # type: ignore[arg-type]
    with pytest.raises(DidNotFound, match="port"):
        lookup.document_url(f"did:web:localhost%3A{port}")
    assert lookup.document_url("did:web:localhost%3A8080")[0].startswith("http://localhost:8080/")
