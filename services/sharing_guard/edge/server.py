"""Uvicorn for the services: SIGTERM and SIGINT only ask the server to stop.

Uvicorn re-raises the signal after its graceful shutdown, which kills the process with
status -15 (and, in a process with other threads, before they close). :class:`StoppableServer`
keeps the signal to a request to stop, so a service stopped by its supervisor exits 0
after its lifespan's shutdown ran.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn


class StoppableServer(uvicorn.Server):
    """A uvicorn server that a signal stops gracefully, without re-raising it."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self._stop)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, _sig: int, _frame: FrameType | None) -> None:
        self.should_exit = True
