"""The guard on the real broker under bad input and racing governance changes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from guard_harness import DecisionReader, GuardProcess, TopicReader, fresh_topics, guard_env
from kafka import KafkaProducer
from sharing_guard.client import TransferClient
from sharing_guard.codec import contract_registry
from sharing_guard.contract import (
    ConsentChanged,
    ConsentScope,
    ConsentStatus,
    DataCategory,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    OrderType,
    Outcome,
    Purpose,
    ReasonCode,
    Recipient,
    RecipientRegistered,
    RecipientType,
    SubjectRightsAction,
    SubjectRightsChanged,
    TransferRequested,
)
from sharing_guard.settings import Topics

pytestmark = pytest.mark.kafka
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class Guard:
    topics: Topics
    worker: GuardProcess
    client: TransferClient
    decisions: DecisionReader


@pytest.fixture
def guard(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Guard]:
    topics = fresh_topics(kafka_bootstrap)
    env = guard_env(kafka_bootstrap, topics, f"faults-{topics.transfers[-8:]}", tmp_path / "d")
    env["SHARING_GUARD_MAX_RECORD_BYTES"] = "2048"
    worker = GuardProcess(env, tmp_path / "worker.log").start()
    client = TransferClient(kafka_bootstrap, topics=topics)
    decisions = DecisionReader(kafka_bootstrap, topics)
    try:
        worker.wait_ready()
        yield Guard(topics, worker, client, decisions)
    finally:
        client.close()
        decisions.close()
        worker.stop()


def promo(event_id: str, account: str, minute: int) -> TransferRequested:
    return TransferRequested(
        event_id=event_id,
        occurred_at=T0 + timedelta(minutes=minute),
        source_service="campaigns",
        account_id=account,
        data_categories=(DataCategory.PERSONAL_INFORMATION,),
        recipient=Recipient(id="rcp-mailer", type=RecipientType.SUBCONTRACTOR, jurisdiction="CH"),
        purpose=Purpose.PROMOTIONAL_OFFERS,
    )


def consent(event_id: str, account: str, status: ConsentStatus, minute: int) -> ConsentChanged:
    return ConsentChanged(
        event_id=event_id,
        occurred_at=T0 + timedelta(minutes=minute),
        account_id=account,
        scope=ConsentScope.MARKETING,
        status=status,
    )


def mailer() -> RecipientRegistered:
    return RecipientRegistered(
        event_id="reg-mailer",
        occurred_at=T0,
        recipient_id="rcp-mailer",
        recipient_type=RecipientType.SUBCONTRACTOR,
        jurisdiction="CH",
        permitted_purposes=(Purpose.PROMOTIONAL_OFFERS,),
        agreement_ref="dpa-1",
    )


def test_undecodable_records_go_to_the_dead_letter_topic_and_valid_ones_are_decided(
    guard: Guard, kafka_bootstrap: str
) -> None:
    registry = contract_registry()
    valid = registry.encode(promo("ok-1", "acc-1", 5))
    bad = {
        "truncated": valid[:-7],
        "garbage": b"\x00\xffnot avro at all",
        "wrong-schema": registry.encode(consent("c-1", "acc-1", ConsentStatus.GRANTED, 1)),
        "unknown-fingerprint": valid[:2] + b"\x01" * 8 + valid[10:],
        "oversized": valid + b"\x00" * 4096,
        "empty": b"",
    }
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for name, value in bad.items():
        producer.send(
            guard.topics.transfers, key=b"acc-1", value=value, headers=[("case", name.encode())]
        )
        producer.send(
            guard.topics.transfers,
            key=b"acc-1",
            value=registry.encode(promo(f"ok-{name}", "acc-1", 5)),
        )
    producer.flush()
    producer.close()

    decided = guard.decisions.wait_for({f"ok-{name}" for name in bad})
    assert all(
        d.codes == (ReasonCode.RECIPIENT_NOT_REGISTERED, ReasonCode.CONSENT_MISSING)
        for d in decided.values()
    )

    dlq = TopicReader(kafka_bootstrap, guard.topics.dlq)
    try:
        records = []
        for _ in range(50):
            records = dlq.poll()
            if len(records) >= len(bad):
                break
    finally:
        dlq.close()
    by_case = {dict(r.headers)["case"].decode(): r for r in records}
    assert set(by_case) == set(bad)
    for name, record in by_case.items():
        headers = dict(record.headers)
        assert record.value == bad[name] or (name == "empty" and not record.value)
        assert headers["dlq.topic"].decode() == guard.topics.transfers
        assert headers["dlq.reason"]
        assert b"acc-1" not in headers["dlq.reason"]
    assert b"does not belong" in dict(by_case["wrong-schema"].headers)["dlq.reason"]
    assert b"exceeds" in dict(by_case["oversized"].headers)["dlq.reason"]
    assert "sharing_guard_dead_letters" in guard.worker.metrics()


ROUNDS = 150


def test_no_marketing_transfer_is_allowed_after_an_acknowledged_withdrawal(guard: Guard) -> None:
    client = guard.client
    client.publish(mailer())
    accounts = [f"acc-{i:04d}" for i in range(ROUNDS)]
    for account in accounts:
        client.publish_async(consent(f"grant-{account}", account, ConsentStatus.GRANTED, 1))
    client.flush()
    control = [promo(f"control-{a}", a, 3) for a in accounts[:20]]
    for event in control:
        client.publish(event)
    assert all(
        d.outcome is Outcome.ALLOW
        for d in guard.decisions.wait_for({e.event_id for e in control}).values()
    )

    for account in accounts:
        client.publish(consent(f"withdraw-{account}", account, ConsentStatus.WITHDRAWN, 5))
        client.publish_async(promo(f"after-{account}", account, 6))
    client.flush()
    decided = guard.decisions.wait_for({f"after-{a}" for a in accounts})
    allowed = [k for k, d in decided.items() if d.outcome is Outcome.ALLOW]
    assert allowed == []
    assert all(d.codes == (ReasonCode.CONSENT_WITHDRAWN,) for d in decided.values())


def test_erasure_restriction_and_revocation_apply_to_transfers_produced_right_after(
    guard: Guard,
) -> None:
    client = guard.client
    client.publish(
        RecipientRegistered(
            event_id="reg-analytics",
            occurred_at=T0,
            recipient_id="rcp-analytics",
            recipient_type=RecipientType.AGENT,
            jurisdiction="CH",
            permitted_purposes=(Purpose.DATA_ANALYSIS,),
            agreement_ref="dpa-2",
        )
    )
    expected: dict[str, ReasonCode] = {}
    for i in range(40):
        account = f"acc-r{i:03d}"
        action = (
            SubjectRightsAction.ERASURE_COMPLETED
            if i % 2
            else SubjectRightsAction.RESTRICTION_APPLIED
        )
        client.publish(
            SubjectRightsChanged(
                event_id=f"rights-{i}", occurred_at=T0, account_id=account, action=action
            )
        )
        event = TransferRequested(
            event_id=f"t-{i}",
            occurred_at=T0 + timedelta(minutes=1),
            source_service="analytics",
            account_id=account,
            data_categories=(DataCategory.PERSONAL_INFORMATION,),
            recipient=Recipient(id="rcp-analytics", type=RecipientType.AGENT, jurisdiction="CH"),
            purpose=Purpose.DATA_ANALYSIS,
        )
        client.publish_async(event)
        expected[event.event_id] = (
            ReasonCode.SUBJECT_ERASED if i % 2 else ReasonCode.PROCESSING_RESTRICTED
        )
    for i in range(10):
        ref = f"ord-{i}"
        client.publish(
            OrderRegistered(
                event_id=f"reg-{ref}",
                occurred_at=T0,
                order_ref=ref,
                order_type=OrderType.COURT_ORDER,
                authority="Zug court",
                jurisdiction="CH",
                recipient_id="fedpol",
                account_ids=("acc-le",),
                data_categories=(DataCategory.PERSONAL_INFORMATION,),
                valid_from=T0,
                valid_until=T0 + timedelta(days=30),
                max_disclosures=None,
                registered_by="officer-a",
            )
        )
        client.publish(
            OrderApproved(
                event_id=f"ok-{ref}", occurred_at=T0, order_ref=ref, approved_by="officer-b"
            )
        )
        client.publish(
            OrderRevoked(
                event_id=f"rev-{ref}",
                occurred_at=T0,
                order_ref=ref,
                revoked_by="officer-b",
                reason="quashed",
            )
        )
        event = TransferRequested(
            event_id=f"le-{i}",
            occurred_at=T0 + timedelta(minutes=1),
            source_service="legal-export",
            account_id="acc-le",
            data_categories=(DataCategory.PERSONAL_INFORMATION,),
            recipient=Recipient(id="fedpol", type=RecipientType.LAW_ENFORCEMENT, jurisdiction="CH"),
            purpose=Purpose.LEGAL_ORDER,
            order_ref=ref,
        )
        client.publish_async(event)
        expected[event.event_id] = ReasonCode.ORDER_REVOKED
    client.flush()
    decided = guard.decisions.wait_for(expected)
    assert {k: d.codes for k, d in decided.items()} == {k: (code,) for k, code in expected.items()}
