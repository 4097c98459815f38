"""The transparency report's pure computation over generated order histories (hypothesis).

Histories are real contract events (orders registered, approved, revoked; law-enforcement
decisions) turned into audit records by the guard's own ``audit_record`` and into leaf
bodies by the sink's ``record_body``, as the writer stores them. The expected numbers are
counted here from the events themselves.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from audit_sink.leaf import record_body
from audit_sink.transparency import (
    UNREGISTERED,
    OrderStatus,
    Period,
    TrailRecord,
    build_report,
    render_table,
    trail_record,
)
from hypothesis import given
from hypothesis import strategies as st
from sharing_guard.audit_trail import audit_record
from sharing_guard.contract import (
    Clause,
    DataCategory,
    Decision,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    OrderType,
    Outcome,
    Purpose,
    Reason,
    ReasonCode,
    Recipient,
    RecipientType,
    TransferRequested,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AUTHORITIES = ("Zug court", "fedpol", "Geneva prosecutor")
OFFICERS = ("officer-a", "officer-b", "officer-c")


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def to_trail(record_events: list[object]) -> list[TrailRecord]:
    out = []
    for item in record_events:
        event, decision = item if isinstance(item, tuple) else (item, None)
        record = audit_record(event, decision)  # type: ignore[arg-type]
        body = json.loads(json.dumps(record_body(record, sealed=record.account_id is not None)))
        trail = trail_record(body)
        assert trail is not None
        out.append(trail)
    return out


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[object], dict[str, object]]:
    """Events of a few orders and decisions, and what a person would count from them."""
    events: list[object] = []
    n_orders = draw(st.integers(0, 6))
    registered: dict[str, tuple[str, str, str, str, int]] = {}
    for i in range(n_orders):
        ref = f"ord-{i}"
        when = draw(st.integers(0, 40))
        authority = draw(st.sampled_from(AUTHORITIES))
        jurisdiction = draw(st.sampled_from(("CH", "DE")))
        otype = draw(st.sampled_from(OrderType))
        by = draw(st.sampled_from(OFFICERS))
        registered[ref] = (authority, jurisdiction, otype.value, by, when)
        events.append(
            OrderRegistered(
                event_id=f"reg-{ref}",
                occurred_at=day(when),
                order_ref=ref,
                order_type=otype,
                authority=authority,
                jurisdiction=jurisdiction,
                recipient_id="agency",
                account_ids=("acct-PERSONAL-1",),
                data_categories=(DataCategory.PERSONAL_INFORMATION,),
                valid_from=day(0),
                valid_until=day(60),
                max_disclosures=None,
                registered_by=by,
            )
        )
        for j, approver in enumerate(draw(st.lists(st.sampled_from(OFFICERS), max_size=2))):
            events.append(
                OrderApproved(
                    event_id=f"ok-{ref}-{j}",
                    occurred_at=day(when + draw(st.integers(0, 20))),
                    order_ref=ref,
                    approved_by=approver,
                )
            )
        if draw(st.booleans()):
            events.append(
                OrderRevoked(
                    event_id=f"rev-{ref}",
                    occurred_at=day(when + draw(st.integers(0, 20))),
                    order_ref=ref,
                    revoked_by="officer-c",
                    reason="quashed",
                )
            )
    refs = [*registered, "ord-never-registered"]
    for k in range(draw(st.integers(0, 25))):
        ref = draw(st.sampled_from(refs))
        outcome = draw(st.sampled_from(Outcome))
        transfer = TransferRequested(
            event_id=f"t-{k}",
            occurred_at=day(draw(st.integers(0, 60))),
            source_service="legal-export",
            account_id=f"acct-PERSONAL-{k}",
            data_categories=(DataCategory.PERSONAL_INFORMATION,),
            recipient=Recipient(id="agency", type=RecipientType.LAW_ENFORCEMENT, jurisdiction="CH"),
            purpose=Purpose.LEGAL_ORDER,
            order_ref=ref,
        )
        code = ReasonCode.ORDER if outcome is Outcome.ALLOW else ReasonCode.ORDER_REVOKED
        decision = Decision(
            event_id=transfer.event_id,
            outcome=outcome,
            reasons=(Reason(code=code, clause=Clause.LAW_ENFORCEMENT),),
            policy_version="2026.1",
            order_ref=ref,
        )
        events.append((transfer, decision))
    return events, {"registered": registered}


periods = st.tuples(st.integers(0, 50), st.integers(1, 30)).map(
    lambda p: Period(day(p[0]), day(p[0] + p[1]))
)


@given(histories(), periods, st.randoms(use_true_random=False))
def test_report_counts_equal_the_events_and_totals_the_sum_of_the_groups(
    history: tuple[list[object], dict[str, object]], period: Period, rnd: random.Random
) -> None:
    events, facts = history
    registered: dict[str, tuple[str, str, str, str, int]] = facts["registered"]  # type: ignore[assignment]
    trail = to_trail(events)
    rnd.shuffle(trail)  # the order records are read in does not matter
    report = build_report(trail, period)

    # totals are the sums of the groups; no empty or repeated group
    assert report.orders_total == sum(g.count for g in report.orders)
    assert report.disclosures_total + report.refused_total == sum(g.count for g in report.requests)
    assert all(g.count > 0 for g in (*report.orders, *report.requests))
    order_keys = [(g.authority, g.jurisdiction, g.order_type, g.status) for g in report.orders]
    assert order_keys == sorted(set(order_keys))

    # orders: registered in the period, with their status at its end
    expected_orders: Counter[tuple[str, str, str, OrderStatus]] = Counter()
    for ref, (authority, jurisdiction, otype, by, when) in registered.items():
        if not period.start <= day(when) < period.end:
            continue
        before_end = [
            e
            for e in events
            if not isinstance(e, tuple) and e.occurred_at < period.end  # type: ignore[attr-defined]
        ]
        if any(isinstance(e, OrderRevoked) and e.order_ref == ref for e in before_end):
            status = OrderStatus.REVOKED
        elif any(
            isinstance(e, OrderApproved) and e.order_ref == ref and e.approved_by != by
            for e in before_end
        ):
            status = OrderStatus.APPROVED
        else:
            status = OrderStatus.PENDING
        expected_orders[(authority, jurisdiction, otype, status)] += 1
    assert {
        k: g.count
        for g in report.orders
        for k in [(g.authority, g.jurisdiction, g.order_type, g.status)]
    } == dict(expected_orders)

    # requests: decisions in the period, by the authority of their order, and outcome
    expected_requests: Counter[tuple[str, str]] = Counter()
    for item in events:
        if isinstance(item, tuple):
            transfer, decision = item
            if period.start <= transfer.occurred_at < period.end:
                # the trail as of the end of the period: an order registered later is unknown
                order = registered.get(decision.order_ref)
                known = order is not None and day(order[4]) < period.end
                authority = order[0] if order is not None and known else UNREGISTERED
                expected_requests[(authority, decision.outcome.value)] += 1
    got: Counter[tuple[str, str]] = Counter()
    for g in report.requests:
        got[(g.authority, g.outcome)] += g.count
    assert got == expected_requests


def test_the_table_and_json_say_the_same_and_hold_no_account() -> None:
    events: list[object] = [
        OrderRegistered(
            event_id="reg-1",
            occurred_at=day(1),
            order_ref="ord-1",
            order_type=OrderType.COURT_ORDER,
            authority="Zug court",
            jurisdiction="CH",
            recipient_id="fedpol",
            account_ids=("acct-PERSONAL-9",),
            data_categories=(DataCategory.PERSONAL_INFORMATION,),
            valid_from=day(0),
            valid_until=day(30),
            max_disclosures=2,
            registered_by="officer-a",
        ),
        OrderApproved(event_id="ok-1", occurred_at=day(2), order_ref="ord-1", approved_by="b"),
    ]
    report = build_report(to_trail(events), Period(day(0), day(10)))
    table = render_table(report)
    data = report.to_dict()
    assert data["totals"] == {"orders": 1, "disclosures": 0, "refused": 0}
    assert data["orders"] == [
        {
            "authority": "Zug court",
            "jurisdiction": "CH",
            "order_type": "COURT_ORDER",
            "status": "APPROVED",
            "count": 1,
        }
    ]
    assert "Orders received: 1" in table
    assert "Zug court" in table
    assert "APPROVED" in table
    assert "acct-PERSONAL" not in table + json.dumps(data)


def test_a_period_must_be_ordered_and_zoned() -> None:
    with pytest.raises(ValueError, match="later"):
        Period(day(2), day(1))
    with pytest.raises(ValueError, match="zone"):
        Period(datetime(2026, 1, 1), day(1))
