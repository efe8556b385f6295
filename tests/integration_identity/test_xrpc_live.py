"""``com.atproto.identity.*`` end to end: the real app on a live loopback server, its resolver
asking a real DNS server and a real HTTP server on 127.0.0.1, did:plc documents read from the
directory's own store (registered by POSTing signed ops)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import orjson
import pytest

from plc.keys import Curve
from tests.resolve.servers import LocalDns, LocalHttp

from .conftest import XRPC, Account, Directory, DirectoryFactory

WELL_KNOWN = "/.well-known/atproto-did"
UNREGISTERED = "did:plc:" + "z" * 24


def xrpc_error(response: httpx.Response) -> str:
    """The lexicon error name of an XRPC error response (status 400, ``{error, message}``)."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    return str(body["error"])


@pytest.fixture
def alice(directory: Directory, dns: LocalDns) -> Account:
    """Registered as claiming alice.test, whose TXT record points back at it."""
    account = directory.register("xrpc-alice", "alice.test")
    dns.zone.txt("_atproto.alice.test", f"did={account.did}")
    return account


def test_resolve_handle_verified_both_ways(directory: Directory, alice: Account) -> None:
    for handle in ("alice.test", "ALICE.Test"):
        response = directory.xrpc("resolveHandle", handle=handle)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {"did": alice.did}


def test_resolve_identity_by_handle_and_did(directory: Directory, alice: Account) -> None:
    expected = {"did": alice.did, "handle": "alice.test", "didDoc": directory.document(alice.did)}
    for identifier in ("alice.test", alice.did):
        response = directory.xrpc("resolveIdentity", identifier=identifier)
        assert response.status_code == 200, response.text
        assert response.json() == expected
    resolved = directory.xrpc("resolveDid", did=alice.did)
    assert resolved.json() == {"didDoc": expected["didDoc"]}


def test_document_changes_are_seen_at_once(
    directory: Directory, alice: Account, dns: LocalDns
) -> None:
    """did:plc documents come from the store, never a cache: an accepted update is the next
    answer; the new handle verifies as soon as its TXT record exists."""
    assert directory.xrpc("resolveIdentity", identifier=alice.did).json()["handle"] == "alice.test"
    directory.update(alice, also_known_as=["at://alice-new.test"])
    dns.zone.txt("_atproto.alice-new.test", f"did={alice.did}")
    body = directory.xrpc("resolveIdentity", identifier=alice.did).json()
    assert body["didDoc"] == directory.document(alice.did)
    assert body["didDoc"]["alsoKnownAs"] == ["at://alice-new.test"]
    assert body["handle"] == "alice-new.test"
    # alice.test still points at alice, but her document no longer claims it
    assert xrpc_error(directory.xrpc("resolveHandle", handle="alice.test")) == "HandleNotFound"
    old = directory.xrpc("resolveIdentity", identifier="alice.test").json()
    assert (old["did"], old["handle"]) == (alice.did, "handle.invalid")


def test_tombstoned_did_is_deactivated(directory: Directory, dns: LocalDns) -> None:
    gone = directory.register("xrpc-gone", "gone.test", curve=Curve.P256)
    dns.zone.txt("_atproto.gone.test", f"did={gone.did}")
    assert directory.xrpc("resolveHandle", handle="gone.test").json() == {"did": gone.did}
    directory.tombstone(gone)
    assert directory.http.get(f"/{gone.did}").status_code == 404
    assert xrpc_error(directory.xrpc("resolveDid", did=gone.did)) == "DidDeactivated"
    assert xrpc_error(directory.xrpc("resolveIdentity", identifier=gone.did)) == "DidDeactivated"
    refreshed = directory.http.post(XRPC + "refreshIdentity", json={"identifier": gone.did})
    assert xrpc_error(refreshed) == "DidDeactivated"
    # the handle still points at it, but no document claims it any more
    assert xrpc_error(directory.xrpc("resolveHandle", handle="gone.test")) == "HandleNotFound"


def test_unregistered_did_is_not_found(directory: Directory) -> None:
    assert directory.http.get(f"/{UNREGISTERED}").status_code == 404
    assert xrpc_error(directory.xrpc("resolveDid", did=UNREGISTERED)) == "DidNotFound"
    assert xrpc_error(directory.xrpc("resolveIdentity", identifier=UNREGISTERED)) == "DidNotFound"
    assert xrpc_error(directory.xrpc("resolveDid", did="did:plc:short")) == "DidNotFound"
    assert xrpc_error(directory.xrpc("resolveDid", did="not-a-did")) == "InvalidRequest"


def test_handle_not_claimed_back_is_invalid(
    directory: Directory, alice: Account, dns: LocalDns
) -> None:
    # mallory.test's TXT record names alice's DID; alice's document does not claim it
    dns.zone.txt("_atproto.mallory.test", f"did={alice.did}")
    assert xrpc_error(directory.xrpc("resolveHandle", handle="mallory.test")) == "HandleNotFound"
    body = directory.xrpc("resolveIdentity", identifier="mallory.test").json()
    assert body == {
        "did": alice.did,
        "handle": "handle.invalid",
        "didDoc": directory.document(alice.did),
    }
    # bob claims bob.test, but bob.test has no record (and no well-known document)
    bob = directory.register("xrpc-bob", "bob.test")
    body = directory.xrpc("resolveIdentity", identifier=bob.did).json()
    assert (body["did"], body["handle"]) == (bob.did, "handle.invalid")
    assert body["didDoc"] == directory.document(bob.did)
    assert xrpc_error(directory.xrpc("resolveIdentity", identifier="bob.test")) == (
        "HandleNotFound"
    )
    # carol claims carol.test, whose TXT record names bob: not carol's handle either
    carol = directory.register("xrpc-carol", "carol.test")
    dns.zone.txt("_atproto.carol.test", f"did={bob.did}")
    body = directory.xrpc("resolveIdentity", identifier=carol.did).json()
    assert (body["did"], body["handle"]) == (carol.did, "handle.invalid")


def test_refresh_identity_bypasses_the_cache(
    directory: Directory, alice: Account, dns: LocalDns
) -> None:
    def txt_queries() -> int:
        return dns.zone.count("_atproto.alice.test", "TXT")

    for identifier in ("alice.test", alice.did, "alice.test", alice.did):
        response = directory.xrpc("resolveIdentity", identifier=identifier)
        assert response.json()["handle"] == "alice.test"
    assert directory.xrpc("resolveHandle", handle="alice.test").json() == {"did": alice.did}
    assert txt_queries() == 1  # one lookup, then the cache

    refreshed = directory.http.post(XRPC + "refreshIdentity", json={"identifier": "alice.test"})
    assert refreshed.status_code == 200
    assert refreshed.json() == directory.xrpc("resolveIdentity", identifier="alice.test").json()
    assert txt_queries() == 2
    directory.http.post(XRPC + "refreshIdentity", json={"identifier": alice.did})
    assert txt_queries() == 3

    # The record changes: the cache keeps the old answer until a refresh replaces it.
    bob = directory.register("xrpc-bob2", "alice.test")  # bob claims alice.test as well
    dns.zone.reset()
    dns.zone.txt("_atproto.alice.test", f"did={bob.did}")
    assert directory.xrpc("resolveHandle", handle="alice.test").json() == {"did": alice.did}
    assert txt_queries() == 0
    refreshed = directory.http.post(XRPC + "refreshIdentity", json={"identifier": "alice.test"})
    assert (refreshed.json()["did"], refreshed.json()["handle"]) == (bob.did, "alice.test")
    assert txt_queries() == 1
    assert directory.xrpc("resolveHandle", handle="alice.test").json() == {"did": bob.did}
    alice_now = directory.xrpc("resolveIdentity", identifier=alice.did).json()
    assert alice_now["handle"] == "handle.invalid"
    assert txt_queries() == 1  # the refreshed answer was cached

    # Negative answers are cached too, and refresh bypasses them as well.
    assert xrpc_error(directory.xrpc("resolveHandle", handle="late.test")) == "HandleNotFound"
    late = directory.register("xrpc-late", "late.test")
    dns.zone.txt("_atproto.late.test", f"did={late.did}")
    assert xrpc_error(directory.xrpc("resolveHandle", handle="late.test")) == "HandleNotFound"
    assert dns.zone.count("_atproto.late.test", "TXT") == 1
    refreshed = directory.http.post(XRPC + "refreshIdentity", json={"identifier": "late.test"})
    assert refreshed.json()["handle"] == "late.test"
    assert dns.zone.count("_atproto.late.test", "TXT") == 2


def test_did_web_identity(directory: Directory, dns: LocalDns, http: LocalHttp) -> None:
    """A did:web identity through the same endpoints: the document is fetched from the local
    HTTP server (``localhost%3A<port>``, allowed with private networks), then cached."""
    did = f"did:web:localhost%3A{http.port}"
    document = {"id": did, "alsoKnownAs": ["at://web-alice.test"], "service": []}
    http.route("localhost", "/.well-known/did.json", body=orjson.dumps(document))
    dns.zone.txt("_atproto.web-alice.test", f"did={did}")
    expected = {"did": did, "handle": "web-alice.test", "didDoc": document}
    for identifier in ("web-alice.test", did):
        assert directory.xrpc("resolveIdentity", identifier=identifier).json() == expected
    assert directory.xrpc("resolveHandle", handle="web-alice.test").json() == {"did": did}
    assert http.count("localhost", "/.well-known/did.json") == 1  # cached after the first
    refreshed = directory.http.post(XRPC + "refreshIdentity", json={"identifier": did})
    assert refreshed.json() == expected
    assert http.count("localhost", "/.well-known/did.json") == 2
    # a did:plc document is never that did:web's: the directory does not serve did:web
    assert directory.http.get(f"/{did}").status_code == 404


def test_slow_resolution_does_not_block_writes(
    directory_factory: DirectoryFactory, db_url: str, dns: LocalDns, http: LocalHttp
) -> None:
    """A handle lookup that takes 3 s (its well-known document is served late) runs while
    operations are written, read and resolved promptly by the same server."""
    directory = directory_factory(db_url, time_budget_s=6.0, request_timeout_s=5.0)
    slow = directory.register("xrpc-slow", "slow.test")
    dns.zone.a("slow.test", "127.0.0.1")  # no TXT record: only the HTTP(S) method can answer
    http.route("slow.test", WELL_KNOWN, body=slow.did.encode(), delay_s=3.0)
    quick = directory.register("xrpc-quick", "quick.test")
    dns.zone.txt("_atproto.quick.test", f"did={quick.did}")

    result: dict[str, Any] = {}

    def lookup() -> None:
        started = time.monotonic()
        with httpx.Client(base_url=directory.url, timeout=30) as client:
            result["response"] = client.get(XRPC + "resolveHandle", params={"handle": "slow.test"})
        result["elapsed"] = time.monotonic() - started

    worker = threading.Thread(target=lookup)
    worker.start()
    deadline = time.monotonic() + 5
    while http.count("slow.test", WELL_KNOWN) == 0:  # the slow fetch has reached the server
        assert time.monotonic() < deadline, "the slow lookup never started"
        time.sleep(0.01)
    lookup_started = time.monotonic()

    timings: dict[str, float] = {}
    started = time.monotonic()
    fresh = directory.register("xrpc-fresh", "fresh.test")  # POST /{did}: a genesis op
    timings["genesis"] = time.monotonic() - started
    started = time.monotonic()
    directory.update(quick, also_known_as=["at://quick.test", "at://quick2.test"])
    timings["update"] = time.monotonic() - started
    started = time.monotonic()
    assert directory.document(fresh.did)["id"] == fresh.did
    timings["read"] = time.monotonic() - started
    started = time.monotonic()
    quick_identity = directory.xrpc("resolveIdentity", identifier=quick.did).json()
    timings["resolve other"] = time.monotonic() - started
    assert quick_identity["handle"] == "quick.test"
    assert quick_identity["didDoc"]["alsoKnownAs"] == ["at://quick.test", "at://quick2.test"]

    assert worker.is_alive(), "the slow lookup finished before the writes: nothing was shown"
    assert time.monotonic() - lookup_started < 2.5
    for name, seconds in timings.items():
        assert seconds < 1.0, f"{name} took {seconds:.2f} s during a slow resolution"
    worker.join(timeout=15)
    assert result["response"].status_code == 200
    assert result["response"].json() == {"did": slow.did}
    assert result["elapsed"] >= 2.9  # the lookup really was slow
