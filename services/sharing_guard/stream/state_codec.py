"""Bytes for governance state records, as the local store and the changelogs keep them.

Compact JSON: timestamps as epoch milliseconds, sets as sorted lists, enums by value.
Decoding is strict: a changelog record that does not parse is a fault, not a default.
"""

import json
from dataclasses import fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sharing_guard.contract.decision import Decision
from sharing_guard.contract.enums import (
    ConsentStatus,
    DataCategory,
    OrderType,
    Purpose,
    RecipientType,
)
from sharing_guard.core.state import (
    ConsentState,
    OrderState,
    RecipientState,
    RightsState,
    StateRecord,
    StateTable,
)

_TYPES: dict[StateTable, type[StateRecord]] = {
    StateTable.CONSENTS: ConsentState,
    StateTable.RECIPIENTS: RecipientState,
    StateTable.RIGHTS: RightsState,
    StateTable.ORDERS: OrderState,
}
_DATETIMES = {"granted_since", "valid_from", "valid_until"}
_ENUMS: dict[str, type[StrEnum]] = {
    "status": ConsentStatus,
    "recipient_type": RecipientType,
    "order_type": OrderType,
}
_SETS: dict[str, type[StrEnum] | None] = {
    "permitted_purposes": Purpose,
    "data_categories": DataCategory,
    "account_ids": None,
}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, frozenset):
        return sorted(value)
    return value


def encode_state(record: StateRecord) -> bytes:
    """One state record as compact JSON bytes."""
    body = {f.name: _plain(getattr(record, f.name)) for f in fields(record)}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def _typed(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _DATETIMES:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if name in _ENUMS:
        return _ENUMS[name](value)
    if name in _SETS:
        kind = _SETS[name]
        return frozenset(kind(v) for v in value) if kind else frozenset(value)
    return value


def decode_state(table: StateTable, data: bytes) -> StateRecord:
    """The record of ``table`` encoded in ``data``; raises ``ValueError`` if malformed."""
    try:
        body = json.loads(data)
        return _TYPES[table](**{k: _typed(k, v) for k, v in body.items()})
    except (TypeError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed {table.value} state record") from exc


def encode_decision(decision: Decision) -> bytes:
    """A decision as JSON bytes, for the idempotency table."""
    return decision.model_dump_json().encode()


def decode_decision(data: bytes) -> Decision:
    """A decision stored by :func:`encode_decision`."""
    return Decision.model_validate_json(data)
