"""Bursts of identical lookups share one network lookup, and one domain cannot take every
lookup slot: counted at real DNS and HTTP servers on 127.0.0.1.

A "gated" name is one whose DNS answer the server holds back until the test sets
``dns.zone.release``: the lookups then stay in flight for as long as the test needs,
whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plc.resolve import DidNotFound, HandleNotFound, IdentityResolver
from plc.resolve.did import did_web_host
from plc.resolve.lookups import Deadline, LookupRun, SharedLookups, registrable_domain
from tests.resolve.conftest import DID_A, DID_B, DID_JSON, ResolverFactory, plc_document
from tests.resolve.servers import LocalDns, LocalHttp

pytestmark = pytest.mark.anyio

GATE_S = 60.0
"""How long a gated DNS answer is held back at most (the tests release it long before)."""


async def until(condition: Callable[[], bool]) -> None:
    """Wait (polling) until ``condition()`` holds; fail after about 10 s."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def gated_handle(dns: LocalDns, handle: str, did: str) -> None:
    """``_atproto.<handle>`` answers ``did`` once the test releases the gate (no A record:
    the HTTPS method fails at once, so the lookup waits for DNS)."""
    dns.zone.txt(f"_atproto.{handle}", f"did={did}")
    dns.zone.slow(f"_atproto.{handle}", GATE_S)


def unverified(resolver: IdentityResolver, handle: str, **kwargs: bool) -> asyncio.Task[str]:
    return asyncio.create_task(resolver.resolve_handle(handle, verify=False, **kwargs))


def lookup_run(resolver: IdentityResolver, handle: str) -> LookupRun[Any] | None:
    """What the running lookup of ``handle`` has reported so far (None: none is running)."""
    flight = resolver._handle_lookups._flights.get(handle)
    return None if flight is None else flight.run


def heard(resolver: IdentityResolver, handle: str) -> bool:
    """Whether one method of the running lookup of ``handle`` has answered or failed."""
    run = lookup_run(resolver, handle)
    return run is not None and run.heard


def has_interim(resolver: IdentityResolver, handle: str) -> bool:
    """Whether the running lookup of ``handle`` holds an answer (HTTPS in, DNS pending)."""
    run = lookup_run(resolver, handle)
    return run is not None and run.interim is not None


# -- one lookup per key ------------------------------------------------------------------


async def test_concurrent_identical_handle_requests_make_one_lookup(
    dns: LocalDns, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.popular.test", f"did={DID_A}")
    dns.zone.txt("_atproto.other.test", f"did={DID_B}")
    resolver = make_resolver(max_concurrent_lookups=1)
    answers = await asyncio.gather(
        *(resolver.resolve_handle("Popular.test", verify=False) for _ in range(300)),
        resolver.resolve_handle("other.test", verify=False),
    )
    assert answers == [DID_A] * 300 + [DID_B]
    assert dns.zone.count("_atproto.popular.test", "TXT") == 1
    assert dns.zone.count("popular.test", "A") == 1  # the HTTPS method's address, once too
    assert len(resolver._handle_lookups) == 0  # nothing left behind


async def test_concurrent_identical_did_web_requests_make_one_fetch(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    did = "did:web:shared.test"
    dns.zone.a("shared.test", "127.0.0.1")
    http.route("shared.test", DID_JSON, body=orjson.dumps(plc_document(did, "x.test")))
    resolver = make_resolver(max_concurrent_lookups=1)
    documents = await asyncio.gather(*(resolver.resolve_did(did) for _ in range(200)))
    assert http.count("shared.test", DID_JSON) == 1
    assert all(document["id"] == did for document in documents)
    documents[0]["alsoKnownAs"].append("at://changed.test")  # each caller has its own copy
    assert documents[1]["alsoKnownAs"] == ["at://x.test"]


async def test_failures_and_negative_answers_are_shared_too(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.nobody.test", "not a did record")
    dns.zone.a("gone.test", "127.0.0.1")
    http.route("gone.test", DID_JSON, status=404)
    resolver = make_resolver()
    handles = await asyncio.gather(
        *(resolver.resolve_handle("nobody.test", verify=False) for _ in range(100)),
        return_exceptions=True,
    )
    documents = await asyncio.gather(
        *(resolver.resolve_did("did:web:gone.test") for _ in range(100)), return_exceptions=True
    )
    assert all(isinstance(error, HandleNotFound) for error in handles)
    assert len({error.reason for error in handles if isinstance(error, HandleNotFound)}) == 1
    assert len({id(error) for error in handles}) == 100  # each caller raised its own
    assert all(isinstance(error, DidNotFound) for error in documents)
    assert dns.zone.count("_atproto.nobody.test", "TXT") == 1
    assert http.count("gone.test", DID_JSON) == 1


async def test_a_waiter_with_a_shorter_budget_gives_up_while_the_lookup_completes(
    dns: LocalDns, make_resolver: ResolverFactory
) -> None:
    """The first request runs out of budget while DNS is held back; a request that came later
    (so with a later deadline) gets the answer of the same lookup, which is then cached."""
    gated_handle(dns, "patient.test", DID_A)
    resolver = make_resolver(time_budget_s=2.0, request_timeout_s=10.0)
    early = unverified(resolver, "patient.test")
    await until(lambda: dns.zone.count("_atproto.patient.test", "TXT") == 1)
    await asyncio.sleep(1.0)  # so that the late request's deadline is 1 s after the early one's
    late = unverified(resolver, "patient.test")
    with pytest.raises(HandleNotFound) as info:
        await early
    assert "time budget exhausted" in info.value.reason
    assert not late.done()
    dns.zone.release.set()
    assert await late == DID_A
    assert await resolver.resolve_handle("patient.test", verify=False) == DID_A  # cached
    assert dns.zone.count("_atproto.patient.test", "TXT") == 1


async def test_a_cancelled_starter_does_not_break_the_others(
    dns: LocalDns, make_resolver: ResolverFactory
) -> None:
    gated_handle(dns, "left.test", DID_A)
    resolver = make_resolver(time_budget_s=10.0, request_timeout_s=10.0)
    starter = unverified(resolver, "left.test")
    await until(lambda: dns.zone.count("_atproto.left.test", "TXT") == 1)
    others = [unverified(resolver, "left.test") for _ in range(5)]
    await asyncio.sleep(0)  # one turn of the loop: the others run up to their wait for it
    starter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starter
    assert not any(task.done() for task in others)
    dns.zone.release.set()
    assert await asyncio.gather(*others) == [DID_A] * 5
    assert await resolver.resolve_handle("left.test", verify=False) == DID_A  # cached
    assert dns.zone.count("_atproto.left.test", "TXT") == 1


async def test_a_lookup_everyone_left_is_cancelled_and_frees_its_slot(
    dns: LocalDns, make_resolver: ResolverFactory
) -> None:
    """With no one left to want it, the lookup stops: its slot is free at once and nothing is
    cached (the next request asks again)."""
    gated_handle(dns, "abandoned.test", DID_A)
    dns.zone.txt("_atproto.next.test", f"did={DID_B}")
    resolver = make_resolver(max_concurrent_lookups=1, time_budget_s=5.0, request_timeout_s=5.0)
    alone = unverified(resolver, "abandoned.test")
    await until(lambda: dns.zone.count("_atproto.abandoned.test", "TXT") == 1)
    alone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await alone
    assert await resolver.resolve_handle("next.test", verify=False) == DID_B  # the one slot
    dns.zone.release.set()
    assert await resolver.resolve_handle("abandoned.test", verify=False) == DID_A
    assert dns.zone.count("_atproto.abandoned.test", "TXT") == 2


async def test_refresh_joins_a_lookup_only_while_nothing_of_it_is_in(
    dns: LocalDns, make_resolver: ResolverFactory
) -> None:
    """With both methods of the running lookup still pending, whatever it settles on comes
    after the refresh call: the refresh joins it. Once one method is in (here HTTPS failed),
    a refresh starts a lookup of its own."""
    gated_handle(dns, "fresh.test", DID_A)
    dns.zone.slow("fresh.test", GATE_S)  # the HTTPS method's address query is held too
    resolver = make_resolver(time_budget_s=10.0, request_timeout_s=10.0)
    plain = unverified(resolver, "fresh.test")
    await until(lambda: dns.zone.count("_atproto.fresh.test", "TXT") == 1)
    await until(lambda: dns.zone.count("fresh.test") >= 1)
    refreshing = unverified(resolver, "fresh.test", refresh=True)
    await asyncio.sleep(0)  # the refreshing request runs up to its wait for the lookup
    dns.zone.release.set()
    assert [await plain, await refreshing] == [DID_A, DID_A]
    assert dns.zone.count("_atproto.fresh.test", "TXT") == 1

    gated_handle(dns, "half.test", DID_A)  # no address: the HTTPS method fails at once
    dns.zone.release.clear()
    plain = unverified(resolver, "half.test")
    await until(lambda: dns.zone.count("_atproto.half.test", "TXT") == 1)
    await until(lambda: heard(resolver, "half.test"))
    refreshing = unverified(resolver, "half.test", refresh=True)
    await until(lambda: dns.zone.count("_atproto.half.test", "TXT") == 2)  # its own lookup
    dns.zone.release.set()
    assert [await plain, await refreshing] == [DID_A, DID_A]
    assert len(resolver._handle_lookups) == 0


async def test_a_lookup_that_breaks_breaks_for_every_caller_and_is_forgotten() -> None:
    """A bug in a lookup reaches every caller waiting for it (the XRPC layer answers 500), and
    the key is free again for the next lookup."""
    calls = 0

    async def broken(deadline: Deadline) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise RuntimeError("bug")

    lookups: SharedLookups[str, str] = SharedLookups()
    deadline = asyncio.get_running_loop().time() + 60
    outcomes = await asyncio.gather(
        *(lookups.run("k", deadline, broken) for _ in range(10)), return_exceptions=True
    )
    assert [type(outcome) for outcome in outcomes] == [RuntimeError] * 10
    assert calls == 1 and len(lookups) == 0
    with pytest.raises(RuntimeError):
        await lookups.run("k", deadline, broken)
    assert calls == 2


# -- per-domain cap ----------------------------------------------------------------------


async def test_a_slow_domain_holds_only_its_own_cap(
    dns: LocalDns, make_resolver: ResolverFactory
) -> None:
    """A wildcard domain with a slow nameserver: its distinct names queue behind the
    per-domain cap, while other domains' lookups get the rest of the process's slots."""
    slow = [f"a{i}.evil.test" for i in range(8)]
    for handle in slow:
        gated_handle(dns, handle, DID_A)
    fast = [f"user{i}.good.test" for i in range(4)]
    for handle in fast:
        dns.zone.txt(f"_atproto.{handle}", f"did={DID_B}")
    dns.zone.watch("evil.test", "TXT")
    resolver = make_resolver(
        max_concurrent_lookups=4, max_lookups_per_domain=2, time_budget_s=8.0, request_timeout_s=7.0
    )
    stuck = [unverified(resolver, handle) for handle in slow]
    await until(lambda: dns.zone.concurrent("evil.test", "TXT") == 2)
    answers = await asyncio.gather(*(unverified(resolver, handle) for handle in fast))
    assert answers == [DID_B] * len(fast)
    assert dns.zone.count_under("evil.test", "TXT") == 2  # the other six wait for their turn
    assert not any(task.done() for task in stuck)
    dns.zone.release.set()
    assert await asyncio.gather(*stuck) == [DID_A] * len(slow)
    assert dns.zone.count_under("evil.test", "TXT") == len(slow)
    assert dns.zone.most_concurrent("evil.test", "TXT") == 2
    assert resolver._slots.domains() == 0  # no bookkeeping left for the attacker's domains


async def test_a_did_web_fetch_counts_for_its_hosts_domain(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    gated_handle(dns, "busy.slow.test", DID_A)
    for host in ("doc.slow.test", "doc.quick.test"):
        dns.zone.a(host, "127.0.0.1")
        http.route(host, DID_JSON, body=orjson.dumps(plc_document(f"did:web:{host}")))
    resolver = make_resolver(max_lookups_per_domain=1, time_budget_s=8.0, request_timeout_s=7.0)
    busy = unverified(resolver, "busy.slow.test")
    await until(lambda: dns.zone.count("_atproto.busy.slow.test", "TXT") == 1)
    queued = asyncio.create_task(resolver.resolve_did("did:web:doc.slow.test"))
    assert (await resolver.resolve_did("did:web:doc.quick.test"))["id"] == "did:web:doc.quick.test"
    await asyncio.sleep(0.2)  # time for a fetch that was let through to show at the servers
    assert dns.zone.count("doc.slow.test") == 0 and http.count("doc.slow.test") == 0
    assert not queued.done()
    dns.zone.release.set()
    assert await busy == DID_A
    assert (await queued)["id"] == "did:web:doc.slow.test"


# -- registrable domains -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("alice.bsky.social", "bsky.social"),
        ("a.b.Example.CO.UK", "example.co.uk"),
        ("h1.evil.test", "evil.test"),  # unlisted TLD: the list's default rule
        ("a.b.c.kawasaki.jp", "b.c.kawasaki.jp"),  # wildcard rule *.kawasaki.jp
        ("city.kawasaki.jp", "city.kawasaki.jp"),  # its exception !city.kawasaki.jp
        ("alice.github.io", "github.io"),  # private section ignored: free subdomains
        ("co.uk", "co.uk"),  # a public suffix is its own domain
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),  # an IP literal is its own domain
        ("10.20.30.40", "10.20.30.40"),
        ("[2001:DB8:1:2::5]", "2001:db8:1::/48"),  # IPv6: its /48, a site's usual share
        ("2001:db8:1:ffff::1", "2001:db8:1::/48"),
        ("::1", "::/48"),
    ],
)
def test_registrable_domain(host: str, domain: str) -> None:
    assert registrable_domain(host) == domain


def test_a_did_web_ip_literal_counts_for_its_address() -> None:
    assert registrable_domain(did_web_host("did:web:192.0.2.7")) == "192.0.2.7"
    assert registrable_domain(did_web_host("did:web:192.0.2.7%3A8443")) == "192.0.2.7"


def test_did_web_host() -> None:
    assert did_web_host("did:web:Doc.Example.com") == "doc.example.com"
    assert did_web_host("did:web:localhost%3A8080") == "localhost"
    assert did_web_host("did:web:example.com:user:alice") == "example.com"


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(
    st.lists(_label, min_size=1, max_size=4),
    _label,
    st.sampled_from(["com", "co.uk", "test", "bsky.social"]),
)
def test_names_under_a_registrable_domain_share_it(
    prefix: list[str], name: str, suffix: str
) -> None:
    """However many labels an attacker puts in front, the domain (the cap's key) stays."""
    domain = registrable_domain(f"{name}.{suffix}")
    assert registrable_domain(".".join([*prefix, domain])) == domain
