"""The atproto Python SDK (``atproto_identity``), a client no one here wrote, resolves DIDs
registered in our directory over a live loopback server and gets exactly what ``GET /{did}``
serves; tombstoned and unknown DIDs are "not found" to it, as our 404s mean."""

from __future__ import annotations

import asyncio

import dns.asyncresolver as dns_asyncresolver
import dns.resolver as dns_resolver
import httpx
import pytest
from atproto_core.did_doc import DidDocument
from atproto_identity.did.resolvers.plc_resolver import AsyncDidPlcResolver, DidPlcResolver
from atproto_identity.exceptions import DidNotFoundError
from atproto_identity.resolver import AsyncIdResolver, IdResolver

from plc.keys import Curve
from plc.signing import pds_services
from tests.resolve.servers import LocalDns

from .conftest import Directory

UNREGISTERED = "did:plc:" + "z" * 24


def _sdk_view(document: DidDocument) -> dict[str, object]:
    """What the SDK extracted from a document, in plain values."""
    key = document.get_signing_key()
    return {
        "did": document.get_did(),
        "handle": document.get_handle(),
        "pds": document.get_pds_endpoint(),
        "signing_key": document.get_did_key(),
        "key_type": key.type if key else None,
    }


def test_sdk_plc_resolver_reads_our_documents(directory: Directory) -> None:
    """``DidPlcResolver`` and ``IdResolver`` against both backends (``directory`` runs on each
    ``db_url``: SQLite, and PostgreSQL when reachable)."""
    alice = directory.register("sdk-alice", "alice.test")
    directory.update(
        alice,
        also_known_as=["at://alice2.test", "https://alice.example.org"],
        services=pds_services("https://pds2.example.com"),
    )
    bob = directory.register("sdk-bob", "bob.test", curve=Curve.P256)
    gone = directory.register("sdk-gone", "gone.test")
    directory.tombstone(gone)

    plc = DidPlcResolver(directory.url, timeout=5)
    ids = IdResolver(plc_url=directory.url, timeout=5)
    for account in (alice, bob):
        served = directory.document(account.did)
        # the JSON the SDK received is exactly what our API serves
        assert plc.resolve_without_validation(account.did) == served
        assert ids.did.resolve_without_validation(account.did) == served
        # and the SDK's own validation accepts it, reading the same values back
        parsed = ids.did.ensure_resolve(account.did)
        assert parsed == DidDocument.from_dict(served)
        assert parsed.model_dump(by_alias=True, exclude_none=True) == {
            k: v for k, v in served.items() if k != "@context"
        }
        last = account.ops[-1]
        assert _sdk_view(parsed) == {
            "did": account.did,
            "handle": last["alsoKnownAs"][0].removeprefix("at://"),
            "pds": last["services"]["atproto_pds"]["endpoint"],
            "signing_key": last["verificationMethods"]["atproto"],
            "key_type": "Multikey",
        }
        data = ids.did.resolve_atproto_data(account.did)
        assert (data.did, data.handle, data.pds) == (
            account.did,
            _sdk_view(parsed)["handle"],
            _sdk_view(parsed)["pds"],
        )
        assert ids.did.resolve_atproto_key(account.did) == last["verificationMethods"]["atproto"]
    assert _sdk_view(ids.did.ensure_resolve(alice.did))["handle"] == "alice2.test"

    # Tombstoned and unregistered: our 404 is the SDK's "not found" (None / DidNotFoundError),
    # not an HTTP error (DidPlcResolverError).
    for did, message in ((gone.did, "DID not available"), (UNREGISTERED, "DID not registered")):
        response = httpx.get(f"{directory.url}/{did}")
        assert response.status_code == 404
        assert response.json() == {"message": f"{message}: {did}"}
        assert plc.resolve_without_validation(did) is None
        assert plc.resolve(did) is None
        assert ids.did.resolve(did) is None
        with pytest.raises(DidNotFoundError):
            ids.did.ensure_resolve(did)
        with pytest.raises(DidNotFoundError):
            ids.did.resolve_atproto_data(did)
    # The XRPC view of the same DIDs says why.
    assert directory.xrpc("resolveDid", did=gone.did).json()["error"] == "DidDeactivated"
    assert directory.xrpc("resolveDid", did=UNREGISTERED).json()["error"] == "DidNotFound"


def test_async_sdk_resolver_matches_served_documents(sqlite_directory: Directory) -> None:
    directory = sqlite_directory
    accounts = [directory.register(f"sdk-async{i}", f"async{i}.test") for i in range(3)]

    async def resolve_all() -> list[object]:
        plc = AsyncDidPlcResolver(directory.url, timeout=5)
        ids = AsyncIdResolver(plc_url=directory.url, timeout=5)
        raw = await asyncio.gather(*(plc.resolve_without_validation(a.did) for a in accounts))
        parsed = await asyncio.gather(*(ids.did.resolve(a.did) for a in accounts))
        missing = await ids.did.resolve(UNREGISTERED)
        return [*raw, *parsed, missing]

    results = asyncio.run(resolve_all())
    served = [directory.document(a.did) for a in accounts]
    assert results[:3] == served
    assert results[3:6] == [DidDocument.from_dict(doc) for doc in served]
    assert results[6] is None


def test_sdk_handle_resolution_through_our_dns_server(
    sqlite_directory: Directory, dns: LocalDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's handle resolver has no nameserver setting (``backup_nameservers`` is stored
    but unused in atproto 0.0.73); it calls ``dns.resolver.resolve``, which uses dnspython's
    module default resolver, so that is what we point at the test DNS server."""
    directory = sqlite_directory
    alice = directory.register("sdk-handle", "handle-alice.test")
    dns.zone.txt("_atproto.handle-alice.test", f"did={alice.did}")
    dns.zone.txt("_atproto.impostor.test", f"did={alice.did}")
    local = dns_resolver.Resolver(configure=False)
    local.nameservers = ["127.0.0.1"]
    local.port = dns.port
    monkeypatch.setattr(dns_resolver, "default_resolver", local)
    async_local = dns_asyncresolver.Resolver(configure=False)
    async_local.nameservers = ["127.0.0.1"]
    async_local.port = dns.port
    monkeypatch.setattr(dns_asyncresolver, "default_resolver", async_local)

    ids = IdResolver(plc_url=directory.url, timeout=2)
    # handle -> DID (DNS answers first, so the SDK never tries its HTTPS fallback)
    did = ids.handle.resolve("handle-alice.test")
    assert did == alice.did
    assert dns.zone.count("_atproto.handle-alice.test", "TXT") == 1
    # ... and back: the document our directory serves claims the handle
    assert ids.did.ensure_resolve(did).get_handle() == "handle-alice.test"
    # the same verdict as our XRPC endpoint
    ours = directory.xrpc("resolveHandle", handle="handle-alice.test")
    assert ours.status_code == 200 and ours.json() == {"did": did}
    assert asyncio.run(AsyncIdResolver(timeout=2).handle.resolve_dns("handle-alice.test")) == did

    # A handle whose TXT points at alice but which alice's document does not claim: the SDK's
    # handle resolver alone returns the DID (it does not verify); the document disagrees, and
    # our endpoint refuses it.
    assert ids.handle.resolve_dns("impostor.test") == alice.did
    assert ids.did.ensure_resolve(alice.did).get_handle() != "impostor.test"
    refused = directory.xrpc("resolveHandle", handle="impostor.test")
    assert refused.status_code == 400 and refused.json()["error"] == "HandleNotFound"
    identity = directory.xrpc("resolveIdentity", identifier="impostor.test").json()
    assert identity["handle"] == "handle.invalid" and identity["did"] == alice.did
    # no record at all: None from the SDK's DNS method, HandleNotFound from us
    assert ids.handle.resolve_dns("nobody.test") is None
    assert directory.xrpc("resolveHandle", handle="nobody.test").json()["error"] == (
        "HandleNotFound"
    )
