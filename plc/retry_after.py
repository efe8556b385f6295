"""``Retry-After`` of an answer that asks to wait (RFC 9110 §10.2.3), for the clients that
page through a directory (``plc import``, the auditor). Pure: no I/O, no clock."""

from __future__ import annotations

MAX_RETRY_AFTER_S = 600.0
"""Longest ``Retry-After`` waited for, seconds (plc.directory's rate-limit window is 5
minutes)."""


def retry_after_seconds(
    status: int, value: str | None, cap: float = MAX_RETRY_AFTER_S
) -> float | None:
    """The delay-seconds form of ``Retry-After`` on a 429 or 503, capped at ``cap``.

    Args:
        status: the answer's HTTP status.
        value: the header's value, or None when absent.
        cap: the longest wait returned, seconds.

    Returns:
        Seconds, or None: another status, no header, or a value that is not ASCII digits
        (an HTTP-date included; "²" is a digit to ``str.isdigit`` but no number).
    """
    if status not in (429, 503) or value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return min(float(text), cap)
