"""A server span around each HTTP request: an ASGI middleware, put outside the edge.

The span continues the caller's trace when the request carries W3C trace context
(``traceparent``) and is the current span while the app handles the request, so an event
the handler publishes through :class:`~sharing_guard.client.TransferClient` carries its
context on to the guard. Its name is the method and the matched route's *template*
(``POST /orders/{order_ref}/approve``); its attributes, with the semantic conventions'
names, the method, that template and the status code. Never the path itself, the query, a
header, the client's address or an exception's message (which may quote data). Health
probes (``untraced`` paths) get no span.
"""

from __future__ import annotations

from collections.abc import Collection

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sharing_guard.edge.asgi import route_template

__all__ = ["ServerSpans"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ServerSpans:
    """The middleware (``app.add_middleware(ServerSpans, tracer=...)``); see the module."""

    def __init__(
        self, app: ASGIApp, tracer: Tracer, untraced: Collection[str] = ("/livez", "/readyz")
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.untraced = frozenset(untraced)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.untraced:
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with self.tracer.start_as_current_span(
            method,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
            record_exception=False,  # its message may quote data
            set_status_on_exception=False,
        ) as span:

            async def observed(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, observed)
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", type(exc).__name__)
                raise
            finally:
                if scope.get("route") is not None:
                    template = route_template(scope)
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
