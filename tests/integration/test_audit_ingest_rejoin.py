"""A sink whose group rebalance left it no partition of its topic joins the group again.

The sink is meant to be its group's only member. When a rebalance leaves it nothing while
the topic has partitions (kafka-python's leader assigned from metadata that did not list
them yet, seen in CI), it must not sit idle until some later rebalance that may never
come: after ``REJOIN_AFTER_S`` it joins again. Here a second member of the group, which
the range assignor serves first, holds the topic's only partition, so every rebalance
leaves the sink empty-handed: it must keep saying so and joining again, and take the
partition, and ingest everything, as soon as the other member leaves.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Any

import pytest
from audit_sink.ingest import IngestStats
from test_audit_ingest import encoded, in_process_settings, sink_thread
from test_audit_ingest_support import (
    SinkRig,
    produce,
    rig,  # noqa: F401
)
from test_audit_support import (
    backend,  # noqa: F401
    pg_names,  # noqa: F401
)

pytestmark = pytest.mark.kafka


def _hold(bootstrap_servers: str, group_id: str, topic: str, leave: threading.Event) -> Any:
    """A healthy second member of the group (it polls, never commits) whose client id,
    "0-...", sorts before the sink's: the range assignor gives it partition 0. It leaves
    the group once ``leave`` is set. Returns the consumer, polled in a thread."""
    from kafka import KafkaConsumer

    squatter = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        client_id="0-squatter",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    squatter.subscribe([topic])

    def hold_the_partition() -> None:
        while not leave.is_set():
            squatter.poll(timeout_ms=100)
        squatter.close(autocommit=False)  # leaves the group: a rebalance follows

    threading.Thread(target=hold_the_partition, daemon=True).start()
    return squatter


def test_a_sink_left_without_partitions_joins_again_until_it_gets_them(
    rig: SinkRig,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    bootstrap_servers = rig.env["AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS"]
    topic = f"{rig.topic}-one-{uuid.uuid4().hex[:6]}"
    settings = in_process_settings(rig)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    produce(bootstrap_servers, topic, encoded(50, seed=11))
    caplog.set_level(logging.WARNING, logger="audit_sink.ingest")
    leave = threading.Event()
    result: list[IngestStats] = []
    try:
        squatter = _hold(bootstrap_servers, settings.kafka.group_id, topic, leave)
        deadline = time.monotonic() + 60
        while not squatter.assignment():
            assert time.monotonic() < deadline, "the other member never got the partition"
            time.sleep(0.1)
        sink = sink_thread(settings, topic, result)
        sink.start()
        joined_again = f"no partition of {topic} assigned although it has some; joining again"
        deadline = time.monotonic() + 90
        while caplog.text.count(joined_again) < 2:
            assert time.monotonic() < deadline, "the sink never joined its group again"
            assert sink.is_alive(), "the sink must wait for a partition, not stop"
            time.sleep(0.2)
        assert not result, "the sink must not finish while it holds no partition"
        leave.set()
        sink.join(120)
        assert not sink.is_alive(), "the sink did not take the partition once it was free"
        assert result[0].appended == 50
        assert result[0].rejoins >= 2
    finally:
        leave.set()
        with contextlib.suppress(Exception):
            admin.delete_topics([topic])
        admin.close()
