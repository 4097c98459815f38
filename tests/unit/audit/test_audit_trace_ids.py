"""The ingest reads each record's W3C trace id from its ``traceparent`` header, with no
tracer: valid ones kept by position, anything else (no header, another version, the
all-zero id, wrong length, not lower-case hex) ignored."""

from __future__ import annotations

from dataclasses import dataclass, field

from audit_sink.spans import trace_ids

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@dataclass
class Message:
    offset: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "governance.audit"
    partition: int = 2


def parent(trace: str, version: str = "00") -> list[tuple[str, bytes]]:
    return [("traceparent", f"{version}-{trace}-00f067aa0ba902b7-01".encode())]


def test_valid_trace_ids_are_kept_by_position_and_nothing_else_is() -> None:
    messages = [
        Message(0, parent(TRACE)),
        Message(1),  # no header
        Message(2, [("other", b"x"), *parent("0" * 32)]),  # the invalid all-zero id
        Message(3, parent(TRACE, version="ff")),  # a version we do not read
        Message(4, parent(TRACE.upper())),  # not lower-case hex
        Message(5, [("traceparent", f"00-{TRACE}-00f067aa0ba902b7".encode())]),  # too short
        Message(6, [("tracestate", b"k=v"), *parent("a" * 32)]),
        Message(7, [("traceparent", "00-" + "g" * 32 + "-00f067aa0ba902b7-01")]),  # type: ignore[list-item]
    ]

    assert trace_ids(messages) == {
        ("governance.audit", 2, 0): TRACE,
        ("governance.audit", 2, 6): "a" * 32,
    }
