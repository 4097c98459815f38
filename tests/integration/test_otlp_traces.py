"""Traces leave every process over OTLP/HTTP and make one trace per transfer, on the real
broker.

An OTLP/HTTP receiver runs in this process (``POST /v1/traces``, protobuf bodies). A guard
worker, ``audit-sink ingest`` and the order service run as processes on fresh topics, with
``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at it. A transfer published by a
``TransferClient`` inside a client span must come back as one trace: the client's span,
the guard's decision span (service ``sharing-guard-worker``) as its child, and the audit
sink's append span (service ``audit-sink``) as the decision span's child. An order
registered through the order service's HTTP API must continue the same way: its server
span (``sharing-guard-orders``), the guard applying it, the audit append. No byte the
receiver gets holds the account ids used.
"""

from __future__ import annotations

import base64
import gzip
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from audit_sink.signing import create_signing_key
from guard_harness import GuardProcess, fresh_topics, guard_env
from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from sharing_guard.client import TransferClient
from sharing_guard.settings import Topics
from test_orders_e2e import OrdersProcess, issue_token

pytestmark = pytest.mark.kafka
WAIT_S = 60.0
TRANSFER_ACCOUNT = f"acc-otlp-{uuid.uuid4().hex[:10]}"
ORDER_ACCOUNT = f"acc-order-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as the receiver decoded it (ids in hex, as the W3C header writes them)."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return None if kind is None else getattr(value, kind)


@dataclass
class OtlpReceiver:
    """An OTLP/HTTP trace receiver on loopback, in a thread of this process."""

    bodies: list[bytes] = field(default_factory=list)
    spans: list[ReceivedSpan] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver.take(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name")),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self.lock:
            self.bodies.append(body)
            self.spans.extend(received)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self.lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def wait_for(
        self, trace_id: str, done: Callable[[list[ReceivedSpan]], bool]
    ) -> list[ReceivedSpan]:
        deadline = time.monotonic() + WAIT_S
        while not done(spans := self.trace(trace_id)):
            if time.monotonic() > deadline:
                seen = sorted({(s.service, s.name) for s in spans})
                raise AssertionError(f"trace {trace_id} incomplete; spans seen: {seen}")
            time.sleep(0.2)
        return spans

    def everything(self) -> bytes:
        with self.lock:
            return b"".join(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _base_env(receiver: OtlpReceiver) -> dict[str, str]:
    """This process's environment without any OTEL_* of its own, exporting to the receiver."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AUDIT_SINK_"))}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    env["OTEL_BSP_SCHEDULE_DELAY"] = "200"  # the batch processor's delay (SDK variable)
    return env


def _start_sink(env: dict[str, str], bootstrap: str, topics: Topics, home: Path) -> Any:
    origin = f"audit.test.invalid/{uuid.uuid4().hex}"
    key_file = home / "signing.key"
    create_signing_key(key_file, origin)
    sink_env = {
        **env,
        "AUDIT_SINK_ORIGIN": origin,
        "AUDIT_SINK_DATA_DIR": str(home / "sink"),
        "AUDIT_SINK_SIGNING_KEY_FILE": str(key_file),
        "AUDIT_SINK_INDEX_KEY": base64.b64encode(os.urandom(32)).decode("ascii"),
        "AUDIT_SINK_AUDIT_TOPIC": topics.audit,
        "AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "AUDIT_SINK_KAFKA__GROUP_ID": f"audit-sink-otlp-{uuid.uuid4().hex[:8]}",
        "AUDIT_SINK_KAFKA__POLL_TIMEOUT_MS": "200",
    }
    with (home / "sink.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "audit_sink", "ingest"],
            env=sink_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@dataclass
class System:
    receiver: OtlpReceiver
    topics: Topics
    bootstrap: str
    orders: OrdersProcess
    token: str
    tracer_provider: TracerProvider


@pytest.fixture(scope="module")
def system(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The receiver; a worker, the audit ingest and the order service exporting to it; the
    test's own client provider exporting there too (service ``test-client``)."""
    home = tmp_path_factory.mktemp("otlp")
    receiver = OtlpReceiver()
    env = _base_env(receiver)
    topics = fresh_topics(kafka_bootstrap)
    worker_env = {
        **env,
        **guard_env(kafka_bootstrap, topics, f"otlp-{topics.transfers[-8:]}", home / "data"),
    }
    worker_env.update({k: v for k, v in env.items() if k.startswith("OTEL_")})
    worker = GuardProcess(worker_env, home / "worker.log").start()
    sink = _start_sink(env, kafka_bootstrap, topics, home)
    tokens_file = home / "tokens.json"
    token = issue_token(tokens_file, "officer-otlp", "legal_officer")
    orders_env = {
        **{k: v for k, v in env.items() if not k.startswith("SHARING_GUARD_")},
        "SHARING_GUARD_ORDERS_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SHARING_GUARD_ORDERS_ORDERS_TOPIC": topics.orders,
        "SHARING_GUARD_ORDERS_DECISIONS_TOPIC": topics.decisions,
        "SHARING_GUARD_ORDERS_TOKENS_FILE": str(tokens_file),
        "SHARING_GUARD_ORDERS_STATE_FILE": str(home / "orders" / "orders.sqlite3"),
    }
    orders = OrdersProcess(orders_env, home / "orders.log").start()
    provider = TracerProvider(resource=Resource.create({"service.name": "test-client"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces"))
    )
    try:
        worker.wait_ready()
        orders.wait_ready()
        yield System(receiver, topics, kafka_bootstrap, orders, token, provider)
    finally:
        provider.shutdown()
        orders.stop()
        _stop(sink)
        worker.stop()
        receiver.close()


def _by_service(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, f"{service}/{name}: {found}"
    return found[0]


def _has(*wanted: tuple[str, str]) -> Callable[[list[ReceivedSpan]], bool]:
    def done(spans: list[ReceivedSpan]) -> bool:
        return all(any((s.service, s.name) == w for s in spans) for w in wanted)

    return done


def test_one_trace_from_the_client_through_the_guard_to_the_audit_log(system: System) -> None:
    client = TransferClient(system.bootstrap, topics=system.topics)
    tracer = system.tracer_provider.get_tracer("test-client")
    try:
        with tracer.start_as_current_span("checkout") as span:
            client.request_transfer(
                event_id="evt-otlp-1",
                source_service="billing",
                account_id=TRANSFER_ACCOUNT,
                data_categories=["PERSONAL_INFORMATION"],
                recipient={"id": "rcp-otlp", "type": "AGENT", "jurisdiction": "CH"},
                purpose="PAYMENT_PROCESSING",
            )
            context = span.get_span_context()
    finally:
        client.close()
    trace_id = f"{context.trace_id:032x}"

    spans = system.receiver.wait_for(
        trace_id,
        _has(
            ("test-client", "checkout"),
            ("sharing-guard-worker", "sharing_guard.decide"),
            ("audit-sink", "audit_sink.append"),
        ),
    )

    checkout = _by_service(spans, "test-client", "checkout")
    decide = _by_service(spans, "sharing-guard-worker", "sharing_guard.decide")
    append = _by_service(spans, "audit-sink", "audit_sink.append")
    assert checkout.span_id == f"{context.span_id:016x}"
    assert decide.parent_id == checkout.span_id
    assert append.parent_id == decide.span_id
    assert decide.attributes["sharing_guard.event_id"] == "evt-otlp-1"
    assert decide.attributes["sharing_guard.outcome"] == "BLOCK"
    assert append.attributes["messaging.destination.name"] == system.topics.audit
    assert isinstance(append.attributes["audit_sink.index"], int)
    everything = system.receiver.everything()
    assert TRANSFER_ACCOUNT.encode() not in everything
    assert b"rcp-otlp" not in everything


def test_an_order_registered_over_http_continues_into_the_guard_and_the_audit_log(
    system: System,
) -> None:
    tracer = system.tracer_provider.get_tracer("test-client")
    now = datetime.now(UTC)
    body = {
        "order_ref": f"ZH/2026/otlp-{uuid.uuid4().hex[:8]}",
        "order_type": "COURT_ORDER",
        "authority": "obergericht-zh",
        "jurisdiction": "CH",
        "recipient_id": "police-zh",
        "account_ids": [ORDER_ACCOUNT],
        "data_categories": ["VIRTUAL_DRIVE_DATA"],
        "valid_from": (now - timedelta(hours=1)).isoformat(),
        "valid_until": (now + timedelta(days=1)).isoformat(),
        "max_disclosures": 1,
    }
    with tracer.start_as_current_span("register-order") as span:
        headers = {"Authorization": f"Bearer {system.token}"}
        propagate.inject(headers)  # the caller's trace context, as an instrumented client
        answer = httpx.post(f"{system.orders.url}/orders", json=body, headers=headers, timeout=60)
        context = span.get_span_context()
    assert answer.status_code == 201, answer.text
    trace_id = f"{context.trace_id:032x}"

    spans = system.receiver.wait_for(
        trace_id,
        _has(
            ("sharing-guard-orders", "POST /orders"),
            ("sharing-guard-worker", "sharing_guard.apply"),
            ("audit-sink", "audit_sink.append"),
        ),
    )

    caller = _by_service(spans, "test-client", "register-order")
    server = _by_service(spans, "sharing-guard-orders", "POST /orders")
    apply = _by_service(spans, "sharing-guard-worker", "sharing_guard.apply")
    append = _by_service(spans, "audit-sink", "audit_sink.append")
    assert server.parent_id == caller.span_id
    assert server.attributes["http.route"] == "/orders"
    assert server.attributes["http.response.status_code"] == 201
    assert apply.parent_id == server.span_id
    assert apply.attributes["sharing_guard.event_type"] == "OrderRegistered"
    assert append.parent_id == apply.span_id
    everything = system.receiver.everything()
    assert ORDER_ACCOUNT.encode() not in everything
    assert system.token.encode() not in everything
