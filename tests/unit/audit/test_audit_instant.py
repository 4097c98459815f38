"""The time filters of ``query`` and ``serve``: RFC 3339 instants with a zone, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from audit_sink.query import InstantError, parse_instant
from hypothesis import given
from hypothesis import strategies as st


def test_no_filter_is_none() -> None:
    assert parse_instant(None) is None


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(9999, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
        ),
    )
)
def test_an_instant_with_a_zone_is_read_as_that_instant(moment: datetime) -> None:
    assert parse_instant(moment.isoformat()) == moment
    assert parse_instant(moment.astimezone(UTC).isoformat().replace("+00:00", "Z")) == moment


@pytest.mark.parametrize("text", ["2026-11-01T00:00:00", "2026-11-01"])
def test_an_instant_without_a_zone_is_refused(text: str) -> None:
    with pytest.raises(InstantError, match="needs a time zone"):
        parse_instant(text)


@pytest.mark.parametrize("text", ["yesterday", "", "2026-13-01T00:00:00Z", "1793534400"])
def test_what_is_not_an_instant_is_refused(text: str) -> None:
    with pytest.raises(InstantError, match="is not an RFC 3339 instant"):
        parse_instant(text)
