"""The sharing guard worker: a Faust application that runs the guard's own input loop.

Faust is the worker's framework: ``faust.Worker`` runs the process (signals, logging,
clean shutdown), the app serves ``/livez``, ``/readyz`` and ``/metrics`` and runs the
timers, and the loop is a service of the app. Faust's own consumer, agents and tables
are not used (the app boots without Kafka): measured on this project, Faust's agents
skipped records fetched around a rebalance and committed past them, and committed
before their table changelog writes were acknowledged (faust-streaming #606, #316,
#596; docs/ordering.md). The input loop (:mod:`sharing_guard.stream.loop`) consumes with
aiokafka, Faust's own client, and commits only what it processed and the broker
acknowledged; the state lives in a local store on disk (:mod:`sharing_guard.stream.store`)
backed by compacted changelogs (:mod:`sharing_guard.stream.changelog`).
"""

import asyncio
import logging
import time
from typing import Any

import faust
from faust.app.base import BootStrategy
from mode import Service

from sharing_guard.codec import CodecRegistry
from sharing_guard.core.policy import Policy
from sharing_guard.settings import GuardSettings
from sharing_guard.stream.changelog import STATE_PREFIXES, Changelogs
from sharing_guard.stream.liveness import Liveness
from sharing_guard.stream.loop import InputLoop
from sharing_guard.stream.processing import Processor
from sharing_guard.stream.store import LocalStore
from sharing_guard.stream.telemetry import Telemetry
from sharing_guard.stream.window import Window

log = logging.getLogger(__name__)
LAG_INTERVAL_S = 1.0


class WithoutKafka(BootStrategy):
    """Faust boots its web server, timers and services, not its consumer or producer."""

    enable_kafka = False


class GuardApp(faust.App):
    """The guard's Faust app: it boots without Faust's Kafka clients."""

    BootStrategy = WithoutKafka


class LoopService(Service):
    """The input loop as a service of the Faust app: started and stopped with it; the
    worker stops (and exits non-zero) if the loop fails."""

    def __init__(self, loop: InputLoop, **kwargs: Any) -> None:
        self.input_loop = loop
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        await self.input_loop.start()

    async def on_stop(self) -> None:
        await self.input_loop.stop()

    @Service.task
    async def _run(self) -> None:
        try:
            await self.input_loop.run()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.exception("the input loop failed; stopping the worker")
            await self.crash(exc)


class GuardWorker:
    """Builds the Faust app around the input loop; ``app`` is what a worker runs."""

    def __init__(
        self,
        settings: GuardSettings,
        policy: Policy,
        registry: CodecRegistry,
        telemetry: Telemetry,
        window: Window,
        *,
        shadow: Policy | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.store = LocalStore(settings.data_dir / "state.sqlite3", cached=STATE_PREFIXES)
        self.liveness = Liveness(settings.liveness_timeout_s, time.monotonic())
        processor = Processor(
            settings.topics,
            Changelogs.of(settings.app_id),
            policy,
            registry,
            telemetry,
            window,
            shadow=shadow,
        )
        self.loop = InputLoop(settings, processor, self.store, telemetry, self.liveness)
        log.warning(
            "policy file version %s (enforced until a promoted version replaces it)%s",
            policy.version,
            "" if shadow is None else f"; shadow policy {shadow.version}",
        )
        self.app = GuardApp(
            settings.app_id,
            datadir=str(settings.data_dir),
            web_enabled=True,
            web_bind=settings.web_host,
            web_port=settings.web_port,
            web_in_thread=False,
            loghandlers=[],
        )
        self.app.add_dependency(LoopService(self.loop))
        self.app.timer(interval=LAG_INTERVAL_S)(self.loop.measure_lag)
        self._add_web_views()

    def alive(self) -> bool:
        """The liveness rule (:class:`~sharing_guard.stream.liveness.Liveness`)."""
        return self.liveness.alive(time.monotonic(), self.loop.lag_total)

    def _add_web_views(self) -> None:
        from prometheus_client import REGISTRY, generate_latest

        worker = self

        @self.app.page("/livez")
        async def livez(web: Any, request: Any) -> Any:
            alive = worker.alive()
            body = {
                "live": alive,
                "lag": worker.loop.lag_total,
                "since_progress_s": round(worker.liveness.stalled_for(time.monotonic()), 1),
            }
            return web.json(body, status=200 if alive else 503)

        @self.app.page("/readyz")
        async def readyz(web: Any, request: Any) -> Any:
            ready = worker.loop.ready
            return web.json({"ready": ready}, status=200 if ready else 503)

        @self.app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            # aiohttp refuses a charset inside content_type; Prometheus reads text/plain.
            return web.bytes(generate_latest(REGISTRY), content_type="text/plain")
