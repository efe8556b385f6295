"""UTC timestamps as did:plc writes them: ``YYYY-MM-DDTHH:MM:SS.sssZ`` (JS ``toISOString``).

Every timestamp in this project is an aware UTC ``datetime`` with millisecond precision.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache

from plc.errors import InvalidInput, echo

ONE_MS = timedelta(milliseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# [0-9], not \d: \d also matches non-ASCII digits, which the spec's form does not allow.
_STRICT_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{3})Z"
)


def format_timestamp(moment: datetime) -> str:
    """``2024-02-22T01:02:03.004Z`` for an aware datetime (converted to UTC, cut to ms).

    ``isoformat`` (one C call; it runs for every committed op) pads the year to four digits
    and cuts to milliseconds as JS ``toISOString`` does; strftime's %Y does not pad years
    before 1000 on glibc.
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


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


@lru_cache(maxsize=4096)
def _epoch_day_ms(year: int, month: int, day: int) -> int:
    """Milliseconds from the epoch to 00:00 UTC of a calendar day; ValueError if no such day."""
    return (date(year, month, day).toordinal() - _EPOCH_ORDINAL) * 86_400_000


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def parse_timestamp_ms(text: str) -> int:
    """Parse the strict ``YYYY-MM-DDTHH:MM:SS.sssZ`` form straight to milliseconds since the
    Unix epoch: the same acceptance as :func:`parse_timestamp` (hours 0-23, minutes and
    seconds 0-59, real calendar days) at a fraction of the cost, for replaying millions of
    export lines. ``parse_timestamp_ms(t) == to_ms(parse_timestamp(t))`` for every accepted
    ``t`` (tested).

    Raises:
        InvalidInput: any other form.
    """
    match = _STRICT_RE.fullmatch(text) if isinstance(text, str) else None
    if match is not None:
        year, month, day, hour, minute, second, ms = match.groups()
        h, m, sec = int(hour), int(minute), int(second)
        if h < 24 and m < 60 and sec < 60:
            try:
                day_ms = _epoch_day_ms(int(year), int(month), int(day))
            except ValueError:
                pass
            else:
                return day_ms + ((h * 60 + m) * 60 + sec) * 1000 + int(ms)
    raise InvalidInput(f"Invalid timestamp: {echo(text)}")


_YEAR_MONTH_RE = re.compile(r"[0-9]{4}-[0-9]{2}")
_JS_ISO_RE = re.compile(
    r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?"
    r"([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?",
    re.ASCII,
)
"""The ISO 8601 forms ECMAScript's ``Date`` reads (date, optional time, optional zone):
Python's ``fromisoformat`` also reads week dates, ordinal dates, the basic format and comma
fractions, and stops at a NUL, none of which ``new Date()`` takes."""


def _rfc_2822(text: str) -> datetime | None:
    """An RFC 2822 date-time (``Wed, 01 Jan 2025 00:00:00 GMT``, what JavaScript's
    ``toUTCString`` writes and ``new Date()`` reads back) in UTC, or None. No zone
    (``-0000``) is UTC."""
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None


def parse_timestamp_lenient(text: str) -> datetime:
    """Parse an ISO 8601 date (``YYYY-MM-DD`` or ``YYYY-MM``) or date-time, or an RFC 2822
    date-time (RFC 2822 §3.3: ``Wed, 01 Jan 2025 00:00:00 GMT``), the way ``/export?after=``
    accepts it (naive → UTC). These are the forms JavaScript's ``new Date()`` reads on every
    engine (ECMA-262 §21.4.3.2, and what its ``toUTCString`` writes), which the reference
    uses; its engine-specific fallbacks (``Jan 1 2025``, ``2025/01/01``) are refused.

    A moment whose UTC offset carries it outside Python's years 1-9999 (``0001-01-01T00:00+14:00``)
    is clamped to the first or last representable moment: JavaScript's ``Date`` reads those
    fine, and every op lies after the one and before the other.

    Raises:
        InvalidInput: neither an ISO 8601 date/date-time nor an RFC 2822 date-time.
    """
    candidate = text.strip()
    if not _JS_ISO_RE.fullmatch(candidate):
        moment = _rfc_2822(candidate)
        if moment is None:
            raise InvalidInput(f"Invalid timestamp: {echo(text)}")
        return moment
    if _YEAR_MONTH_RE.fullmatch(candidate):
        candidate += "-01"  # ECMAScript's date-only forms include YYYY-MM (the 1st, UTC)
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError as exc:
        raise InvalidInput(f"Invalid timestamp: {echo(text)}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # Only an offset can overflow: a positive one pushes before year 1, a negative one
        # past year 9999.
        offset = moment.utcoffset()
        early = offset is not None and offset > timedelta(0)
        return (datetime.min if early else datetime.max).replace(tzinfo=UTC)


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
