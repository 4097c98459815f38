"""What an order is and what state it is in (pure: no I/O, no clock).

An order's record is folded from its contract events (``OrderRegistered``,
``OrderApproved``, ``OrderRevoked``) with the guard's own rules (see
:func:`sharing_guard.core.state.next_order`): registered once, approved only by an officer
other than the one who registered it, revocation final. Its state is then a function of
that record, the number of disclosures made under it and the time:

* ``REVOKED``   — revoked; nothing may rely on it any more;
* ``EXHAUSTED`` — ``max_disclosures`` transfers were allowed under it;
* ``EXPIRED``   — the time is past ``valid_until``;
* ``PENDING``   — not (yet) in force: awaiting a second officer's approval, or approved
  but before ``valid_from``;
* ``IN_FORCE``  — approved, inside [``valid_from``, ``valid_until``], quota left.

The first that applies wins, so an order never shows ``IN_FORCE`` outside its window,
unapproved, revoked or used up. Expiry and exhaustion need nobody to act: they follow from
the clock and from the guard's decisions.
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from sharing_guard.contract.events import OrderApproved, OrderRegistered, OrderRevoked

OrderEvent = OrderRegistered | OrderApproved | OrderRevoked
"""The events of ``legal.orders``."""


class OrderStatus(StrEnum):
    """The state of an order at a given time."""

    PENDING = "PENDING"
    IN_FORCE = "IN_FORCE"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    EXHAUSTED = "EXHAUSTED"


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """A registered order with who approved and who revoked it, and when."""

    registration: OrderRegistered
    approved_by: str | None = None
    approved_at: datetime | None = None
    revoked_by: str | None = None
    revoked_at: datetime | None = None
    revoke_reason: str | None = None

    @property
    def order_ref(self) -> str:
        """The order's reference."""
        return self.registration.order_ref

    @property
    def registered_by(self) -> str:
        """The officer who registered the order."""
        return self.registration.registered_by

    @property
    def approved(self) -> bool:
        """True once a second officer approved it."""
        return self.approved_by is not None

    @property
    def revoked(self) -> bool:
        """True once revoked."""
        return self.revoked_by is not None


def next_record(current: OrderRecord | None, event: OrderEvent) -> OrderRecord | None:
    """Apply one order event, with the guard's rules (four eyes, register once, revoke once)."""
    if isinstance(event, OrderRegistered):
        return current if current is not None else OrderRecord(registration=event)
    if current is None:
        return None
    if isinstance(event, OrderApproved):
        if current.approved or event.approved_by == current.registered_by:
            return current
        return replace(current, approved_by=event.approved_by, approved_at=event.occurred_at)
    if current.revoked:
        return current
    return replace(
        current,
        revoked_by=event.revoked_by,
        revoked_at=event.occurred_at,
        revoke_reason=event.reason,
    )


def fold(events: Iterable[OrderEvent]) -> dict[str, OrderRecord]:
    """Every order's record from its events, in processing order."""
    records: dict[str, OrderRecord] = {}
    for event in events:
        record = next_record(records.get(event.order_ref), event)
        if record is not None:
            records[event.order_ref] = record
    return records


def status(record: OrderRecord, disclosures: int, now: datetime) -> OrderStatus:
    """The order's state at ``now`` after ``disclosures`` allowed transfers."""
    order = record.registration
    if record.revoked:
        return OrderStatus.REVOKED
    if order.max_disclosures is not None and disclosures >= order.max_disclosures:
        return OrderStatus.EXHAUSTED
    if now > order.valid_until:
        return OrderStatus.EXPIRED
    if not record.approved or now < order.valid_from:
        return OrderStatus.PENDING
    return OrderStatus.IN_FORCE


def remaining(record: OrderRecord, disclosures: int) -> int | None:
    """Disclosures still allowed under the order; ``None`` when it has no quota."""
    limit = record.registration.max_disclosures
    return None if limit is None else max(0, limit - disclosures)


class Refusal(StrEnum):
    """The rule that refused a change (a metric label; the message says it in words)."""

    FOUR_EYES = "four_eyes"
    REFERENCE_TAKEN = "reference_taken"
    ALREADY_APPROVED = "already_approved"
    ALREADY_REVOKED = "already_revoked"
    REVOKED = "revoked"
    EXPIRED = "expired"


class RefusedError(ValueError):
    """A change the workflow refuses (answered with HTTP 409); the message says why,
    ``reason`` which rule."""

    def __init__(self, message: str, reason: Refusal) -> None:
        super().__init__(message)
        self.reason = reason


def check_approval(record: OrderRecord, officer_id: str, now: datetime) -> None:
    """Raise :class:`RefusedError` unless ``officer_id`` may approve the order now.

    Four eyes: the registering officer can never approve their own order.
    """
    if officer_id == record.registered_by:
        raise RefusedError(
            f"four eyes: order {record.order_ref} was registered by {officer_id}; "
            "a different officer must approve it",
            Refusal.FOUR_EYES,
        )
    if record.revoked:
        raise RefusedError(
            f"order {record.order_ref} is revoked; it can no longer be approved", Refusal.REVOKED
        )
    if record.approved:
        raise RefusedError(
            f"order {record.order_ref} is already approved by {record.approved_by}",
            Refusal.ALREADY_APPROVED,
        )
    if now > record.registration.valid_until:
        raise RefusedError(
            f"order {record.order_ref} expired; it can no longer be approved", Refusal.EXPIRED
        )


def check_revocation(record: OrderRecord) -> None:
    """Raise :class:`RefusedError` if the order is already revoked."""
    if record.revoked:
        raise RefusedError(
            f"order {record.order_ref} is already revoked by {record.revoked_by}",
            Refusal.ALREADY_REVOKED,
        )


@dataclass(frozen=True, slots=True)
class Disclosure:
    """A transfer the guard allowed under an order (the guard's decision ``event_id``)."""

    event_id: str
    decided_at: datetime
