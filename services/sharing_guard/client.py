"""The producer client for internal services (kafka-python).

``TransferClient.request_transfer(...)`` builds and validates a ``TransferRequested``,
encodes it (Avro single-object encoding), keys it by account, carries the caller's trace
context in the headers and returns the broker's acknowledgement. An invalid event is
refused with :class:`InvalidEventError` before anything reaches Kafka.
``publish(event)`` sends any contract event to its topic with its key; the governance
workflows and the tests use it.
"""

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from kafka import KafkaProducer
from opentelemetry import propagate
from pydantic import ValidationError

from sharing_guard.codec import CodecRegistry, contract_registry, describe_validation_error
from sharing_guard.contract.events import (
    ConsentChanged,
    Event,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    RecipientDeregistered,
    RecipientRegistered,
    SubjectRightsChanged,
    TransferRequested,
)
from sharing_guard.settings import Topics


class InvalidEventError(ValueError):
    """The event does not satisfy the contract; the message names every bad field."""


def route(event: Event, topics: Topics) -> tuple[str, str]:
    """The topic and the key an event is published under (contract section 2)."""
    if isinstance(event, TransferRequested):
        return topics.transfers, event.account_id
    if isinstance(event, ConsentChanged):
        return topics.consents, event.account_id
    if isinstance(event, SubjectRightsChanged):
        return topics.rights, event.account_id
    if isinstance(event, RecipientRegistered | RecipientDeregistered):
        return topics.recipients, event.recipient_id
    if isinstance(event, OrderRegistered | OrderApproved | OrderRevoked):
        return topics.orders, event.order_ref
    raise TypeError(f"not a contract event: {type(event).__name__}")


class TransferClient:
    """Publishes contract events to Kafka and waits for the broker's acknowledgement."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Topics | None = None,
        registry: CodecRegistry | None = None,
        producer: Any = None,
        timeout_s: float = 10.0,
        *,
        max_request_size: int = 1_048_576,
    ) -> None:
        self.topics = topics or Topics()
        self.registry = registry or contract_registry()
        self.timeout_s = timeout_s
        self.producer = producer or KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            acks="all",
            retries=5,
            max_in_flight_requests_per_connection=1,
            linger_ms=0,
            max_request_size=max_request_size,
        )

    def publish_async(self, event: Event) -> Any:
        """Send one event; returns kafka-python's future (``.get()`` for the ack)."""
        topic, key = route(event, self.topics)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        headers = [(k, v.encode("latin-1")) for k, v in carrier.items()]
        return self.producer.send(
            topic, key=key.encode(), value=self.registry.encode(event), headers=headers
        )

    def publish(self, event: Event) -> Any:
        """Send one event and return the broker's acknowledgement (``RecordMetadata``)."""
        return self.publish_async(event).get(timeout=self.timeout_s)

    def request_transfer(self, **fields: Any) -> Any:
        """Validate, publish and acknowledge a ``TransferRequested``.

        ``event_id`` defaults to a new UUID and ``occurred_at`` to now. Raises
        :class:`InvalidEventError` naming every invalid field; nothing is sent then.
        """
        fields.setdefault("event_id", str(uuid4()))
        fields.setdefault("occurred_at", datetime.now(UTC))
        try:
            event = TransferRequested.model_validate(fields)
        except ValidationError as exc:
            raise InvalidEventError(
                f"invalid TransferRequested: {describe_validation_error(exc)}"
            ) from exc
        return self.publish(event)

    def flush(self) -> None:
        """Wait until every sent event is acknowledged."""
        self.producer.flush(timeout=self.timeout_s)

    def close(self) -> None:
        """Flush and close the producer."""
        self.producer.close(timeout=self.timeout_s)
