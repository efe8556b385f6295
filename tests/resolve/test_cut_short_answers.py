"""An HTTPS answer taken at the deadline while DNS was still pending is cached only when the
lookup had its full time (plc-spec-notes.md §9.2: on conflict DNS wins). Real DNS and HTTP
servers on 127.0.0.1.

The victim handle below answers HTTPS at once; its first DNS query is held back (a slow
nameserver) and every later one answers at once with another DID, the preferred one.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from plc.resolve.lookups import Deadline
from tests.resolve.conftest import DID_A, DID_B, DID_JSON, WELL_KNOWN, ResolverFactory, plc_document
from tests.resolve.servers import LocalDns, LocalHttp
from tests.resolve.test_shared_lookups import GATE_S

pytestmark = pytest.mark.anyio

BUDGET_S = 1.5
REQUEST_TIMEOUT_S = 1.0
"""Each lookup's own time; the earlier step or the wait for a slot takes ``EARLIER_S`` of
the budget, leaving the victim's lookup about 0.8 s: less than its own time."""
EARLIER_S = 0.7


def victim(dns: LocalDns, http: LocalHttp, https_did: str) -> None:
    """``victim.test``: HTTPS answers ``https_did`` at once, DNS ``DID_A`` (first query held)."""
    dns.zone.a("victim.test", "127.0.0.1")
    http.route("victim.test", WELL_KNOWN, body=https_did.encode())
    dns.zone.txt("_atproto.victim.test", f"did={DID_A}")
    dns.zone.slow("_atproto.victim.test", GATE_S, first=1)


async def test_an_https_answer_cut_short_by_an_earlier_slow_step_is_not_cached(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    """The reviewer's attack: a did:web document that arrives late claims the victim's handle,
    whose check then runs with less than its own time. It takes the HTTPS answer (DNS still
    pending at the deadline), as the spec allows; but a later caller with the full time must
    get the DNS answer, not that HTTPS answer from the cache."""
    attacker = "did:web:slowdoc.test"
    victim(dns, http, attacker)
    dns.zone.a("slowdoc.test", "127.0.0.1")
    document = orjson.dumps(plc_document(attacker, "victim.test"))
    http.route("slowdoc.test", DID_JSON, body=document, delay_s=EARLIER_S)
    resolver = make_resolver(time_budget_s=BUDGET_S, request_timeout_s=REQUEST_TIMEOUT_S)
    info = await resolver.resolve_identity(attacker)
    assert info["handle"] == "victim.test"  # the HTTPS answer, DNS pending at the deadline
    assert dns.zone.count("_atproto.victim.test", "TXT") == 1
    assert await resolver.resolve_handle("victim.test", verify=False) == DID_A
    assert dns.zone.count("_atproto.victim.test", "TXT") == 2  # looked up again
    # the DNS answer, with DNS in, is cached as usual
    assert await resolver.resolve_handle("victim.test", verify=False) == DID_A
    assert dns.zone.count("_atproto.victim.test", "TXT") == 2


async def test_an_https_answer_cut_short_by_the_wait_for_a_slot_is_not_cached(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    """The only lookup slot is held for 0.7 s (a lookup of another domain); the victim's
    lookup starts with 0.8 s left and takes the HTTPS answer at its deadline. With the whole
    budget it would have had its own time: that answer must not be cached either."""
    victim(dns, http, DID_B)
    resolver = make_resolver(
        time_budget_s=BUDGET_S, request_timeout_s=REQUEST_TIMEOUT_S, max_concurrent_lookups=1
    )
    loop = asyncio.get_running_loop()
    assert await resolver._slots.acquire("stuck.test", Deadline(loop.time() + 60))
    loop.call_later(EARLIER_S, resolver._slots.release, "stuck.test")
    assert await resolver.resolve_handle("victim.test", verify=False) == DID_B
    assert dns.zone.count("_atproto.victim.test", "TXT") == 1
    assert await resolver.resolve_handle("victim.test", verify=False) == DID_A
    assert dns.zone.count("_atproto.victim.test", "TXT") == 2


async def test_an_https_answer_after_dns_ran_out_its_own_time_is_cached(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    """Control: with its full time, DNS that does not answer within its own timeout has
    failed; the HTTPS answer is then the answer, cached like any other."""
    victim(dns, http, DID_B)
    resolver = make_resolver(time_budget_s=BUDGET_S, request_timeout_s=0.3)
    assert await resolver.resolve_handle("victim.test", verify=False) == DID_B
    assert await resolver.resolve_handle("victim.test", verify=False) == DID_B  # cached
    assert dns.zone.count("_atproto.victim.test", "TXT") == 1
    assert http.count("victim.test", WELL_KNOWN) == 1
