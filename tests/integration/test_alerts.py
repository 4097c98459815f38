"""``sharing-guard alerts`` on the real broker, posting to a real local HTTP receiver.

The first test runs a real guard worker on fresh topics, produces transfers that must alert
(and some that must not), and lets the receiver fail (500s, then timeouts) before it
accepts: every expected alert arrives, each accepted exactly once, retries are counted, no
payload carries an account id, every signature verifies. The second produces the guard's
output records directly while the webhook is down and the queue tiny: the consumer still
commits everything, drops are counted, and the newest alerts arrive once the webhook is up.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from guard_harness import DecisionReader, GuardProcess, free_port, fresh_topics, guard_env
from kafka import KafkaAdminClient, KafkaProducer
from sharing_guard.client import TransferClient
from sharing_guard.codec import contract_registry
from sharing_guard.contract import (
    DataCategory,
    OrderApproved,
    OrderRegistered,
    OrderType,
    Purpose,
    Recipient,
    RecipientType,
    TransferRequested,
)
from sharing_guard.settings import Topics

pytestmark = pytest.mark.kafka
T0 = datetime(2026, 11, 1, tzinfo=UTC)
SECRET = "test-webhook-secret"
ACCOUNTS = ("acct-PERSONAL-a91", "acct-PERSONAL-b22", "acct-PERSONAL-c33")


# --- a local webhook receiver --------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook on loopback; ``behaviour(n)`` says how to answer request number n."""

    port: int
    behaviour: Callable[[int], str] = lambda _n: "ok"
    attempts: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    number = len(receiver.attempts)
                    mode = receiver.behaviour(number)
                    attempt = {"body": body, "headers": dict(self.headers), "mode": mode}
                    receiver.attempts.append(attempt)
                if mode == "fail":
                    self.send_response(500)
                elif mode == "hang":
                    time.sleep(2.0)  # beyond the sender's timeout: it has given up
                    self.send_response(200)
                else:
                    with receiver.lock:
                        receiver.accepted.append(attempt)
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def accepted_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(json.loads(a["body"])["alert_id"] for a in self.accepted)


# --- the alerts process --------------------------------------------------------------------


@dataclass
class AlertsProcess:
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> AlertsProcess:
        env = {**self.env, "SHARING_GUARD_ALERTS_WEB_PORT": str(self.port)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sharing_guard.cli", "alerts"],
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self._status("/readyz") == 200, 60, self.tail)
        assert self._status("/livez") == 200
        return self

    def _status(self, path: str) -> int | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"alerts process exited: {self.tail()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2).status_code
        except httpx.HTTPError:
            return None

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include ``labels``."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
            if match is None:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(match.group(2))
        return total

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def wait_until(condition: Callable[[], bool], timeout_s: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout_s}s: {why()}")
        time.sleep(0.2)


def alerts_env(bootstrap: str, topics: Topics, webhook_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARING_GUARD_")}
    env.update(
        {
            "SHARING_GUARD_ALERTS_BOOTSTRAP_SERVERS": bootstrap,
            "SHARING_GUARD_ALERTS_WEBHOOK_URL": f"http://127.0.0.1:{webhook_port}/hook",
            "SHARING_GUARD_ALERTS_WEBHOOK_SECRET": SECRET,
            "SHARING_GUARD_ALERTS_GROUP_ID": f"alerts-{uuid.uuid4().hex[:8]}",
            "SHARING_GUARD_ALERTS_AUTO_OFFSET_RESET": "earliest",
            "SHARING_GUARD_ALERTS_TIMEOUT_S": "0.5",
            "SHARING_GUARD_ALERTS_BACKOFF_BASE_S": "0.05",
            "SHARING_GUARD_ALERTS_BACKOFF_MAX_S": "0.4",
            "SHARING_GUARD_ALERTS_LOG_LEVEL": "INFO",
        }
    )
    for name, value in topics.model_dump().items():
        env[f"SHARING_GUARD_ALERTS_TOPICS__{name.upper()}"] = value
    env.update(extra)
    return env


def transfer(
    event_id: str,
    account: str,
    rtype: RecipientType,
    purpose: Purpose,
    *,
    categories: tuple[DataCategory, ...] = (DataCategory.PERSONAL_INFORMATION,),
    order_ref: str | None = None,
    recipient: str = "rcp-x",
) -> TransferRequested:
    return TransferRequested(
        event_id=event_id,
        occurred_at=T0 + timedelta(minutes=5),
        source_service="svc-test",
        account_id=account,
        data_categories=categories,
        recipient=Recipient(id=recipient, type=rtype, jurisdiction="CH"),
        purpose=purpose,
        order_ref=order_ref,
        payload_ref=f"s3://exports/{account}.zip",
    )


def assert_signed(attempt: dict[str, Any]) -> None:
    headers = {k.lower(): v for k, v in attempt["headers"].items()}
    timestamp = headers["x-sharing-guard-timestamp"]
    mac = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + attempt["body"], hashlib.sha256)
    assert headers["x-sharing-guard-signature"] == f"sha256={mac.hexdigest()}"


# --- through a real guard ------------------------------------------------------------------


@pytest.fixture
def guard(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Topics, GuardProcess]]:
    topics = fresh_topics(kafka_bootstrap)
    env = guard_env(kafka_bootstrap, topics, f"alerts-{topics.transfers[-8:]}", tmp_path / "d")
    worker = GuardProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        yield topics, worker
    finally:
        worker.stop()


def produce_scenario(
    bootstrap: str, topics: Topics, client: TransferClient, decisions: DecisionReader
) -> None:
    """Transfers that must alert, one that must not, an order spent, a dead letter."""
    le = RecipientType.LAW_ENFORCEMENT
    vdd = transfer(
        "vdd-1",
        ACCOUNTS[0],
        RecipientType.THIRD_PARTY,
        Purpose.CONSENTED_SHARING,
        categories=(DataCategory.VIRTUAL_DRIVE_DATA,),
    )
    client.publish(vdd)
    client.publish(vdd)  # a redelivery: the guard marks it duplicate, no second alert
    client.publish(transfer("le-missing", ACCOUNTS[1], le, Purpose.LEGAL_ORDER))
    quiet = transfer("quiet-1", ACCOUNTS[2], RecipientType.THIRD_PARTY, Purpose.DATA_ANALYSIS)
    client.publish(quiet)  # blocked, but neither drive data nor law enforcement
    client.publish(
        OrderRegistered(
            event_id="reg-ord-1",
            occurred_at=T0,
            order_ref="ord-1",
            order_type=OrderType.COURT_ORDER,
            authority="Zug court",
            jurisdiction="CH",
            recipient_id="fedpol",
            account_ids=(ACCOUNTS[2],),
            data_categories=(DataCategory.PERSONAL_INFORMATION,),
            valid_from=T0,
            valid_until=T0 + timedelta(days=30),
            max_disclosures=1,
            registered_by="officer-a",
        )
    )
    client.publish(
        OrderApproved(
            event_id="ok-ord-1", occurred_at=T0, order_ref="ord-1", approved_by="officer-b"
        )
    )
    for event_id in ("le-1", "le-2"):  # the first spends the quota, the second is refused
        client.publish(
            transfer(
                event_id,
                ACCOUNTS[2],
                le,
                Purpose.LEGAL_ORDER,
                order_ref="ord-1",
                recipient="fedpol",
            )
        )
        decisions.wait_for([event_id])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topics.transfers, key=ACCOUNTS[0].encode(), value=b"\x00not avro").get(10)
    producer.close()
    decided = decisions.wait_for(["vdd-1", "le-missing", "quiet-1", "le-1", "le-2"])
    assert decided["le-1"].outcome.value == "ALLOW"
    assert decided["le-2"].codes[0].value == "ORDER_QUOTA_EXHAUSTED"


def test_every_alert_reaches_a_webhook_that_fails_then_recovers(
    kafka_bootstrap: str, guard: tuple[Topics, GuardProcess], tmp_path: Path
) -> None:
    topics, _worker = guard
    # requests 0-2 answer 500, 3-4 hang past the timeout, then every request is accepted
    receiver = Receiver(
        free_port(), behaviour=lambda n: "fail" if n < 3 else ("hang" if n < 5 else "ok")
    ).start()
    alerts = AlertsProcess(
        alerts_env(kafka_bootstrap, topics, receiver.port), tmp_path / "alerts.log"
    )
    client = TransferClient(kafka_bootstrap, topics=topics)
    decisions = DecisionReader(kafka_bootstrap, topics)
    try:
        alerts.start()
        produce_scenario(kafka_bootstrap, topics, client, decisions)

        expected = {
            "VDD_EGRESS_BLOCKED:vdd-1",
            "LAW_ENFORCEMENT_BLOCKED:le-missing",
            "LAW_ENFORCEMENT_BLOCKED:le-2",
            "ORDER_EXHAUSTED:ord-1",
        }

        def all_arrived() -> bool:
            ids = receiver.accepted_ids()
            dead = [i for i in ids if i.startswith("DEAD_LETTER:")]
            return expected <= ids.keys() and len(dead) == 1

        wait_until(all_arrived, 90, lambda: f"{receiver.accepted_ids()} {alerts.tail()}")
        time.sleep(1.0)  # anything extra (a duplicate alert) would arrive by now
        accepted = receiver.accepted_ids()
        assert set(accepted) - expected == {i for i in accepted if i.startswith("DEAD_LETTER:")}
        assert all(count == 1 for count in accepted.values()), accepted

        by_id = {
            json.loads(a["body"])["alert_id"]: json.loads(a["body"]) for a in receiver.accepted
        }
        vdd_alert = by_id["VDD_EGRESS_BLOCKED:vdd-1"]
        assert "VDD_EGRESS_FORBIDDEN" in vdd_alert["reason_codes"]
        assert "C-VDD-NO-SHARING" in vdd_alert["clause_ids"]
        assert vdd_alert["recipient"] == {"id": "rcp-x", "type": "THIRD_PARTY"}
        assert by_id["LAW_ENFORCEMENT_BLOCKED:le-missing"]["reason_codes"] == ["ORDER_MISSING"]
        assert by_id["ORDER_EXHAUSTED:ord-1"]["order_ref"] == "ord-1"
        (dead,) = (v for k, v in by_id.items() if k.startswith("DEAD_LETTER:"))
        assert topics.transfers in dead["detail"]
        assert "marker" in dead["detail"]

        for attempt in receiver.attempts:  # failed ones included
            text = attempt["body"].decode()
            assert not any(account in text for account in ACCOUNTS)
            assert "s3://" not in text
            assert_signed(attempt)
        assert [a["mode"] for a in receiver.attempts[:5]] == ["fail"] * 3 + ["hang"] * 2
        assert alerts.metric("sharing_guard_alerts_delivery_failures_total", reason="status") >= 3
        assert alerts.metric("sharing_guard_alerts_delivery_failures_total", reason="timeout") >= 2
        assert alerts.metric("sharing_guard_alerts_retries_total") >= 5
        assert alerts.metric("sharing_guard_alerts_delivered_total") == len(accepted)
        assert alerts.metric("sharing_guard_alerts_skipped_total", reason="duplicate") >= 1
        assert alerts.metric("sharing_guard_alerts_dropped_total") == 0
        assert not any(account in alerts.tail() for account in ACCOUNTS)
    finally:
        assert alerts.stop() == 0
        client.close()
        decisions.close()
        receiver.stop()


# --- guard outputs produced directly, webhook down --------------------------------------------


def committed(bootstrap: str, group: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)


def test_a_down_webhook_never_holds_up_consumption_and_drops_are_counted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = fresh_topics(kafka_bootstrap)
    port = free_port()  # nothing listens yet: connection refused
    queue_max, count = 5, 200
    env = alerts_env(kafka_bootstrap, topics, port, SHARING_GUARD_ALERTS_QUEUE_MAX=str(queue_max))
    alerts = AlertsProcess(env, tmp_path / "alerts.log")
    registry = contract_registry()
    receiver = Receiver(port)
    try:
        alerts.start()
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
        for i in range(count):
            event = transfer(
                f"vdd-{i:04d}",
                ACCOUNTS[i % 3],
                RecipientType.THIRD_PARTY,
                Purpose.CONSENTED_SHARING,
                categories=(DataCategory.VIRTUAL_DRIVE_DATA,),
            )
            headers = [
                ("guard.event_id", event.event_id.encode()),
                ("guard.outcome", b"BLOCK"),
                ("guard.duplicate", b"0"),
                ("guard.policy_version", b"2026.1"),
                ("guard.codes", b"VDD_EGRESS_FORBIDDEN,CONSENT_MISSING"),
            ]
            producer.send(
                topics.blocked,
                key=event.account_id.encode(),
                value=registry.encode(event),
                headers=headers,
                partition=0,  # one partition: a known order, so "newest" is well defined
            )
        producer.flush()
        producer.close()
        group = env["SHARING_GUARD_ALERTS_GROUP_ID"]
        wait_until(
            lambda: committed(kafka_bootstrap, group, topics.blocked) == count,
            60,
            alerts.tail,
        )
        assert alerts.metric("sharing_guard_alerts_raised_total") == count
        dropped = alerts.metric("sharing_guard_alerts_dropped_total", reason="queue_full")
        # at most the queue and the one alert in the sender's hands survive
        assert dropped >= count - queue_max - 1
        assert alerts.metric("sharing_guard_alerts_delivery_failures_total", reason="connect") > 0
        assert alerts.metric("sharing_guard_alerts_delivered_total") == 0
        assert alerts.metric("sharing_guard_alerts_queue_depth") == queue_max

        receiver.start()  # the webhook comes back
        survivors = count - dropped
        wait_until(lambda: sum(receiver.accepted_ids().values()) >= survivors, 60, alerts.tail)
        time.sleep(0.5)
        accepted = receiver.accepted_ids()
        assert sum(accepted.values()) == survivors
        newest = {f"VDD_EGRESS_BLOCKED:vdd-{i:04d}" for i in range(count - queue_max, count)}
        assert newest <= accepted.keys()  # the oldest were dropped, never the newest
        assert alerts.metric("sharing_guard_alerts_delivered_total") == survivors
        assert alerts.metric("sharing_guard_alerts_queue_depth") == 0
    finally:
        assert alerts.stop() == 0
        receiver.stop()
