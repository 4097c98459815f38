"""Running the real order service (``sharing-guard orders serve``) on the real broker.

Used by the end-to-end test of the workflow (``test_orders_e2e.py``), the officers' console
browser tests (``tests/browser/test_officers_console.py``) and the consoles' screenshots:
each run gets private topics, its own state file and a tokens file issued by the CLI.

:func:`console_service` starts the service with two legal officers' tokens (and a security
reviewer's); :func:`seed_orders` then gives it a few orders in different states (pending,
in force with disclosures, exhausted, no limit, revoked, expired), the disclosures published
as the guard's decisions on the private decisions topic (no guard worker needed);
:func:`sign_in` signs a Playwright page in (the tests and the screenshots).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from guard_harness import free_port, fresh_topics
from sharing_guard.settings import Topics

WAIT_S = 90.0
OFFICER_A = "officer-anna"
OFFICER_B = "officer-bruno"
REVIEWER = "reviewer-rita"
EXPIRES_AFTER_S = 4
"""How long the seeded ``expired`` order is valid (it is approved while it still is)."""


@dataclass
class OrdersProcess:
    """The order service as a process (``sharing-guard orders serve``), configured by env."""

    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OrdersProcess:
        env = {**self.env, "SHARING_GUARD_ORDERS_PORT": str(self.port)}
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sharing_guard.cli", "orders", "serve"],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"order service exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"order service not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


def issue_token(tokens_file: Path, officer: str, role: str) -> str:
    """A token for ``officer`` issued by the CLI, its hash appended to ``tokens_file``."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "sharing_guard.cli", "orders", "token"),
            *("--officer", officer, "--role", role, "--tokens-file", str(tokens_file)),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.strip()


def eventually(read: Callable[[], Any], accept: Callable[[Any], bool], what: str) -> Any:
    """``read()`` again until ``accept`` takes its value (at most :data:`WAIT_S`)."""
    deadline = time.monotonic() + WAIT_S
    value = read()
    while not accept(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: last seen {value!r}")
        time.sleep(0.3)
        value = read()
    return value


def kafka_or_skip() -> str:
    """The test broker's bootstrap address, for tests outside ``tests/integration`` (whose
    ``kafka_bootstrap`` fixture does the same): skipped when it does not answer, failed
    instead when services are required (``CI`` set or ``REQUIRE_SERVICES=1``)."""
    import pytest
    from kafka import KafkaAdminClient

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=5000, bootstrap_timeout_ms=5000
        )
        try:
            admin.describe_cluster()
        finally:
            admin.close()
    except Exception as exc:  # any failure to reach the broker
        problem = (
            f"Kafka is not reachable at {bootstrap} ({exc}); start it with `scripts/kafka.sh start`"
        )
    else:
        return bootstrap
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    if ci or os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{problem} [services are required: CI or REQUIRE_SERVICES=1]")
    pytest.skip(problem)


def base_env() -> dict[str, str]:
    """This process's environment without any ``SHARING_GUARD_*`` setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SHARING_GUARD_")}


def orders_env(
    bootstrap: str, topics: Topics, tokens_file: Path, state_dir: Path
) -> dict[str, str]:
    """The environment of an order service on ``topics`` with the tokens of ``tokens_file``."""
    return {
        **base_env(),
        "SHARING_GUARD_ORDERS_BOOTSTRAP_SERVERS": bootstrap,
        "SHARING_GUARD_ORDERS_ORDERS_TOPIC": topics.orders,
        "SHARING_GUARD_ORDERS_DECISIONS_TOPIC": topics.decisions,
        "SHARING_GUARD_ORDERS_TOKENS_FILE": str(tokens_file),
        "SHARING_GUARD_ORDERS_STATE_FILE": str(state_dir / "orders.sqlite3"),
        "SHARING_GUARD_ORDERS_LOG_LEVEL": "INFO",
    }


@dataclass
class ConsoleService:
    """A running order service for the console: where it is, the officers' tokens, its log."""

    bootstrap: str
    topics: Topics
    process: OrdersProcess
    tokens: dict[str, str]  # officer id -> token
    log: Path

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def console_url(self) -> str:
        return f"{self.url}/console/"

    def call(self, officer: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call with ``officer``'s token."""
        headers = {"Authorization": f"Bearer {self.tokens[officer]}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


@contextmanager
def console_service(bootstrap: str, workdir: Path) -> Iterator[ConsoleService]:
    """The order service on private topics, with tokens for :data:`OFFICER_A`,
    :data:`OFFICER_B` (legal officers) and :data:`REVIEWER` (security reviewer); stopped
    at the end. Its files (tokens, state, log) go to ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    topics = fresh_topics(bootstrap)
    tokens_file = workdir / "tokens.json"
    tokens = {
        OFFICER_A: issue_token(tokens_file, OFFICER_A, "legal_officer"),
        OFFICER_B: issue_token(tokens_file, OFFICER_B, "legal_officer"),
        REVIEWER: issue_token(tokens_file, REVIEWER, "security_reviewer"),
    }
    log = workdir / "orders.log"
    process = OrdersProcess(orders_env(bootstrap, topics, tokens_file, workdir / "state"), log)
    process.start()
    try:
        process.wait_ready()
        yield ConsoleService(bootstrap, topics, process, tokens, log)
    finally:
        process.stop()


def order_body(ref: str, max_disclosures: int | None, **overrides: Any) -> dict[str, Any]:
    """A registration valid from an hour ago for thirty days."""
    now = datetime.now(UTC)
    suffix = uuid.uuid4().hex[:6]
    body: dict[str, Any] = {
        "order_ref": ref,
        "order_type": "COURT_ORDER",
        "authority": "Obergericht des Kantons Zürich",
        "jurisdiction": "CH",
        "recipient_id": "police-zh",
        "account_ids": [f"acct-{suffix}-1", f"acct-{suffix}-2"],
        "data_categories": ["VIRTUAL_DRIVE_DATA"],
        "valid_from": (now - timedelta(hours=1)).isoformat(),
        "valid_until": (now + timedelta(days=30)).isoformat(),
        "max_disclosures": max_disclosures,
    }
    body.update(overrides)
    return body


def publish_disclosures(service: ConsoleService, order_ref: str, allowed: int) -> None:
    """``allowed`` ALLOW decisions naming ``order_ref`` on the service's decisions topic, as
    the guard publishes them for transfers under the order."""
    from kafka import KafkaProducer
    from sharing_guard.codec import contract_registry
    from sharing_guard.contract.decision import Decision, Reason
    from sharing_guard.contract.enums import Clause, Outcome, ReasonCode

    registry = contract_registry()
    producer = KafkaProducer(bootstrap_servers=service.bootstrap, acks="all")
    try:
        for _ in range(allowed):
            decision = Decision(
                event_id=f"t-{uuid.uuid4()}",
                outcome=Outcome.ALLOW,
                reasons=(Reason(code=ReasonCode.ORDER, clause=Clause.LAW_ENFORCEMENT),),
                policy_version="console-seed",
                order_ref=order_ref,
            )
            producer.send(service.topics.decisions, registry.encode(decision))
        producer.flush(timeout=30)
    finally:
        producer.close()


def seed_orders(service: ConsoleService) -> dict[str, str]:
    """Orders in different states, registered by :data:`OFFICER_A` unless said otherwise;
    returns each reference by what it shows:

    * ``pending``: awaiting a second officer (registered by A: A sees the four-eyes note);
    * ``pending_other``: registered by B, so A may approve it;
    * ``in_force``: approved by B, 2 of 5 disclosures used;
    * ``no_limit``: approved, no quota, 1 disclosure;
    * ``exhausted``: approved, 1 of 1 used;
    * ``revoked``: approved, then revoked by B with a reason;
    * ``expired``: approved, its window ended :data:`EXPIRES_AFTER_S` after registration.
    """
    suffix = uuid.uuid4().hex[:4].upper()
    refs = {
        "pending": f"ZH/2026/{suffix}-101",
        "pending_other": f"ZH/2026/{suffix}-102",
        "in_force": f"ZH/2026/{suffix}-103",
        "no_limit": f"BE/2026/{suffix}-7",
        "exhausted": f"ZH/2026/{suffix}-104",
        "revoked": f"GE/2026/{suffix}-12",
        "expired": f"ZH/2025/{suffix}-88",
    }
    quotas = {"in_force": 5, "no_limit": None, "exhausted": 1, "revoked": 3, "pending": 2}
    ends = datetime.now(UTC) + timedelta(seconds=EXPIRES_AFTER_S)
    for name, ref in refs.items():
        registrant = OFFICER_B if name == "pending_other" else OFFICER_A
        body = order_body(ref, quotas.get(name, 4))
        if name == "expired":
            body["valid_until"] = ends.isoformat()
        response = service.call(registrant, "POST", "/orders", json=body)
        assert response.status_code == 201, response.text
        if name not in ("pending", "pending_other"):
            approved = service.call(OFFICER_B, "POST", f"/orders/{ref}/approve")
            assert approved.status_code == 200, approved.text
    for name, count in (("in_force", 2), ("no_limit", 1), ("exhausted", 1)):
        publish_disclosures(service, refs[name], count)
    revoked = service.call(
        OFFICER_B,
        "POST",
        f"/orders/{refs['revoked']}/revoke",
        json={"reason": "order lifted by the court"},
    )
    assert revoked.status_code == 200, revoked.text
    wanted = {
        refs["in_force"]: ("IN_FORCE", 2),
        refs["no_limit"]: ("IN_FORCE", 1),
        refs["exhausted"]: ("EXHAUSTED", 1),
        refs["expired"]: ("EXPIRED", 0),
    }

    def seen() -> dict[str, tuple[str, int]]:
        listed = service.call(OFFICER_A, "GET", "/orders").json()
        return {
            o["order_ref"]: (o["state"], o["disclosure_count"])
            for o in listed
            if o["order_ref"] in wanted
        }

    eventually(seen, wanted.__eq__, "the seeded disclosures learned and the short order expired")
    return refs


def sign_in(page: Any, service: ConsoleService, officer: str) -> None:
    """Open the console in a Playwright ``page`` and sign in as ``officer`` with the
    keyboard (Enter submits); returns once the orders are shown."""
    page.goto(service.console_url)
    page.get_by_label("Bearer token").fill(service.tokens[officer])
    page.get_by_label("Bearer token").press("Enter")
    page.get_by_role("heading", name="Orders", exact=True).wait_for(state="visible")
