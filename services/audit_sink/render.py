"""Rendering query results for people and tools: a table, JSON Lines or CSV (pure)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Final

from audit_sink.query import EntryView

__all__ = ["FORMATS", "render"]

FORMATS: Final = ("table", "jsonl", "csv")
_CSV_FIELDS: Final = (
    "index",
    "kind",
    "audit_id",
    "event_id",
    "event_type",
    "occurred_at",
    "personal",
    "account_id",
    "recipient_id",
    "order_ref",
    "actor",
    "outcome",
    "reasons",
    "policy_version",
    "event_json",
)
_TABLE: Final = (
    ("index", 7),
    ("occurred_at", 24),
    ("kind", 17),
    ("event_id", 20),
    ("outcome", 7),
    ("account_id", 20),
    ("recipient_id", 16),
    ("order_ref", 14),
    ("reasons", 40),
)


def render(views: Sequence[EntryView], fmt: str) -> str:
    """The entries in ``fmt`` (one of :data:`FORMATS`), newline-terminated lines."""
    rows = [view.to_dict() for view in views]
    sharded = any(view.sharded for view in views)
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
    if fmt == "csv":
        out = io.StringIO()
        fields = ("shard", *_CSV_FIELDS) if sharded else _CSV_FIELDS
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "reasons": " ".join(row["reasons"])})
        return out.getvalue()
    if fmt == "table":
        return _table(rows, ((("shard", 5),) if sharded else ()) + _TABLE)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def _cell(value: object, width: int) -> str:
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = "-" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _table(rows: Iterable[dict[str, object]], columns: Sequence[tuple[str, int]]) -> str:
    lines = ["  ".join(name.ljust(width) for name, width in columns).rstrip()]
    lines.extend(
        "  ".join(_cell(row.get(name), width).ljust(width) for name, width in columns).rstrip()
        for row in rows
    )
    return "\n".join(lines) + "\n"
