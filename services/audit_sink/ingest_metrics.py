"""Metrics and health of ``audit-sink ingest``: a small HTTP listener beside the ingest.

The ingest has no web server of its own; :func:`start_listener` serves, on
``AUDIT_SINK_METRICS_HOST``:``AUDIT_SINK_METRICS_PORT`` (default ``127.0.0.1:8089``; port 0
or empty: none), from a daemon thread:

* ``GET /metrics``: the Prometheus text of OpenTelemetry instruments read at scrape time
  from the :class:`~audit_sink.ingest.Ingestor` (its counters, its lag, when it last signed
  a checkpoint) and the process's own collectors;
* ``GET /healthz``: ``{"ok": true}`` while the process runs.

Every answer carries the edge's security headers; nothing is logged per request. Labels are
the topic and the partition only: never a record's content, an account or an event. The
instruments only read what the ingest loop keeps anyway: a scrape never touches the store or
Kafka. A port already in use is logged and the ingest goes on without the listener (its
metrics are then missing, which Prometheus reports as a target down).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from opentelemetry.metrics import CallbackOptions, Observation
from prometheus_client import make_wsgi_app
from sharing_guard.edge.asgi import SECURITY_HEADERS
from sharing_guard.edge.metrics import prometheus_meter

from audit_sink.archive import CheckpointArchive
from audit_sink.ingest import Ingestor
from audit_sink.settings import AuditSinkSettings
from audit_sink.store import LogStore

__all__ = ["IngestMetrics", "Listener", "start_listener"]

SERVICE_NAME = "audit-sink"
_log = logging.getLogger(__name__)

# (name, description, the IngestStats field counted)
_COUNTERS = (
    ("records_consumed", "Records consumed from the audit topic", "consumed"),
    ("records_appended", "Entries appended to the log (anomalies included)", "appended"),
    ("records_skipped", "Records delivered again and skipped (already in the log)", "skipped"),
    ("anomalies", "Undecodable records kept as anomaly entries", "anomalies"),
    ("batches", "Batches appended (each in one database transaction)", "batches"),
    ("checkpoints", "Checkpoints signed", "checkpoints"),
    ("commit_failures", "Kafka offset commits that failed (harmless)", "commit_failures"),
    ("rebalances", "Partition assignments of the consumer group", "rebalances"),
)


class IngestMetrics:
    """The ingest's instruments, read at scrape time from ``ingestor``."""

    def __init__(self, ingestor: Ingestor, clock: Callable[[], float] = time.time) -> None:
        exposition = prometheus_meter(SERVICE_NAME, "audit_sink.ingest")
        self.registry = exposition.registry
        self._ingestor = ingestor
        self._clock = clock
        meter = exposition.meter
        for name, description, field in _COUNTERS:
            meter.create_observable_counter(
                f"audit_sink_ingest_{name}",
                callbacks=[self._count(field)],
                description=description,
            )
        meter.create_observable_gauge(
            "audit_sink_ingest_consumer_lag",
            callbacks=[self._observe_lag],
            description="Records of each assigned partition not yet stored in the log "
            "(the partition's end offset minus the position stored)",
        )
        meter.create_observable_gauge(
            "audit_sink_checkpoint_age",
            unit="s",
            callbacks=[self._observe_age],
            description="Seconds since the latest checkpoint was signed (at start: since the "
            "latest archived checkpoint was written)",
        )
        meter.create_observable_gauge(
            "audit_sink_log_size",
            callbacks=[self._observe_size],
            description="Entries in the log (its tree size)",
        )

    def _count(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(getattr(self._ingestor.stats, field))]

        return observe

    def _observe_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, {"topic": topic, "partition": partition})
            for (topic, partition), value in list(self._ingestor.lag.items())
        ]

    def _observe_age(self, _options: CallbackOptions) -> Iterable[Observation]:
        signed_at = self._ingestor.checkpoint_signed_at
        return [] if signed_at is None else [Observation(max(0.0, self._clock() - signed_at))]

    def _observe_size(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._ingestor.stats.size)]


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per request (daemon threads), on the address family of the host."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[WSGIRequestHandler], family: int
    ) -> None:
        self.address_family = socket.AddressFamily(family)
        super().__init__(address, handler)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the scrapes would drown the ingest's own lines."""


def _app(metrics: IngestMetrics) -> Callable[..., Iterable[bytes]]:
    """The WSGI application: ``/metrics``, ``/healthz``, else 404 (GET and HEAD only)."""
    exposition = make_wsgi_app(metrics.registry)
    secured = list(SECURITY_HEADERS.items())

    def answer(status: str, body: dict[str, Any], start: Callable[..., Any]) -> list[bytes]:
        start(status, [("Content-Type", "application/json"), *secured])
        return [json.dumps(body).encode()]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if path not in ("/metrics", "/healthz"):
            return answer("404 Not Found", {"detail": "Not Found"}, start_response)
        if method not in ("GET", "HEAD"):
            return answer(
                "405 Method Not Allowed", {"detail": "Method Not Allowed"}, start_response
            )
        if path == "/healthz":
            return answer("200 OK", {"ok": True}, start_response)

        def with_headers(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            return start_response(status, [*headers, *secured], *rest)

        return exposition(environ, with_headers)  # type: ignore[no-any-return]

    return app


class Listener:
    """The running listener; :meth:`close` stops it."""

    def __init__(self, server: _Server, metrics: IngestMetrics) -> None:
        self.server = server
        self.metrics = metrics
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, name="audit-sink-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def _latest_archived_at(settings: AuditSinkSettings) -> float | None:
    """When the latest checkpoint of the archive was written (its file's mtime), if any."""
    archive = CheckpointArchive(settings.archive_dir())
    try:
        sizes = archive.sizes()
        return archive.path(sizes[-1]).stat().st_mtime if sizes else None
    except OSError:
        return None


def start_listener(
    settings: AuditSinkSettings, ingestor: Ingestor, store: LogStore | None
) -> Listener | None:
    """Seed what the ingest does not know before its first batch (the log's size, when the
    latest archived checkpoint was written) and serve the metrics; ``None`` when the port
    is 0, or when it cannot listen (logged). Call it in the thread that owns ``store``."""
    if settings.metrics_port == 0:
        return None
    if store is not None:  # a sharded trail's size is known after its first batches
        with store.reader() as reader:
            ingestor.stats.size = reader.size()
    if ingestor.checkpoint_signed_at is None:
        ingestor.checkpoint_signed_at = _latest_archived_at(settings)
    metrics = IngestMetrics(ingestor)
    host, port = settings.metrics_host, settings.metrics_port
    try:
        server = _Server((host, port), _Quiet, _family(host, port))
    except OSError as exc:
        _log.error(
            "metrics listener not started on %s:%d (%s); ingesting without it",
            host,
            port,
            type(exc).__name__,
        )
        return None
    server.set_app(_app(metrics))
    _log.info("metrics on http://%s:%d/metrics", host, port)
    return Listener(server, metrics)


def _family(host: str, port: int) -> int:
    """IPv6 for an IPv6 address (``::``), else IPv4."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return socket.AF_INET
    return infos[0][0] if infos else socket.AF_INET
