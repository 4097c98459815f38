"""Reading ``sharing.decisions`` for the live view: a kafka-python consumer, no group.

The demo's topics are always its own (a broker it started, or a private suffix), so the
feed reads every partition from the beginning. Each record is decoded with the contract
codec; the guard marks a decision it answered again for a redelivered transfer with the
header ``guard.duplicate: 1``.
"""

import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from sharing_guard.codec import CodecRegistry, DecodeError, contract_registry
from sharing_guard.contract.decision import Decision

DUPLICATE_HEADER = "guard.duplicate"


def is_duplicate(headers: Any) -> bool:
    """True when the record's headers mark a repeated decision."""
    return any(key == DUPLICATE_HEADER and value == b"1" for key, value in headers or ())


class DecisionFeed:
    """Every decision on one topic, in the order each partition received them."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        registry: CodecRegistry | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.registry = registry or contract_registry()
        self.undecodable = 0
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            client_id="sharing-guard-demo-view",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        deadline = time.monotonic() + timeout_s
        partitions = self.consumer.partitions_for_topic(topic)
        while not partitions:
            if time.monotonic() > deadline:
                self.consumer.close()
                raise RuntimeError(f"topic {topic} has no partitions after {timeout_s:g} s")
            time.sleep(0.2)
            partitions = self.consumer.partitions_for_topic(topic)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(assigned)
        self.consumer.seek_to_beginning(*assigned)

    def poll(self, timeout_ms: int = 100) -> list[tuple[Decision, bool]]:
        """The decisions received since the last call (waits up to ``timeout_ms``)."""
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        out: list[tuple[Decision, bool]] = []
        for records in batches.values():
            for record in records:
                try:
                    decision = self.registry.decode(record.value)
                except DecodeError:
                    self.undecodable += 1
                    continue
                if isinstance(decision, Decision):
                    out.append((decision, is_duplicate(record.headers)))
                else:
                    self.undecodable += 1
        return out

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()
