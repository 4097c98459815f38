"""``/metrics`` of the running services, read over HTTP after some traffic.

* the order service (``sharing-guard orders serve``) as a process on the real broker, with
  fresh topics: requests counted by route template and status, a four-eyes refusal, the
  changes by kind, the readiness gauges;
* the audit API (``audit-sink serve``) as a process over a populated log: requests by route
  template and status (a 401 included), verifications by result;
* the audit ingest (``audit-sink ingest``) as a process on a private topic, on each store:
  its listener's ``/metrics`` (records and batches appended, lag 0 once drained, the age of
  the latest checkpoint, the log's size) and ``/healthz``.

Every answer is parsed as Prometheus text, and no label or value holds what a caller sent
(an order reference, an account, an officer, an event id).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from audit_sink.samples import sample_records
from guard_harness import free_port, fresh_topics
from prometheus_client.parser import text_string_to_metric_families
from sharing_guard.codec import contract_registry
from sharing_guard.edge.asgi import SECURITY_HEADERS
from sharing_guard.orders.auth import Role, TokenEntry, new_token, token_hash
from test_audit_http import TOKEN, populate, settings_for
from test_audit_ingest_support import (
    SinkRig,
    produce,
    rig,  # noqa: F401
)
from test_audit_support import (
    backend,  # noqa: F401
    pg_names,  # noqa: F401
    sqlite_backend,
)

WAIT_S = 90.0
T = TypeVar("T")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text, by name and labels (OpenTelemetry's scope labels
    left out)."""
    return {
        (s.name, frozenset((k, v) for k, v in s.labels.items() if not k.startswith("otel_"))): (
            s.value
        )
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value (KeyError naming what is there when it is missing)."""
    key = (name, frozenset(labels.items()))
    if key not in found:
        there = sorted(str(dict(k[1])) for k in found if k[0] == name)
        raise KeyError(f"{name}{labels} not exported; {name} has {there}")
    return found[key]


def eventually(read: Callable[[], T], accept: Callable[[T], bool], what: str) -> T:
    """``read()`` until ``accept`` holds (fail after WAIT_S with the last value)."""
    deadline = time.monotonic() + WAIT_S
    last = read()
    while not accept(last):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; last seen: {last!r}"[:3000])
        time.sleep(0.3)
        last = read()
    return last


def wait_listening(url: str, process: subprocess.Popen[Any], log: Callable[[], str]) -> None:
    """Until ``url`` answers (fail when the process exits first)."""

    def answer() -> int | None:
        assert process.poll() is None, f"the process exited: {log()[-3000:]}"
        try:
            return httpx.get(url, timeout=1).status_code
        except httpx.TransportError:
            return None

    eventually(answer, lambda status: status == 200, f"{url} to answer")


def stop(process: subprocess.Popen[Any]) -> int:
    """SIGTERM, then the exit status (killed after 30 s)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    return int(process.returncode)


def no_personal_data(text: str, *values: str) -> None:
    for personal in values:
        assert personal not in text, f"{personal!r} appears in the metrics"


# -- the order service ---------------------------------------------------------------------


@dataclass
class OrdersService:
    """The order service as a process: its URL and two legal officers' tokens."""

    url: str
    anna: str
    bruno: str


def _officers(anna: str, bruno: str) -> str:
    expires = datetime.now(UTC) + timedelta(days=1)
    entries = [
        TokenEntry(
            officer_id=officer, role=Role.LEGAL_OFFICER, expires_at=expires, token_sha256=digest
        ).model_dump(mode="json")
        for officer, digest in (
            ("officer-anna", token_hash(anna)),
            ("officer-bruno", token_hash(bruno)),
        )
    ]
    return json.dumps(entries)


@pytest.fixture
def orders_service(kafka_bootstrap: str, tmp_path: Path) -> Iterator[OrdersService]:
    """``sharing-guard orders serve`` on fresh topics, ready; stopped (exit 0) afterwards."""
    topics = fresh_topics(kafka_bootstrap)
    anna, bruno = new_token(), new_token()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARING_GUARD_")}
    env |= {
        "SHARING_GUARD_ORDERS_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SHARING_GUARD_ORDERS_ORDERS_TOPIC": topics.orders,
        "SHARING_GUARD_ORDERS_DECISIONS_TOPIC": topics.decisions,
        "SHARING_GUARD_ORDERS_TOKENS": _officers(anna, bruno),
        "SHARING_GUARD_ORDERS_STATE_FILE": str(tmp_path / "orders.sqlite3"),
        "SHARING_GUARD_ORDERS_PORT": str(port),
    }
    log = tmp_path / "orders.log"
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "sharing_guard.cli", "orders", "serve"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(f"http://127.0.0.1:{port}/readyz", process, log.read_text)
        yield OrdersService(f"http://127.0.0.1:{port}", anna, bruno)
    finally:
        status = stop(process)
    assert status == 0, log.read_text()[-3000:]


def _order(ref: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "order_ref": ref,
        "order_type": "COURT_ORDER",
        "authority": "obergericht-zh",
        "jurisdiction": "CH",
        "recipient_id": "police-zh",
        "account_ids": ["acct-metrics-1"],
        "data_categories": ["VIRTUAL_DRIVE_DATA"],
        "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_until": (now + timedelta(days=30)).isoformat(),
        "max_disclosures": 2,
    }


@pytest.mark.kafka
def test_order_service_metrics_after_traffic(orders_service: OrdersService) -> None:
    ref = "ZH/2026/METRICS-1"
    with httpx.Client(base_url=orders_service.url, timeout=60) as client:
        as_anna = {"Authorization": f"Bearer {orders_service.anna}"}
        as_bruno = {"Authorization": f"Bearer {orders_service.bruno}"}
        assert client.post("/orders", json=_order(ref), headers=as_anna).status_code == 201
        approve = f"/orders/{ref}/approve"
        assert client.post(approve, headers=as_anna).status_code == 409  # four eyes
        assert client.post(approve, headers=as_bruno).status_code == 200
        assert client.get(f"/orders/{ref}", headers=as_bruno).status_code == 200
        assert client.get(f"/orders/{ref}").status_code == 401  # no token
        assert client.get("/orders/no-such-order", headers=as_anna).status_code == 404
        response = client.get("/metrics")  # no token

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert all(response.headers[k] == v for k, v in SECURITY_HEADERS.items())
    found = samples(response.text)
    requests = "sharing_guard_orders_http_requests_total"
    template = "/orders/{order_ref}"
    assert value(found, requests, method="POST", route="/orders", status="201") == 1
    assert value(found, requests, method="POST", route=f"{template}/approve", status="409") == 1
    assert value(found, requests, method="POST", route=f"{template}/approve", status="200") == 1
    assert value(found, requests, method="GET", route=template, status="200") == 1
    assert value(found, requests, method="GET", route=template, status="401") == 1
    assert value(found, requests, method="GET", route=template, status="404") == 1
    assert value(found, requests, method="GET", route="/readyz", status="200") >= 1
    duration = "sharing_guard_orders_http_request_duration_seconds"
    assert value(found, f"{duration}_count", method="POST", route="/orders") == 1
    assert 0 < value(found, f"{duration}_sum", method="POST", route="/orders") < 60
    assert value(found, "sharing_guard_orders_four_eyes_refusals_total") == 1
    refusals = "sharing_guard_orders_refusals_total"
    assert value(found, refusals, kind="approval", reason="four_eyes") == 1
    changes = "sharing_guard_orders_changes_total"
    assert value(found, changes, kind="registered") == value(found, changes, kind="approved") == 1
    assert value(found, "sharing_guard_orders_state_loaded") == 1
    assert value(found, "sharing_guard_orders_producer_connected") == 1
    assert value(found, "process_resident_memory_bytes") > 0
    no_personal_data(response.text, "ZH/2026", "METRICS", "acct-metrics", "officer-", "police")


# -- the audit API -----------------------------------------------------------------------


def test_audit_api_metrics_after_traffic(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("AUDIT_SINK_")]:
        monkeypatch.delenv(name)
    populated = sqlite_backend(tmp_path)
    try:
        settings = settings_for(populated, tmp_path, request)
        populate(populated)
    finally:
        populated.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_SINK_")}
    env |= {
        "AUDIT_SINK_ORIGIN": populated.origin,
        "AUDIT_SINK_DATA_DIR": str(settings.data_dir),
        "AUDIT_SINK_SQLITE__LOG_FILE": str(settings.log_file()),
        "AUDIT_SINK_SQLITE__KEYS_FILE": str(settings.keys_file()),
        "AUDIT_SINK_VKEY": settings.vkey or "",
        "AUDIT_SINK_API_TOKEN": TOKEN,
    }
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "audit_sink", "serve", "--port", str(port)],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_listening(f"{base}/healthz", process, log.read_text)
        with httpx.Client(base_url=base, timeout=60) as client:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            for _ in range(2):
                verified = client.get("/verify", headers=auth)
                assert verified.status_code == 200
                assert verified.json()["ok"] is True
            assert client.get("/verify").status_code == 401
            assert client.get("/entries?account=acct-1").status_code == 401
            assert client.get("/proof/evt-000004", headers=auth).status_code == 200
            assert client.get("/proof/evt-no-such", headers=auth).status_code == 404
            assert client.get("/nowhere/acct-1", headers=auth).status_code == 404
            response = client.get("/metrics")  # no token
    finally:
        status = stop(process)

    assert status == 0, log.read_text()[-3000:]
    assert response.status_code == 200
    assert all(response.headers[k] == v for k, v in SECURITY_HEADERS.items())
    found = samples(response.text)
    requests = "audit_sink_http_requests_total"
    assert value(found, requests, method="GET", route="/verify", status="200") == 2
    assert value(found, requests, method="GET", route="/verify", status="401") == 1
    assert value(found, requests, method="GET", route="/entries", status="401") == 1
    assert value(found, requests, method="GET", route="/proof/{event_id}", status="200") == 1
    assert value(found, requests, method="GET", route="/proof/{event_id}", status="404") == 1
    assert value(found, requests, method="GET", route="<unmatched>", status="404") == 1
    duration = "audit_sink_http_request_duration_seconds_count"
    assert value(found, duration, method="GET", route="/verify") == 3
    assert value(found, "audit_sink_verifications_total", result="ok") == 2
    assert ("audit_sink_verifications_total", frozenset({("result", "failed")})) not in found
    no_personal_data(response.text, "acct-", "evt-", "nowhere", TOKEN)


# -- the audit ingest --------------------------------------------------------------------


def _ingest_metrics(port: int) -> Samples:
    try:
        return samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    except httpx.TransportError:
        return {}


@pytest.mark.kafka
def test_audit_ingest_metrics_after_ingesting(rig: SinkRig) -> None:  # noqa: F811
    port = free_port()
    rig.env |= {"AUDIT_SINK_METRICS_PORT": str(port), "AUDIT_SINK_METRICS_HOST": "127.0.0.1"}
    registry = contract_registry()
    records = list(sample_records(300, 11))
    sink = rig.start("ingest")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_listening(f"{base}/healthz", sink, (rig.tmp_path / "sink.log").read_text)
        health = httpx.get(f"{base}/healthz", timeout=5)
        assert health.json() == {"ok": True}
        assert all(health.headers[k] == v for k, v in SECURITY_HEADERS.items())
        assert httpx.get(f"{base}/other", timeout=5).status_code == 404
        produce(
            rig.env["AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS"],
            rig.topic,
            [(r.event_id.encode(), registry.encode(r)) for r in records],
        )

        def drained(found: Samples) -> bool:
            lag = [v for (n, _), v in found.items() if n == "audit_sink_ingest_consumer_lag"]
            appended = found.get(("audit_sink_ingest_records_appended_total", frozenset()))
            return appended == len(records) and len(lag) == 3 and not any(lag)

        found = eventually(lambda: _ingest_metrics(port), drained, "the sink to drain")
        text = httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        status = stop(sink)

    assert status == 0
    assert value(found, "audit_sink_ingest_records_consumed_total") == len(records)
    assert value(found, "audit_sink_ingest_batches_total") >= 1
    assert value(found, "audit_sink_ingest_checkpoints_total") >= 1
    assert value(found, "audit_sink_ingest_anomalies_total") == 0
    assert value(found, "audit_sink_log_size") == len(records)
    for partition in range(3):
        lag = value(
            found, "audit_sink_ingest_consumer_lag", topic=rig.topic, partition=str(partition)
        )
        assert lag == 0
    assert 0 <= value(found, "audit_sink_checkpoint_age_seconds") < WAIT_S
    assert value(found, "process_cpu_seconds_total") > 0
    accounts = {r.account_id for r in records if r.account_id}
    assert accounts
    no_personal_data(text, *(r.event_id for r in records), *accounts)


@pytest.mark.kafka
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_audit_ingest_with_an_empty_metrics_port_has_no_listener(rig: SinkRig) -> None:  # noqa: F811
    rig.env |= {"AUDIT_SINK_METRICS_PORT": ""}  # empty, like 0: off
    sink = rig.start("ingest", log_name="quiet.log")
    try:
        eventually(lambda: rig.assignments("quiet.log"), lambda n: n > 0, "an assignment")
    finally:
        status = stop(sink)
    assert status == 0
    assert "metrics on http" not in (rig.tmp_path / "quiet.log").read_text()
