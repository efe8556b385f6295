"""ResolutionCache: positive and negative TTLs, LRU bound, refresh bypass (fake clock)."""

from __future__ import annotations

import pytest

from plc.resolve import ResolutionCache
from tests.resolve.conftest import FakeClock


def make(clock: FakeClock, max_entries: int = 10) -> ResolutionCache[str, str]:
    return ResolutionCache(ttl_s=60, negative_ttl_s=5, max_entries=max_entries, clock=clock)


def test_positive_entry_lives_for_its_ttl() -> None:
    clock = FakeClock()
    cache = make(clock)
    cache.put("alice.test", "did:plc:x")
    clock.advance(59.9)
    entry = cache.get("alice.test")
    assert entry is not None and entry.value == "did:plc:x" and not entry.negative
    clock.advance(0.1)
    assert cache.get("alice.test") is None
    assert len(cache) == 0  # dropped on lookup


def test_negative_entry_has_its_own_ttl() -> None:
    clock = FakeClock()
    cache = make(clock)
    cache.put("nobody.test", "no record", negative=True)
    clock.advance(4.9)
    entry = cache.get("nobody.test")
    assert entry is not None and entry.negative and entry.value == "no record"
    clock.advance(0.1)
    assert cache.get("nobody.test") is None


def test_refresh_bypasses_and_put_overwrites() -> None:
    clock = FakeClock()
    cache = make(clock)
    cache.put("alice.test", "old", negative=True)
    assert cache.get("alice.test", refresh=True) is None
    cache.put("alice.test", "new")
    entry = cache.get("alice.test")
    assert entry is not None and entry.value == "new" and not entry.negative


def test_lru_eviction_keeps_recently_used() -> None:
    clock = FakeClock()
    cache = make(clock, max_entries=3)
    for key in ("a", "b", "c"):
        cache.put(key, key)
    assert cache.get("a") is not None  # a is now most recent
    cache.put("d", "d")  # evicts b
    assert cache.get("b") is None
    assert [k for k in ("a", "c", "d") if cache.get(k) is not None] == ["a", "c", "d"]
    assert len(cache) == 3


def test_zero_ttl_disables_caching() -> None:
    clock = FakeClock()
    cache: ResolutionCache[str, str] = ResolutionCache(0, 0, 10, clock)
    cache.put("a", "x")
    cache.put("b", "y", negative=True)
    assert cache.get("a") is None and cache.get("b") is None


def test_invalidate_and_clear() -> None:
    cache = make(FakeClock())
    cache.put("a", "x")
    cache.put("b", "y")
    cache.invalidate("a")
    cache.invalidate("missing")
    assert cache.get("a") is None and cache.get("b") is not None
    cache.clear()
    assert len(cache) == 0


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        make(FakeClock(), max_entries=0)


def test_weighed_cache_keeps_its_total_under_the_limit() -> None:
    clock = FakeClock()
    cache: ResolutionCache[str, bytes] = ResolutionCache(
        10, 10, 100, clock, weigh=len, max_weight=10
    )
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    cache.put("c", b"1234")  # 12 > 10: "a", the least recently used, goes
    assert cache.get("a") is None and cache.weight == 8
    cache.put("b", b"12")  # replacing an entry replaces its weight
    assert cache.weight == 6
    cache.put("huge", b"x" * 11)  # heavier than the whole cache: not stored, nothing evicted
    assert cache.get("huge") is None and cache.weight == 6 and len(cache) == 2
    clock.advance(11)
    assert cache.get("b") is None and cache.weight == 4  # expiry frees its weight
    cache.clear()
    assert cache.weight == 0
