"""The simulated internal services: a steady stream of contract events, and the story.

Two threads share one :class:`~sharing_guard.client.TransferClient`:

* the **stream** sends :func:`~sharing_guard.simulation.iter_events` at a steady rate
  (events per second, governance and transfers together). Transfers are sent without
  waiting; a governance event is acknowledged before anything after it is sent, so a
  transfer is never decided on state older than the events produced before it;
* the **story** plays :func:`~sharing_guard.demo.story.story` a moment after the start
  (and again every ``story_every_s`` seconds when that is positive). A step marked
  ``waits`` is sent only once the decisions on the steps before it are back. A step's
  officers' calls go to ``desk`` (the order service's HTTP API, in the demo); without a
  desk, the events those calls would publish are published directly.

When the guard falls behind, the stream pauses while more than ``max_in_flight``
transfers await their decision (a second's worth at the target rate by default), so what
the live view shows stays current; the view then shows the rate the guard sustains.

Both stop when ``stop`` is set; the first error in either stops both and is kept.
"""

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sharing_guard.client import TransferClient
from sharing_guard.contract.events import TransferRequested
from sharing_guard.demo.story import DeskCall, story
from sharing_guard.demo.tally import Tally
from sharing_guard.simulation import iter_events

UNBOUNDED = 10**12
"""Events the simulation may draw: more than any demo sends."""
STEP_TIMEOUT_S = 30.0
"""How long a story step waits for its decision before the story gives up."""
TICK_S = 0.01


def due(elapsed_s: float, rate: float, sent: int) -> int:
    """Events to send now to keep ``rate`` per second after ``elapsed_s`` seconds."""
    return max(0, int(elapsed_s * rate) - sent)


class Traffic:
    """The stream and story threads."""

    def __init__(
        self,
        client: TransferClient,
        tally: Tally,
        stop: threading.Event,
        *,
        rate: float,
        seed: int = 7,
        story_delay_s: float = 2.0,
        story_every_s: float = 60.0,
        max_in_flight: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        desk: Callable[[DeskCall, int], None] | None = None,
    ) -> None:
        self.client = client
        self.tally = tally
        self.stop = stop
        self.rate = rate
        self.seed = seed
        self.story_delay_s = story_delay_s
        self.story_every_s = story_every_s
        self.max_in_flight = max_in_flight or max(50, int(rate))
        self.clock = clock
        self.desk = desk
        self.error: BaseException | None = None
        self.send_failures = 0
        self.started = False
        self._threads = [
            threading.Thread(target=self._guarded, args=(self._stream,), name="demo-stream"),
            threading.Thread(target=self._guarded, args=(self._story,), name="demo-story"),
        ]

    def start(self) -> None:
        """Start both threads."""
        self.started = True
        for thread in self._threads:
            thread.start()

    def join(self, timeout_s: float = 15.0) -> None:
        """Wait for both threads to end (after ``stop`` was set)."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _guarded(self, body: Callable[[], None]) -> None:
        try:
            body()
        except Exception as exc:
            if self.error is None:
                self.error = exc
            self.stop.set()

    def _failed(self, exc: Any) -> None:
        self.send_failures += 1
        if self.error is None:
            self.error = exc if isinstance(exc, BaseException) else RuntimeError(str(exc))

    def _stream(self) -> None:
        events = iter_events(UNBOUNDED, self.seed)
        started, sent = self.clock(), 0
        while not self.stop.is_set():
            now = self.clock()
            backlog = due(now - started, self.rate, sent)
            if backlog > self.rate:  # more than a second behind (a slow broker): resync
                started, sent, backlog = now, 0, 0
            held = self.tally.in_flight() > self.max_in_flight
            self.tally.hold_back(held)
            if backlog == 0 or held:
                self.stop.wait(TICK_S)
                continue
            transfers = governance = 0
            for _ in range(backlog):
                event = next(events)
                if isinstance(event, TransferRequested):
                    self.client.publish_async(event).add_errback(self._failed)
                    transfers += 1
                else:
                    self.client.publish(event)
                    governance += 1
            sent += backlog
            self.tally.sent(transfers=transfers, governance=governance)

    def _story(self) -> None:
        run = 0
        next_at = self.clock() + self.story_delay_s
        while not self.stop.wait(max(0.0, next_at - self.clock())):
            run += 1
            self._play(run)
            if self.story_every_s <= 0:
                return
            next_at += self.story_every_s

    def _play(self, run: int) -> None:
        sent: list[str] = []
        for step in story(run, datetime.now(UTC)):
            if step.waits and not self._decided(sent):
                return
            for event in step.governance:
                self.client.publish(event)
                self.tally.sent(governance=1)
            for call in step.calls:
                if self.desk is not None:
                    self.desk(call, step.run)
                elif call.publishes is not None:
                    self.client.publish(call.publishes)
                    self.tally.sent(governance=1)
            self.tally.expect(step)
            self.client.publish(step.transfer)
            self.tally.sent(transfers=1)
            sent.append(step.transfer.event_id)
        self._decided(sent)

    def _decided(self, event_ids: list[str]) -> bool:
        """Wait for the decisions on ``event_ids``; False on a timeout or a stop."""
        return all(
            self.tally.wait_for(event_id, STEP_TIMEOUT_S, self.stop) is not None
            for event_id in event_ids
        )
