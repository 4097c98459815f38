"""The floor under the guard on Kafka: a Faust worker that decodes and forwards, nothing else.

    SHARING_GUARD_...=... .venv/bin/python benchmarks/guard_baseline.py [worker]

It is configured exactly like the guard (the same ``SHARING_GUARD_*`` variables, read by
:class:`sharing_guard.settings.GuardSettings`), runs as a worker process the same way
(``bootstrap.faust_worker``) and is built on the guard's own Faust app
(``stream.worker.faust_app``: raw bytes topics, ``producer_acks=-1``, the same partitions,
memory store, the web server for ``/readyz``, the producer without per-send yields). It
keeps the guard's batch discipline (``stream.noack_take(batch_max, within=batch_within_s)``,
manual acks once the outputs are out), and per batch does what the guard's transfer agent
does minus the guard: each record is decoded with ``contract_registry().decode`` and sent
three times (to the ``decisions``, ``approved`` and ``audit`` topics of the settings, keyed
like the guard's outputs, the input's headers passed on), with a producer flush before the
sends (where the guard waits for its changelog records) and after them, and the acks only
once every output is written. A change to the Faust app or its settings moves both apps.

What it leaves out, on purpose: state agents and tables (so no changelog writes and no
catch-up), the engine, encoding a decision and an audit record, tracing and metrics. The
guard's throughput over this one's is what the guard's own work costs on top of Faust.

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
from sharing_guard.contract.events import TransferRequested
from sharing_guard.settings import GuardSettings
from sharing_guard.stream.kafka_io import aiokafka_producer, header_list
from sharing_guard.stream.outbox import Outbox
from sharing_guard.stream.worker import faust_app

log = logging.getLogger(__name__)
OUTBOX = os.environ.get("BASELINE_OUTPUT", "faust") == "outbox"
RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


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
        self.audit = app.topic(t.audit, **RAW)
        self.dlq = app.topic(t.dlq, **RAW)
        app.agent(self.transfers_topic, name="transfers")(self._transfers)

        @app.page("/readyz")
        async def readyz(web: Any, request: Any) -> Any:
            ready = bool(app.started and not app.rebalancing)
            return web.json({"ready": ready}, status=200 if ready else 503)

        @app.page("/livez")
        async def livez(web: Any, request: Any) -> Any:
            return web.json({"live": True})

    async def _transfers(self, stream: Any) -> None:
        async for batch in stream.noack_take(
            self.settings.batch_max, within=self.settings.batch_within_s
        ):
            sent = await self._forward_batch(batch)
            await self.app.producer.flush()  # the guard waits until its outputs are written
            for future in sent:
                await future
            for event in batch:
                await stream.ack(event)

    async def _forward_batch(self, batch: Sequence[Any]) -> list[Any]:
        decoded: list[tuple[TransferRequested, Any]] = []
        for event in batch:
            message = event.message
            try:
                transfer = self.registry.decode(message.value)
            except DecodeError as exc:
                await self.dlq.send(key=message.key, value=message.value)
                log.warning("undecodable record: %s", exc)
                continue
            decoded.append((transfer, message))
        if not decoded:
            return []
        await self.app.producer.flush()  # the guard's wait for its changelog writes
        t = self.settings.topics
        outbox = Outbox()
        sent = []
        for transfer, message in decoded:
            headers = header_list(message.headers)
            key = transfer.account_id.encode()
            audit_key = transfer.event_id.encode()
            if OUTBOX:
                outbox.add(t.decisions, key, message.value, headers)
                outbox.add(t.approved, key, message.value, headers)
                outbox.add(t.audit, audit_key, message.value, headers)
                continue
            sent.append(await self.decisions.send(key=key, value=message.value, headers=headers))
            sent.append(await self.approved.send(key=key, value=message.value, headers=headers))
            sent.append(await self.audit.send(key=audit_key, value=message.value, headers=headers))
        if OUTBOX:
            sent = await outbox.send(await aiokafka_producer(self.app))
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
