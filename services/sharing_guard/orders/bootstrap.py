"""The order service's composition root: settings in, a runnable HTTP service out."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import FastAPI
from kafka.errors import KafkaError
from opentelemetry.sdk.trace import TracerProvider

from sharing_guard.codec import contract_registry
from sharing_guard.edge import logsafe
from sharing_guard.edge.server import StoppableServer
from sharing_guard.edge.spans import ServerSpans
from sharing_guard.orders.api import create_app
from sharing_guard.orders.auth import Authenticator, load_entries
from sharing_guard.orders.kafka_io import Follower, OrderPublisher
from sharing_guard.orders.model import OrderEvent
from sharing_guard.orders.service import OrderService, UnavailableError
from sharing_guard.orders.settings import OrdersSettings
from sharing_guard.orders.store import OrderStore
from sharing_guard.orders.telemetry import OrdersTelemetry
from sharing_guard.tracing import ORDERS, tracer_provider

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The clock of the service."""
    return datetime.now(UTC)


@dataclass
class OrdersApp:
    """The wired service: its HTTP app and the adapters its lifespan starts and stops."""

    settings: OrdersSettings
    app: FastAPI
    store: OrderStore
    follower: Follower
    publisher: OrderPublisher | None = None


def build_app(
    settings: OrdersSettings | None = None, tracing: TracerProvider | None = None
) -> OrdersApp:
    """Wire the service from settings (the environment's by default).

    The Kafka producer is created when the app starts (lifespan), so building fails
    only on bad configuration (an unreadable tokens file), never on an absent broker.
    With ``tracing``, each request gets a server span (:mod:`sharing_guard.edge.spans`)
    whose context the order events it publishes carry; the provider is shut down (its
    spans flushed) when the app stops.
    """
    settings = settings or OrdersSettings()
    entries = load_entries(settings.tokens_file, settings.tokens)
    if not entries:
        log.warning("no tokens configured: every /orders call will be refused (401)")
    registry = contract_registry()
    store = OrderStore(settings.state_file)
    follower = Follower(
        settings.bootstrap_servers,
        settings.orders_topic,
        settings.decisions_topic,
        store=store,
        registry=registry,
    )

    def producer() -> OrderPublisher | None:
        """The publisher, created on first use; ``None`` while the broker is unreachable."""
        if wired.publisher is None:
            try:
                wired.publisher = OrderPublisher(
                    settings.bootstrap_servers,
                    settings.orders_topic,
                    store=store,
                    registry=registry,
                    ack_timeout_s=settings.kafka_timeout_s,
                    apply_timeout_s=settings.apply_timeout_s,
                    max_record_bytes=settings.max_record_bytes,
                )
            except KafkaError as exc:
                log.warning("Kafka producer not connected: %s", type(exc).__name__)
        return wired.publisher

    def publish(event: OrderEvent) -> bool:
        publisher = producer()
        if publisher is None:
            raise UnavailableError("Kafka is not reachable; nothing was changed")
        return publisher(event)

    def readiness() -> dict[str, bool]:
        publisher = producer()
        connected = publisher is not None and publisher.connected()
        return {"producer_connected": connected, "state_loaded": follower.loaded.is_set()}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        follower.start()
        producer()
        try:
            yield
        finally:
            if wired.publisher is not None:
                wired.publisher.close()
            follower.stop()
            store.close()
            if tracing is not None:
                tracing.shutdown()

    def producer_connected() -> bool:
        """Read at scrape time: never creates the producer (no connection from a scrape)."""
        publisher: OrderPublisher | None = wired.publisher
        return publisher is not None and publisher.connected()

    telemetry = OrdersTelemetry()
    telemetry.state_loaded = follower.loaded.is_set
    telemetry.producer_connected = producer_connected
    service = OrderService(store, publish, utc_now, telemetry)
    app = create_app(
        service,
        Authenticator(entries),
        readiness,
        utc_now,
        lifespan,
        max_body_bytes=settings.max_body_bytes,
    )
    if tracing is not None:
        app.add_middleware(
            ServerSpans,
            tracer=tracing.get_tracer("sharing_guard.orders"),
            untraced=("/livez", "/readyz", "/metrics"),  # probes and scrapes: no spans
        )
    wired = OrdersApp(settings=settings, app=app, store=store, follower=follower)
    return wired


def serve(settings: OrdersSettings | None = None) -> None:
    """Run the service in the foreground until stopped (SIGINT/SIGTERM)."""
    import uvicorn

    settings = settings or OrdersSettings()
    logsafe.configure(settings.log_level.upper())
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.root.level))
    wired = build_app(settings, tracer_provider(ORDERS))
    config = uvicorn.Config(
        wired.app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # the root logger above: every line through the log-safe format
        access_log=False,  # the edge logs one line per request, with the route template
        server_header=False,
    )
    StoppableServer(config).run()  # SIGTERM: a graceful stop, exit 0
