"""When a worker is alive: it has nothing to do, or it made progress recently.

``/livez`` answers 503, and Kubernetes restarts the worker, when the worker holds input
lag (records of its partitions it has not processed) and has finished no batch for
``timeout_s``; or when its input loop has ended. A worker without lag may be idle for
any time. Pure bookkeeping: the caller passes the times and the lag.
"""

from dataclasses import dataclass


@dataclass
class Liveness:
    """Progress of the input loop, and the rule that judges it."""

    timeout_s: float
    last_progress_s: float
    loop_running: bool = True

    def progressed(self, now_s: float) -> None:
        """A batch was processed (or the loop is waiting for input with none pending)."""
        self.last_progress_s = now_s

    def alive(self, now_s: float, lag: int) -> bool:
        """Whether the worker is alive at ``now_s`` holding ``lag`` unprocessed records."""
        if not self.loop_running:
            return False
        return lag <= 0 or now_s - self.last_progress_s < self.timeout_s

    def stalled_for(self, now_s: float) -> float:
        """Seconds since the last progress."""
        return now_s - self.last_progress_s
