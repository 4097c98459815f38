"""What the demo has sent and what came back, counted as it happens.

:class:`Tally` is shared by the producer threads (``sent``, ``expect``, ``wait_for``) and
the main loop (``record``, ``snapshot``); one lock guards it. A :class:`Snapshot` is an
immutable copy that the renderers in :mod:`sharing_guard.demo.view` turn into text.

A decision counts once per ``event_id`` (the first one received): a redelivered transfer
gets its stored decision again, and those repeats are counted apart as ``duplicates``.
The story's lines are its transfers' decisions, the officers' calls to the order service
(:meth:`Tally.desk`) and the alerts it must raise (:meth:`Tally.alerted`), in the order
they happen.
"""

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from sharing_guard.contract.decision import Decision
from sharing_guard.contract.enums import Outcome, ReasonCode
from sharing_guard.demo.story import DeskCall, StoryStep

RATE_WINDOW_S = 2.0
"""Decisions per second are averaged over this many recent seconds."""
RECENT_POOL = 200
"""The last decisions kept, to pick the ones to explain from."""


@dataclass(frozen=True, slots=True)
class StoryLine:
    """One story step as it stands: sent and waiting, or decided (as expected or not)."""

    label: str
    expected: str
    run: int = 1
    event_id: str = ""
    got: str | None = None
    as_expected: bool = False
    explanation: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The counts at one instant, for rendering."""

    elapsed_s: float
    sent_transfers: int = 0
    sent_governance: int = 0
    decided: int = 0
    duplicates: int = 0
    rate: float = 0.0
    peak_rate: float = 0.0
    outcomes: tuple[tuple[str, int], ...] = ()
    codes: tuple[tuple[str, int], ...] = ()
    recent: tuple[str, ...] = ()
    story: tuple[StoryLine, ...] = ()
    held_back: bool = False
    alerts: int = 0

    @property
    def in_flight(self) -> int:
        """Transfers sent but not decided yet (redeliveries are sent but not new)."""
        return max(0, self.sent_transfers - self.decided - self.duplicates)

    def outcome(self, name: str) -> int:
        """The count of one outcome (``"ALLOW"`` or ``"BLOCK"``)."""
        return dict(self.outcomes).get(name, 0)

    @property
    def story_done(self) -> int:
        """Story steps decided as expected."""
        return sum(1 for line in self.story if line.as_expected)

    @property
    def story_failed(self) -> int:
        """Story steps decided otherwise than expected."""
        return sum(1 for line in self.story if line.got is not None and not line.as_expected)


def rate_over(times: Iterable[float], now: float, window_s: float) -> float:
    """Events per second among ``times`` that fall in ``(now - window_s, now]``."""
    if window_s <= 0:
        return 0.0
    return sum(1 for t in times if now - window_s < t <= now) / window_s


def latest_kinds(decisions: Sequence[Decision], count: int) -> list[Decision]:
    """The newest ``count`` decisions, one per kind (outcome and codes), newest first."""
    picked: list[Decision] = []
    kinds: set[tuple[Outcome, tuple[ReasonCode, ...]]] = set()
    for decision in reversed(decisions):
        kind = (decision.outcome, decision.codes)
        if kind not in kinds:
            kinds.add(kind)
            picked.append(decision)
            if len(picked) == count:
                break
    return picked


def describe(decision: Decision) -> str:
    """Outcome and each reason with its clause, e.g. ``ALLOW PROCESSOR [C-PROCESSOR-PURPOSE]
    + PROCESSOR [C-MARKETING-CONSENT]`` (one code may rest on two clauses)."""
    reasons = " + ".join(f"{r.code.value} [{r.clause.value}]" for r in decision.reasons)
    return f"{decision.outcome.value} {reasons}"


@dataclass(frozen=True, slots=True)
class _AlertWanted:
    """A story step's alert, expected at the webhook."""

    step: StoryStep
    kind: str


class Tally:
    """Thread-safe counts of the demo; ``explain`` renders a decision for a person."""

    def __init__(
        self,
        explain: Callable[[Decision], str],
        recent: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._explain = explain
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._sent_transfers = 0
        self._sent_governance = 0
        self._duplicates = 0
        self._decisions: dict[str, Decision] = {}
        self._outcomes: Counter[str] = Counter({o.value: 0 for o in Outcome})
        self._codes: Counter[str] = Counter()
        self._times: deque[float] = deque()
        self._recent_count = recent
        self._recent: deque[Decision] = deque(maxlen=RECENT_POOL)
        self._story: dict[str, StoryStep | StoryLine | _AlertWanted] = {}
        self._alerts: dict[str, str] = {}
        self._alert_count = 0
        self._peak = 0.0
        self._held_back = False

    def restart_clock(self) -> None:
        """Count elapsed time (and rates) from now: call when traffic starts."""
        with self._lock:
            self._started = self._clock()

    def sent(self, transfers: int = 0, governance: int = 0) -> None:
        """Count events acknowledged by (or handed to) the producer."""
        with self._lock:
            self._sent_transfers += transfers
            self._sent_governance += governance

    def hold_back(self, held: bool) -> None:
        """Note whether the stream is paused because the guard is behind."""
        with self._lock:
            self._held_back = held

    def in_flight(self) -> int:
        """Transfers sent and not decided yet (cheaper than a snapshot)."""
        with self._lock:
            return max(0, self._sent_transfers - len(self._decisions) - self._duplicates)

    def expect(self, step: StoryStep) -> None:
        """Follow a story step: its transfer's decision is checked when it arrives, and
        the alert it must raise (if any) when one comes to the webhook."""
        with self._lock:
            self._story[step.transfer.event_id] = step
            if step.alert is not None:
                self._story[f"alert-{step.transfer.event_id}"] = _AlertWanted(step, step.alert)

    def desk(self, call: DeskCall, run: int, status: int, detail: str = "") -> None:
        """Count an officer's call to the order service: the status it got."""
        got = f"HTTP {status}" + (f" ({detail})" if detail else "")
        with self._lock:
            key = f"desk-{len(self._story)}"
            self._story[key] = StoryLine(
                call.label, call.expected, run, key, got=got, as_expected=status == call.expect
            )

    def alerted(self, event_id: str | None, kind: str) -> None:
        """Count an alert received by the webhook (``event_id``: the transfer's)."""
        with self._lock:
            self._alert_count += 1
            if event_id is not None:
                self._alerts.setdefault(event_id, kind)

    def record(self, decisions: Iterable[tuple[Decision, bool]]) -> None:
        """Count decisions as received: (decision, marked duplicate by the guard)."""
        now = self._clock()
        with self._lock:
            for decision, duplicate in decisions:
                if duplicate or decision.event_id in self._decisions:
                    self._duplicates += 1
                    continue
                self._decisions[decision.event_id] = decision
                self._outcomes[decision.outcome.value] += 1
                self._codes.update(code.value for code in decision.codes)
                self._times.append(now)
                self._recent.append(decision)
            while self._times and self._times[0] <= now - RATE_WINDOW_S:
                self._times.popleft()
            self._changed.notify_all()

    def decided_ids(self) -> set[str]:
        """The event ids decided so far."""
        with self._lock:
            return set(self._decisions)

    def wait_for(self, event_id: str, timeout_s: float, stop: threading.Event) -> Decision | None:
        """The decision on ``event_id`` once received; ``None`` after the timeout or stop."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while event_id not in self._decisions:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or stop.is_set():
                    return None
                self._changed.wait(min(remaining, 0.2))
            return self._decisions[event_id]

    def snapshot(self) -> Snapshot:
        """A consistent copy of the counts now."""
        now = self._clock()
        with self._lock:
            elapsed = now - self._started
            rate = rate_over(self._times, now, min(RATE_WINDOW_S, max(elapsed, 1.0)))
            self._peak = max(self._peak, rate)
            story = tuple(self._story_line(step) for step in self._story.values())
            recent = latest_kinds(self._recent, self._recent_count)
            return Snapshot(
                elapsed_s=elapsed,
                sent_transfers=self._sent_transfers,
                sent_governance=self._sent_governance,
                decided=len(self._decisions),
                duplicates=self._duplicates,
                rate=rate,
                peak_rate=self._peak,
                outcomes=tuple(self._outcomes.items()),
                codes=tuple(sorted(self._codes.items(), key=lambda item: (-item[1], item[0]))),
                recent=tuple(self._explain(d) for d in recent),
                story=story,
                held_back=self._held_back,
                alerts=self._alert_count,
            )

    def _story_line(self, item: StoryStep | StoryLine | _AlertWanted) -> StoryLine:
        if isinstance(item, StoryLine):
            return item
        if isinstance(item, _AlertWanted):
            event_id = item.step.transfer.event_id
            line = StoryLine(
                f"alert to the security team: {item.step.label}",
                f"webhook {item.kind}",
                item.step.run,
                f"alert-{event_id}",
            )
            kind = self._alerts.get(event_id)
            if kind is None:
                return line
            return replace(line, got=f"webhook {kind}", as_expected=kind == item.kind)
        step = item
        event_id = step.transfer.event_id
        decision = self._decisions.get(event_id)
        if decision is None:
            return StoryLine(step.label, step.expected, step.run, event_id)
        return StoryLine(
            step.label,
            step.expected,
            step.run,
            event_id,
            got=describe(decision),
            as_expected=step.satisfied_by(decision.outcome, decision.codes),
            explanation=self._explain(decision),
        )
