"""UTC timestamps as did:plc writes them: ``YYYY-MM-DDTHH:MM:SS.sssZ`` (JS ``toISOString``).

Every timestamp in this project is an aware UTC ``datetime`` with millisecond precision.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from plc.errors import InvalidInput, echo

ONE_MS = timedelta(milliseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STRICT_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z")


def format_timestamp(moment: datetime) -> str:
    """``2024-02-22T01:02:03.004Z`` for an aware datetime (converted to UTC, cut to ms)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    """Parse exactly the ``YYYY-MM-DDTHH:MM:SS.sssZ`` form into an aware UTC datetime.

    Raises:
        InvalidInput: any other form.
    """
    match = _STRICT_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput(f"Invalid timestamp: {echo(text)}")
    year, month, day, hour, minute, second, ms = (int(g) for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, ms * 1000, tzinfo=UTC)
    except ValueError as exc:
        raise InvalidInput(f"Invalid timestamp: {echo(text)}") from exc


def parse_timestamp_lenient(text: str) -> datetime:
    """Parse an ISO 8601 date or date-time the way ``/export?after=`` accepts it (naive → UTC).

    Raises:
        InvalidInput: not an ISO 8601 date/date-time.
    """
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError as exc:
        raise InvalidInput(f"Invalid timestamp: {echo(text)}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def truncate_ms(moment: datetime) -> datetime:
    """``moment`` in UTC with sub-millisecond digits dropped."""
    utc = moment.astimezone(UTC)
    return utc.replace(microsecond=(utc.microsecond // 1000) * 1000)


def to_ms(moment: datetime) -> int:
    """Whole milliseconds since the Unix epoch (floored)."""
    return (moment - EPOCH) // ONE_MS


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime of milliseconds since the Unix epoch."""
    return EPOCH + timedelta(milliseconds=ms)
