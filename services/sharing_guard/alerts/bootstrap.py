"""The alerts process's composition root: settings in, a running process out.

Three parts run side by side: the Kafka consumer thread (classifies and enqueues), the
webhook sender thread (delivers with retries) and the health/metrics server (uvicorn, in
the main thread, which also handles SIGINT/SIGTERM). If a thread dies, the server stops
and the process exits 1, so an orchestrator restarts it. Spans go where
:mod:`sharing_guard.tracing` says, flushed when the process stops.
"""

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import uvicorn
from kafka import KafkaConsumer
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.trace import Tracer
from pydantic import ValidationError

from sharing_guard.alerts.consumer import AlertsConsumer
from sharing_guard.alerts.core import Classifier
from sharing_guard.alerts.delivery import WebhookSender
from sharing_guard.alerts.queue import AlertQueue
from sharing_guard.alerts.settings import AlertsSettings
from sharing_guard.alerts.telemetry import AlertsTelemetry, build_telemetry
from sharing_guard.alerts.web import create_app
from sharing_guard.codec import contract_registry, describe_validation_error
from sharing_guard.edge import logsafe
from sharing_guard.edge.server import StoppableServer
from sharing_guard.tracing import ALERTS, tracer_provider

log = logging.getLogger("sharing_guard.alerts")

EXIT_OK, EXIT_FAILED, EXIT_CANNOT_START = 0, 1, 2


@dataclass
class AlertsService:
    """The wired parts (tests drive them directly)."""

    settings: AlertsSettings
    consumer: AlertsConsumer
    sender: WebhookSender
    queue: AlertQueue
    telemetry: AlertsTelemetry


def build_service(
    settings: AlertsSettings,
    telemetry: AlertsTelemetry | None = None,
    kafka_consumer: object | None = None,
    tracer: Tracer | None = None,
) -> AlertsService:
    """Everything wired from the settings; nothing started (no spans without ``tracer``)."""
    telemetry = telemetry or build_telemetry([PrometheusMetricReader()])
    queue = AlertQueue(settings.queue_max)
    telemetry.queue_depth = queue.__len__
    consumer = kafka_consumer or KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers.split(","),
        group_id=settings.group_id,
        client_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset=settings.auto_offset_reset,
    )
    secret = settings.webhook_secret
    sender = WebhookSender(
        httpx.Client(timeout=settings.timeout_s, follow_redirects=False),
        settings.webhook_url.get_secret_value(),
        None if secret is None else secret.get_secret_value().encode(),
        telemetry,
        backoff=(settings.backoff_base_s, settings.backoff_max_s, settings.backoff_jitter),
        max_attempts=settings.max_attempts,
    )
    alerts_consumer = AlertsConsumer(
        consumer,
        topics=settings.topics,
        classifier=Classifier(capacity=settings.orders_remembered),
        registry=contract_registry(),
        queue=queue,
        telemetry=telemetry,
        clock=lambda: datetime.now(UTC),
        tracer=tracer,
    )
    return AlertsService(settings, alerts_consumer, sender, queue, telemetry)


def _thread(name: str, target: Callable[[], None], failed: threading.Event) -> threading.Thread:
    def body() -> None:
        try:
            target()
        except Exception as exc:  # reported by type only: a message could quote data
            log.error("%s thread failed: %s", name, type(exc).__name__)
            failed.set()

    return threading.Thread(target=body, name=f"alerts-{name}", daemon=True)


def run_alerts(settings: AlertsSettings) -> int:
    """Run until SIGINT/SIGTERM (exit 0) or until a part fails (exit 1)."""
    logsafe.configure(settings.log_level.upper())
    for noisy in ("httpx", "httpcore", "kafka"):  # httpx logs the URL at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    provider = tracer_provider(ALERTS)
    service = build_service(settings, tracer=provider.get_tracer("sharing_guard.alerts"))
    stop, failed = threading.Event(), threading.Event()
    threads = [
        _thread("consumer", lambda: service.consumer.run(stop), failed),
        _thread("sender", lambda: service.sender.run(service.queue, stop), failed),
    ]

    def live() -> bool:
        return not failed.is_set() and all(t.is_alive() for t in threads)

    app = create_app(live=live, ready=service.consumer.ready.is_set)
    server = StoppableServer(
        uvicorn.Config(
            app,
            host=settings.web_host,
            port=settings.web_port,
            log_level="warning",
            access_log=False,
        )
    )

    def watch() -> None:
        failed.wait()
        server.should_exit = True

    for thread in threads:
        thread.start()
    threading.Thread(target=watch, name="alerts-watch", daemon=True).start()
    log.info("alerts running; health and metrics on port %d", settings.web_port)
    try:
        server.run()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=settings.timeout_s + 5)
        service.consumer.consumer.close()
        service.sender.client.close()
        pending = len(service.queue)
        if pending:
            log.warning("stopped with %d alerts undelivered", pending)
        provider.shutdown()
    return EXIT_FAILED if failed.is_set() else EXIT_OK


def main() -> int:
    """``sharing-guard alerts``: read the settings, run; exit 2 on bad settings."""
    try:
        settings = AlertsSettings()
    except ValidationError as exc:
        print(
            "sharing-guard alerts: invalid settings (SHARING_GUARD_ALERTS_*): "
            + describe_validation_error(exc),
            file=sys.stderr,
        )
        return EXIT_CANNOT_START
    return run_alerts(settings)
