"""The security team's webhook, stood in for on loopback: it receives the alerts service's
posts and keeps each alert's kind and transfer event id for the demo to show.

A :class:`ThreadingHTTPServer` on ``127.0.0.1`` and a free port, in a daemon thread. It
answers every ``POST`` 204 (the alerts service retries anything else) and keeps what it
understood; a body it cannot read is counted, not fatal.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """Collects posted alerts until :meth:`close`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[tuple[str | None, str]] = []
        self.unreadable = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver._accept(self.rfile.read(length))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return  # the demo shows what matters; no access log on its screen

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-webhook", daemon=True
        )

    @property
    def url(self) -> str:
        """Where to post alerts."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/alerts"

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def _accept(self, body: bytes) -> None:
        try:
            alert = json.loads(body)
            item = (alert.get("event_id"), str(alert["kind"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            with self._lock:
                self.unreadable += 1
            return
        with self._lock:
            self._received.append(item)

    def take(self) -> list[tuple[str | None, str]]:
        """The alerts received since the last call: (transfer event id, kind)."""
        with self._lock:
            taken, self._received = self._received, []
        return taken

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
