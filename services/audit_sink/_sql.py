"""SQL fragments shared by the SQLite and PostgreSQL adapters (private, pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from audit_sink.store import AppendRows, RecordFilter, RecordRow, TopicPartition

APPENDED_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "leaves": ("idx", "leaf", "leaf_hash"),
    "payloads": ("idx", "key_id", "account_tag", "sealed"),
    "records": (
        "idx",
        "audit_id",
        "kind",
        "event_id",
        "recipient_id",
        "order_ref",
        "outcome",
        "occurred_at",
        "reason_codes",
        "content_mac",
    ),
    "sources": ("topic", "part", "off", "content_mac", "idx"),
    "erased": ("idx", "erasure_idx"),
}
"""The columns an append writes, per table, in the order of :func:`appended_rows`."""

PG_COPY_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    "leaves": ("int8", "bytea", "bytea"),
    "payloads": ("int8", "text", "bytea", "bytea"),
    "records": ("int8", "text", "text", "text", "text", "text", "text", "int8", "text", "bytea"),
    "sources": ("text", "int4", "int8", "bytea", "int8"),
    "erased": ("int8", "int8"),
}
"""The PostgreSQL types of each table's appended columns (:data:`APPENDED_COLUMNS`)."""

RECORD_COLUMNS: Final = ", ".join(APPENDED_COLUMNS["records"])


def appended_rows(rows: AppendRows) -> list[tuple[str, Sequence[tuple[Any, ...]]]]:
    """Each table an append writes (in insertion order) with its rows' column values."""
    return [
        ("leaves", rows.leaves),
        ("payloads", rows.payloads),
        ("records", rows.records),
        ("sources", rows.sources),
        ("erased", rows.erased),
    ]


def insert_sql(table: str, mark: str) -> str:
    """``INSERT`` of one row of ``table``'s appended columns (``mark``: the placeholder)."""
    columns = APPENDED_COLUMNS[table]
    return f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


def save_positions_sql(mark: str) -> str:
    """Upsert of a partition's next offset (both dialects spell it the same)."""
    return (
        f"INSERT INTO positions(topic, part, next_offset) VALUES ({mark}, {mark}, {mark}) "
        "ON CONFLICT (topic, part) DO UPDATE SET next_offset = excluded.next_offset"
    )


def position_rows(positions: Mapping[TopicPartition, int]) -> list[tuple[str, int, int]]:
    """The parameters of :func:`save_positions_sql`, one tuple per partition."""
    return [(topic, part, offset) for (topic, part), offset in positions.items()]


def record_row(row: tuple[Any, ...]) -> RecordRow:
    """A :class:`RecordRow` from a ``SELECT {RECORD_COLUMNS}`` row."""
    return RecordRow(
        index=row[0],
        audit_id=row[1],
        kind=row[2],
        event_id=row[3],
        recipient_id=row[4],
        order_ref=row[5],
        outcome=row[6],
        occurred_at=row[7],
        reason_codes=row[8],
        content_mac=bytes(row[9]),
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
