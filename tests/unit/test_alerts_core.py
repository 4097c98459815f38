"""The alerts process's pure core: which records raise which alerts, retry schedule, signing.

Generated transfers, decision summaries and order histories (hypothesis) check the rules
of docs/alerts.md: a BLOCK on Virtual Drive Data or to law enforcement alerts, a duplicate
never does, an order's exhaustion is announced exactly once, and no payload carries an
account id or another value about a data subject.
"""

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sharing_guard.alerts.core import (
    MAX_DETAIL_CHARS,
    AlertKind,
    Classifier,
    GuardSummary,
    Source,
    backoff_delay,
    clause_ids,
    dead_letter,
    encode_payload,
    guard_summary,
    retryable,
    signature,
)
from sharing_guard.alerts.queue import AlertQueue, Queued
from sharing_guard.contract import (
    DataCategory,
    OrderRegistered,
    OrderType,
    Outcome,
    Purpose,
    ReasonCode,
    Recipient,
    RecipientType,
    TransferRequested,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SRC = Source("sharing.transfers.blocked", 0, 1)
SECRET_VALUES = ("acct-PERSONAL-7731", "s3://bucket/PERSONAL-payload", "FRAUD-PERSONAL", "TX-PERS")

categories = st.lists(st.sampled_from(DataCategory), min_size=1, max_size=2, unique=True).map(tuple)
codes = st.lists(st.sampled_from([c.value for c in ReasonCode]), max_size=4, unique=True).map(tuple)


@st.composite
def transfers(draw: st.DrawFn) -> TransferRequested:
    rtype = draw(st.sampled_from(RecipientType))
    return TransferRequested(
        event_id=draw(st.from_regex(r"evt-[a-z0-9]{1,8}", fullmatch=True)),
        occurred_at=T0,
        source_service="svc",
        account_id=SECRET_VALUES[0],
        data_categories=draw(categories),
        recipient=Recipient(id="rcp-1", type=rtype, jurisdiction="CH"),
        purpose=draw(st.sampled_from(Purpose)),
        order_ref=draw(st.none() | st.just("ord-1")),
        payload_ref=SECRET_VALUES[1],
        fraud_case_ref=SECRET_VALUES[2],
        transaction_ref=SECRET_VALUES[3],
    )


summaries = st.builds(
    GuardSummary,
    event_id=st.just("evt"),
    outcome=st.sampled_from([Outcome.ALLOW.value, Outcome.BLOCK.value]),
    duplicate=st.booleans(),
    policy_version=st.just("2026.1"),
    codes=codes,
)


@given(transfers(), summaries)
def test_blocked_transfers_alert_by_category_and_recipient_and_never_carry_personal_data(
    transfer: TransferRequested, summary: GuardSummary
) -> None:
    alerts = Classifier().blocked(transfer, summary, SRC)
    kinds = {a.kind for a in alerts}
    counts = summary.outcome == "BLOCK" and not summary.duplicate
    vdd = DataCategory.VIRTUAL_DRIVE_DATA in transfer.data_categories
    le = transfer.recipient.type is RecipientType.LAW_ENFORCEMENT
    assert (AlertKind.VDD_EGRESS_BLOCKED in kinds) == (counts and vdd)
    assert (AlertKind.LAW_ENFORCEMENT_BLOCKED in kinds) == (counts and le)
    quota = ReasonCode.ORDER_QUOTA_EXHAUSTED.value in summary.codes
    assert (AlertKind.ORDER_EXHAUSTED in kinds) == (counts and quota and bool(transfer.order_ref))
    for alert in alerts:
        body = encode_payload(alert.payload(T0)).decode()
        assert not any(value in body for value in SECRET_VALUES)
        payload = json.loads(body)
        assert payload["reason_codes"] == list(summary.codes)
        assert payload["recipient"] == {"id": "rcp-1", "type": transfer.recipient.type.value}
        assert payload["event_id"] == transfer.event_id
        assert payload["policy_version"] == "2026.1"


def test_a_blocked_vdd_transfer_cites_its_clause() -> None:
    transfer = TransferRequested(
        event_id="evt-1",
        occurred_at=T0,
        source_service="svc",
        account_id="acc-1",
        data_categories=(DataCategory.VIRTUAL_DRIVE_DATA,),
        recipient=Recipient(id="rcp-1", type=RecipientType.THIRD_PARTY, jurisdiction="US"),
        purpose=Purpose.CONSENTED_SHARING,
    )
    headers = {
        "guard.event_id": b"evt-1",
        "guard.outcome": b"BLOCK",
        "guard.duplicate": b"0",
        "guard.policy_version": b"2026.1",
        "guard.codes": b"VDD_EGRESS_FORBIDDEN,CONSENT_MISSING",
    }
    (alert,) = Classifier().blocked(transfer, guard_summary(headers), SRC)
    assert alert.alert_id == "VDD_EGRESS_BLOCKED:evt-1"
    assert alert.clause_ids == ("C-VDD-NO-SHARING", "C-THIRD-PARTY-CONSENT")


@pytest.mark.parametrize(
    ("purpose", "clause"),
    [
        (Purpose.PROMOTIONAL_OFFERS, "C-MARKETING-CONSENT"),
        (Purpose.CONSENTED_SHARING, "C-THIRD-PARTY-CONSENT"),
    ],
)
def test_consent_missing_cites_the_consent_the_purpose_needs(purpose: Purpose, clause: str) -> None:
    assert clause_ids(("CONSENT_MISSING", "NOT_A_CODE_YET"), purpose) == (clause,)


def registration(ref: str, quota: int | None) -> OrderRegistered:
    return OrderRegistered(
        event_id=f"reg-{ref}",
        occurred_at=T0,
        order_ref=ref,
        order_type=OrderType.COURT_ORDER,
        authority="court",
        jurisdiction="CH",
        recipient_id="agency-1",
        account_ids=(SECRET_VALUES[0],),
        data_categories=(DataCategory.PERSONAL_INFORMATION,),
        valid_from=T0,
        valid_until=T0 + timedelta(days=1),
        max_disclosures=quota,
        registered_by="officer-a",
    )


def le_transfer(event_id: str, ref: str = "ord-1") -> TransferRequested:
    return TransferRequested(
        event_id=event_id,
        occurred_at=T0,
        source_service="svc",
        account_id=SECRET_VALUES[0],
        data_categories=(DataCategory.PERSONAL_INFORMATION,),
        recipient=Recipient(id="agency-1", type=RecipientType.LAW_ENFORCEMENT, jurisdiction="CH"),
        purpose=Purpose.LEGAL_ORDER,
        order_ref=ref,
    )


def summary(outcome: str, codes: tuple[str, ...], duplicate: bool = False) -> GuardSummary:
    return GuardSummary("evt", outcome, duplicate, "2026.1", codes)


# One step of an order's history as the alerts process sees it, in consumption order:
# ("reg", None), ("allow", event number), ("allow-dup", event number), ("quota-block", n).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("allow"), st.integers(0, 6)),
        st.tuples(st.just("allow-dup"), st.integers(0, 6)),
        st.tuples(st.just("quota-block"), st.integers(100, 106)),
    ),
    max_size=15,
)


@given(quota=st.none() | st.integers(1, 5), before=steps, after=steps, remembered=st.booleans())
def test_an_order_is_announced_exhausted_exactly_once_when_its_quota_is_used(
    quota: int | None,
    before: list[tuple[str, int]],
    after: list[tuple[str, int]],
    remembered: bool,
) -> None:
    classifier = Classifier()
    raised: list[int] = []
    history: list[tuple[str, int | None]] = [*before, ("reg", None), *after]
    if not remembered:  # the registration happened before this process started
        history.remove(("reg", None))
    allowed: set[int] = set()
    quota_blocked = False
    for position, (step, number) in enumerate(history):
        if step == "reg":
            alerts = classifier.order(registration("ord-1", quota), SRC)
        elif step == "quota-block":
            quota_blocked = True
            event = le_transfer(f"evt-{number}")
            alerts = classifier.blocked(event, summary("BLOCK", ("ORDER_QUOTA_EXHAUSTED",)), SRC)
        else:
            assert number is not None
            duplicate = step == "allow-dup"
            if not duplicate:
                allowed.add(number)
            event = le_transfer(f"evt-{number}")
            alerts = classifier.approved(event, summary("ALLOW", ("ORDER",), duplicate), SRC)
        exhausted = [a for a in alerts if a.kind is AlertKind.ORDER_EXHAUSTED]
        assert all(a.alert_id == "ORDER_EXHAUSTED:ord-1" for a in exhausted)
        raised.extend(position for _ in exhausted)
    known = remembered and quota is not None
    should = quota_blocked or (known and quota is not None and len(allowed) >= quota)
    assert len(raised) == (1 if should else 0)


def test_exhaustion_is_announced_by_the_allow_that_spends_the_last_disclosure() -> None:
    classifier = Classifier()
    assert classifier.order(registration("ord-1", 2), SRC) == []
    assert classifier.approved(le_transfer("e1"), summary("ALLOW", ("ORDER",)), SRC) == []
    (alert,) = classifier.approved(le_transfer("e2"), summary("ALLOW", ("ORDER",)), SRC)
    assert (alert.event_id, alert.order_ref, alert.clause_ids) == (
        "e2",
        "ord-1",
        ("C-LAW-ENFORCEMENT",),
    )
    blocked = classifier.blocked(
        le_transfer("e3"), summary("BLOCK", ("ORDER_QUOTA_EXHAUSTED",)), SRC
    )
    assert [a.kind for a in blocked] == [AlertKind.LAW_ENFORCEMENT_BLOCKED]


def test_memory_for_orders_is_bounded() -> None:
    classifier = Classifier(capacity=3)
    for i in range(10):
        classifier.order(registration(f"ord-{i}", 1), SRC)
    # the oldest orders are forgotten: their quota is unknown, so an ALLOW raises nothing
    assert classifier.approved(le_transfer("e", "ord-0"), summary("ALLOW", ()), SRC) == []
    assert len(classifier.approved(le_transfer("e", "ord-9"), summary("ALLOW", ()), SRC)) == 1


@given(
    reason=st.text(max_size=2000),
    where=st.tuples(st.text(min_size=1, max_size=30), st.integers(0, 99), st.integers(0, 10**9)),
)
def test_dead_letters_alert_with_their_origin_and_a_bounded_reason(
    reason: str, where: tuple[str, int, int]
) -> None:
    topic, partition, offset = where
    headers = {
        "dlq.reason": reason.encode(),
        "dlq.topic": topic.encode(),
        "dlq.partition": str(partition).encode(),
        "dlq.offset": str(offset).encode(),
    }
    alert = dead_letter(headers, Source("sharing.transfers.dlq", 0, 5))
    assert alert.kind is AlertKind.DEAD_LETTER
    assert alert.alert_id == f"DEAD_LETTER:{topic}:{partition}:{offset}"
    assert alert.detail is not None
    assert len(alert.detail) <= MAX_DETAIL_CHARS


@given(
    attempt=st.integers(1, 200),
    base=st.floats(0.001, 10),
    cap=st.floats(0.001, 600),
    jitter=st.floats(0, 1),
    unit=st.floats(0, 1, exclude_max=True),
)
def test_backoff_grows_exponentially_up_to_the_cap_less_at_most_the_jitter(
    attempt: int, base: float, cap: float, jitter: float, unit: float
) -> None:
    delay = backoff_delay(attempt, base, cap, jitter, unit)
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    assert ceiling * (1 - jitter) - 1e-9 <= delay <= ceiling + 1e-9
    assert delay <= cap + 1e-9
    # without jitter the schedule never shrinks and doubles until the cap
    assert backoff_delay(attempt + 1, base, cap, 0, unit) >= backoff_delay(
        attempt, base, cap, 0, unit
    )


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="jitter"):
        backoff_delay(1, 1, 1, 2, 0)


@given(st.integers(100, 599))
def test_only_server_errors_timeouts_and_throttling_are_retried(status: int) -> None:
    assert retryable(status) == (status >= 500 or status in (408, 425, 429))


@given(secret=st.binary(min_size=1), timestamp=st.integers(0, 2**40), body=st.binary())
def test_the_signature_is_hmac_sha256_over_timestamp_and_body(
    secret: bytes, timestamp: int, body: bytes
) -> None:
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature(secret, timestamp, body) == f"sha256={expected}"
    assert signature(secret, timestamp, body + b"x") != signature(secret, timestamp, body)


@given(maxsize=st.integers(1, 10), count=st.integers(0, 40))
def test_a_full_queue_drops_the_oldest_alert(maxsize: int, count: int) -> None:
    queue = AlertQueue(maxsize)
    items = [
        Queued(dead_letter({}, Source("dlq", 0, i)), T0 + timedelta(seconds=i))
        for i in range(count)
    ]
    dropped = [d for d in (queue.put(item) for item in items) if d is not None]
    assert dropped == items[: max(0, count - maxsize)]
    assert len(queue) == min(count, maxsize)
    kept = [queue.get(0) for _ in range(len(queue))]
    assert kept == items[max(0, count - maxsize) :]
    assert queue.get(0) is None
