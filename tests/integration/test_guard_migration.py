"""Upgrading from the Faust tables of the earlier runtime: ``sharing-guard
migrate-faust-state`` carries consents, rights, recipients and orders (with the
disclosures spent) into the new changelogs, and a worker started afterwards decides on
them: an erased account stays erased, an exhausted order stays exhausted. Run twice, it
refuses and writes nothing.

The old changelog records are written exactly as the Faust tables wrote them: keys
serialized by faust-streaming itself (``Topic.prepare_key`` with the table's key
serializer), values the state records' JSON, in the account's partition.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import faust
import pytest
from guard_harness import DecisionReader, GuardProcess, fresh_topics, guard_env
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from sharing_guard.client import TransferClient
from sharing_guard.contract import (
    ConsentScope,
    ConsentStatus,
    DataCategory,
    OrderType,
    Purpose,
    ReasonCode,
    Recipient,
    RecipientType,
    TransferRequested,
)
from sharing_guard.core.state import (
    ConsentState,
    OrderState,
    RecipientState,
    RightsState,
    StateRecord,
    consent_key,
)
from sharing_guard.stream.outbox import _key_index
from sharing_guard.stream.state_codec import encode_state

pytestmark = pytest.mark.kafka
T0 = datetime(2026, 11, 1, tzinfo=UTC)
PARTITIONS = 6


def old_changelogs(bootstrap: str, app_id: str) -> None:
    """The four state tables' changelogs as the Faust runtime left them."""
    app = faust.App(app_id, broker="kafka://127.0.0.1:1", store="memory://")
    tables = {
        "consents": app.Table("consents", partitions=PARTITIONS, key_type=str, value_type=bytes),
        "rights": app.Table("rights", partitions=PARTITIONS, key_type=str, value_type=bytes),
        "recipients": app.GlobalTable("recipients", partitions=1, key_type=str, value_type=bytes),
        "orders": app.Table("orders", partitions=1, key_type=str, value_type=bytes),
    }
    order = OrderState(
        order_type=OrderType.COURT_ORDER,
        authority="Zug court",
        jurisdiction="CH",
        recipient_id="fedpol",
        account_ids=frozenset({"acc-kept"}),
        data_categories=frozenset({DataCategory.PERSONAL_INFORMATION}),
        valid_from=T0,
        valid_until=T0 + timedelta(days=30),
        max_disclosures=2,
        registered_by="officer-a",
        approved_by="officer-b",
        disclosures=2,
    )
    rows: list[tuple[str, str, StateRecord | None, int]] = [
        ("rights", "acc-erased", RightsState(erased=True), part("acc-erased")),
        (
            "consents",
            consent_key("acc-kept", ConsentScope.MARKETING, None),
            ConsentState(ConsentStatus.GRANTED, T0),
            part("acc-kept"),
        ),
        (
            "consents",
            consent_key("acc-gone", ConsentScope.MARKETING, None),
            ConsentState(ConsentStatus.GRANTED, T0),
            part("acc-gone"),
        ),
        ("consents", consent_key("acc-gone", ConsentScope.MARKETING, None), None, part("acc-gone")),
        (
            "recipients",
            "rcp-mailer",
            RecipientState(
                RecipientType.SUBCONTRACTOR, "CH", frozenset({Purpose.PROMOTIONAL_OFFERS}), "dpa-1"
            ),
            0,
        ),
        ("orders", "ord-1", order, 0),
    ]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [NewTopic(t.changelog_topic.get_topic_name(), t.partitions, 1) for t in tables.values()]
        )
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for name, key, record, partition in rows:
            table = tables[name]
            topic = table.changelog_topic
            raw_key, _ = topic.prepare_key(key, table.key_serializer)
            value = None if record is None else encode_state(record)
            producer.send(topic.get_topic_name(), value, key=raw_key, partition=partition)
        producer.flush()
    finally:
        producer.close()


def part(account: str) -> int:
    """The account partition of an account (the producers' default partitioner)."""
    return _key_index(account.encode(), PARTITIONS)


def transfer(event_id: str, account: str, law_enforcement: bool = False) -> TransferRequested:
    return TransferRequested(
        event_id=event_id,
        occurred_at=T0 + timedelta(days=1),
        source_service="svc",
        account_id=account,
        data_categories=(DataCategory.PERSONAL_INFORMATION,),
        recipient=Recipient(
            id="fedpol" if law_enforcement else "rcp-mailer",
            type=RecipientType.LAW_ENFORCEMENT if law_enforcement else RecipientType.SUBCONTRACTOR,
            jurisdiction="CH",
        ),
        purpose=Purpose.LEGAL_ORDER if law_enforcement else Purpose.PROMOTIONAL_OFFERS,
        order_ref="ord-1" if law_enforcement else None,
    )


def migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sharing_guard.cli", "migrate-faust-state"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_faust_tables_state_is_carried_into_the_new_changelogs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = fresh_topics(kafka_bootstrap, partitions=PARTITIONS)
    app_id = f"upgrade-{topics.transfers[-8:]}"
    old_changelogs(kafka_bootstrap, app_id)
    env = guard_env(kafka_bootstrap, topics, app_id, tmp_path / "d")
    done = migrate(env)
    assert done.returncode == 0, done.stderr
    assert "consents: 3 record(s) read, 1 entries written" in done.stdout
    assert "orders: 1 record(s) read, 1 entries written" in done.stdout

    client = TransferClient(kafka_bootstrap, topics=topics)
    reader = DecisionReader(kafka_bootstrap, topics)
    worker = GuardProcess(env, tmp_path / "w.log").start()
    try:
        worker.wait_ready()
        stream = [
            transfer("t-erased", "acc-erased"),
            transfer("t-kept", "acc-kept"),
            transfer("t-gone", "acc-gone"),
            transfer("t-order", "acc-kept", law_enforcement=True),
        ]
        for t in stream:
            client.publish(t)
        decided = reader.wait_for([t.event_id for t in stream])
    finally:
        worker.stop()
        client.close()
        reader.close()
    assert ReasonCode.SUBJECT_ERASED in decided["t-erased"].codes
    assert decided["t-kept"].codes == (ReasonCode.PROCESSOR, ReasonCode.PROCESSOR)
    assert decided["t-gone"].codes == (ReasonCode.CONSENT_MISSING,)
    assert ReasonCode.ORDER_QUOTA_EXHAUSTED in decided["t-order"].codes

    again = migrate(env)
    assert again.returncode == 2
    assert "holds records already" in again.stderr
