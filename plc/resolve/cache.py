"""A bounded LRU cache with separate positive and negative TTLs (issue 5, "Caching").

Used by the resolver for handle -> DID answers and did:web documents. Not thread-safe: it is
meant for one asyncio event loop, where no ``await`` happens inside its methods. The clock is
injectable (seconds, monotonic) so tests can move time without sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Clock = Callable[[], float]
"""Returns seconds from an arbitrary fixed origin; must never go backwards."""


@dataclass(frozen=True, slots=True)
class CacheEntry(Generic[V]):
    """One cached answer: ``value``, whether it is ``negative``, ``expires_at`` (clock s)."""

    value: V
    negative: bool
    expires_at: float


class ResolutionCache(Generic[K, V]):
    """LRU map ``K -> V`` whose entries expire after ``ttl_s`` (positive) or ``negative_ttl_s``.

    Args:
        ttl_s: lifetime of a positive answer, seconds (0 disables caching it).
        negative_ttl_s: lifetime of a negative answer, seconds (0 disables caching it).
        max_entries: capacity; inserting beyond it evicts the least recently used entry.
        clock: monotonic seconds; defaults to :func:`time.monotonic`.
        weigh: the size of a value (e.g. its bytes); with ``max_weight``, least recently used
            entries are evicted until the total is at most ``max_weight``, and a value heavier
            than that on its own is not stored.
        max_weight: the most total weight kept (None: no limit).
    """

    def __init__(
        self,
        ttl_s: float,
        negative_ttl_s: float,
        max_entries: int,
        clock: Clock = time.monotonic,
        *,
        weigh: Callable[[V], int] | None = None,
        max_weight: int | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, CacheEntry[V]] = OrderedDict()
        self._weigh = weigh if max_weight is not None else None
        self._max_weight = max_weight
        self._weights: dict[K, int] = {}
        self.weight = 0
        """Total weight of the stored entries (0 without ``weigh``)."""

    def get(self, key: K, *, refresh: bool = False) -> CacheEntry[V] | None:
        """Return the live entry for ``key`` and mark it recently used, or ``None``.

        ``refresh=True`` bypasses the cache (returns ``None``) so the caller looks the value up
        again and overwrites it with :meth:`put`. An expired entry is dropped.
        """
        if refresh:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self.invalidate(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: K, value: V, *, negative: bool = False) -> None:
        """Store ``value`` for ``key`` with the positive or negative TTL, evicting LRU entries.

        A zero TTL removes any existing entry instead of storing.
        """
        ttl_s = self._negative_ttl_s if negative else self._ttl_s
        self.invalidate(key)
        if ttl_s <= 0:
            return
        if self._weigh is not None:
            assert self._max_weight is not None
            weight = self._weigh(value)
            if weight > self._max_weight:
                return
            self._weights[key] = weight
            self.weight += weight
        self._entries[key] = CacheEntry(value, negative, self._clock() + ttl_s)
        while len(self._entries) > self._max_entries or (
            self._max_weight is not None and self.weight > self._max_weight
        ):
            self.invalidate(next(iter(self._entries)))

    def invalidate(self, key: K) -> None:
        """Forget ``key`` (no error if absent)."""
        self._entries.pop(key, None)
        self.weight -= self._weights.pop(key, 0)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self._weights.clear()
        self.weight = 0

    def __len__(self) -> int:
        """Number of stored entries, expired ones included until they are next looked up."""
        return len(self._entries)
