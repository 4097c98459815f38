"""The law-enforcement order workflow end to end on the real broker.

A guard worker and the order service run as processes on fresh topics; legal officers
use the ``sharing-guard orders`` CLI. The story: register → a transfer before approval is
blocked (ORDER_NOT_APPROVED) → the registering officer's approval is refused (four eyes)
→ a second officer approves → transfers within scope are allowed up to the quota, then
ORDER_QUOTA_EXHAUSTED → revoke → ORDER_REVOKED. Each step shows in the order's state from
the service and in ``governance.audit`` (who did what). The service's state survives a
restart, and rebuilds from the topics when its file is lost. Its log holds no account id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from guard_harness import (
    DecisionReader,
    GuardProcess,
    TopicReader,
    fresh_topics,
    guard_env,
)
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from orders_harness import WAIT_S, OrdersProcess, eventually, issue_token
from sharing_guard.client import TransferClient
from sharing_guard.codec import contract_registry
from sharing_guard.contract import AuditKind, AuditRecord, Decision

pytestmark = pytest.mark.kafka


@dataclass
class Cli:
    """Runs ``sharing-guard orders ...`` as an officer would."""

    url: str
    base_env: dict[str, str]

    def __call__(self, token: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **self.base_env,
            "SHARING_GUARD_ORDERS_URL": self.url,
            "SHARING_GUARD_ORDERS_TOKEN": token,
        }
        return subprocess.run(
            [sys.executable, "-m", "sharing_guard.cli", "orders", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def json(self, token: str, *args: str) -> Any:
        result = self(token, *args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def environment(kafka_bootstrap: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    topics = fresh_topics(kafka_bootstrap)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SHARING_GUARD_")}
    tokens_file = tmp_path / "tokens.json"
    tokens = {
        "a": issue_token(tokens_file, "officer-anna", "legal_officer"),
        "b": issue_token(tokens_file, "officer-bruno", "legal_officer"),
        "reviewer": issue_token(tokens_file, "reviewer-rita", "security_reviewer"),
    }
    orders_env = {
        **base_env,
        "SHARING_GUARD_ORDERS_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SHARING_GUARD_ORDERS_ORDERS_TOPIC": topics.orders,
        "SHARING_GUARD_ORDERS_DECISIONS_TOPIC": topics.decisions,
        "SHARING_GUARD_ORDERS_TOKENS_FILE": str(tokens_file),
        "SHARING_GUARD_ORDERS_STATE_FILE": str(tmp_path / "state" / "orders.sqlite3"),
        "SHARING_GUARD_ORDERS_LOG_LEVEL": "INFO",
    }
    worker = GuardProcess(
        guard_env(kafka_bootstrap, topics, f"orders-{topics.orders[-8:]}", tmp_path / "data"),
        tmp_path / "worker.log",
    ).start()
    service = OrdersProcess(orders_env, tmp_path / "orders.log").start()
    decisions = DecisionReader(kafka_bootstrap, topics)
    audit = TopicReader(kafka_bootstrap, topics.audit)
    client = TransferClient(kafka_bootstrap, topics=topics)
    try:
        worker.wait_ready()
        service.wait_ready()
        yield {
            "topics": topics,
            "bootstrap": kafka_bootstrap,
            "tokens": tokens,
            "service": service,
            "cli": Cli(service.url, base_env),
            "decisions": decisions,
            "audit": audit,
            "client": client,
            "log": tmp_path / "orders.log",
            "state_file": tmp_path / "state" / "orders.sqlite3",
        }
    finally:
        client.close()
        decisions.close()
        audit.close()
        service.stop()
        worker.stop()


def test_order_workflow_end_to_end(environment: dict[str, Any]) -> None:  # noqa: PLR0915 (one story)
    tokens: dict[str, str] = environment["tokens"]
    cli: Cli = environment["cli"]
    service: OrdersProcess = environment["service"]
    reader: DecisionReader = environment["decisions"]
    client: TransferClient = environment["client"]
    suffix = uuid.uuid4().hex[:8]
    # A court-style reference: "/" works in the API's paths and in the CLI.
    ref, accounts = f"ZH/2026/{suffix}", [f"acct-{suffix}-1", f"acct-{suffix}-2"]
    now = datetime.now(UTC)

    def show() -> dict[str, Any]:
        return cli.json(tokens["reviewer"], "show", ref)  # type: ignore[no-any-return]

    def transfer(account: str) -> Decision:
        event_id = f"t-{uuid.uuid4()}"
        client.request_transfer(
            event_id=event_id,
            source_service="virtual-drive",
            account_id=account,
            data_categories=["VIRTUAL_DRIVE_DATA"],
            recipient={"id": "police-zh", "type": "LAW_ENFORCEMENT", "jurisdiction": "CH"},
            purpose="LEGAL_ORDER",
            order_ref=ref,
            payload_ref=f"drive://export/{event_id}",
        )
        return reader.wait_for([event_id], timeout_s=WAIT_S)[event_id]

    # 1. Officer Anna registers the order (quota: 2 disclosures).
    registered = cli.json(
        tokens["a"],
        "register",
        "--order-ref", ref,
        "--type", "COURT_ORDER",
        "--authority", "obergericht-zh",
        "--jurisdiction", "CH",
        "--recipient", "police-zh",
        "--account", accounts[0],
        "--account", accounts[1],
        "--category", "VIRTUAL_DRIVE_DATA",
        "--valid-from", (now - timedelta(hours=1)).isoformat(),
        "--valid-until", (now + timedelta(days=1)).isoformat(),
        "--max-disclosures", "2",
    )  # fmt: skip
    assert (registered["state"], registered["registered_by"]) == ("PENDING", "officer-anna")

    # 2. A transfer before approval is blocked.
    early = transfer(accounts[0])
    assert (early.outcome, early.order_ref) == ("BLOCK", ref)
    assert "ORDER_NOT_APPROVED" in early.codes
    shown = eventually(show, lambda o: o["refused_count"] == 1, "refusal learned")
    assert (shown["state"], shown["disclosure_count"]) == ("PENDING", 0)

    # 3. Anna cannot approve her own order: the CLI says why, the API answers 409.
    own = cli(tokens["a"], "approve", ref)
    assert own.returncode == 5
    assert "four eyes" in own.stderr
    direct = httpx.post(
        f"{service.url}/orders/{ref}/approve",
        headers={"Authorization": f"Bearer {tokens['a']}"},
        timeout=30,
    )
    assert direct.status_code == 409
    assert "four eyes" in direct.json()["detail"]
    # A reviewer may read but not approve.
    assert cli(tokens["reviewer"], "approve", ref).returncode == 4

    # 4. Officer Bruno approves it.
    approved = cli.json(tokens["b"], "approve", ref)
    assert (approved["state"], approved["approved_by"]) == ("IN_FORCE", "officer-bruno")

    # 5. Transfers within scope are allowed up to the quota, then refused.
    first, second = transfer(accounts[0]), transfer(accounts[1])
    assert [first.outcome, second.outcome] == ["ALLOW", "ALLOW"]
    assert first.codes == second.codes == ("ORDER",)
    third = transfer(accounts[0])
    assert third.outcome == "BLOCK"
    assert "ORDER_QUOTA_EXHAUSTED" in third.codes
    shown = eventually(show, lambda o: o["refused_count"] == 2, "exhaustion learned")
    assert (shown["state"], shown["disclosure_count"], shown["remaining_disclosures"]) == (
        "EXHAUSTED",
        2,
        0,
    )
    assert {d["event_id"] for d in shown["disclosures"]} == {first.event_id, second.event_id}
    listed = cli(tokens["reviewer"], "list", "--state", "EXHAUSTED")
    assert listed.returncode == 0
    assert ref in listed.stdout

    # 6. Bruno revokes it; any later transfer is refused as revoked.
    revoked = cli.json(tokens["b"], "revoke", ref, "--reason", "order lifted by the court")
    assert (revoked["state"], revoked["revoked_by"]) == ("REVOKED", "officer-bruno")
    late = transfer(accounts[1])
    assert late.outcome == "BLOCK"
    assert "ORDER_REVOKED" in late.codes
    final = eventually(show, lambda o: o["refused_count"] == 3, "revocation refusal learned")
    assert (final["state"], final["disclosure_count"]) == ("REVOKED", 2)

    # 7. The audit trail names who did each step, and holds every decision on the order.
    audit = _audit_records(environment["audit"], ref, expected=3 + 5)
    changes = [(r.event_type, r.actor) for r in audit if r.kind is AuditKind.GOVERNANCE_CHANGE]
    assert changes == [
        ("OrderRegistered", "officer-anna"),
        ("OrderApproved", "officer-bruno"),
        ("OrderRevoked", "officer-bruno"),
    ]
    decided = {r.event_id: r.outcome for r in audit if r.kind is AuditKind.DECISION}
    assert decided == {
        early.event_id: "BLOCK",
        first.event_id: "ALLOW",
        second.event_id: "ALLOW",
        third.event_id: "BLOCK",
        late.event_id: "BLOCK",
    }

    # 8. A restart keeps the state; a lost state file is rebuilt from the topics.
    service.stop()
    service.start().wait_ready()
    assert show() == final
    service.stop()
    environment["state_file"].unlink()
    service.start().wait_ready()
    assert show() == final

    # 9. The service's log names orders and officers, never an account.
    log_text = environment["log"].read_text()
    assert f"order_ref={ref}" in log_text
    assert "officer=officer-bruno" in log_text
    assert not any(account in log_text for account in accounts)
    assert not any(token in log_text for token in tokens.values())

    # 10. An order the broker will not take as one record is refused as too large (413,
    # the CLI exits 2), not answered 503 as if a retry could help; nothing is registered.
    admin = KafkaAdminClient(bootstrap_servers=environment["bootstrap"])
    try:
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, environment["topics"].orders,
                            configs={"max.message.bytes": "1024"})]
        )  # fmt: skip
    finally:
        admin.close()
    big = cli(
        tokens["a"],
        "register",
        "--order-ref", f"ZH/2026/{suffix}-big",
        "--type", "COURT_ORDER",
        "--authority", "obergericht-zh",
        "--jurisdiction", "CH",
        "--recipient", "police-zh",
        *[arg for n in range(60) for arg in ("--account", f"acct-{suffix}-{n:04d}-xxxxxxxx")],
        "--category", "VIRTUAL_DRIVE_DATA",
        "--valid-from", now.isoformat(),
        "--valid-until", (now + timedelta(days=1)).isoformat(),
    )  # fmt: skip
    assert big.returncode == 2, big.stderr
    assert "too large" in big.stderr
    listed = cli.json(tokens["reviewer"], "list")
    assert [o["order_ref"] for o in listed] == [ref]


def _audit_records(reader: TopicReader, ref: str, expected: int) -> list[AuditRecord]:
    registry = contract_registry()

    def about_order() -> list[AuditRecord]:
        records = [registry.decode(r.value) for r in reader.poll()]
        return [r for r in records if isinstance(r, AuditRecord) and r.order_ref == ref]

    found: list[AuditRecord] = eventually(
        about_order, lambda rs: len(rs) >= expected, "audit records of the order"
    )
    found.sort(key=lambda r: r.occurred_at)
    return found
