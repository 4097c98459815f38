"""Small helpers around Kafka records: headers in one form, the decision's summary headers,
dead-letter headers, state records in a facts snapshot."""

from collections.abc import Mapping, Sequence

from sharing_guard.contract.decision import Decision
from sharing_guard.core.state import (
    StateRecord,
)
from sharing_guard.stream.state_codec import encode_state

Headers = list[tuple[str, bytes]]

DLQ_REASON = "dlq.reason"
DLQ_TOPIC = "dlq.topic"
DLQ_PARTITION = "dlq.partition"
DLQ_OFFSET = "dlq.offset"
DECISION_HEADERS = (
    "guard.event_id",
    "guard.outcome",
    "guard.duplicate",
    "guard.policy_version",
    "guard.codes",
)


def header_list(headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Headers:
    """Kafka headers as a list of (name, bytes), whatever form a client gives them in."""
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return [(k, v) for k, v in headers.items()]
    return [(k, v) for k, v in headers]


def dead_letter_headers(
    headers: Headers, reason: str, topic: str, partition: int, offset: int
) -> Headers:
    """The original headers plus why and where the record failed."""
    return [
        *headers,
        (DLQ_REASON, reason.encode()[:1024]),
        (DLQ_TOPIC, topic.encode()),
        (DLQ_PARTITION, str(partition).encode()),
        (DLQ_OFFSET, str(offset).encode()),
    ]


def decision_headers(headers: Headers, decision: Decision, duplicate: bool) -> Headers:
    """The transfer's headers (trace context included) plus the decision's summary.

    ``guard.codes`` lists the decision's reason codes, comma-separated, so a consumer of
    ``.approved``/``.blocked`` (the alerts process) needs no join with ``sharing.decisions``.
    """
    kept = [(k, v) for k, v in headers if k not in DECISION_HEADERS]
    return [
        *kept,
        ("guard.event_id", decision.event_id.encode()),
        ("guard.outcome", decision.outcome.value.encode()),
        ("guard.duplicate", b"1" if duplicate else b"0"),
        ("guard.policy_version", decision.policy_version.encode()),
        ("guard.codes", ",".join(code.value for code in decision.codes).encode()),
    ]


def encode_optional(record: StateRecord | None) -> str | None:
    """A state record as a JSON string for a facts snapshot, or ``None``."""
    return None if record is None else encode_state(record).decode()
