"""Constrained field types shared by the contract models.

Timestamps are normalised to UTC with millisecond precision on the way in, so the JSON
form and the Avro form (``timestamp-millis``) of an event always compare equal and a
decision never depends on which form an event arrived in.
"""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, PlainSerializer


def _not_a_number(value: object) -> object:
    """Refuse epoch numbers: the contract's JSON form is an RFC 3339 string with a zone."""
    if isinstance(value, int | float) or (
        isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit()
    ):
        raise ValueError("must be an RFC 3339 timestamp with a zone, not a number")
    return value


def _to_utc_millis(value: datetime) -> datetime:
    try:
        value = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("timestamp is outside the representable UTC range") from exc
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def format_timestamp(value: datetime) -> str:
    """Render as RFC 3339 in UTC with milliseconds, e.g. ``2026-01-02T03:04:05.678Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_not_a_number),
    AfterValidator(_to_utc_millis),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]
"""An instant with a zone, kept as UTC milliseconds; JSON renders it as RFC 3339."""

Identifier = Annotated[str, Field(min_length=1, max_length=256)]
"""An opaque, non-empty id (event, account, recipient, order, officer...)."""

CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
"""ISO 3166-1 alpha-2 country code, upper case."""

AVRO_INT_MAX = 2**31 - 1
AVRO_LONG_MAX = 2**63 - 1
