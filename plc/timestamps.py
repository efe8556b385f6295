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


_JS_ISO_RE = re.compile(
    r"(?P<year>[0-9]{4}|[+-][0-9]{6})(?:-(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2}))?)?"
    r"(?:[Tt ](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})"
    r"(?::(?P<second>[0-9]{2})(?:[.](?P<fraction>[0-9]+))?)?"
    r"(?:[Zz]|(?P<sign>[+-])(?P<zh>[0-9]{2}):?(?P<zm>[0-9]{2}))?"
    r"|[Zz])?",
    re.ASCII,
)
"""ECMAScript's date-time string format (ECMA-262 §21.4.1.32: ``YYYY``, ``YYYY-MM`` or
``YYYY-MM-DD``, an expanded year ``±YYYYYY``, an optional time ``THH:mm``, ``:ss``, ``.sss``
with an optional zone), as node (V8, the reference's engine) reads it: also ``t`` or a space
before the time, ``z``, ``+HHMM``, and ``Z`` after a date alone (an offset there is invalid).
Python's ``fromisoformat`` reads week dates, ordinal dates, the basic format and comma
fractions, none of which ``new Date()`` takes, and no expanded years or ``24:00``."""
_DAY_MS = 86_400_000
_JS_DATE_LIMIT_MS = 8_640_000_000_000_000
"""ECMAScript's time values: at most 10^8 days either side of the epoch (§21.4.1.1)."""
_FIRST_MS = -62_135_596_800_000
"""``0001-01-01T00:00:00Z``, the first moment a ``datetime`` holds."""
_LAST_MS = 253_402_300_799_999
"""``9999-12-31T23:59:59.999Z``, the last millisecond a ``datetime`` holds."""


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date of any year (Howard Hinnant's
    ``days_from_civil``), for years ``date`` does not hold."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _js_iso_ms(text: str) -> int | None:
    """Milliseconds since the epoch of an ECMAScript date-time string (:data:`_JS_ISO_RE`;
    no zone means UTC, as ``/export`` has always read it), or None when node's ``new Date()``
    gives an invalid date for it: a month outside 1-12, a day outside 1-31, hour past 24
    (``24:00`` only as ``24:00:00.000``, the next midnight), minute or second past 59, an
    offset of 24 hours or more, ``-000000``, or a moment outside ECMAScript's range. A day
    past its month's end rolls into the next month, as V8 reads it (``2025-02-30`` is 2
    March). Digits of a fraction past milliseconds are cut."""
    match = _JS_ISO_RE.fullmatch(text)
    if match is None or match["year"] == "-000000":
        return None
    year, month, day = int(match["year"]), int(match["month"] or 1), int(match["day"] or 1)
    hour, minute = int(match["hour"] or 0), int(match["minute"] or 0)
    second, fraction = int(match["second"] or 0), match["fraction"] or ""
    ms = int(fraction[:3].ljust(3, "0"))
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        return None
    if minute > 59 or second > 59 or hour > 24 or (hour == 24 and (minute or second or ms)):
        return None
    moment = _days_from_civil(year, month, day) * _DAY_MS
    moment += ((hour * 60 + minute) * 60 + second) * 1000 + ms
    if match["sign"]:
        zone_hours, zone_minutes = int(match["zh"]), int(match["zm"])
        if zone_hours > 23 or zone_minutes > 59:
            return None
        offset_ms = (zone_hours * 60 + zone_minutes) * 60_000
        moment += -offset_ms if match["sign"] == "+" else offset_ms
    return moment if abs(moment) <= _JS_DATE_LIMIT_MS else None


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
    """Parse an ECMAScript date-time string (ECMA-262 §21.4.1.32: ``YYYY-MM-DD``, ``YYYY-MM``,
    ``YYYY``, expanded years, with or without a time and a zone; no zone → UTC) or an RFC 2822
    date-time (RFC 2822 §3.3: ``Wed, 01 Jan 2025 00:00:00 GMT``), the way ``/export?after=``
    accepts it. These are the forms JavaScript's ``new Date()`` reads on every engine (and
    what its ``toUTCString`` writes), read as node reads them, which the reference runs on;
    its engine-specific fallbacks (``Jan 1 2025``, ``2025/01/01``) are refused.

    Returns an aware UTC datetime, cut to the millisecond. A moment outside Python's years
    1-9999 (``+012026-01-01``, ``-000001-01-01``, ``0001-01-01T00:00+14:00``) is clamped to the
    first or last representable moment: JavaScript's ``Date`` reads those, and every op lies
    after the one and before the other.

    Raises:
        InvalidInput: neither form, or a moment ``new Date()`` reads as an invalid date.
    """
    candidate = text.strip()
    if _JS_ISO_RE.fullmatch(candidate) is None:
        moment = _rfc_2822(candidate)
        if moment is None:
            raise InvalidInput(f"Invalid timestamp: {echo(text)}")
        return moment
    ms = _js_iso_ms(candidate)
    if ms is None:
        raise InvalidInput(f"Invalid timestamp: {echo(text)}")
    return from_ms(min(max(ms, _FIRST_MS), _LAST_MS))


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
