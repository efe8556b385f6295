"""Handle -> DID over a real DNS server and a real HTTP server on loopback (no mocks)."""

from __future__ import annotations

import asyncio
import gzip
import time

import pytest

from plc.resolve import AddressPolicy, HandleNotFound, IdentityResolver, ResolverSettings
from plc.resolve.dnsclient import DnsClient
from plc.resolve.errors import AmbiguousRecords, NoValidRecord, UnsafeUrl
from plc.resolve.fetch import FetchLimits, SafeFetcher, production_ports
from plc.resolve.handle import HandleLookup, did_from_txt_records, did_from_well_known
from tests.resolve.conftest import (
    DID_A,
    DID_B,
    DID_C,
    WELL_KNOWN,
    MemoryPlcSource,
    ResolverFactory,
    SettingsFactory,
)
from tests.resolve.servers import LocalDns, LocalHttp

pytestmark = pytest.mark.anyio


async def unverified(resolver: IdentityResolver, handle: str) -> str:
    return await resolver.resolve_handle(handle, verify=False)


# -- pure parsing ------------------------------------------------------------------------


def test_txt_parsing_rules() -> None:
    """Exactly one ``did=`` value, a valid DID, as the reference's ``parseDnsResult``."""
    assert did_from_txt_records([f"did={DID_A}"]) == DID_A
    assert did_from_txt_records(["v=spf1 -all", f"did={DID_A}", f"DID={DID_B}"]) == DID_A
    with pytest.raises(NoValidRecord):
        did_from_txt_records([])
    with pytest.raises(NoValidRecord):
        did_from_txt_records(["did=garbage", f"DID={DID_A}", f" did={DID_A}"])
    with pytest.raises(AmbiguousRecords):
        did_from_txt_records([f"did={DID_A}", f"did={DID_B}"])


@pytest.mark.parametrize(
    "records",
    [
        [f"did={DID_A}", f"did={DID_A}"],  # identical: still two did= records
        [f"did={DID_A}", f"did={DID_A}", "v=spf1 -all"],
        ["did=garbage", f"did={DID_A}"],  # one valid among two did= records
        [f"did={DID_A}", "did=not a did"],
    ],
)
def test_more_than_one_did_record_is_ambiguous_even_if_one_is_valid(records: list[str]) -> None:
    with pytest.raises(AmbiguousRecords):
        did_from_txt_records(records)


def test_well_known_parsing_rules() -> None:
    assert did_from_well_known(f"  {DID_A}  \r\nignored\n".encode()) == DID_A
    with pytest.raises(NoValidRecord):
        did_from_well_known(b"")
    with pytest.raises(NoValidRecord):
        did_from_well_known(b"<html>hello</html>")
    with pytest.raises(NoValidRecord):
        did_from_well_known(f"\n{DID_A}".encode())  # the DID must be on the first line


# -- DNS and HTTPS methods over the network ------------------------------------------------


async def test_dns_only(dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory) -> None:
    dns.zone.txt("_atproto.dnsonly.test", f"did={DID_A}")
    assert await unverified(make_resolver(), "DNSOnly.Test") == DID_A
    assert dns.zone.count("_atproto.dnsonly.test", "TXT") == 1


async def test_https_only(dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory) -> None:
    dns.zone.a("webonly.test", "127.0.0.1")
    http.route("webonly.test", WELL_KNOWN, body=f"{DID_B}\n".encode())
    assert await unverified(make_resolver(), "webonly.test") == DID_B
    assert http.count("webonly.test", WELL_KNOWN) == 1


async def test_both_agree(dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory) -> None:
    dns.zone.txt("_atproto.both.test", f"did={DID_A}")
    dns.zone.a("both.test", "127.0.0.1")
    http.route("both.test", WELL_KNOWN, body=DID_A.encode())
    assert await unverified(make_resolver(), "both.test") == DID_A


async def test_both_disagree_dns_wins(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.split.test", f"did={DID_A}")
    dns.zone.slow("_atproto.split.test", 0.3)  # HTTPS answers first; DNS must still win
    dns.zone.a("split.test", "127.0.0.1")
    http.route("split.test", WELL_KNOWN, body=DID_B.encode())
    assert await unverified(make_resolver(), "split.test") == DID_A


async def test_txt_chunks_are_joined(dns: LocalDns, make_resolver: ResolverFactory) -> None:
    dns.zone.txt("_atproto.chunks.test", ["did=did:plc:", "a" * 24])
    assert await unverified(make_resolver(), "chunks.test") == DID_A


async def test_multiple_distinct_txt_records_fail_dns(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.multi.test", f"did={DID_A}", f"did={DID_B}")
    with pytest.raises(HandleNotFound) as info:
        await unverified(make_resolver(), "multi.test")
    assert "AmbiguousRecords" in info.value.reason
    # ... and HTTPS is used when DNS is ambiguous
    dns.zone.a("multi.test", "127.0.0.1")
    http.route("multi.test", WELL_KNOWN, body=DID_C.encode())
    assert await unverified(make_resolver(), "multi.test") == DID_C


@pytest.mark.parametrize(
    "records",
    [
        # byte-identical records are one record in DNS (an RRset is a set, RFC 2181 §5; the
        # DNS client keeps one): these two differ in how the value is split into strings
        (f"did={DID_A}", ["did=", DID_A], "other=1"),
        ("did=garbage", f"did={DID_A}"),
    ],
    ids=["identical-values", "garbage-and-valid"],
)
async def test_two_did_records_give_no_dns_answer(
    dns: LocalDns,
    http: LocalHttp,
    make_resolver: ResolverFactory,
    records: tuple[str | list[str], ...],
) -> None:
    """As the reference resolver: two ``did=`` records are no DNS answer even when their
    values agree or only one is valid; the HTTPS method still can answer."""
    dns.zone.txt("_atproto.dup.test", *records)
    with pytest.raises(HandleNotFound) as info:
        await unverified(make_resolver(), "dup.test")
    assert info.value.reason.startswith("dns: AmbiguousRecords: 2 did= TXT records;")
    dns.zone.a("dup.test", "127.0.0.1")
    http.route("dup.test", WELL_KNOWN, body=DID_C.encode())
    assert await unverified(make_resolver(), "dup.test") == DID_C


async def test_no_record(dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory) -> None:
    with pytest.raises(HandleNotFound) as info:
        await unverified(make_resolver(), "nobody.test")
    assert "NoValidRecord" in info.value.reason and "HostNotFound" in info.value.reason
    assert info.value.message == "Unable to resolve handle"


async def test_malformed_records(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.bad.test", "did=did:plc:", "did:plc:" + "a" * 24)
    dns.zone.a("bad.test", "127.0.0.1")
    http.route("bad.test", WELL_KNOWN, body=b"<html>not a DID</html>")
    with pytest.raises(HandleNotFound) as info:
        await unverified(make_resolver(), "bad.test")
    assert "dns: NoValidRecord: the did= TXT record is not a valid DID" in info.value.reason
    assert "https: NoValidRecord" in info.value.reason


async def test_https_error_status(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.a("err.test", "127.0.0.1")
    http.route("err.test", WELL_KNOWN, status=500, body=DID_A.encode())
    with pytest.raises(HandleNotFound) as info:
        await unverified(make_resolver(), "err.test")
    assert "HTTP 500" in info.value.reason


async def test_https_timeout_within_budget(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.a("slow.test", "127.0.0.1")
    http.route("slow.test", WELL_KNOWN, body=DID_A.encode(), delay_s=10)
    resolver = make_resolver(time_budget_s=0.5, request_timeout_s=5)
    started = time.monotonic()
    with pytest.raises(HandleNotFound) as info:
        await unverified(resolver, "slow.test")
    assert time.monotonic() - started < 1.5
    assert "https: timed out" in info.value.reason


async def test_dns_timeout_falls_back_to_https(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.slowdns.test", f"did={DID_A}")
    dns.zone.slow("_atproto.slowdns.test", 10)
    dns.zone.a("slowdns.test", "127.0.0.1")
    http.route("slowdns.test", WELL_KNOWN, body=DID_B.encode())
    resolver = make_resolver(time_budget_s=0.6, request_timeout_s=5)
    started = time.monotonic()
    assert await unverified(resolver, "slowdns.test") == DID_B  # DNS still pending at deadline
    assert time.monotonic() - started < 1.5


async def test_oversized_body(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.a("big.test", "127.0.0.1")
    dns.zone.a("bigchunked.test", "127.0.0.1")
    body = DID_A.encode() + b"\n" + b"x" * 20_000
    http.route("big.test", WELL_KNOWN, body=body)
    http.route("bigchunked.test", WELL_KNOWN, body=body, send_length=False)
    resolver = make_resolver(max_body_bytes=4096)
    for handle in ("big.test", "bigchunked.test"):
        with pytest.raises(HandleNotFound) as info:
            await unverified(resolver, handle)
        assert "BodyTooLarge" in info.value.reason


async def test_gzip_bomb_is_capped(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.a("bomb.test", "127.0.0.1")
    dns.zone.a("gz.test", "127.0.0.1")
    bomb = gzip.compress(DID_A.encode() + b"\n" + b"\0" * 2_000_000)
    assert len(bomb) < 4096
    http.route("bomb.test", WELL_KNOWN, body=bomb, headers={"Content-Encoding": "gzip"})
    http.route(
        "gz.test",
        WELL_KNOWN,
        body=gzip.compress(DID_A.encode()),
        headers={"Content-Encoding": "gzip"},
    )
    resolver = make_resolver(max_body_bytes=4096)
    with pytest.raises(HandleNotFound) as info:
        await unverified(resolver, "bomb.test")
    assert "BodyTooLarge" in info.value.reason
    assert await unverified(resolver, "gz.test") == DID_A


async def test_redirects_followed_within_bound(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.a("hop.test", "127.0.0.1")
    dns.zone.a("target.test", "127.0.0.1")
    http.route(
        "hop.test",
        WELL_KNOWN,
        status=302,
        headers={"Location": http.url("target.test", "/did.txt")},
    )
    http.route("target.test", "/did.txt", body=DID_A.encode())
    assert await unverified(make_resolver(), "hop.test") == DID_A
    # a chain longer than max_redirects fails
    dns.zone.a("chain.test", "127.0.0.1")
    for i in range(4):
        http.route("chain.test", f"/{i}", status=301, headers={"Location": f"/{i + 1}"})
    http.route("chain.test", WELL_KNOWN, status=301, headers={"Location": "/0"})
    http.route("chain.test", "/4", body=DID_A.encode())
    with pytest.raises(HandleNotFound) as info:
        await unverified(make_resolver(max_redirects=3), "chain.test")
    assert "TooManyRedirects" in info.value.reason
    assert await unverified(make_resolver(max_redirects=5), "chain.test") == DID_A


async def test_redirect_loop(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.a("loop.test", "127.0.0.1")
    http.route("loop.test", WELL_KNOWN, status=302, headers={"Location": "/a"})
    http.route("loop.test", "/a", status=302, headers={"Location": WELL_KNOWN})
    with pytest.raises(HandleNotFound) as info:
        await unverified(make_resolver(max_redirects=10), "loop.test")
    assert "redirect loop" in info.value.reason
    assert http.count("loop.test") == 2  # detected on the first revisit, not after 10 hops


async def test_redirect_to_private_address_is_not_followed(
    dns: LocalDns, http: LocalHttp, http2: LocalHttp, make_resolver: ResolverFactory
) -> None:
    # 127.0.0.1 is exempted for the first hop; the redirect target on 127.0.0.2 is not.
    dns.zone.a("redir.test", "127.0.0.1")
    dns.zone.a("internal.test", "127.0.0.2")
    target = f"http://internal.test:{http2.port}/did.txt"
    http.route("redir.test", WELL_KNOWN, status=307, headers={"Location": target})
    http2.route("internal.test", "/did.txt", body=DID_A.encode())
    guarded = make_resolver(allow_private_networks=False, allowed_networks=["127.0.0.1/32"])
    with pytest.raises(HandleNotFound) as info:
        await unverified(guarded, "redir.test")
    assert "UnsafeAddress" in info.value.reason
    assert http.count("redir.test", WELL_KNOWN) == 1
    assert http2.count() == 0
    # an IP-literal target (cloud metadata style) is refused the same way
    http.route(
        "redir.test",
        WELL_KNOWN,
        status=302,
        headers={"Location": "http://169.254.169.254/latest/meta-data"},
    )
    with pytest.raises(HandleNotFound) as info:
        await guarded.resolve_handle("redir.test", verify=False, refresh=True)
    assert "UnsafeAddress" in info.value.reason
    # control: with 127.0.0.2 exempted too, the same redirect is followed
    http.route("redir.test", WELL_KNOWN, status=307, headers={"Location": target})
    opened = make_resolver(
        allow_private_networks=False, allowed_networks=["127.0.0.1/32", "127.0.0.2/32"]
    )
    assert await unverified(opened, "redir.test") == DID_A
    assert http2.count("internal.test", "/did.txt") == 1


async def test_redirect_to_other_scheme_is_refused(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.a("ftp.test", "127.0.0.1")
    http.route("ftp.test", WELL_KNOWN, status=302, headers={"Location": "ftp://ftp.test/did"})
    with pytest.raises(HandleNotFound) as info:
        await unverified(make_resolver(), "ftp.test")
    assert "UnsafeUrl" in info.value.reason


async def test_disallowed_tld_is_never_looked_up(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    dns.zone.txt("_atproto.laptop.local", f"did={DID_A}")
    with pytest.raises(HandleNotFound):
        await unverified(make_resolver(), "laptop.local")
    assert dns.zone.count("_atproto.laptop.local") == 0


async def test_lookups_run_concurrently(
    dns: LocalDns, http: LocalHttp, make_resolver: ResolverFactory
) -> None:
    # DNS has no answer and takes 0.4 s; HTTPS takes 0.4 s too: total well under 0.8 s.
    dns.zone.slow("_atproto.par.test", 0.4)
    dns.zone.a("par.test", "127.0.0.1")
    http.route("par.test", WELL_KNOWN, body=DID_A.encode(), delay_s=0.4)
    started = time.monotonic()
    assert await unverified(make_resolver(), "par.test") == DID_A
    assert time.monotonic() - started < 0.75


async def test_parallel_requests_share_nothing_unsafe(
    dns: LocalDns, make_resolver: ResolverFactory, plc_source: MemoryPlcSource
) -> None:
    dns.zone.txt("_atproto.many.test", f"did={DID_A}")
    resolver = make_resolver()
    results = await asyncio.gather(*(unverified(resolver, "many.test") for _ in range(10)))
    assert set(results) == {DID_A}


async def test_production_urls_and_ports(
    dns: LocalDns, http: LocalHttp, make_settings: SettingsFactory
) -> None:
    assert production_ports("https", None) == frozenset({443})
    assert production_ports("https", 8443) is None
    assert production_ports("http", None) is None
    defaults = ResolverSettings()
    dns_client = DnsClient(defaults)
    production_fetcher = SafeFetcher(dns_client, AddressPolicy(), "test")
    lookup = HandleLookup(dns_client, production_fetcher, defaults)
    assert lookup.well_known_url("alice.test") == "https://alice.test/.well-known/atproto-did"

    settings = make_settings()
    fetcher = SafeFetcher(DnsClient(settings), AddressPolicy(allow_private=True), "test")
    dns.zone.a("port.test", "127.0.0.1")
    http.route("port.test", "/x", body=b"ok")
    limits = FetchLimits(frozenset({"http"}), frozenset({80}), 0, 1000, 1.0)
    with pytest.raises(UnsafeUrl, match="port"):
        await fetcher.get(http.url("port.test", "/x"), limits, accept="*/*")
    assert http.count() == 0
    open_limits = FetchLimits(frozenset({"http"}), None, 0, 1000, 1.0)
    assert (await fetcher.get(http.url("port.test", "/x"), open_limits, "*/*")).body == b"ok"
    with pytest.raises(UnsafeUrl, match="credentials"):
        await fetcher.get(f"http://u:p@port.test:{http.port}/x", open_limits, "*/*")
    with pytest.raises(UnsafeUrl, match="scheme"):
        await fetcher.get(f"https://port.test:{http.port}/x", open_limits, "*/*")
    assert http.count() == 1
