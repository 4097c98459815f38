"""The guard's composition root: settings in, a runnable worker out. Nothing else wires."""

import asyncio
import sys
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from sharing_guard.codec import CodecRegistry, contract_registry
from sharing_guard.core.policy import Policy, PolicyError
from sharing_guard.edge import logsafe
from sharing_guard.policy_file import load_policy
from sharing_guard.settings import GuardSettings
from sharing_guard.stream.migrate import MigrationError, migrate_faust_state
from sharing_guard.stream.preflight import PreflightError, preflight
from sharing_guard.stream.telemetry import Telemetry, build_telemetry
from sharing_guard.stream.window import Window
from sharing_guard.stream.worker import GuardWorker
from sharing_guard.tracing import WORKER, tracer_provider


def build_worker(
    window: Window,
    settings: GuardSettings | None = None,
    telemetry: Telemetry | None = None,
    registry: CodecRegistry | None = None,
    policies: tuple[Policy, Policy | None] | None = None,
) -> GuardWorker:
    """A guard worker from the environment's settings (or the ones given), keeping
    idempotency entries for ``window`` (see :func:`~sharing_guard.stream.preflight.preflight`).

    Metrics go to Prometheus (served on ``/metrics``) unless ``telemetry`` is given.
    """
    settings = settings or GuardSettings()
    policy, shadow = policies or load_policies(settings)
    return GuardWorker(
        settings=settings,
        policy=policy,
        shadow=shadow,
        registry=registry or contract_registry().limited_to(settings.max_record_bytes),
        telemetry=telemetry
        or build_telemetry([PrometheusMetricReader()], _tracer_provider(settings)),
        window=window,
    )


def load_policies(settings: GuardSettings) -> tuple[Policy, Policy | None]:
    """The policy file and the shadow policy file (if any), each parsed once. Raises
    :class:`PolicyError` naming the file that failed (unreadable or invalid)."""
    try:
        policy = load_policy(settings.policy_file)
    except (OSError, PolicyError) as exc:
        raise PolicyError(f"policy file: {exc}") from exc
    if settings.shadow_policy_file is None:
        return policy, None
    try:
        return policy, load_policy(settings.shadow_policy_file)
    except (OSError, PolicyError) as exc:
        raise PolicyError(f"shadow policy file: {exc}") from exc


def _tracer_provider(settings: GuardSettings) -> TracerProvider:
    """Spans over OTLP when an endpoint is configured (:mod:`sharing_guard.tracing`), and
    to a JSON-lines file when ``trace_file`` is set."""
    processors: list[SpanProcessor] = []
    if settings.trace_file is not None:
        out = settings.trace_file.open("a", encoding="utf-8")
        exporter = ConsoleSpanExporter(
            out=out, formatter=lambda span: span.to_json(indent=None) + "\n"
        )
        processors.append(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    return tracer_provider(WORKER, processors)


def faust_worker(app: Any, log_level: str) -> Any:
    """The ``faust.Worker`` that runs ``app`` in the foreground, logging at ``log_level``.

    Faust keeps its terminal spinner at WARNING and above, and for it sets the root logger
    to DEBUG: every ``log.debug`` of aiokafka, Faust and mode then builds a ``LogRecord``
    and walks the stack, several times per record produced. Without the spinner the root
    logger stays at ``log_level``.
    """
    import faust

    runner = faust.Worker(
        app, loglevel=log_level, quiet=True, logging_config=logsafe.merged_dict_config()
    )
    runner.spinner = None
    return runner


def migrate_state(settings: GuardSettings | None = None) -> int:
    """``sharing-guard migrate-faust-state``: check the topics (creating the changelogs),
    then carry the Faust tables' state over; 0 when done, 2 with a message when refused."""
    settings = settings or GuardSettings()
    try:
        asyncio.run(preflight(settings))
        carried = asyncio.run(migrate_faust_state(settings))
    except (PreflightError, MigrationError) as exc:
        print(f"sharing-guard migrate-faust-state: {exc}", file=sys.stderr)
        return 2
    for name, written in carried.written.items():
        print(
            f"{name}: {carried.read[name]} record(s) read, {written} entries written"
            + (f", {carried.malformed[name]} malformed skipped" if carried.malformed[name] else "")
        )
    return 0


def run_worker(settings: GuardSettings | None = None) -> None:
    """Check the policy files and the broker's topics (:func:`preflight`), then run one
    guard worker in the foreground until it is stopped (SIGINT/SIGTERM). Exits with
    status 2 and a message when a policy file is invalid or the topics do not fit."""
    settings = settings or GuardSettings()
    try:
        policies = load_policies(settings)
    except (OSError, PolicyError) as exc:
        print(f"sharing-guard worker: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        window = asyncio.run(preflight(settings))
    except PreflightError as exc:
        print(f"sharing-guard worker: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    provider = _tracer_provider(settings)
    telemetry = build_telemetry([PrometheusMetricReader()], provider)
    worker = build_worker(window, settings, telemetry, policies=policies)
    try:
        faust_worker(worker.app, worker.settings.log_level).execute_from_commandline()
    finally:
        provider.shutdown()  # the spans still queued leave before the process does
