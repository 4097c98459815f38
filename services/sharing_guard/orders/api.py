"""The HTTP API of the order workflow (FastAPI; OpenAPI at ``/openapi.json``).

``/livez`` and ``/readyz`` need no token; every ``/orders`` call needs a bearer token
whose role allows it (see :mod:`sharing_guard.orders.auth`): 401 with
``WWW-Authenticate`` when the token is missing, malformed, unknown or expired, 403 when
the role does not allow the call. Invalid requests get 422 naming every bad field
(without echoing values); a refused change (four eyes, revoked...) gets 409.
"""

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from sharing_guard.orders.auth import (
    MISSING_TOKEN,
    Action,
    Authenticator,
    AuthError,
    Principal,
)
from sharing_guard.orders.model import RefusedError
from sharing_guard.orders.schemas import (
    ListQuery,
    OrderOut,
    Problem,
    RegisterOrder,
    RevokeOrder,
    ValidationProblem,
)
from sharing_guard.orders.service import OrderNotFoundError, OrderService, UnavailableError

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False, description="A token issued by the administrator.")

OrderRef = Annotated[str, Path(min_length=1, max_length=256, description="The order reference.")]

_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing, malformed, unknown or expired token."},
    403: {"model": Problem, "description": "The token's role does not allow this call."},
    422: {"model": ValidationProblem, "description": "Invalid request; every bad field named."},
}
_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_AUTH_RESPONSES,
    400: {"model": Problem, "description": "The body is not JSON."},
    404: {"model": Problem, "description": "No such order."},
    409: {"model": Problem, "description": "Refused: four eyes, already approved, revoked..."},
    503: {"model": Problem, "description": "Kafka unreachable; nothing was changed."},
}


class _UnauthorizedError(Exception):
    def __init__(self, description: str) -> None:
        self.description = description


class _ForbiddenError(Exception):
    def __init__(self, description: str) -> None:
        self.description = description


def create_app(
    service: OrderService,
    authenticator: Authenticator,
    readiness: Callable[[], dict[str, bool]],
    clock: Callable[[], datetime],
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The FastAPI application over a service; the composition root supplies the parts."""
    app = FastAPI(
        title="sharing-guard orders",
        version="1",
        description="Law-enforcement orders: register, approve (four eyes), revoke, "
        "and the disclosures made under each.",
        lifespan=lifespan,
    )

    def principal(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> Principal:
        try:
            return authenticator.authenticate(request.headers.get("authorization"), clock())
        except AuthError as exc:
            raise _UnauthorizedError(exc.description) from None

    def allowed(action: Action) -> Callable[[Principal], Principal]:
        def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if not who.may(action):
                log.warning(
                    "forbidden: officer=%s role=%s action=%s", who.officer_id, who.role, action
                )
                raise _ForbiddenError(f"role {who.role.value} may not {action.value} orders")
            return who

        return check

    @app.exception_handler(_UnauthorizedError)
    async def unauthorized(request: Request, exc: _UnauthorizedError) -> JSONResponse:
        log.warning(
            "unauthenticated call refused: %s %s: %s",
            request.method,
            request.url.path,
            exc.description,
        )
        challenge = 'Bearer realm="sharing-guard-orders"'
        if exc.description != MISSING_TOKEN:  # RFC 6750: no error code without a token
            challenge += f', error="invalid_token", error_description="{exc.description}"'
        return JSONResponse(
            {"detail": exc.description}, status_code=401, headers={"WWW-Authenticate": challenge}
        )

    @app.exception_handler(_ForbiddenError)
    async def forbidden(request: Request, exc: _ForbiddenError) -> JSONResponse:
        return JSONResponse({"detail": exc.description}, status_code=403)

    @app.exception_handler(RefusedError)
    async def refused(request: Request, exc: RefusedError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(OrderNotFoundError)
    async def not_found(request: Request, exc: OrderNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(UnavailableError)
    async def unavailable(request: Request, exc: UnavailableError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code != 405:
            return await http_exception_handler(request, exc)
        # Starlette names only the first route's methods; list every route's on the path.
        path = request.url.path
        methods = sorted(
            {
                method
                for route in app.routes
                if isinstance(route, APIRoute) and route.path_regex.match(path)
                for method in route.methods or ()
            }
        )
        return JSONResponse(
            {"detail": exc.detail}, status_code=405, headers={"Allow": ", ".join(methods)}
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.get("/livez", tags=["health"])
    def livez() -> dict[str, bool]:
        """The process answers."""
        return {"live": True}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Not ready."}})
    def readyz() -> JSONResponse:
        """Ready when the Kafka producer is connected and the state is loaded."""
        parts = readiness()
        ready = all(parts.values())
        return JSONResponse({"ready": ready, **parts}, status_code=200 if ready else 503)

    @app.post("/orders", status_code=201, responses=_CHANGE_RESPONSES, tags=["orders"])
    def register_order(
        body: RegisterOrder,
        who: Annotated[Principal, Depends(allowed(Action.REGISTER))],
    ) -> OrderOut:
        """Register an order in the caller's name; it is pending until a second officer
        approves it."""
        return service.register(who, body)

    @app.post("/orders/{order_ref}/approve", responses=_CHANGE_RESPONSES, tags=["orders"])
    def approve_order(
        order_ref: OrderRef,
        who: Annotated[Principal, Depends(allowed(Action.APPROVE))],
    ) -> OrderOut:
        """Approve an order; refused (409) for the officer who registered it."""
        return service.approve(who, order_ref)

    @app.post("/orders/{order_ref}/revoke", responses=_CHANGE_RESPONSES, tags=["orders"])
    def revoke_order(
        order_ref: OrderRef,
        body: RevokeOrder,
        who: Annotated[Principal, Depends(allowed(Action.REVOKE))],
    ) -> OrderOut:
        """Revoke an order, with the reason; final."""
        return service.revoke(who, order_ref, body.reason)

    @app.get("/orders", responses=_AUTH_RESPONSES, tags=["orders"])
    def list_orders(
        who: Annotated[Principal, Depends(allowed(Action.READ))],
        query: Annotated[ListQuery, Query()],
    ) -> list[OrderOut]:
        """Every order with its state and disclosure count (unknown parameters refused)."""
        return service.list(query.state)

    @app.get(
        "/orders/{order_ref}",
        responses={**_AUTH_RESPONSES, 404: {"model": Problem, "description": "No such order."}},
        tags=["orders"],
    )
    def show_order(
        order_ref: OrderRef,
        who: Annotated[Principal, Depends(allowed(Action.READ))],
    ) -> OrderOut:
        """One order with its state and each disclosure made under it."""
        return service.show(order_ref)

    return app
