"""``format_timestamp`` field by field, and ``parse_timestamp_ms`` (the auditor's fast path):
it accepts exactly what ``parse_timestamp`` accepts and gives the same instant in ms;
``parse_timestamp_lenient`` (``/export?after=``) on RFC 2822 and on any text."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plc.errors import InvalidInput
from plc.timestamps import (
    format_timestamp,
    parse_timestamp,
    parse_timestamp_lenient,
    parse_timestamp_ms,
    to_ms,
)

moments = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999000)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC))


@given(moments)
def test_same_milliseconds_as_the_datetime_parser(moment: datetime) -> None:
    text = format_timestamp(moment)
    assert parse_timestamp_ms(text) == to_ms(parse_timestamp(text)) == to_ms(moment)


def _accepts(parse: object, text: object) -> bool:
    try:
        parse(text)  # type: ignore[operator]
    except InvalidInput:
        return False
    return True


digits = st.text("0123456789", min_size=2, max_size=2)


@given(
    st.tuples(st.text("0123456789", min_size=4, max_size=4), digits, digits, digits, digits).map(
        lambda p: f"{p[0]}-{p[1]}-{p[2]}T{p[3]}:{p[4]}:59.000Z"
    )
    | st.text(max_size=30)
)
def test_same_acceptance(text: str) -> None:
    assert _accepts(parse_timestamp_ms, text) == _accepts(parse_timestamp, text)


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-29T00:00:00.000Z",  # not a leap year
        "2024-01-01T24:00:00.000Z",
        "2024-01-01T00:60:00.000Z",
        "2024-01-01T00:00:60.000Z",  # no leap seconds
        "2024-00-01T00:00:00.000Z",
        "0000-01-01T00:00:00.000Z",
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00.000+00:00",
        "2024-01-01T00:00:00.000z",
        "٢٠٢٤-01-01T00:00:00.000Z",  # non-ASCII digits
        "",
        None,
        1704067200000,
    ],
)
def test_refused(text: object) -> None:
    with pytest.raises(InvalidInput):
        parse_timestamp_ms(text)  # type: ignore[arg-type]


_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11, seconds=7))]
)


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=_ZONES)
)
def test_format_timestamp_field_by_field(moment: datetime) -> None:
    utc = moment.astimezone(UTC)
    expected = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )
    assert format_timestamp(moment) == expected


def test_format_timestamp_examples() -> None:
    assert format_timestamp(datetime(2024, 2, 22, 1, 2, 3, 4999, tzinfo=UTC)) == (
        "2024-02-22T01:02:03.004Z"
    )
    assert format_timestamp(datetime(999, 1, 1, tzinfo=UTC)) == "0999-01-01T00:00:00.000Z"
    india = timezone(timedelta(hours=5, minutes=30))
    assert format_timestamp(datetime(2024, 1, 1, 5, 30, tzinfo=india)) == (
        "2024-01-01T00:00:00.000Z"
    )


@given(moments.filter(lambda m: m.year >= 100))
def test_rfc_2822_as_javascript_writes_it_reads_back_as_the_same_second(moment: datetime) -> None:
    # what Date.prototype.toUTCString() writes: the moment to the second, GMT (years below
    # 100 are read as 19xx/20xx, RFC 2822 §4.3's obsolete two-digit years)
    written = format_datetime(moment.astimezone(UTC), usegmt=True)
    assert parse_timestamp_lenient(written) == moment.astimezone(UTC).replace(microsecond=0)


def test_rfc_2822_zones_and_what_is_refused() -> None:
    as_utc = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
    assert parse_timestamp_lenient("Wed, 01 Jan 2025 10:00:00 +0200") == as_utc
    assert parse_timestamp_lenient("01 Jan 2025 08:00:00 -0000") == as_utc  # no zone: UTC
    assert parse_timestamp_lenient(" Wed, 01 Jan 2025 08:00:00 GMT ") == as_utc
    # engine-specific forms of JavaScript's Date, and impossible dates, stay refused
    for text in ("Jan 1 2025", "2025/01/01", "Wed, 01 Jan 2025", "Tue, 31 Feb 2025 00:00 GMT"):
        with pytest.raises(InvalidInput):
            parse_timestamp_lenient(text)


@given(st.text(max_size=60))
def test_lenient_parsing_refuses_anything_else_with_invalid_input(text: str) -> None:
    try:
        moment = parse_timestamp_lenient(text)
    except InvalidInput:
        return
    assert moment.tzinfo is UTC


# What node 20's `new Date(text).toISOString()` gives (NaN: an invalid date), for the forms of
# ECMA-262's date-time string format; a moment outside years 1-9999 is clamped here.
_NODE_20 = {
    "2026-11-30T10:00": "2026-11-30T10:00:00.000Z",
    "2026-11-30T24:00:00Z": "2026-12-01T00:00:00.000Z",
    "2026-11-30T24:00": "2026-12-01T00:00:00.000Z",
    "2026-11-30T24:00:01Z": None,
    "+002026-11-30T00:00:00Z": "2026-11-30T00:00:00.000Z",
    "+275760-09-13T00:00:00.000Z": "9999-12-31T23:59:59.999Z",  # JS: +275760-09-13T00:00Z
    "+275760-09-13T00:00:00.001Z": None,  # past ECMAScript's last moment
    "-000001-01-01T00:00:00Z": "0001-01-01T00:00:00.000Z",  # JS: -000001-01-01T00:00Z
    "-271821-04-20T00:00:00Z": "0001-01-01T00:00:00.000Z",  # ECMAScript's first moment
    "-271821-04-19T23:59:59.999Z": None,
    "-000000-01-01T00:00:00Z": None,
    "0000-01-01": "0001-01-01T00:00:00.000Z",  # JS: 0000-01-01T00:00Z
    "2026-11-30T10:00:00.123456789Z": "2026-11-30T10:00:00.123Z",
    "2026-11-30T23:59:59.9999Z": "2026-11-30T23:59:59.999Z",
    "2026-11-30T10:00:00+23:59": "2026-11-29T10:01:00.000Z",
    "2026-11-30T10:00:00+24:00": None,
    "2026-11-30T10:00:60Z": None,
    "2026-11-30T10Z": None,
    "2024-02-29": "2024-02-29T00:00:00.000Z",
    "2023-02-29": "2023-03-01T00:00:00.000Z",  # V8 rolls days 29-31 over
    "2025-02-31": "2025-03-03T00:00:00.000Z",
    "2025-04-31": "2025-05-01T00:00:00.000Z",
    "2025-02-29T10:00Z": "2025-03-01T10:00:00.000Z",
    "2025-02-32": None,
    "2025-13-01": None,
    "2025-01-00": None,
    "2025-01-01Z": "2025-01-01T00:00:00.000Z",  # Z after a date alone: read
    "2025Z": "2025-01-01T00:00:00.000Z",
    "2025-01-01+01:00": None,  # an offset after a date alone: invalid
    "2025+01:00": None,
    "2025-01-01T10:00+0100": "2025-01-01T09:00:00.000Z",
    "2025-01-01T10+01:00": None,
}


@pytest.mark.parametrize(("text", "expected"), _NODE_20.items())
def test_ecmascript_date_time_strings_read_as_node_reads_them(
    text: str, expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(InvalidInput):
            parse_timestamp_lenient(text)
    else:
        assert format_timestamp(parse_timestamp_lenient(text)) == expected


@given(moments, st.sampled_from(["Z", "+00:00", "-0000", ""]))
def test_an_expanded_year_is_the_same_moment(moment: datetime, zone: str) -> None:
    plain = format_timestamp(moment)[:-1]
    expanded = f"+00{plain}"
    assert parse_timestamp_lenient(expanded + zone) == parse_timestamp_lenient(plain + zone)
    assert parse_timestamp_lenient(plain + zone) == moment


@given(st.integers(min_value=-300_000, max_value=300_000), st.integers(1, 12), st.integers(1, 31))
def test_days_far_from_now_are_counted_as_the_proleptic_calendar_does(
    year: int, month: int, day: int
) -> None:
    # Years 1-9999 against Python's calendar, others by the 400-year cycle (146,097 days);
    # a day past the month's end counts on into the next month, as V8 reads it.
    from plc.timestamps import _days_from_civil

    cycles, base = divmod(year - 1, 400)
    first = date(base + 1, month, 1).toordinal() - date(1970, 1, 1).toordinal()
    assert _days_from_civil(year, month, day) == first + day - 1 + cycles * 146_097
