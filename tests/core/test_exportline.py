"""The export line's timestamp text: the same as plc.timestamps.format_timestamp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from plc.exportline import timestamp_text
from plc.timestamps import format_timestamp

_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11, seconds=7))]
)


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=_ZONES)
)
def test_timestamp_text_is_format_timestamp(moment: datetime) -> None:
    assert timestamp_text(moment) == format_timestamp(moment)


def test_timestamp_text_examples() -> None:
    assert timestamp_text(datetime(2024, 2, 22, 1, 2, 3, 4999, tzinfo=UTC)) == (
        "2024-02-22T01:02:03.004Z"
    )
    assert timestamp_text(datetime(999, 1, 1, tzinfo=UTC)) == "0999-01-01T00:00:00.000Z"
    india = timezone(timedelta(hours=5, minutes=30))
    assert timestamp_text(datetime(2024, 1, 1, 5, 30, tzinfo=india)) == "2024-01-01T00:00:00.000Z"
