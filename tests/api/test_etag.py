"""ETags and conditional GET on the reads (the reference's Express behaviour,
plc-spec-notes.md §4 "Global"; RFC 9110 §8.8.3, §13.1.2)."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from plc.api.etag import conditional_headers, is_fresh, weak_etag

from ..conftest import Clock, LiveServer
from ..helpers import new_did, update

READS = ("", "/data", "/log", "/log/audit", "/log/last")


def _express_etag(body: bytes) -> str:
    """Express's weak ETag (the `etag` package): length in hex, SHA-1 in base64 cut to 27."""
    digest = base64.b64encode(hashlib.sha1(body).digest()).decode()[:27]
    return f'W/"{len(body):x}-{digest}"'


def _registered(client: TestClient, clock: Clock, seed: str) -> tuple[str, dict, list]:  # type: ignore[type-arg]
    did, genesis, keys = new_did(seed)
    assert client.post(f"/{did}", json=genesis).status_code == 200
    clock.advance(timedelta(seconds=1))
    return did, genesis, keys


def test_known_tags() -> None:
    # Express's tag of an empty body, as its documentation and every Express server print it.
    assert weak_etag(b"") == b'W/"0-2jmj7l5rSw0yVb/vlWAYkK/YBwk"'
    assert weak_etag(b"x" * 300).startswith(b'W/"12c-')


def test_every_read_is_tagged_and_revalidates(client: TestClient, clock: Clock) -> None:
    did, _, _ = _registered(client, clock, "tagged")
    for suffix in READS:
        first = client.get(f"/{did}{suffix}")
        assert first.status_code == 200
        assert first.headers["etag"] == _express_etag(first.content), suffix
        again = client.get(f"/{did}{suffix}", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304, suffix
        assert again.content == b""
        assert again.headers["etag"] == first.headers["etag"]
        assert again.headers["access-control-allow-origin"] == "*"
        assert "content-type" not in again.headers


def test_a_changed_did_gets_its_new_body(client: TestClient, clock: Clock) -> None:
    did, genesis, keys = _registered(client, clock, "changed")
    before = {suffix: client.get(f"/{did}{suffix}").headers["etag"] for suffix in READS}
    moved = update(genesis, keys[0], also_known_as=["at://changed2.example.com"])
    assert client.post(f"/{did}", json=moved).status_code == 200
    for suffix, etag in before.items():
        after = client.get(f"/{did}{suffix}", headers={"If-None-Match": etag})
        assert after.status_code == 200, suffix
        assert after.headers["etag"] != etag
        assert after.headers["etag"] == _express_etag(after.content)


@pytest.mark.parametrize(
    ("if_none_match", "cache_control", "expected"),
    [
        ("{strong}", None, 304),  # weak comparison: W/ does not matter
        ('W/"0-nope", {tag}', None, 304),
        ("*", None, 304),
        ('W/"0-nope"', None, 200),
        ("", None, 200),
        ("{tag}", "no-cache", 200),  # an end-to-end reload
        ("{tag}", "max-age=0, No-Cache", 200),
        ("{tag}", "no-cache-please", 304),
        ("{tag}", "max-age=0", 304),
    ],
)
def test_if_none_match_rules(
    client: TestClient, clock: Clock, if_none_match: str, cache_control: str | None, expected: int
) -> None:
    did, _, _ = _registered(client, clock, "rules")
    tag = client.get(f"/{did}/data").headers["etag"]
    headers = {"If-None-Match": if_none_match.format(tag=tag, strong=tag[2:])}
    if cache_control is not None:
        headers["Cache-Control"] = cache_control
    answer = client.get(f"/{did}/data", headers=headers)
    assert answer.status_code == expected
    assert (answer.content == b"") == (expected == 304)


def test_errors_are_never_not_modified(client: TestClient) -> None:
    missing = "did:plc:" + "a" * 24
    for suffix in READS:
        answer = client.get(f"/{missing}{suffix}", headers={"If-None-Match": "*"})
        assert answer.status_code == 404
        assert answer.json() == {"message": f"DID not registered: {missing}"}
        assert "etag" not in answer.headers
    assert client.get("/export?count=0", headers={"If-None-Match": "*"}).status_code == 400


def test_export_pages_are_tagged(client: TestClient, clock: Clock) -> None:
    _registered(client, clock, "export")
    for query in ("after=0", "after=1", ""):
        page = client.get(f"/export?{query}")
        assert page.status_code == 200
        assert page.headers["etag"] == _express_etag(page.content)
        again = client.get(f"/export?{query}", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""
    _registered(client, clock, "export2")
    grown = client.get("/export?after=0", headers={"If-None-Match": page.headers["etag"]})
    assert grown.status_code == 200
    assert grown.content.count(b"\n") == 1


def test_over_http_head_and_get(live_server: LiveServer) -> None:
    """Through uvicorn: the 304 has no body and the connection stays usable; HEAD (served by
    FastAPI's routes, not the fast path) tags and revalidates the same way."""
    did, genesis, _ = new_did("overhttp")
    with httpx.Client(base_url=live_server.url) as http:
        assert http.post(f"/{did}", json=genesis).status_code == 200
        for suffix in READS:
            got = http.get(f"/{did}{suffix}")
            head = http.head(f"/{did}{suffix}")
            assert head.status_code == 200
            assert head.headers["etag"] == got.headers["etag"] == _express_etag(got.content)
            tag = {"If-None-Match": got.headers["etag"]}
            for method in ("GET", "HEAD"):
                answer = http.request(method, f"/{did}{suffix}", headers=tag)
                assert answer.status_code == 304, (method, suffix)
                assert answer.content == b""
                assert "content-length" not in answer.headers
        assert http.get(f"/{did}/log/last").json() == genesis


@given(st.lists(st.binary(max_size=40), max_size=4), st.binary(max_size=200))
def test_header_parsing_never_raises(values: list[bytes], body: bytes) -> None:
    etag = weak_etag(body)
    headers = [(b"if-none-match", value) for value in values] + [(b"cache-control", b"x")]
    if_none_match, cache_control = conditional_headers(headers)
    fresh = is_fresh(if_none_match, cache_control, etag)
    named = any(
        part.strip() in (etag, etag[2:], b"*") for value in values for part in value.split(b",")
    )
    assert fresh == named
