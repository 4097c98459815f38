"""SQL fragments shared by the SQLite and PostgreSQL adapters (private, pure)."""

from __future__ import annotations

from typing import Any

from audit_sink.store import RecordFilter

RECORD_COLUMNS = (
    "idx, audit_id, kind, event_id, recipient_id, order_ref, outcome, occurred_at, "
    "reason_codes, content_mac"
)


def record_filter(criteria: RecordFilter, mark: str, contains: str) -> tuple[list[str], list[Any]]:
    """WHERE clauses and parameters for the criteria (indices and limit excepted).

    ``mark`` is the dialect's placeholder (``?`` or ``%s``); ``contains`` is the dialect's
    substring test with ``{column}`` and ``{mark}`` fields (e.g. ``instr({column}, {mark}) > 0``).
    """
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("recipient_id", criteria.recipient_id),
        ("outcome", criteria.outcome),
        ("order_ref", criteria.order_ref),
        ("event_id", criteria.event_id),
    ):
        if value is not None:
            where.append(f"{column} = {mark}")
            params.append(value)
    if criteria.reason_code is not None:
        where.append(contains.format(column="reason_codes", mark=mark))
        params.append(f",{criteria.reason_code},")
    if criteria.occurred_from is not None:
        where.append(f"occurred_at >= {mark}")
        params.append(criteria.occurred_from)
    if criteria.occurred_to is not None:
        where.append(f"occurred_at < {mark}")
        params.append(criteria.occurred_to)
    return where, params
