"""The floor under the guard on Kafka: a Faust worker that decodes and forwards, nothing else.

    SHARING_GUARD_...=... .venv/bin/python benchmarks/guard_baseline.py [worker]

It is configured exactly like the guard (the same ``SHARING_GUARD_*`` variables, read by
:class:`sharing_guard.settings.GuardSettings`), runs as a worker process the same way
(``bootstrap.faust_worker``) and is built on the guard's own Faust app
(:func:`faust_app`, the app the guard was built on until it owned its input loop: raw
bytes topics, ``producer_acks=-1``, the same partitions, memory store, the web server for
``/readyz``, the producer without per-send yields). It
keeps the guard's batch discipline (``stream.noack_take(batch_max, within=batch_within_s)``,
manual acks once the outputs are out).

It consumes the records the guard consumes and makes as many sends per record as the
guard does, each record decoded with ``contract_registry().decode`` and forwarded as is,
the input's headers passed on:

* a transfer: four sends, like the guard's idempotency changelog record, decision, routed
  request and audit record. The first goes to the ``blocked`` topic (which this worker
  otherwise leaves alone) and is acknowledged before the other three go to ``decisions``,
  ``approved`` and ``audit``, as the guard waits for its changelog before publishing.
  The batch is acknowledged once every output is written.
* a governance event (consents, subject rights, recipients, orders): three sends, like the
  guard's state changelog, applied-events changelog and audit records: two to ``blocked``
  and one to ``audit``. As in the guard's state agents, the batch does not wait for them.

What it leaves out, on purpose: tables, catch-up, the engine, the order stage, encoding a
decision and an audit record, tracing and metrics. The guard's throughput over this one's
is what the guard's own work costs on top of Faust.

``BASELINE_SENDS=3`` gives the baseline of earlier measurements instead: transfers only
(governance not consumed), three sends each (``decisions``, ``approved``, ``audit``), with
a producer flush where the guard waits for its changelog.

Its sends are Faust's ``Topic.send``, one per record, as a plain Faust worker forwards.
With ``BASELINE_OUTPUT=outbox`` it produces them the guard's way instead (one record batch
per partition, ``stream.outbox.Outbox``), which gives what the guard would be measured
against if the plumbing were shared.
"""

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import faust
from sharing_guard import bootstrap
from sharing_guard.codec import DecodeError, contract_registry
from sharing_guard.settings import GuardSettings
from sharing_guard.stream.kafka_io import header_list
from sharing_guard.stream.outbox import Outbox

log = logging.getLogger(__name__)
OUTBOX = os.environ.get("BASELINE_OUTPUT", "faust") == "outbox"
LEGACY = os.environ.get("BASELINE_SENDS", "4") == "3"
RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}

MAX_REQUEST_SIZE = 1_000_000  # Faust's default producer_max_request_size


def without_producer_yields(app: Any) -> None:
    """Make ``app.maybe_start_producer()`` return the running producer without yielding.

    Faust's ``Topic.send`` (and each table changelog write) awaits
    ``app.maybe_start_producer()``, which mode's ``@stampede`` wraps in three
    ``asyncio.sleep(0)``: every send yields to the event loop three times, and each time
    aiokafka's sender ships whatever is buffered, so a batch leaves one to three records
    per produce request. Once the producer runs, it is returned directly; until then the
    original is used. Measured: 2.8x the decisions per second (benchmarks/README.md).
    """
    start = app.maybe_start_producer

    async def running_producer() -> Any:
        producer = app.producer
        if producer.started:
            return producer
        return await start()

    app.maybe_start_producer = running_producer


async def aiokafka_producer(app: Any) -> Any:
    """The app's started aiokafka producer (the one Faust's own sends use)."""
    producer = await app.maybe_start_producer()
    return producer._ensure_producer()


def faust_app(settings: GuardSettings) -> faust.App:
    """The Faust app of a guard worker: raw-bytes topics, acks from all replicas, the
    session and web settings of ``settings``, and the producer without per-send yields.
    The decode-and-forward baseline of the benchmarks is built on the same app."""
    app = faust.App(
        settings.app_id,
        broker=";".join(f"kafka://{h}" for h in settings.bootstrap_servers.split(",")),
        store="memory://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.account_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 5),
        broker_rebalance_timeout=max(30.0, settings.session_timeout_s * 3),
        web_enabled=True,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        loghandlers=[],
    )
    without_producer_yields(app)
    return app


class Baseline:
    """The decode-and-forward Faust app; ``app`` is what a worker runs."""

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self.registry = contract_registry()
        t = settings.topics
        n = settings.account_partitions
        self.app = faust_app(settings)  # exactly the guard's app and plumbing
        app = self.app
        self.transfers_topic = app.topic(t.transfers, partitions=n, **RAW)
        self.decisions = app.topic(t.decisions, **RAW)
        self.approved = app.topic(t.approved, **RAW)
        self.blocked = app.topic(t.blocked, **RAW)
        self.audit = app.topic(t.audit, **RAW)
        self.dlq = app.topic(t.dlq, **RAW)
        self.outputs = {
            t.decisions: self.decisions,
            t.approved: self.approved,
            t.blocked: self.blocked,
            t.audit: self.audit,
        }
        app.agent(self.transfers_topic, name="transfers")(self._transfers)
        if not LEGACY:
            governance = app.topic(t.consents, t.rights, t.recipients, t.orders, **RAW)
            app.agent(governance, name="governance")(self._governance)

        @app.page("/readyz")
        async def readyz(web: Any, request: Any) -> Any:
            ready = bool(app.started and not app.rebalancing)
            return web.json({"ready": ready}, status=200 if ready else 503)

        @app.page("/livez")
        async def livez(web: Any, request: Any) -> Any:
            return web.json({"live": True})

    def _batches(self, stream: Any) -> Any:
        return stream.noack_take(self.settings.batch_max, within=self.settings.batch_within_s)

    async def _transfers(self, stream: Any) -> None:
        async for batch in self._batches(stream):
            sent = await self._forward_transfers(batch)
            await self.app.producer.flush()  # the guard waits until its outputs are written
            for future in sent:
                await future
            for event in batch:
                await stream.ack(event)

    async def _governance(self, stream: Any) -> None:
        t = self.settings.topics
        async for batch in self._batches(stream):
            await self._forward((t.blocked, t.blocked, t.audit), await self._decoded(batch))
            for event in batch:
                await stream.ack(event)

    async def _decoded(self, batch: Sequence[Any]) -> list[tuple[Any, Any]]:
        """The batch's records with their decoded events; dead letters for the others."""
        decoded: list[tuple[Any, Any]] = []
        for event in batch:
            message = event.message
            try:
                decoded.append((self.registry.decode(message.value), message))
            except DecodeError as exc:
                await self.dlq.send(key=message.key, value=message.value)
                log.warning("undecodable record: %s", exc)
        return decoded

    async def _forward_transfers(self, batch: Sequence[Any]) -> list[Any]:
        decoded = await self._decoded(batch)
        if not decoded:
            return []
        t = self.settings.topics
        if LEGACY:
            await self.app.producer.flush()  # where the guard waits for its changelog
        else:  # the guard's changelog records, acknowledged before anything is published
            for future in await self._forward((t.blocked,), decoded, by_event=True):
                await future
        return await self._forward((t.decisions, t.approved, t.audit), decoded)

    async def _forward(
        self, names: Sequence[str], decoded: Sequence[tuple[Any, Any]], by_event: bool = False
    ) -> list[Any]:
        """Send each record to every topic in ``names``, keyed like the record (by event
        id with ``by_event``, and always on the audit topic, like the guard's audit
        records); the futures of the sends."""
        t = self.settings.topics
        outbox = Outbox()
        sent = []
        for event, message in decoded:
            headers = header_list(message.headers)
            event_key = event.event_id.encode()
            for name in names:
                key = event_key if by_event or name == t.audit else message.key
                if OUTBOX:
                    outbox.add(name, key, message.value, headers)
                else:
                    topic = self.outputs[name]
                    sent.append(await topic.send(key=key, value=message.value, headers=headers))
        if OUTBOX:
            sent = [
                d.future
                for d in await outbox.send(await aiokafka_producer(self.app), MAX_REQUEST_SIZE)
            ]
        return sent


def main(argv: Sequence[str] | None = None) -> int:
    """Run one baseline worker in the foreground until SIGINT/SIGTERM."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in ([], ["worker"]):
        print("usage: guard_baseline.py [worker]  (configured by SHARING_GUARD_* variables)")
        return 2
    baseline = Baseline(GuardSettings())
    if hasattr(bootstrap, "faust_worker"):  # run exactly as the guard runs
        runner = bootstrap.faust_worker(baseline.app, baseline.settings.log_level)
    else:
        runner = faust.Worker(baseline.app, loglevel=baseline.settings.log_level, quiet=True)
    runner.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
