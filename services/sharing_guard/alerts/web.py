"""Health and metrics over HTTP: ``/livez``, ``/readyz``, ``/metrics`` (port 8091 by default).

``/livez`` is 200 while the consumer and sender threads run (503 once either died: restart
the process); ``/readyz`` is 200 once the consumer has partitions assigned as well;
``/metrics`` is the Prometheus text of the process's OpenTelemetry metrics.
"""

import logging
from collections.abc import Callable

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from sharing_guard.edge.asgi import Edge, EdgePolicy

PATHS = frozenset(("/livez", "/readyz", "/metrics"))


def create_app(live: Callable[[], bool], ready: Callable[[], bool]) -> FastAPI:
    """The health and metrics application (no docs pages, no OpenAPI route), behind the
    shared HTTP edge."""
    app = FastAPI(title="sharing-guard alerts", docs_url=None, redoc_url=None, openapi_url=None)
    app.router.redirect_slashes = False
    # No token here (nothing but health and metrics), but the same edge: security headers,
    # no body, one log-safe line per request (at DEBUG for these probe paths).
    policy = EdgePolicy(1024, None, PATHS, logging.getLogger(__name__))
    app.add_middleware(Edge, policy=policy)

    @app.get("/livez")
    def livez() -> JSONResponse:
        ok = live()
        return JSONResponse({"live": ok}, status_code=200 if ok else 503)

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        ok = live() and ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
