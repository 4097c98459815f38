"""The pure part of the order workflow: records folded from events, and an order's state.

Properties over random event histories, times and disclosure counts: an order is never
in force outside its window, unapproved, revoked or used up; it is exhausted exactly when
its quota is used (unless revoked); the fold agrees with the guard's own reducer on who
approved and whether it is revoked, so the service never shows an order the guard treats
differently.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sharing_guard.contract.enums import DataCategory, OrderType
from sharing_guard.contract.events import OrderApproved, OrderRegistered, OrderRevoked
from sharing_guard.core.state import OrderState, next_order
from sharing_guard.orders.model import (
    OrderEvent,
    OrderRecord,
    OrderStatus,
    RefusedError,
    check_approval,
    check_revocation,
    fold,
    next_record,
    remaining,
    status,
)

BASE = datetime(2026, 1, 1, tzinfo=UTC)
OFFICERS = ("officer-a", "officer-b", "officer-c")
REFS = ("order-1", "order-2")

instants = st.integers(min_value=0, max_value=1000).map(lambda m: BASE + timedelta(minutes=m))


@st.composite
def registrations(draw: st.DrawFn, ref: str | None = None) -> OrderRegistered:
    start = draw(instants)
    return OrderRegistered(
        event_id=f"reg-{draw(st.integers(0, 10**9))}",
        occurred_at=BASE,
        order_ref=ref or draw(st.sampled_from(REFS)),
        order_type=OrderType.COURT_ORDER,
        authority="court-1",
        jurisdiction="CH",
        recipient_id="agency-1",
        account_ids=("acct-1",),
        data_categories=(DataCategory.VIRTUAL_DRIVE_DATA,),
        valid_from=start,
        valid_until=start + timedelta(minutes=draw(st.integers(0, 500))),
        max_disclosures=draw(st.none() | st.integers(1, 5)),
        registered_by=draw(st.sampled_from(OFFICERS)),
    )


@st.composite
def order_events(draw: st.DrawFn) -> OrderEvent:
    kind = draw(st.sampled_from(("register", "approve", "revoke")))
    ref = draw(st.sampled_from(REFS))
    officer = draw(st.sampled_from(OFFICERS))
    event_id = f"e-{draw(st.integers(0, 10**9))}"
    if kind == "register":
        return draw(registrations(ref))
    if kind == "approve":
        return OrderApproved(
            event_id=event_id, occurred_at=BASE, order_ref=ref, approved_by=officer
        )
    return OrderRevoked(
        event_id=event_id, occurred_at=BASE, order_ref=ref, revoked_by=officer, reason="r"
    )


@st.composite
def records(draw: st.DrawFn) -> OrderRecord:
    """A record as any history can make it."""
    registration = draw(registrations())
    events = [registration, *draw(st.lists(order_events(), max_size=6))]
    events = [e for e in events if e.order_ref == registration.order_ref]
    record = fold(events)[registration.order_ref]
    return record


@given(records(), st.integers(0, 8), instants)
def test_in_force_only_when_approved_inside_the_window_with_quota_left(
    record: OrderRecord, disclosures: int, now: datetime
) -> None:
    order = record.registration
    in_force = status(record, disclosures, now) is OrderStatus.IN_FORCE
    expected = (
        record.approved
        and not record.revoked
        and order.valid_from <= now <= order.valid_until
        and (order.max_disclosures is None or disclosures < order.max_disclosures)
    )
    assert in_force == expected


@given(records(), st.integers(0, 8), instants)
def test_exhausted_exactly_when_the_quota_is_used_up(
    record: OrderRecord, disclosures: int, now: datetime
) -> None:
    limit = record.registration.max_disclosures
    used_up = limit is not None and disclosures >= limit
    state = status(record, disclosures, now)
    assert (state is OrderStatus.EXHAUSTED) == (used_up and not record.revoked)
    assert (state is OrderStatus.REVOKED) == record.revoked
    left = remaining(record, disclosures)
    assert (left is None) == (limit is None)
    assert left is None or (left == 0) == used_up


@given(records(), st.integers(0, 8), instants)
def test_expired_after_valid_until_unless_revoked_or_exhausted(
    record: OrderRecord, disclosures: int, now: datetime
) -> None:
    state = status(record, disclosures, now)
    if now > record.registration.valid_until:
        assert state in {OrderStatus.EXPIRED, OrderStatus.REVOKED, OrderStatus.EXHAUSTED}
    else:
        assert state is not OrderStatus.EXPIRED


@given(st.lists(order_events(), max_size=12))
def test_fold_agrees_with_the_guards_reducer(events: list[OrderEvent]) -> None:
    guard: dict[str, OrderState] = {}
    for event in events:
        state = next_order(guard.get(event.order_ref), event)
        if state is not None:
            guard[event.order_ref] = state
    ours = fold(events)
    assert ours.keys() == guard.keys()
    for ref, record in ours.items():
        assert record.approved_by == guard[ref].approved_by
        assert record.revoked == guard[ref].revoked
        assert record.registered_by == guard[ref].registered_by
        assert record.registration.max_disclosures == guard[ref].max_disclosures


@given(registrations(), st.sampled_from(OFFICERS))
def test_four_eyes_the_registering_officer_can_never_approve(
    registration: OrderRegistered, officer: str
) -> None:
    record = OrderRecord(registration=registration)
    now = registration.valid_from
    if officer == registration.registered_by:
        with pytest.raises(RefusedError, match="four eyes"):
            check_approval(record, officer, now)
        approval = OrderApproved(
            event_id="x", occurred_at=now, order_ref=registration.order_ref, approved_by=officer
        )
        assert next_record(record, approval) == record  # and the event would change nothing
    else:
        check_approval(record, officer, now)


def test_approval_is_refused_once_approved_revoked_or_expired() -> None:
    registration = OrderRegistered(
        event_id="r",
        occurred_at=BASE,
        order_ref="o",
        order_type=OrderType.ADMINISTRATIVE_ORDER,
        authority="a",
        jurisdiction="CH",
        recipient_id="agency",
        account_ids=("acct",),
        data_categories=(DataCategory.PERSONAL_INFORMATION,),
        valid_from=BASE,
        valid_until=BASE + timedelta(days=1),
        registered_by="officer-a",
    )
    record = OrderRecord(registration=registration)
    with pytest.raises(RefusedError, match="expired"):
        check_approval(record, "officer-b", BASE + timedelta(days=2))
    approved = next_record(
        record,
        OrderApproved(event_id="a", occurred_at=BASE, order_ref="o", approved_by="officer-b"),
    )
    assert approved is not None
    with pytest.raises(RefusedError, match="already approved by officer-b"):
        check_approval(approved, "officer-c", BASE)
    revoked = next_record(
        approved,
        OrderRevoked(
            event_id="v", occurred_at=BASE, order_ref="o", revoked_by="officer-c", reason="x"
        ),
    )
    assert revoked is not None
    with pytest.raises(RefusedError, match="revoked"):
        check_approval(revoked, "officer-c", BASE)
    with pytest.raises(RefusedError, match="already revoked by officer-c"):
        check_revocation(revoked)
    check_revocation(approved)
