"""Evidence checks of the two ``createdAt`` classes, ``backdated-op`` and ``future-dated-op``
(part of the standalone checker, like :mod:`auditor.evidence_ops`: standard library,
``orjson`` and the pure core only).

- ``backdated-op``: two lines of one log, the high-water mark with a lower ``seq`` and a
  ``createdAt`` later than the op's by more than the tolerance. The lines carry both their
  ``seq`` and their ``createdAt``, so the claim needs nothing the auditor saw: ``verified``.
- ``future-dated-op``: the op's ``createdAt`` is later, by more than the tolerance, than the
  auditor's clock when it read the line (``observed_at``). The arithmetic is checked, but the
  clock is the auditor's word: ``unverifiable``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from auditor.evidence_ops import VERIFIED, need, own_line, strict_record, unverifiable
from plc.timestamps import parse_timestamp
from plc.tlog.note import Verifier

MAX_TOLERANCE_MS = 10**15
"""The largest ``tolerance_ms`` checked (about 31,700 years, more than any two dates differ)."""


def _tolerance(ev: dict[str, Any]) -> timedelta:
    tolerance = ev["tolerance_ms"]
    need(type(tolerance) is int and tolerance >= 0, "tolerance_ms is not an integer >= 0")
    # A timedelta holds under 10^9 days (8.64e16 ms); no two dates of years 1-9999 are
    # further apart than 3.2e14 ms, so a tolerance beyond that is no tolerance at all.
    need(tolerance <= MAX_TOLERANCE_MS, f"tolerance_ms is larger than {MAX_TOLERANCE_MS}")
    return timedelta(milliseconds=tolerance)


def _backdated(finding: dict[str, Any], ev: dict[str, Any], _vkeys: Sequence[Verifier]) -> str:
    tolerance = _tolerance(ev)
    need(isinstance(ev["high_water_line"], str), "the high-water line is not a string")
    high = strict_record(ev["high_water_line"])
    high_at = parse_timestamp(high["createdAt"])
    record, entry = own_line(finding, ev["line"])
    need(high["seq"] < record["seq"], "the high-water line's seq is not lower than the line's")
    gap = high_at - entry.created_at
    need(
        gap > tolerance,
        f"createdAt goes back {gap.total_seconds() * 1000:.0f} ms, within the tolerance "
        f"of {tolerance.total_seconds() * 1000:.0f} ms",
    )
    return VERIFIED


def _future_dated(finding: dict[str, Any], ev: dict[str, Any], _vkeys: Sequence[Verifier]) -> str:
    tolerance = _tolerance(ev)
    need(isinstance(ev["observed_at"], str), "observed_at is not a string")
    observed_at = parse_timestamp(ev["observed_at"])
    _, entry = own_line(finding, ev["line"])
    ahead = entry.created_at - observed_at
    need(
        ahead > tolerance,
        f"createdAt is {ahead.total_seconds() * 1000:.0f} ms after observed_at, within the "
        f"tolerance of {tolerance.total_seconds() * 1000:.0f} ms",
    )
    return unverifiable("observed_at is the auditor's clock when it read the line")


TIME_CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any], Sequence[Verifier]], str]] = {
    "backdated-op": _backdated,
    "future-dated-op": _future_dated,
}
"""Checks of the ``createdAt`` classes, by class."""
