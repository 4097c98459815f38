"""The transparency report: law-enforcement orders and disclosures over a period, from the trail.

What it counts (all by the events' own time, ``occurred_at``; the period is ``[from, to)``),
as the trail stood at the end of the period (nothing after ``to`` is read, so the report of
a closed period does not change when run again):

* **orders**: ``OrderRegistered`` records in the period, grouped by authority, jurisdiction,
  order type and their status at the end of the period: ``APPROVED`` (approved by an
  officer other than the one who registered it, not revoked), ``REVOKED`` or ``PENDING``;
* **requests**: the guard's decisions in the period on transfers that named an order
  (``order_ref``), grouped by the order's authority, jurisdiction and type and by outcome:
  ``ALLOW`` is a disclosure, ``BLOCK`` a refused request. A decision whose order was never
  registered is grouped under ``(unregistered)``.

The authority, jurisdiction and order type come from the ``OrderRegistered`` event, kept in
clear in its leaf (an order change names no data subject; see docs/audit-trail.md §1.1);
the decisions' order references and outcomes are clear fields of every record leaf, so the
numbers survive an erasure. A transfer to law enforcement that named no order has no
``order_ref`` and is not counted (its recipient type is sealed with the event).
The report holds counts and the authorities' names only: no account, no event id.

:func:`build_report` and :func:`render_table` are pure; :func:`read_report` reads a
snapshot of the log through the store port (as :mod:`audit_sink.query` does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from sharing_guard.contract.events import OrderRegistered

from audit_sink.leaf import EntryType, LeafFormatError, decode_leaf, millis
from audit_sink.store import LogReader, RecordFilter

__all__ = [
    "UNREGISTERED",
    "OrderGroup",
    "OrderStatus",
    "Period",
    "RequestGroup",
    "TrailRecord",
    "TransparencyReport",
    "build_report",
    "read_report",
    "render_table",
    "trail_record",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNREGISTERED = "(unregistered)"
"""Authority, jurisdiction and type shown for decisions whose order is not in the trail."""
UNREADABLE = "(unreadable)"
"""Shown for an order whose registration event cannot be read back."""


class OrderStatus(StrEnum):
    """An order's status at the end of the period."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REVOKED = "REVOKED"


@dataclass(frozen=True)
class Period:
    """``[start, end)``, both aware instants."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("the period's instants need a time zone")
        if self.end <= self.start:
            raise ValueError("'to' must be later than 'from'")

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


@dataclass(frozen=True)
class TrailRecord:
    """The non-personal fields of one record entry that the report needs."""

    kind: str
    event_type: str
    occurred_at: datetime
    order_ref: str | None
    actor: str | None
    outcome: str | None
    event_json: str | None
    """The event's JSON when kept in clear (order changes), else ``None``."""


@dataclass(frozen=True)
class OrderGroup:
    """How many orders of one authority, jurisdiction, type and status."""

    authority: str
    jurisdiction: str
    order_type: str
    status: OrderStatus
    count: int


@dataclass(frozen=True)
class RequestGroup:
    """How many requests under orders of one authority, jurisdiction and type, by outcome."""

    authority: str
    jurisdiction: str
    order_type: str
    outcome: str
    count: int


@dataclass(frozen=True)
class TransparencyReport:
    """The counts of one period; groups sorted, totals the sums of the groups."""

    period: Period
    orders: tuple[OrderGroup, ...]
    requests: tuple[RequestGroup, ...]
    unreadable: int = 0
    """Entries of the orders concerned that could not be read (run ``verify``)."""

    @property
    def orders_total(self) -> int:
        """Orders registered in the period."""
        return sum(group.count for group in self.orders)

    @property
    def disclosures_total(self) -> int:
        """Transfers allowed under an order in the period."""
        return sum(group.count for group in self.requests if group.outcome == "ALLOW")

    @property
    def refused_total(self) -> int:
        """Transfers under an order refused in the period."""
        return sum(group.count for group in self.requests if group.outcome == "BLOCK")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "from": _iso(self.period.start),
            "to": _iso(self.period.end),
            "totals": {
                "orders": self.orders_total,
                "disclosures": self.disclosures_total,
                "refused": self.refused_total,
            },
            "unreadable_entries": self.unreadable,
            "orders": [
                {
                    "authority": g.authority,
                    "jurisdiction": g.jurisdiction,
                    "order_type": g.order_type,
                    "status": g.status.value,
                    "count": g.count,
                }
                for g in self.orders
            ],
            "requests": [
                {
                    "authority": g.authority,
                    "jurisdiction": g.jurisdiction,
                    "order_type": g.order_type,
                    "outcome": g.outcome,
                    "count": g.count,
                }
                for g in self.requests
            ],
        }


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the pure computation ------------------------------------------------------------------


@dataclass(frozen=True)
class _Order:
    authority: str
    jurisdiction: str
    order_type: str
    registered_by: str | None
    registered_at: datetime


def _order_of(record: TrailRecord) -> _Order:
    try:
        event = OrderRegistered.model_validate_json(record.event_json or "")
    except ValidationError:
        return _Order(UNREADABLE, UNREADABLE, UNREADABLE, record.actor, record.occurred_at)
    return _Order(
        event.authority,
        event.jurisdiction,
        event.order_type.value,
        event.registered_by,
        record.occurred_at,
    )


def build_report(records: Iterable[TrailRecord], period: Period) -> TransparencyReport:
    """Count orders and requests of ``period`` in the records (any order, any extra).

    Records outside the period matter only as history: an order registered earlier names
    the authority of a decision in the period; approvals and revocations before the end
    of the period set an order's status.
    """
    orders: dict[str, _Order] = {}
    approvals: dict[str, list[str | None]] = {}
    revoked: set[str] = set()
    decisions: list[TrailRecord] = []
    for record in sorted(records, key=lambda r: r.occurred_at):
        ref = record.order_ref
        if ref is None:
            continue
        if record.kind == "DECISION":
            if record.occurred_at in period:
                decisions.append(record)
        elif record.occurred_at >= period.end:
            continue
        elif record.event_type == "OrderRegistered":
            orders.setdefault(ref, _order_of(record))  # a re-registration does not count twice
        elif record.event_type == "OrderApproved":
            approvals.setdefault(ref, []).append(record.actor)
        elif record.event_type == "OrderRevoked":
            revoked.add(ref)

    order_counts: Counter[tuple[str, str, str, OrderStatus]] = Counter()
    for ref, order in orders.items():
        if order.registered_at not in period:
            continue
        if ref in revoked:
            status = OrderStatus.REVOKED
        elif any(actor != order.registered_by for actor in approvals.get(ref, ())):
            status = OrderStatus.APPROVED
        else:
            status = OrderStatus.PENDING
        order_counts[(order.authority, order.jurisdiction, order.order_type, status)] += 1

    request_counts: Counter[tuple[str, str, str, str]] = Counter()
    for record in decisions:
        known = orders.get(record.order_ref or "")
        key = (
            (known.authority, known.jurisdiction, known.order_type)
            if known is not None
            else (UNREGISTERED, UNREGISTERED, UNREGISTERED)
        )
        request_counts[(*key, record.outcome or "UNKNOWN")] += 1

    return TransparencyReport(
        period=period,
        orders=tuple(OrderGroup(*key, count) for key, count in sorted(order_counts.items())),
        requests=tuple(RequestGroup(*key, count) for key, count in sorted(request_counts.items())),
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [list(headers), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i == len(row) - 1 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    return [line(cells[0]), line(["-" * w for w in widths]), *(line(r) for r in cells[1:])]


def render_table(report: TransparencyReport) -> str:
    """The report for a person: totals, then one table of orders and one of requests."""
    out = [
        f"Transparency report {_iso(report.period.start)} to {_iso(report.period.end)} "
        "(from inclusive, to exclusive)",
        "",
        f"Orders received: {report.orders_total}",
        f"Disclosures (transfers allowed under an order): {report.disclosures_total}",
        f"Refused requests (transfers under an order blocked): {report.refused_total}",
        *(
            [f"WARNING: {report.unreadable} entries could not be read; run audit-sink verify"]
            if report.unreadable
            else []
        ),
        "",
        "Orders by authority, jurisdiction, type and status",
    ]
    header = ("authority", "jurisdiction", "order type")
    if report.orders:
        out += _table(
            (*header, "status", "orders"),
            [
                (g.authority, g.jurisdiction, g.order_type, g.status.value, g.count)
                for g in report.orders
            ],
        )
    else:
        out.append("(none)")
    out += ["", "Requests under orders by authority, jurisdiction, type and outcome"]
    if report.requests:
        out += _table(
            (*header, "outcome", "transfers"),
            [
                (g.authority, g.jurisdiction, g.order_type, g.outcome, g.count)
                for g in report.requests
            ],
        )
    else:
        out.append("(none)")
    return "\n".join(out) + "\n"


def trail_record(body: Mapping[str, Any]) -> TrailRecord | None:
    """The report's view of a record leaf's body; ``None`` if it lacks what is needed."""
    occurred = body.get("occurred_at")
    if not isinstance(occurred, int):
        return None
    event_json = body.get("event_json")
    return TrailRecord(
        kind=str(body.get("kind", "")),
        event_type=str(body.get("event_type", "")),
        occurred_at=_EPOCH + timedelta(milliseconds=occurred),
        order_ref=body.get("order_ref") if isinstance(body.get("order_ref"), str) else None,
        actor=body.get("actor") if isinstance(body.get("actor"), str) else None,
        outcome=body.get("outcome") if isinstance(body.get("outcome"), str) else None,
        event_json=event_json if isinstance(event_json, str) else None,
    )


# --- reading the trail ---------------------------------------------------------------------


def read_report(reader: LogReader | Sequence[LogReader], period: Period) -> TransparencyReport:
    """The report of ``period`` from one snapshot of the log (or of each member of a
    sharded trail: an order's registration and its decisions may sit in different shards).

    Finds the orders referenced in the period, then reads every record of each of them up
    to the end of the period (registration, approvals, revocations, decisions).
    """
    readers = [reader] if not isinstance(reader, Sequence) else list(reader)
    refs: set[str] = set()
    for one in readers:
        in_period = one.query_records(
            RecordFilter(occurred_from=millis(period.start), occurred_to=millis(period.end))
        )
        refs.update(row.order_ref for row in in_period if row.order_ref is not None)
    records: list[TrailRecord] = []
    unreadable = 0
    for one in readers:
        found, missed = _order_records(one, sorted(refs), period)
        records.extend(found)
        unreadable += missed
    records.sort(key=lambda record: record.occurred_at)
    return replace(build_report(records, period), unreadable=unreadable)


def _order_records(
    reader: LogReader, refs: Sequence[str], period: Period
) -> tuple[list[TrailRecord], int]:
    """Every record of the orders ``refs`` up to the end of ``period`` in one log, and how
    many of their entries could not be read."""
    indices: set[int] = set()
    for ref in refs:
        rows = reader.query_records(RecordFilter(order_ref=ref, occurred_to=millis(period.end)))
        indices.update(row.index for row in rows)
    leaves = reader.leaves(sorted(indices))
    records = []
    unreadable = len(indices) - len(leaves)
    for index in sorted(leaves):
        try:
            leaf = decode_leaf(leaves[index])
        except LeafFormatError:
            unreadable += 1
            continue
        record = trail_record(leaf.body) if leaf.type == EntryType.RECORD else None
        if record is None:
            unreadable += 1
        else:
            records.append(record)
    return records, unreadable
