"""The offline form of the guard (contract section 4): JSON Lines in, decisions out.

It runs the same pure engine as the stream processor, in file order. A line that is not
a valid event yields a :class:`LineError` (line number and reason: field names, never
the line's values), changes nothing, and the run goes on. Blank lines are skipped.
"""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydantic import ValidationError

from sharing_guard.codec import describe_validation_error
from sharing_guard.contract.decision import Decision
from sharing_guard.contract.events import TransferRequested, parse_event_json
from sharing_guard.core.engine import guard_error
from sharing_guard.core.ledger import EventIdConflictError, GovernanceState, step
from sharing_guard.core.policy import Policy


@dataclass(frozen=True, slots=True)
class LineError:
    """A line that was not a valid event: where, and why."""

    line: int
    error: str

    def to_json(self) -> str:
        """The one-line JSON report written to stderr."""
        return json.dumps({"line": self.line, "error": self.error})


def _invalid_reason(exc: ValidationError) -> str:
    if any(err["type"] == "json_invalid" for err in exc.errors()):
        return "not valid JSON"
    return describe_validation_error(exc)


def replay(
    lines: Iterable[bytes], policy: Policy, state: GovernanceState | None = None
) -> Iterator[Decision | LineError]:
    """Decide every ``TransferRequested`` line in order; report every invalid line.

    Yields one :class:`Decision` per transfer line (a repeated ``event_id`` repeats the
    first decision) and one :class:`LineError` per invalid line, in input order.
    """
    current = state or GovernanceState()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            event = parse_event_json(raw)
        except ValidationError as exc:
            yield LineError(number, _invalid_reason(exc))
            continue
        try:
            result = step(current, event, policy)
        except EventIdConflictError as exc:
            yield LineError(number, str(exc))
            continue
        except Exception:  # fail closed: a fault in evaluation blocks, never skips
            if isinstance(event, TransferRequested):
                yield guard_error(event.event_id, policy)
                continue
            raise
        current = result.state
        if result.decision is not None:
            yield result.decision
