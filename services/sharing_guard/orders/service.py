"""The workflow's use cases: register, approve, revoke, list and show orders.

Changing calls are serialised (one lock), checked against the current state (four eyes,
revoked, already approved...), and published as the contract's order event with the
authenticated officer as ``registered_by``/``approved_by``/``revoked_by``. The publisher
waits until the event is back from ``legal.orders`` and applied, so a following read
shows it; if that takes too long the answer is computed from the event itself (it is in
the log already and will be applied). Each change published and each refusal is counted
by the service's telemetry, when it has one (by kind and rule only).
"""

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Protocol
from uuid import uuid4

from sharing_guard.contract.events import OrderApproved, OrderRegistered, OrderRevoked
from sharing_guard.edge.logsafe import loggable
from sharing_guard.orders.auth import Principal
from sharing_guard.orders.model import (
    OrderEvent,
    OrderRecord,
    OrderStatus,
    Refusal,
    RefusedError,
    check_approval,
    check_revocation,
    next_record,
)
from sharing_guard.orders.schemas import ENDED, OrderOut, RegisterOrder
from sharing_guard.orders.store import OrderStore
from sharing_guard.orders.telemetry import OrdersTelemetry

log = logging.getLogger(__name__)


@contextmanager
def _logged_refusal(
    change: str, order_ref: str, officer: Principal, telemetry: OrdersTelemetry | None
) -> Iterator[None]:
    """Log a refused change (who, which order; never why in personal terms), count it by
    kind and rule, and re-raise."""
    try:
        yield
    except RefusedError as exc:
        log.warning(
            "order %s refused: order_ref=%s officer=%s",
            change,
            loggable(order_ref),
            officer.officer_id,
        )
        if telemetry is not None:
            telemetry.refused(change, exc.reason.value)
        raise


class Publisher(Protocol):
    """Publishes an order event; returns True once it is applied to the store."""

    def __call__(self, event: OrderEvent) -> bool: ...


class OrderNotFoundError(LookupError):
    """No order with that reference was registered."""


class UnavailableError(RuntimeError):
    """The broker cannot be reached; nothing was changed (HTTP 503)."""


class TooLargeError(ValueError):
    """The event would exceed the broker's record limit; nothing was sent (HTTP 413)."""


class InvalidRequestError(ValueError):
    """A request the schema admits but the rules refuse (HTTP 422 naming the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class OrderService:
    """The order workflow over a store, a publisher and a clock."""

    def __init__(
        self,
        store: OrderStore,
        publish: Publisher,
        clock: Callable[[], datetime],
        telemetry: OrdersTelemetry | None = None,
    ) -> None:
        self.store = store
        self.publish = publish
        self.clock = clock
        self.telemetry = telemetry
        self._changes = threading.Lock()

    # --- reading --------------------------------------------------------------------------

    def list(self, state: OrderStatus | None = None) -> list[OrderOut]:
        """Every order (optionally only those in ``state``), by registration time."""
        now = self.clock()
        counts = self.store.disclosure_counts()
        views = [
            OrderOut.of(record, counts.get(ref, (0, 0)), now)
            for ref, record in self.store.records().items()
        ]
        views.sort(key=lambda v: (v.registered_at, v.order_ref))
        return [v for v in views if state is None or v.state is state]

    def show(self, order_ref: str) -> OrderOut:
        """One order with each disclosure made under it."""
        record = self._record(order_ref)
        return self._view(record, with_disclosures=True)

    def _record(self, order_ref: str) -> OrderRecord:
        record = self.store.record(order_ref)
        if record is None:
            raise OrderNotFoundError(f"no order {order_ref} is registered")
        return record

    def _view(self, record: OrderRecord, with_disclosures: bool = False) -> OrderOut:
        ref = record.order_ref
        disclosures = self.store.disclosures(ref) if with_disclosures else None
        counts = self.store.disclosure_counts().get(ref, (0, 0))
        return OrderOut.of(record, counts, self.clock(), disclosures)

    # --- changing -------------------------------------------------------------------------

    def register(self, officer: Principal, request: RegisterOrder) -> OrderOut:
        """Register an order in the officer's name; refused if the reference is taken."""
        ref = request.order_ref or f"order-{uuid4()}"
        if request.valid_until <= self.clock():
            raise InvalidRequestError("valid_until", ENDED)
        with self._changes:
            if self.store.record(ref) is not None:
                with _logged_refusal("registration", ref, officer, self.telemetry):
                    raise RefusedError(
                        f"order {ref} is already registered; use a new reference",
                        Refusal.REFERENCE_TAKEN,
                    )
            fields = request.model_dump(exclude={"order_ref"})
            event = OrderRegistered(
                event_id=str(uuid4()),
                occurred_at=self.clock(),
                order_ref=ref,
                registered_by=officer.officer_id,
                **fields,
            )
            record = self._change(None, event, "registered")
        log.info("order registered: order_ref=%s officer=%s", loggable(ref), officer.officer_id)
        return self._view(record, with_disclosures=True)

    def approve(self, officer: Principal, order_ref: str) -> OrderOut:
        """Approve an order; four eyes: never by the officer who registered it."""
        with self._changes:
            record = self._record(order_ref)
            with _logged_refusal("approval", order_ref, officer, self.telemetry):
                check_approval(record, officer.officer_id, self.clock())
            event = OrderApproved(
                event_id=str(uuid4()),
                occurred_at=self.clock(),
                order_ref=order_ref,
                approved_by=officer.officer_id,
            )
            record = self._change(record, event, "approved")
        log.info("order approved: order_ref=%s officer=%s", loggable(order_ref), officer.officer_id)
        return self._view(record, with_disclosures=True)

    def revoke(self, officer: Principal, order_ref: str, reason: str) -> OrderOut:
        """Revoke an order for ``reason``; final."""
        with self._changes:
            record = self._record(order_ref)
            with _logged_refusal("revocation", order_ref, officer, self.telemetry):
                check_revocation(record)
            event = OrderRevoked(
                event_id=str(uuid4()),
                occurred_at=self.clock(),
                order_ref=order_ref,
                revoked_by=officer.officer_id,
                reason=reason,
            )
            record = self._change(record, event, "revoked")
        log.info("order revoked: order_ref=%s officer=%s", loggable(order_ref), officer.officer_id)
        return self._view(record, with_disclosures=True)

    def _change(self, current: OrderRecord | None, event: OrderEvent, kind: str) -> OrderRecord:
        applied = self.publish(event)
        if self.telemetry is not None:
            self.telemetry.changed(kind)
        record = self.store.record(event.order_ref) if applied else None
        if record is None:
            log.warning(
                "order event %s published but not applied yet: order_ref=%s",
                event.event_id,
                loggable(event.order_ref),
            )
            record = next_record(current, event)
        assert record is not None
        return record
