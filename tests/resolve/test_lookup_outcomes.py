"""What each request gets from a shared handle lookup: a request whose own deadline comes
first takes the lookup's answer so far, as it would have alone, and ``refresh=True`` never
takes (or caches) an answer obtained before the call. Real DNS and HTTP servers on 127.0.0.1.

The split handles below answer HTTPS at once while their DNS answer is held back (a lame
nameserver) until the test sets ``dns.zone.release``: DNS is preferred, so the lookup waits
for it, with the HTTPS answer in hand.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.resolve.conftest import (
    DID_A,
    DID_B,
    DID_JSON,
    WELL_KNOWN,
    ResolverFactory,
    plc_document,
)
from tests.resolve.servers import LocalDns, LocalHttp
from tests.resolve.test_shared_lookups import GATE_S, has_interim, until, unverified

pytestmark = pytest.mark.anyio


def split_handle(dns: LocalDns, http: LocalHttp, handle: str, dns_did: str, https_did: str) -> None:
    """``handle`` answers ``https_did`` over HTTPS at once and ``dns_did`` over DNS once the
    test releases the gate."""
    dns.zone.a(handle, "127.0.0.1")
    http.route(handle, WELL_KNOWN, body=https_did.encode())
    dns.zone.txt(f"_atproto.{handle}", f"did={dns_did}")
    dns.zone.slow(f"_atproto.{handle}", GATE_S)


# -- a request whose deadline comes first --------------------------------------------------


async def test_the_request_that_started_a_lookup_gets_the_https_answer_at_its_deadline(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    """Alone, the first request takes the HTTPS answer when its deadline comes with DNS
    pending; a later request with more time joining its lookup must not take that away. The
    lookup goes on for the later request, which gets (and caches) the preferred DNS answer."""
    split_handle(dns, http, "split.test", DID_A, DID_B)
    resolver = make_resolver(time_budget_s=2.0, request_timeout_s=10.0)
    early = unverified(resolver, "split.test")
    await until(lambda: has_interim(resolver, "split.test"))
    # the late request's deadline is 1 s after the early one's: time for DNS to answer it
    await asyncio.sleep(1.0)
    late = unverified(resolver, "split.test")
    assert await early == DID_B
    assert not late.done()
    dns.zone.release.set()
    assert await late == DID_A
    assert await resolver.resolve_handle("split.test", verify=False) == DID_A  # cached
    assert dns.zone.count("_atproto.split.test", "TXT") == 1
    assert http.count("split.test", WELL_KNOWN) == 1


async def test_a_handle_check_with_less_time_left_takes_the_https_answer(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    """resolveIdentity of a did:web DID whose document came slowly: the check of its handle
    joins a lookup another request started later (so with more time), and at its own
    deadline takes the HTTPS answer, which verifies the handle."""
    did = "did:web:doc.test"
    split_handle(dns, http, "claimed.test", DID_A, did)
    dns.zone.a("doc.test", "127.0.0.1")
    document = orjson.dumps(plc_document(did, "claimed.test"))
    http.route("doc.test", DID_JSON, body=document, delay_s=GATE_S)  # until http.release
    resolver = make_resolver(time_budget_s=2.0, request_timeout_s=10.0)
    identity = asyncio.create_task(resolver.resolve_identity(did))
    await until(lambda: http.count("doc.test", DID_JSON) == 1)
    # the other request's deadline is 1 s after this one's: time for DNS to answer it
    await asyncio.sleep(1.0)
    other = unverified(resolver, "claimed.test")  # starts the handle's lookup, later deadline
    await until(lambda: has_interim(resolver, "claimed.test"))
    http.release.set()  # the document arrives; the handle check joins the running lookup
    info = await identity
    assert (info["did"], info["handle"]) == (did, "claimed.test")
    assert not other.done()
    dns.zone.release.set()
    assert await other == DID_A
    assert dns.zone.count("_atproto.claimed.test", "TXT") == 1


# -- refresh -------------------------------------------------------------------------------


async def test_refresh_never_gets_or_caches_an_answer_from_before_the_call(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    """A lookup holds an HTTPS answer while its DNS query hangs; the owner moves the handle and
    asks for a refresh. The refresh gets the new answer from a lookup of its own, and the old
    lookup, ending last, does not overwrite the cache with its older answer."""
    dns.zone.a("moved.test", "127.0.0.1")
    http.route("moved.test", WELL_KNOWN, body=DID_B.encode())
    # no TXT record: DNS fails, but only the first query (the old lookup's) hangs
    dns.zone.slow("_atproto.moved.test", GATE_S, first=1)
    resolver = make_resolver(time_budget_s=5.0, request_timeout_s=10.0)
    first = unverified(resolver, "moved.test")
    await until(lambda: has_interim(resolver, "moved.test"))
    http.route("moved.test", WELL_KNOWN, body=DID_A.encode())  # the owner moves the handle
    assert await resolver.resolve_handle("moved.test", verify=False, refresh=True) == DID_A
    assert not first.done()
    dns.zone.release.set()
    assert await first == DID_B  # its own lookup's answer, as it was when it asked
    assert await resolver.resolve_handle("moved.test", verify=False) == DID_A  # from the cache
    assert http.count("moved.test", WELL_KNOWN) == 2
    assert dns.zone.count("_atproto.moved.test", "TXT") == 2
