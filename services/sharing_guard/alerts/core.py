"""The pure core of the alerts process: which records become alerts, and how to retry.

Nothing here does I/O or reads a clock: the adapters decode Kafka records and pass the
current time in. An alert carries opaque ids and enum values only (event id, order
reference, reason codes, clause ids, recipient id and type, data categories): never an
account id, a payload reference or any other value about a data subject.

Alert kinds:

* ``VDD_EGRESS_BLOCKED``: a BLOCK decision on a transfer whose categories include
  ``VIRTUAL_DRIVE_DATA``;
* ``LAW_ENFORCEMENT_BLOCKED``: a BLOCK decision on a transfer to a ``LAW_ENFORCEMENT``
  recipient (a transfer can raise both kinds);
* ``ORDER_EXHAUSTED``: an order's quota is used up, raised once per order (by this
  process's lifetime) by whichever comes first: the ALLOW that spent the last disclosure
  (known when the order's ``max_disclosures`` and its ALLOW decisions were both seen), or
  the first ``ORDER_QUOTA_EXHAUSTED`` block;
* ``DEAD_LETTER``: a record the guard could not read, with the guard's reason.

Redeliveries the guard marks ``guard.duplicate: 1`` raise nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sharing_guard.contract.enums import (
    Clause,
    DataCategory,
    Outcome,
    Purpose,
    ReasonCode,
    RecipientType,
)
from sharing_guard.contract.events import OrderRegistered, TransferRequested
from sharing_guard.contract.types import format_timestamp
from sharing_guard.core.engine import CLAUSE_OF

PAYLOAD_VERSION = 1
MAX_DETAIL_CHARS = 300
MAX_TRACKED_ALLOWS = 10_000
"""ALLOWs remembered per order whose quota is not known yet."""
DLQ_REASON, DLQ_TOPIC, DLQ_PARTITION, DLQ_OFFSET = (
    "dlq.reason",
    "dlq.topic",
    "dlq.partition",
    "dlq.offset",
)


class AlertKind(StrEnum):
    """What an alert is about."""

    VDD_EGRESS_BLOCKED = "VDD_EGRESS_BLOCKED"
    LAW_ENFORCEMENT_BLOCKED = "LAW_ENFORCEMENT_BLOCKED"
    ORDER_EXHAUSTED = "ORDER_EXHAUSTED"
    DEAD_LETTER = "DEAD_LETTER"


@dataclass(frozen=True)
class Source:
    """The Kafka position a record was consumed at."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class GuardSummary:
    """The guard's ``guard.*`` headers on a routed transfer."""

    event_id: str | None
    outcome: str | None
    duplicate: bool
    policy_version: str | None
    codes: tuple[str, ...]


@dataclass(frozen=True)
class Alert:
    """One alert for the webhook. ``alert_id`` is stable: a receiver dedupes retries by it."""

    kind: AlertKind
    alert_id: str
    source: Source
    event_id: str | None = None
    order_ref: str | None = None
    reason_codes: tuple[str, ...] = ()
    clause_ids: tuple[str, ...] = ()
    policy_version: str | None = None
    recipient_id: str | None = None
    recipient_type: str | None = None
    data_categories: tuple[str, ...] = ()
    occurred_at: datetime | None = None
    detail: str | None = None

    def payload(self, raised_at: datetime) -> dict[str, Any]:
        """The JSON object posted to the webhook."""
        return {
            "version": PAYLOAD_VERSION,
            "alert_id": self.alert_id,
            "kind": self.kind.value,
            "event_id": self.event_id,
            "order_ref": self.order_ref,
            "reason_codes": list(self.reason_codes),
            "clause_ids": list(self.clause_ids),
            "policy_version": self.policy_version,
            "recipient": {"id": self.recipient_id, "type": self.recipient_type},
            "data_categories": list(self.data_categories),
            "occurred_at": None if self.occurred_at is None else format_timestamp(self.occurred_at),
            "raised_at": format_timestamp(raised_at),
            "detail": self.detail,
            "source": {
                "topic": self.source.topic,
                "partition": self.source.partition,
                "offset": self.source.offset,
            },
        }


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The request body: compact JSON with sorted keys (what the signature covers)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


# --- classification ------------------------------------------------------------------------


def _header(headers: Mapping[str, bytes], name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("utf-8", "replace")


def guard_summary(headers: Mapping[str, bytes]) -> GuardSummary:
    """The decision summary the guard put in a routed record's headers."""
    codes = _header(headers, "guard.codes") or ""
    return GuardSummary(
        event_id=_header(headers, "guard.event_id"),
        outcome=_header(headers, "guard.outcome"),
        duplicate=_header(headers, "guard.duplicate") == "1",
        policy_version=_header(headers, "guard.policy_version"),
        codes=tuple(code for code in (c.strip() for c in codes.split(",")) if code),
    )


def clause_ids(codes: tuple[str, ...], purpose: Purpose) -> tuple[str, ...]:
    """The clauses behind the codes, in order and without repeats.

    ``CONSENT_MISSING`` cites the consent the purpose needs (marketing for promotional
    offers, third-party sharing otherwise), as the engine does; an unknown code (a newer
    guard) has no clause here.
    """
    found: list[str] = []
    for code in codes:
        clause: Clause | None
        if code == ReasonCode.CONSENT_MISSING.value:
            clause = (
                Clause.MARKETING_CONSENT
                if purpose is Purpose.PROMOTIONAL_OFFERS
                else Clause.THIRD_PARTY_CONSENT
            )
        else:
            try:
                clause = CLAUSE_OF.get(ReasonCode(code))
            except ValueError:
                clause = None
        if clause is not None and clause.value not in found:
            found.append(clause.value)
    return tuple(found)


def _transfer_alert(
    kind: AlertKind,
    transfer: TransferRequested,
    summary: GuardSummary,
    source: Source,
    *,
    alert_id: str | None = None,
    detail: str | None = None,
) -> Alert:
    return Alert(
        kind=kind,
        alert_id=alert_id or f"{kind.value}:{transfer.event_id}",
        source=source,
        event_id=transfer.event_id,
        order_ref=transfer.order_ref,
        reason_codes=summary.codes,
        clause_ids=clause_ids(summary.codes, transfer.purpose),
        policy_version=summary.policy_version,
        recipient_id=transfer.recipient.id,
        recipient_type=transfer.recipient.type.value,
        data_categories=tuple(c.value for c in transfer.data_categories),
        occurred_at=transfer.occurred_at,
        detail=detail,
    )


class _Bounded(OrderedDict[str, Any]):
    """An insertion-ordered dict that forgets its oldest keys beyond ``capacity``."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)


@dataclass
class Classifier:
    """Turns consumed records into alerts; remembers what exhaustion needs (pure state).

    Memory is bounded: at most ``capacity`` orders are remembered (the oldest forgotten).
    """

    capacity: int = 100_000
    _quota: _Bounded = field(init=False)
    _allowed: _Bounded = field(init=False)
    _alerted: _Bounded = field(init=False)

    def __post_init__(self) -> None:
        self._quota = _Bounded(self.capacity)  # order_ref -> max_disclosures | None
        self._allowed = _Bounded(self.capacity)  # order_ref -> set of ALLOWed event ids
        self._alerted = _Bounded(self.capacity)  # order_refs already alerted as exhausted

    def blocked(
        self, transfer: TransferRequested, summary: GuardSummary, source: Source
    ) -> list[Alert]:
        """Alerts for a record of ``sharing.transfers.blocked``."""
        if summary.duplicate or summary.outcome != Outcome.BLOCK.value:
            return []
        alerts = []
        if DataCategory.VIRTUAL_DRIVE_DATA in transfer.data_categories:
            alerts.append(_transfer_alert(AlertKind.VDD_EGRESS_BLOCKED, transfer, summary, source))
        if transfer.recipient.type is RecipientType.LAW_ENFORCEMENT:
            alerts.append(
                _transfer_alert(AlertKind.LAW_ENFORCEMENT_BLOCKED, transfer, summary, source)
            )
        ref = transfer.order_ref
        if (
            ref is not None
            and ReasonCode.ORDER_QUOTA_EXHAUSTED.value in summary.codes
            and self._first_exhaustion(ref)
        ):
            alerts.append(
                _transfer_alert(
                    AlertKind.ORDER_EXHAUSTED,
                    transfer,
                    summary,
                    source,
                    alert_id=f"{AlertKind.ORDER_EXHAUSTED.value}:{ref}",
                    detail="a transfer was refused: the order's quota is used up",
                )
            )
        return alerts

    def approved(
        self, transfer: TransferRequested, summary: GuardSummary, source: Source
    ) -> list[Alert]:
        """Alerts for a record of ``sharing.transfers.approved`` (the last disclosure)."""
        ref = transfer.order_ref
        if ref is None or summary.duplicate or summary.outcome != Outcome.ALLOW.value:
            return []
        quota = self._quota.get(ref)
        if ref in self._quota and quota is None:
            return []  # an order without a quota is never exhausted
        allowed: set[str] = self._allowed.get(ref) or set()
        if len(allowed) < (MAX_TRACKED_ALLOWS if quota is None else quota):
            allowed.add(transfer.event_id)
        self._allowed.put(ref, allowed)
        if quota is not None and len(allowed) >= quota and self._first_exhaustion(ref):
            return [
                _transfer_alert(
                    AlertKind.ORDER_EXHAUSTED,
                    transfer,
                    summary,
                    source,
                    alert_id=f"{AlertKind.ORDER_EXHAUSTED.value}:{ref}",
                    detail=f"this transfer used the last of {quota} disclosures",
                )
            ]
        return []

    def order(self, event: OrderRegistered, source: Source) -> list[Alert]:
        """Remember an order's quota; alert if ALLOWs seen earlier already used it up."""
        ref = event.order_ref
        quota = event.max_disclosures
        self._quota.put(ref, quota)
        if quota is None:
            self._allowed.pop(ref, None)
            return []
        seen = len(self._allowed.get(ref) or ())
        if seen >= quota and self._first_exhaustion(ref):
            return [
                Alert(
                    kind=AlertKind.ORDER_EXHAUSTED,
                    alert_id=f"{AlertKind.ORDER_EXHAUSTED.value}:{ref}",
                    source=source,
                    order_ref=ref,
                    reason_codes=(ReasonCode.ORDER.value,),
                    clause_ids=(Clause.LAW_ENFORCEMENT.value,),
                    recipient_id=event.recipient_id,
                    recipient_type=RecipientType.LAW_ENFORCEMENT.value,
                    data_categories=tuple(c.value for c in event.data_categories),
                    detail=f"{seen} of {quota} disclosures already allowed",
                )
            ]
        return []

    def _first_exhaustion(self, order_ref: str) -> bool:
        if order_ref in self._alerted:
            return False
        self._alerted.put(order_ref, True)
        return True


def dead_letter(headers: Mapping[str, bytes], source: Source) -> Alert:
    """The alert for a record of the dead-letter topic (its reason, never its bytes)."""
    topic = _header(headers, DLQ_TOPIC)
    partition = _header(headers, DLQ_PARTITION)
    offset = _header(headers, DLQ_OFFSET)
    where = (
        f"{topic}:{partition}:{offset}"
        if None not in (topic, partition, offset)
        else f"{source.topic}:{source.partition}:{source.offset}"
    )
    reason = _header(headers, DLQ_REASON) or "no reason given"
    return Alert(
        kind=AlertKind.DEAD_LETTER,
        alert_id=f"{AlertKind.DEAD_LETTER.value}:{where}",
        source=source,
        event_id=_header(headers, "guard.event_id"),
        detail=f"{where}: {reason}"[:MAX_DETAIL_CHARS],
    )


# --- delivery policy -----------------------------------------------------------------------


def backoff_delay(attempt: int, base_s: float, cap_s: float, jitter: float, unit: float) -> float:
    """Seconds to wait before retry ``attempt`` (1 for the first retry).

    Exponential: ``base_s * 2**(attempt - 1)``, capped at ``cap_s``; then reduced by up
    to the fraction ``jitter`` (0 to 1), by ``unit`` drawn uniformly from [0, 1), so
    senders that failed together do not retry together.
    """
    if attempt < 1:
        raise ValueError("attempt must be at least 1")
    if not 0 <= jitter <= 1 or not 0 <= unit < 1:
        raise ValueError("jitter must be in [0, 1] and unit in [0, 1)")
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, 64))
    return ceiling * (1 - jitter * unit)


def retryable(status: int) -> bool:
    """Whether a webhook answer means "try again" (5xx, 408, 425, 429)."""
    return status >= 500 or status in (408, 425, 429)


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`` for the receiver to check."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"
