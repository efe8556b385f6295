"""Identities served by someone who wants to hurt the resolver: documents nested to crash
it, slow steps that try to make it cache "not found" for someone else, documents that fill
its memory, and failures whose kind it must not tell a caller."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from fastapi.testclient import TestClient

from plc.api.app import create_app
from plc.resolve import DidNotFound, HandleNotFound, IdentityResolver
from plc.resolve.did import MAX_DOCUMENT_DEPTH
from plc.resolve.errors import NoValidRecord
from plc.resolve.handle import did_from_well_known
from plc.resolve.lookups import Deadline
from tests.conftest import make_settings
from tests.resolve.conftest import (
    DID_A,
    DID_JSON,
    WELL_KNOWN,
    ClientFactory,
    FakeClock,
    MemoryPlcSource,
    ResolverFactory,
    plc_document,
)
from tests.resolve.servers import LocalDns, LocalHttp
from tests.resolve.test_identity_routes import XRPC, assert_xrpc_error

pytestmark = pytest.mark.anyio


def nested_document(did: str, depth: int) -> bytes:
    """A document for ``did`` that nests ``depth`` levels in all (the document itself is 1)."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return b'{"id":' + orjson.dumps(did) + b',"alsoKnownAs":[],"x":' + inner.encode() + b"}"


@pytest.mark.parametrize("depth", [MAX_DOCUMENT_DEPTH + 1, 300, 600, 1000])
async def test_a_deeply_nested_did_web_document_is_not_found_not_a_500(
    dns: LocalDns,
    http: LocalHttp,
    make_resolver: ResolverFactory,
    client_for: ClientFactory,
    depth: int,
) -> None:
    did = "did:web:deep.test"
    dns.zone.a("deep.test", "127.0.0.1")
    dns.zone.txt("_atproto.deephandle.test", f"did={did}")
    http.route("deep.test", DID_JSON, body=nested_document(did, depth))
    client = client_for(make_resolver())
    response = await client.get(f"{XRPC}resolveDid", params={"did": did})
    assert "nests too deep" in assert_xrpc_error(response, "DidNotFound")
    response = await client.get(f"{XRPC}resolveIdentity", params={"identifier": "deephandle.test"})
    assert_xrpc_error(response, "DidNotFound")


async def test_a_document_at_the_depth_limit_is_served(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    did = "did:web:limit.test"
    dns.zone.a("limit.test", "127.0.0.1")
    http.route("limit.test", DID_JSON, body=nested_document(did, MAX_DOCUMENT_DEPTH))
    document = await make_resolver().resolve_did(did)
    assert document["id"] == did


async def test_a_handle_lookup_cut_short_by_an_earlier_slow_step_is_not_cached(
    dns: LocalDns, http: LocalHttp, plc_source: MemoryPlcSource, make_resolver: ResolverFactory
) -> None:
    """An attacker's did:web takes most of the budget and claims the victim's handle; the
    victim's lookup then runs out of time. The victim must still resolve right after."""
    attacker = "did:web:attacker.test"
    dns.zone.a("attacker.test", "127.0.0.1")
    http.route(
        "attacker.test",
        DID_JSON,
        body=orjson.dumps(plc_document(attacker, "victim.test")),
        delay_s=0.5,
    )
    dns.zone.txt("_atproto.victim.test", f"did={DID_A}")
    dns.zone.slow("_atproto.victim.test", 0.6)
    plc_source.add(DID_A, "victim.test")
    resolver = make_resolver(time_budget_s=1.0, request_timeout_s=0.8)
    info = await resolver.resolve_identity(attacker)
    assert info["handle"] == "handle.invalid"  # the victim's DNS had not answered in time
    assert await resolver.resolve_handle("victim.test") == DID_A
    assert dns.zone.count("_atproto.victim.test") == 2  # looked up again, not from the cache


async def test_a_did_web_fetch_cut_short_by_an_earlier_slow_step_is_not_cached(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    victim = "did:web:victimweb.test"
    dns.zone.a("attacker2.test", "127.0.0.1")
    http.route("attacker2.test", WELL_KNOWN, body=victim.encode(), delay_s=0.5)
    dns.zone.a("victimweb.test", "127.0.0.1")
    http.route("victimweb.test", DID_JSON, body=orjson.dumps(plc_document(victim)), delay_s=0.6)
    resolver = make_resolver(time_budget_s=1.0, request_timeout_s=0.8)
    with pytest.raises(DidNotFound, match="timed out"):
        await resolver.resolve_identity("attacker2.test")
    assert (await resolver.resolve_did(victim))["id"] == victim
    assert http.count("victimweb.test", DID_JSON) == 2


async def test_a_did_web_that_is_slow_on_its_own_is_still_cached_as_failed(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    """With the whole budget to itself, a document that does not arrive is remembered: a slow
    host is not fetched again on every request."""
    did = "did:web:sluggish.test"
    dns.zone.a("sluggish.test", "127.0.0.1")
    # two hops of 0.6 s, each within the request timeout: the budget runs out on the second
    moved = {"Location": f"http://sluggish.test:{http.port}/moved.json"}
    http.route("sluggish.test", DID_JSON, status=302, headers=moved, delay_s=0.6)
    http.route("sluggish.test", "/moved.json", body=orjson.dumps(plc_document(did)), delay_s=0.6)
    resolver = make_resolver(time_budget_s=1.0, request_timeout_s=0.8)
    for _ in range(2):
        with pytest.raises(DidNotFound, match="timed out"):
            await resolver.resolve_did(did)
    assert http.count("sluggish.test", DID_JSON) == 1


async def test_cached_did_web_documents_are_bounded_in_bytes(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    clock = FakeClock()
    resolver = make_resolver(clock=clock, did_web_cache_max_bytes=3_000)
    dids = [f"did:web:big{i}.test" for i in range(5)]
    for i, did in enumerate(dids):
        dns.zone.a(f"big{i}.test", "127.0.0.1")
        document = {**plc_document(did), "padding": "x" * 900}
        http.route(f"big{i}.test", DID_JSON, body=orjson.dumps(document))
        await resolver.resolve_did(did)
    for did in reversed(dids):  # newest first: the two or three that fit are still cached
        await resolver.resolve_did(did)
    fetched = [http.count(f"big{i}.test", DID_JSON) for i in range(5)]
    assert fetched[-2:] == [1, 1] and fetched[:2] == [2, 2]


def test_a_well_known_body_is_read_as_the_reference_client_reads_it() -> None:
    assert did_from_well_known(b"\xef\xbb\xbf" + DID_A.encode() + b"\r\n") == DID_A
    with pytest.raises(NoValidRecord):  # JS's trim keeps a U+2028 inside the line
        did_from_well_known(DID_A.encode() + "\u2028x".encode())


async def test_a_failed_did_web_fetch_does_not_say_how_it_failed(
    dns: LocalDns, make_resolver: ResolverFactory, client_for: ClientFactory
) -> None:
    dns.zone.a("private.test", "127.0.0.1")
    client = client_for(make_resolver(allow_private_networks=False))
    response = await client.get(f"{XRPC}resolveDid", params={"did": "did:web:private.test"})
    message = assert_xrpc_error(response, "DidNotFound")
    assert message == "did:web document unavailable: did:web:private.test"


def test_a_bug_under_xrpc_is_an_xrpc_500_without_detail(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last-resort answer keeps the XRPC shape there (clients read ``error``)."""

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(IdentityResolver, "resolve_did", broken)
    with TestClient(create_app(make_settings(sqlite_url)), raise_server_exceptions=False) as c:
        response = c.get(f"{XRPC}resolveDid", params={"did": DID_A})
        other = c.get("/xrpc/com.atproto.identity.resolveHandle", params={"handle": "x.test"})
    assert response.status_code == 500
    assert response.json() == {"error": "InternalServerError", "message": "Internal Server Error"}
    assert b"secret" not in response.content
    assert response.headers["access-control-allow-origin"] == "*"
    assert other.status_code == 400  # the rest of the routes unaffected


# Locations httpx cannot turn into a request: an A-label that is not valid IDNA (plain and
# as a real emoji domain) and a scheme with no host.
UNUSABLE_LOCATIONS = ["https://xn--zz.com/", "https://xn--ls8h.la/", "https:foo"]


@pytest.mark.parametrize("location", UNUSABLE_LOCATIONS)
async def test_a_did_web_redirect_to_an_unusable_location_is_not_found_and_cached(
    dns: LocalDns,
    http: LocalHttp,
    make_resolver: ResolverFactory,
    client_for: ClientFactory,
    location: str,
) -> None:
    did = "did:web:bent.test"
    dns.zone.a("bent.test", "127.0.0.1")
    dns.zone.txt("_atproto.benthandle.test", f"did={did}")
    http.route("bent.test", DID_JSON, status=302, headers={"Location": location})
    client = client_for(make_resolver())
    response = await client.get(f"{XRPC}resolveDid", params={"did": did})
    assert_xrpc_error(response, "DidNotFound")
    response = await client.get(f"{XRPC}resolveHandle", params={"handle": "benthandle.test"})
    assert_xrpc_error(response, "HandleNotFound")
    assert http.count("bent.test", DID_JSON) == 1  # the failure was remembered


@pytest.mark.parametrize("location", UNUSABLE_LOCATIONS)
async def test_a_well_known_redirect_to_an_unusable_location_is_a_plain_failure(
    dns: LocalDns,
    http: LocalHttp,
    make_resolver: ResolverFactory,
    caplog: pytest.LogCaptureFixture,
    location: str,
) -> None:
    dns.zone.a("bent.test", "127.0.0.1")
    http.route("bent.test", WELL_KNOWN, status=302, headers={"Location": location})
    with pytest.raises(HandleNotFound) as info:
        await make_resolver().resolve_handle("bent.test", verify=False)
    assert "BadResponse: invalid redirect Location" in info.value.reason
    assert "failed unexpectedly" not in caplog.text


async def test_outbound_lookups_are_bounded_however_many_distinct_names_arrive(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    """A wildcard domain gives an attacker any number of distinct handles, so the caches do
    not bound the sockets the resolver opens: ``max_concurrent_lookups`` does."""
    names = [f"h{i}.wild.test" for i in range(12)]
    for name in names:
        dns.zone.a(name, "127.0.0.1")
        http.route(name, WELL_KNOWN, body=DID_A.encode(), delay_s=0.2)
    resolver = make_resolver(max_concurrent_lookups=3, time_budget_s=10.0)
    answers = await asyncio.gather(*(resolver.resolve_handle(n, verify=False) for n in names))
    assert answers == [DID_A] * len(names)
    assert http.most_in_flight == 3
    # with every slot taken for the whole budget, a lookup fails without asking anyone and
    # without being cached
    dns.zone.a("late.wild.test", "127.0.0.1")
    http.route("late.wild.test", WELL_KNOWN, body=DID_A.encode())
    tight = make_resolver(max_concurrent_lookups=1, time_budget_s=0.3)
    held = Deadline(asyncio.get_running_loop().time() + 60)
    # what a lookup stuck on a slow host of another domain holds
    assert await tight._slots.acquire("stuck.test", held)
    with pytest.raises(HandleNotFound) as info:
        await tight.resolve_handle("late.wild.test", verify=False)
    assert "time budget exhausted" in info.value.reason
    assert http.count("late.wild.test") == 0
    tight._slots.release("stuck.test")
    assert await tight.resolve_handle("late.wild.test", verify=False) == DID_A


async def test_a_cached_handle_failure_is_small_whatever_the_handle(
    dns: LocalDns, make_resolver: ResolverFactory, client_for: ClientFactory
) -> None:
    """A wildcard domain gives an attacker fast failures for any number of long handles: each
    negative entry keeps the kind of failure (one shared string), not a reason naming the
    host. The first answer still gives the details; the client's message never changes."""
    long_handle = ".".join(["a" * 63, "b" * 63, "c" * 63, "wild.test"])  # 201 characters
    handles = ["s.wild.test", long_handle]
    for handle in handles:
        dns.zone.a(handle, "127.0.0.1")  # refused: UnsafeAddress; no TXT: NoValidRecord
    resolver = make_resolver(allow_private_networks=False)
    reasons = []
    for handle in handles:
        with pytest.raises(HandleNotFound) as info:
            await resolver.resolve_handle(handle, verify=False)
        reasons.append(info.value.reason)
    assert f"UnsafeAddress: {long_handle[:200]} resolves to" in reasons[1]  # as before
    stored = [resolver._handle_cache.get(handle) for handle in handles]
    assert stored[0] is not None and stored[1] is not None
    assert stored[0].negative and stored[0].value == "dns: NoValidRecord; https: UnsafeAddress"
    assert stored[1].value is stored[0].value  # one string for all, whatever the handle
    with pytest.raises(HandleNotFound) as cached:
        await resolver.resolve_handle(long_handle, verify=False)
    assert cached.value.reason == "dns: NoValidRecord; https: UnsafeAddress (cached)"
    assert dns.zone.count(f"_atproto.{long_handle}", "TXT") == 1  # from the cache
    resolver.clear_caches()
    client = client_for(resolver)
    for _ in range(2):  # looked up, then cached: the client sees the same answer
        response = await client.get(f"{XRPC}resolveHandle", params={"handle": long_handle})
        assert assert_xrpc_error(response, "HandleNotFound") == "Unable to resolve handle"
    assert dns.zone.count(f"_atproto.{long_handle}", "TXT") == 2
