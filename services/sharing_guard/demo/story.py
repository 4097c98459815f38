"""The demo's scripted story: a few transfers whose decisions a person can follow.

Each :class:`StoryStep` publishes some governance events and makes the legal officers'
calls to the order service's HTTP API (:class:`DeskCall`: register, approve, each with
the status the service must answer, four eyes included), then sends one transfer, and
names the outcome and the reason code its decision must carry (and, for the Virtual
Drive egress attempt, the alert the security team's webhook must receive). Some steps change what an
earlier step would be decided (a withdrawal, a second approval): those are marked
``waits``, and the traffic thread sends them only once every earlier step's decision
has come back. The others go out at once, in order.

Everything here is pure: :func:`story` builds the events from a run number and a base
time. Ids are opaque and carry the run number (``acc-s1-01``, ``ord-s1``), so repeated
stories in one demo never share state; timestamps advance one second per event from
``base``, so consents precede the transfers that rely on them and the order is in force.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sharing_guard.contract.enums import (
    ConsentScope,
    ConsentStatus,
    DataCategory,
    OrderType,
    Outcome,
    Purpose,
    ReasonCode,
    RecipientType,
)
from sharing_guard.contract.events import (
    ConsentChanged,
    GovernanceEvent,
    OrderApproved,
    OrderRegistered,
    Recipient,
    RecipientRegistered,
    TransferRequested,
)
from sharing_guard.contract.types import format_timestamp

ORDER_QUOTA = 2
"""Disclosures the story's court order allows."""
OFFICERS = ("officer-anna", "officer-bruno")
"""The two legal officers of the four-eyes steps (the demo issues each a token)."""
VDD_ALERT = "VDD_EGRESS_BLOCKED"
"""The alert kind a blocked Virtual Drive egress raises."""


@dataclass(frozen=True, slots=True)
class DeskCall:
    """A legal officer's call to the order service's HTTP API and the status it must get.

    ``publishes`` is the order event the service publishes when the call succeeds (with
    the story's ids and times), so that the story can be replayed offline without the
    service; ``None`` for a call that must be refused.
    """

    label: str
    officer: str
    action: Literal["register", "approve"]
    order_ref: str
    expect: int
    publishes: OrderRegistered | OrderApproved | None = None

    def body(self) -> dict[str, Any] | None:
        """The JSON body of the call (the registration's fields), or ``None``."""
        event = self.publishes
        if self.action != "register" or not isinstance(event, OrderRegistered):
            return None
        fields = event.model_dump(
            mode="json", exclude={"event_id", "occurred_at", "registered_by", "type"}
        )
        fields["valid_from"] = format_timestamp(event.valid_from)
        fields["valid_until"] = format_timestamp(event.valid_until)
        return fields

    @property
    def expected(self) -> str:
        """The expectation in a few words, e.g. ``HTTP 409``."""
        return f"HTTP {self.expect}"


@dataclass(frozen=True, slots=True)
class StoryStep:
    """Governance and officers' calls first, then one transfer, and what its decision
    (and, where named, the alert it raises) must say."""

    label: str
    governance: tuple[GovernanceEvent, ...]
    transfer: TransferRequested
    outcome: Outcome
    code: ReasonCode
    waits: bool = False
    run: int = 1
    calls: tuple[DeskCall, ...] = field(default=())
    alert: str | None = None

    @property
    def effects(self) -> tuple[GovernanceEvent, ...]:
        """The governance events the step causes: its own, then those of the calls that
        succeed (what the order service publishes), in order."""
        published = tuple(c.publishes for c in self.calls if c.publishes is not None)
        return (*self.governance, *published)

    def satisfied_by(self, outcome: Outcome, codes: tuple[ReasonCode, ...]) -> bool:
        """True when a decision with ``outcome`` and ``codes`` is the one expected."""
        return outcome is self.outcome and self.code in codes

    @property
    def expected(self) -> str:
        """The expectation in a few words, e.g. ``BLOCK ORDER_NOT_APPROVED``."""
        return f"{self.outcome.value} {self.code.value}"


class _Clock:
    """Event ids and timestamps for one story: one second apart from ``base``."""

    def __init__(self, run: int, base: datetime) -> None:
        self.run = run
        self.base = base
        self.count = 0

    def stamp(self) -> tuple[str, datetime]:
        self.count += 1
        return f"story{self.run}-evt-{self.count:02d}", self.base + timedelta(seconds=self.count)


def story(run: int, base: datetime) -> list[StoryStep]:
    """The story's steps for run number ``run``, timed from ``base`` (aware datetime)."""
    return [replace(step, run=run) for step in _steps(run, base)]


def _steps(run: int, base: datetime) -> Iterator[StoryStep]:
    clock = _Clock(run, base)
    s = f"s{run}"
    docs, mailer, agency = f"rcp-{s}-docs", f"rcp-{s}-mailer", f"rcp-{s}-agency"
    consenting, silent, named = f"acc-{s}-01", f"acc-{s}-02", f"acc-{s}-03"
    order_ref = f"ZH/2026/{100 + run}"  # a court's case number: "/" is fine
    types = {
        docs: RecipientType.SUBCONTRACTOR,
        mailer: RecipientType.SUBCONTRACTOR,
        agency: RecipientType.LAW_ENFORCEMENT,
    }

    def register(rid: str, purposes: tuple[Purpose, ...], agreement: str) -> RecipientRegistered:
        event_id, at = clock.stamp()
        return RecipientRegistered(
            event_id=event_id,
            occurred_at=at,
            recipient_id=rid,
            recipient_type=types[rid],
            jurisdiction="CH",
            permitted_purposes=purposes,
            agreement_ref=agreement,
        )

    def consent(status: ConsentStatus) -> ConsentChanged:
        event_id, at = clock.stamp()
        return ConsentChanged(
            event_id=event_id,
            occurred_at=at,
            account_id=consenting,
            scope=ConsentScope.MARKETING,
            status=status,
        )

    def approve(officer: str, expect: int, label: str) -> DeskCall:
        event_id, at = clock.stamp()
        approved = OrderApproved(
            event_id=event_id, occurred_at=at, order_ref=order_ref, approved_by=officer
        )
        return DeskCall(
            label, officer, "approve", order_ref, expect, approved if expect == 200 else None
        )

    def transfer(
        rid: str,
        account: str,
        purpose: Purpose,
        *,
        categories: tuple[DataCategory, ...] = (DataCategory.PERSONAL_INFORMATION,),
        source: str = "campaigns",
        order: str | None = None,
    ) -> TransferRequested:
        event_id, at = clock.stamp()
        return TransferRequested(
            event_id=event_id,
            occurred_at=at,
            source_service=source,
            account_id=account,
            data_categories=categories,
            recipient=Recipient(id=rid, type=types[rid], jurisdiction="CH"),
            purpose=purpose,
            order_ref=order,
            payload_ref=f"outbox://{source}/{event_id}",
            size_bytes=4096,
        )

    block, allow = Outcome.BLOCK, Outcome.ALLOW
    yield StoryStep(
        "document processing by a registered subcontractor",
        (register(docs, (Purpose.DOCUMENT_PROCESSING,), f"dpa-{s}-1"),),
        transfer(docs, named, Purpose.DOCUMENT_PROCESSING, source="docs-pipeline"),
        allow,
        ReasonCode.PROCESSOR,
    )
    yield StoryStep(
        "promotional offer, marketing consent given",
        (
            register(
                mailer,
                (Purpose.CUSTOMER_COMMUNICATIONS, Purpose.PROMOTIONAL_OFFERS),
                f"dpa-{s}-2",
            ),
            consent(ConsentStatus.GRANTED),
        ),
        transfer(mailer, consenting, Purpose.PROMOTIONAL_OFFERS),
        allow,
        ReasonCode.PROCESSOR,
    )
    yield StoryStep(
        "promotional offer, no consent ever given",
        (),
        transfer(mailer, silent, Purpose.PROMOTIONAL_OFFERS),
        block,
        ReasonCode.CONSENT_MISSING,
    )
    yield StoryStep(
        "promotional offer after the consent was withdrawn",
        (consent(ConsentStatus.WITHDRAWN),),
        transfer(mailer, consenting, Purpose.PROMOTIONAL_OFFERS),
        block,
        ReasonCode.CONSENT_WITHDRAWN,
        waits=True,
    )
    yield StoryStep(
        "Virtual Drive contents to the subcontractor",
        (),
        transfer(
            docs,
            named,
            Purpose.DOCUMENT_PROCESSING,
            categories=(DataCategory.VIRTUAL_DRIVE_DATA,),
            source="drive-sync",
        ),
        block,
        ReasonCode.VDD_EGRESS_FORBIDDEN,
        alert=VDD_ALERT,
    )
    event_id, at = clock.stamp()
    registered = OrderRegistered(
        event_id=event_id,
        occurred_at=at,
        order_ref=order_ref,
        order_type=OrderType.COURT_ORDER,
        authority="Obergericht des Kantons Zürich",
        jurisdiction="CH",
        recipient_id=agency,
        account_ids=(named,),
        data_categories=(DataCategory.PERSONAL_INFORMATION,),
        valid_from=base - timedelta(hours=1),
        valid_until=base + timedelta(days=1),
        max_disclosures=ORDER_QUOTA,
        registered_by=OFFICERS[0],
    )
    anna, bruno = OFFICERS

    def police_request() -> TransferRequested:
        return transfer(agency, named, Purpose.LEGAL_ORDER, source="legal-desk", order=order_ref)

    registration = DeskCall(
        f"{anna} registers court order {order_ref} (POST /orders)",
        anna,
        "register",
        order_ref,
        201,
        registered,
    )
    own = approve(anna, 409, f"{anna} approves her own order: refused, four eyes")
    yield StoryStep(
        "court order approved only by the officer who registered it",
        (),
        police_request(),
        block,
        ReasonCode.ORDER_NOT_APPROVED,
        calls=(registration, own),
    )
    second = approve(bruno, 200, f"{bruno} approves order {order_ref}")
    yield StoryStep(
        f"order approved by a second officer: disclosure 1 of {ORDER_QUOTA}",
        (),
        police_request(),
        allow,
        ReasonCode.ORDER,
        waits=True,
        calls=(second,),
    )
    for number in range(2, ORDER_QUOTA + 1):
        yield StoryStep(
            f"same order: disclosure {number} of {ORDER_QUOTA}",
            (),
            police_request(),
            allow,
            ReasonCode.ORDER,
        )
    yield StoryStep(
        f"same order: request {ORDER_QUOTA + 1}, beyond its quota",
        (),
        police_request(),
        block,
        ReasonCode.ORDER_QUOTA_EXHAUSTED,
    )
