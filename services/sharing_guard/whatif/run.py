"""Re-deciding a history under a candidate policy: lines in, a :class:`Tally` out (pure).

Lines are read in order, each parsed once (:class:`~sharing_guard.whatif.lines.LineReader`):
governance events advance both sides' state, each transfer not seen before is decided under
both (:class:`~sharing_guard.whatif.sides.TwoSides`) and compared
(:class:`~sharing_guard.whatif.tally.Tally`), sealed placeholders are counted. An invalid
line is handed to ``invalid`` as replay's :class:`~sharing_guard.replay.LineError` (line
number and reason: field names, never values), changes nothing, and the run goes on. Blank
lines are skipped. The caller does the I/O.
"""

from collections.abc import Callable, Iterable

from pydantic import ValidationError

from sharing_guard.contract.events import TransferRequested
from sharing_guard.core.ledger import EventIdConflictError
from sharing_guard.core.policy import Policy
from sharing_guard.replay import LineError
from sharing_guard.whatif.lines import InvalidLineError, LineReader, Sealed, problem_of
from sharing_guard.whatif.sides import TwoSides
from sharing_guard.whatif.tally import Tally

_TRANSFER = "TransferRequested"


def _ignore(_: LineError) -> None:
    return None


def what_if(
    lines: Iterable[bytes],
    baseline: Policy,
    candidate: Policy,
    *,
    examples: int = 5,
    invalid: Callable[[LineError], None] = _ignore,
) -> Tally:
    """Re-decide ``lines`` (JSON Lines of events, optionally with recorded decisions and
    sealed placeholders) under ``baseline`` and ``candidate``; count what changes, keeping
    up to ``examples`` event ids per group."""
    parse = LineReader().parse
    sides = TwoSides(baseline, candidate)
    tally = Tally(examples=examples)
    seen, apply, decide, count = sides.seen, sides.apply, sides.decide, tally.transfer

    def refuse(number: int, reason: str) -> None:
        tally.invalid += 1
        invalid(LineError(number, reason))

    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        tally.lines += 1
        try:
            item = parse(raw)
        except (ValidationError, InvalidLineError) as exc:
            refuse(number, problem_of(exc))
            continue
        if isinstance(item, Sealed):
            decision = item.event_type == _TRANSFER
            if item.recorded is not None and not decision:
                refuse(number, "recorded: only a sealed transfer carries a recorded decision")
                continue
            try:
                if seen(item.event_id, item.event_type):
                    tally.repeated += 1
                    continue
            except EventIdConflictError as exc:
                refuse(number, str(exc))
                continue
            sides.sealed(item.event_id, item.event_type, item.recorded)
            tally.sealed(item.reason, decision)
            continue
        event, recorded = item
        kind = event.type
        if recorded is not None and kind != _TRANSFER:
            refuse(number, "recorded: only a transfer carries a recorded decision")
            continue
        try:
            if seen(event.event_id, kind):
                tally.repeated += 1
                continue
        except EventIdConflictError as exc:
            refuse(number, str(exc))
            continue
        if isinstance(event, TransferRequested):
            count(event, decide(event, recorded), recorded)
        else:
            apply(event)
            tally.governance += 1
    return tally
