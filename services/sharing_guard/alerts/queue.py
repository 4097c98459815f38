"""A bounded, thread-safe queue of alerts that never blocks the producer (the consumer).

When full, :meth:`AlertQueue.put` drops the **oldest** waiting alert and returns it, so
the caller counts and logs it. Dropping the oldest keeps what is happening now for when
the webhook answers again; every dropped alert's id is logged, and the underlying
decision is in the audit trail.
"""

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from sharing_guard.alerts.core import Alert


@dataclass(frozen=True)
class Queued:
    """An alert and when it was raised."""

    alert: Alert
    raised_at: datetime


class AlertQueue:
    """At most ``maxsize`` alerts, oldest first."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._items: deque[Queued] = deque()
        self._ready = threading.Condition()

    def put(self, item: Queued) -> Queued | None:
        """Add an alert without waiting; return the alert dropped to make room, if any."""
        with self._ready:
            dropped = self._items.popleft() if len(self._items) >= self.maxsize else None
            self._items.append(item)
            self._ready.notify()
            return dropped

    def get(self, timeout_s: float) -> Queued | None:
        """The oldest alert, waiting up to ``timeout_s``; ``None`` if there was none."""
        with self._ready:
            if not self._items:
                self._ready.wait(timeout_s)
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)
