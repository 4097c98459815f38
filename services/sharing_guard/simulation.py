"""A deterministic, production-like stream of contract events, for benchmarks and tests.

:func:`simulate` draws ``count`` events from a :class:`random.Random` seeded with
``seed``: the same arguments always give the same events, and a shorter run is a prefix
of a longer one with the same seed. Nothing here reads a clock or does I/O; timestamps
start at :data:`START` and advance by a random step for every new event.

The stream looks like production traffic. It opens with the governance a deployment
starts from (a few dozen registered associate offices, agents and subcontractors, the
fraud and business-transfer partners, early marketing consents, the first court orders)
and then interleaves:

* governance changes (about 11%): marketing and third-party consents granted and
  withdrawn, erasures, restrictions and their lifting, processors registered, re-registered
  with new terms and deregistered, orders registered, approved (sometimes by the
  registering officer, which does not count), and revoked;
* transfer requests (about 88%), mostly personal information to processors, but also
  promotional offers with and without consent, consented third-party sharing, fraud
  exchanges and business transfers with and without their references, law-enforcement
  requests with and without (valid) orders, children's data, and attempts to send
  Virtual Drive Data out;
* redeliveries (about 0.5%): an earlier event sent again unchanged, as a consumer sees
  after a rebalance. A redelivery keeps its original ``occurred_at``; every other event's
  ``occurred_at`` is strictly later than the one before it.

Ids are opaque (``evt-000123``, ``acc-0042``, ``rcp-0007``, ``ord-00012``). The shares
above hold for long runs: the opening takes the first 87 events, so a run of a few
hundred events is still mostly governance.
"""

import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import accumulate
from typing import Generic, TypeVar

from sharing_guard.contract.enums import (
    ConsentScope,
    ConsentStatus,
    DataCategory,
    OrderType,
    Purpose,
    RecipientType,
    SubjectRightsAction,
)
from sharing_guard.contract.events import (
    ConsentChanged,
    Event,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    Recipient,
    RecipientDeregistered,
    RecipientRegistered,
    SubjectRightsChanged,
    TransferRequested,
)

START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
"""The ``occurred_at`` the stream starts from."""

ACCOUNTS = 5000
"""Distinct accounts the stream speaks about (``acc-0000`` to ``acc-4999``)."""

GOVERNANCE_SHARE = 0.11
REDELIVERY_SHARE = 0.005

PROCESSOR_TYPES = (
    RecipientType.ASSOCIATE_OFFICE,
    RecipientType.AGENT,
    RecipientType.SUBCONTRACTOR,
)
PROCESSOR_PURPOSES = (
    Purpose.DOCUMENT_PROCESSING,
    Purpose.CUSTOMER_COMMUNICATIONS,
    Purpose.DATA_ANALYSIS,
    Purpose.MARKETING_ASSISTANCE,
    Purpose.PAYMENT_PROCESSING,
    Purpose.PROMOTIONAL_OFFERS,
)
NON_PROCESSOR_PURPOSES = tuple(p for p in Purpose if p not in PROCESSOR_PURPOSES)
_EVERYDAY_PURPOSES = tuple(p for p in PROCESSOR_PURPOSES if p is not Purpose.PROMOTIONAL_OFFERS)

_PI = (DataCategory.PERSONAL_INFORMATION,)
_PI_VDD = (DataCategory.PERSONAL_INFORMATION, DataCategory.VIRTUAL_DRIVE_DATA)
_VDD = (DataCategory.VIRTUAL_DRIVE_DATA,)

_SOURCE_OF: dict[Purpose, str] = {
    Purpose.DOCUMENT_PROCESSING: "docs-pipeline",
    Purpose.CUSTOMER_COMMUNICATIONS: "support-desk",
    Purpose.DATA_ANALYSIS: "analytics",
    Purpose.MARKETING_ASSISTANCE: "campaigns",
    Purpose.PAYMENT_PROCESSING: "billing",
    Purpose.PROMOTIONAL_OFFERS: "campaigns",
    Purpose.BUSINESS_TRANSFER: "corp-dev",
    Purpose.FRAUD_PREVENTION: "risk",
    Purpose.LEGAL_ORDER: "legal-desk",
    Purpose.CONSENTED_SHARING: "partner-api",
}
_COUNTRIES = ("CH", "CH", "CH", "DE", "FR", "IE", "NL", "GB", "US")
_ORDER_COUNTRIES = ("CH",) * 27 + ("DE", "US", "FR")
_OFFICERS = tuple(f"officer-{n:02d}" for n in range(1, 7))
_AUTHORITIES = tuple(f"authority-{n:02d}" for n in range(1, 6))
_REVOCATION_REASONS = (
    "order quashed on appeal",
    "authority withdrew the request",
    "registered in error",
)

T = TypeVar("T")


class _Pool(Generic[T]):
    """A set with constant-time add, discard and uniform random choice.

    Its order depends only on the calls made, never on hashing, so choices are
    reproducible across interpreter runs.
    """

    def __init__(self) -> None:
        self._items: list[T] = []
        self._index: dict[T, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        if item not in self._index:
            self._index[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: T) -> None:
        position = self._index.pop(item, None)
        if position is None:
            return
        last = self._items.pop()
        if position < len(self._items):
            self._items[position] = last
            self._index[last] = position

    def choice(self, rng: random.Random) -> T:
        return self._items[rng.randrange(len(self._items))]


@dataclass(frozen=True, slots=True)
class _Processor:
    """What the simulator registered for one processor (its own bookkeeping)."""

    recipient_type: RecipientType
    purposes: tuple[Purpose, ...]


@dataclass(frozen=True, slots=True)
class _Order:
    """What the simulator registered for one order."""

    ref: str
    recipient_id: str
    account_ids: tuple[str, ...]
    categories: tuple[DataCategory, ...]
    registered_by: str


_Maker = Callable[[], Event]
"""Makes the next event of one kind (and updates the simulator's bookkeeping)."""


def _weighted(table: Sequence[tuple[_Maker, float]]) -> tuple[list[_Maker], list[float]]:
    return [make for make, _ in table], list(accumulate(weight for _, weight in table))


class _Simulator:
    """The world behind the stream: a clock, ids, and what was registered or consented.

    The bookkeeping only steers what is generated next (e.g. a withdrawal names a
    consent that was granted); it is not the guard's state and decides nothing.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now_ms = 0
        self.events = 0
        self.recipients = 0
        self.order_serial = 0
        self.recent: deque[Event] = deque(maxlen=512)
        self.jurisdiction: dict[str, str] = {}
        self.processors: dict[str, _Processor] = {}
        self.active = _Pool[str]()
        self.retired = _Pool[str]()
        self.mailers = _Pool[str]()
        self.marketing = _Pool[str]()
        self.marketing_withdrawn = _Pool[str]()
        self.sharing = _Pool[tuple[str, str]]()
        self.sharing_withdrawn = _Pool[tuple[str, str]]()
        self.restricted = _Pool[str]()
        self.orders: list[_Order] = []
        self.order_by_ref: dict[str, _Order] = {}
        self.pending = _Pool[str]()
        self.approved = _Pool[str]()
        self.revoked = _Pool[str]()
        self.agencies = self._fixed_recipients(4)
        self.counterparties = self._fixed_recipients(2)
        self.fraud_partners = self._fixed_recipients(3)
        self.third_parties = self._fixed_recipients(12)
        self.opening: deque[_Maker] = deque(self._opening())
        self.governance = _weighted(
            [
                (self._marketing_consent, 38),
                (self._sharing_consent, 22),
                (self._subject_rights, 5),
                (self._processor_registration, 6),
                (self._processor_deregistration, 3),
                (self._order_registration, 9),
                (self._order_approval, 10),
                (self._order_revocation, 2),
            ]
        )
        self.transfers = _weighted(
            [
                (self._processor_transfer, 62),
                (self._promotional_offer, 10),
                (self._consented_sharing, 6),
                (self._fraud_exchange, 7),
                (self._business_transfer, 3),
                (self._law_enforcement, 4),
                (self._drive_egress, 2),
            ]
        )

    # -- the stream ------------------------------------------------------------------

    def next_event(self) -> Event:
        """The opening governance first; then redeliveries, governance and transfers."""
        if self.opening:
            return self._remember(self.opening.popleft()())
        roll = self.rng.random()
        if roll < REDELIVERY_SHARE and self.recent:
            return self.rng.choice(self.recent)
        table = self.governance if roll < REDELIVERY_SHARE + GOVERNANCE_SHARE else self.transfers
        makers, cumulative = table
        return self._remember(self.rng.choices(makers, cum_weights=cumulative)[0]())

    def _remember(self, event: Event) -> Event:
        self.recent.append(event)
        return event

    def _opening(self) -> list[_Maker]:
        plan: list[_Maker] = [partial(self._new_processor, mailer=True) for _ in range(3)]
        plan += [self._new_processor] * 33
        plan += [partial(self._register_partner, rid) for rid in self.counterparties]
        plan += [partial(self._register_partner, rid) for rid in self.fraud_partners]
        plan += [self._marketing_consent] * 40
        plan += [self._order_registration, self._order_approval] * 3
        return plan

    # -- clock and ids ---------------------------------------------------------------

    def _stamp(self) -> tuple[str, datetime]:
        """A fresh event id and an ``occurred_at`` later than every earlier one."""
        self.events += 1
        self.now_ms += self.rng.randint(20, 1500)
        return f"evt-{self.events:06d}", self._at(self.now_ms)

    @staticmethod
    def _at(ms: int) -> datetime:
        return START + timedelta(milliseconds=ms)

    def _new_recipient_id(self) -> str:
        self.recipients += 1
        rid = f"rcp-{self.recipients:04d}"
        self.jurisdiction[rid] = self.rng.choice(_COUNTRIES)
        return rid

    def _fixed_recipients(self, count: int) -> tuple[str, ...]:
        return tuple(self._new_recipient_id() for _ in range(count))

    def _new_order_ref(self) -> str:
        self.order_serial += 1
        return f"ord-{self.order_serial:05d}"

    def _account(self) -> str:
        """An account as traffic picks them: a few are far more active than most."""
        return f"acc-{int(ACCOUNTS * self.rng.random() ** 1.6):04d}"

    def _any_account(self) -> str:
        """An account picked uniformly (who exercises a right is not who is busiest)."""
        return f"acc-{self.rng.randrange(ACCOUNTS):04d}"

    def _age(self) -> int | None:
        roll = self.rng.random()
        if roll < 0.6:
            return None
        if roll < 0.975:
            return self.rng.randint(18, 90)
        if roll < 0.985:
            return self.rng.randint(13, 17)
        return self.rng.randint(4, 12)

    # -- recipients ------------------------------------------------------------------

    def _purposes_for_registration(self, mailer: bool) -> tuple[Purpose, ...]:
        rng = self.rng
        chosen = set(rng.sample(PROCESSOR_PURPOSES, k=rng.randint(1, 3)))
        if mailer or chosen == {Purpose.PROMOTIONAL_OFFERS}:
            chosen |= {Purpose.PROMOTIONAL_OFFERS, Purpose.CUSTOMER_COMMUNICATIONS}
        if rng.random() < 0.1:  # an agreement listing a purpose processors may never have
            chosen.add(rng.choice(NON_PROCESSOR_PURPOSES))
        return tuple(p for p in Purpose if p in chosen)

    def _register(self, rid: str, rtype: RecipientType, purposes: tuple[Purpose, ...]) -> Event:
        event_id, at = self._stamp()
        return RecipientRegistered(
            event_id=event_id,
            occurred_at=at,
            recipient_id=rid,
            recipient_type=rtype,
            jurisdiction=self.jurisdiction[rid],
            permitted_purposes=purposes,
            agreement_ref=f"dpa-{self.rng.randint(1, 9999):04d}",
        )

    def _register_processor(self, rid: str, rtype: RecipientType, mailer: bool = False) -> Event:
        purposes = self._purposes_for_registration(mailer)
        self.processors[rid] = _Processor(rtype, purposes)
        self.active.add(rid)
        self.retired.discard(rid)
        if Purpose.PROMOTIONAL_OFFERS in purposes:
            self.mailers.add(rid)
        else:
            self.mailers.discard(rid)
        return self._register(rid, rtype, purposes)

    def _new_processor(self, mailer: bool = False) -> Event:
        rtype = self.rng.choice(PROCESSOR_TYPES)
        return self._register_processor(self._new_recipient_id(), rtype, mailer)

    def _register_partner(self, rid: str) -> Event:
        if rid in self.counterparties:
            return self._register(
                rid, RecipientType.BUSINESS_TRANSFER_COUNTERPARTY, (Purpose.BUSINESS_TRANSFER,)
            )
        return self._register(
            rid, RecipientType.FRAUD_PREVENTION_PARTNER, (Purpose.FRAUD_PREVENTION,)
        )

    def _processor_registration(self) -> Event:
        roll = self.rng.random()
        if roll < 0.25 and self.active:  # new terms for a current processor
            rid = self.active.choice(self.rng)
            return self._register_processor(rid, self.processors[rid].recipient_type)
        if roll < 0.5 and self.retired:  # a former processor comes back
            rid = self.retired.choice(self.rng)
            return self._register_processor(rid, self.processors[rid].recipient_type)
        return self._new_processor()

    def _processor_deregistration(self) -> Event:
        if len(self.active) <= 24:
            return self._new_processor()
        rid = self.active.choice(self.rng)
        self.active.discard(rid)
        self.mailers.discard(rid)
        self.retired.add(rid)
        event_id, at = self._stamp()
        return RecipientDeregistered(event_id=event_id, occurred_at=at, recipient_id=rid)

    # -- consents and rights ---------------------------------------------------------

    def _consent(self, account: str, scope: ConsentScope, rid: str | None, granted: bool) -> Event:
        event_id, at = self._stamp()
        return ConsentChanged(
            event_id=event_id,
            occurred_at=at,
            account_id=account,
            scope=scope,
            recipient_id=rid,
            status=ConsentStatus.GRANTED if granted else ConsentStatus.WITHDRAWN,
        )

    def _marketing_consent(self) -> Event:
        rng = self.rng
        if self.marketing and rng.random() < 0.3:
            account = self.marketing.choice(rng)
            self.marketing.discard(account)
            self.marketing_withdrawn.add(account)
            return self._consent(account, ConsentScope.MARKETING, None, granted=False)
        if self.marketing_withdrawn and rng.random() < 0.2:
            account = self.marketing_withdrawn.choice(rng)
        else:
            account = self._account()
        self.marketing_withdrawn.discard(account)
        self.marketing.add(account)
        return self._consent(account, ConsentScope.MARKETING, None, granted=True)

    def _sharing_consent(self) -> Event:
        rng = self.rng
        if self.sharing and rng.random() < 0.3:
            account, rid = self.sharing.choice(rng)
            self.sharing.discard((account, rid))
            self.sharing_withdrawn.add((account, rid))
            return self._consent(account, ConsentScope.THIRD_PARTY_SHARING, rid, granted=False)
        if self.sharing_withdrawn and rng.random() < 0.2:
            account, rid = self.sharing_withdrawn.choice(rng)
        else:
            account, rid = self._account(), rng.choice(self.third_parties)
        self.sharing_withdrawn.discard((account, rid))
        self.sharing.add((account, rid))
        return self._consent(account, ConsentScope.THIRD_PARTY_SHARING, rid, granted=True)

    def _subject_rights(self) -> Event:
        rng = self.rng
        roll = rng.random()
        if roll < 0.1:
            account, action = self._any_account(), SubjectRightsAction.ERASURE_COMPLETED
        elif roll < 0.55 or not self.restricted:
            account, action = self._any_account(), SubjectRightsAction.RESTRICTION_APPLIED
            self.restricted.add(account)
        else:
            account, action = self.restricted.choice(rng), SubjectRightsAction.RESTRICTION_LIFTED
            self.restricted.discard(account)
        event_id, at = self._stamp()
        return SubjectRightsChanged(
            event_id=event_id, occurred_at=at, account_id=account, action=action
        )

    # -- orders ----------------------------------------------------------------------

    def _order_registration(self) -> Event:
        rng = self.rng
        event_id, at = self._stamp()
        hour = 3_600_000
        if rng.random() < 0.1:  # not in force yet
            valid_from = self.now_ms + rng.randint(1 * hour, 4 * hour)
        else:
            valid_from = self.now_ms - rng.randint(0, 2 * hour)
        valid_until = valid_from + rng.randint(2 * hour, 48 * hour)
        order = _Order(
            ref=self._new_order_ref(),
            recipient_id=rng.choice(self.agencies),
            account_ids=tuple(dict.fromkeys(self._account() for _ in range(rng.randint(1, 3)))),
            categories=_PI_VDD if rng.random() < 0.3 else _PI,
            registered_by=rng.choice(_OFFICERS),
        )
        self.orders.append(order)
        self.order_by_ref[order.ref] = order
        self.pending.add(order.ref)
        return OrderRegistered(
            event_id=event_id,
            occurred_at=at,
            order_ref=order.ref,
            order_type=OrderType.COURT_ORDER
            if rng.random() < 0.6
            else OrderType.ADMINISTRATIVE_ORDER,
            authority=rng.choice(_AUTHORITIES),
            jurisdiction=rng.choice(_ORDER_COUNTRIES),
            recipient_id=order.recipient_id,
            account_ids=order.account_ids,
            data_categories=order.categories,
            valid_from=self._at(valid_from),
            valid_until=self._at(valid_until),
            max_disclosures=None if rng.random() < 0.4 else rng.randint(1, 5),
            registered_by=order.registered_by,
        )

    def _order_approval(self) -> Event:
        rng = self.rng
        if not self.pending:
            return self._order_registration()
        order = self.order_by_ref[self.pending.choice(rng)]
        if rng.random() < 0.15:  # the registering officer approves: does not count
            approver = order.registered_by
        else:
            approver = rng.choice([o for o in _OFFICERS if o != order.registered_by])
            self.pending.discard(order.ref)
            self.approved.add(order.ref)
        event_id, at = self._stamp()
        return OrderApproved(
            event_id=event_id, occurred_at=at, order_ref=order.ref, approved_by=approver
        )

    def _order_revocation(self) -> Event:
        rng = self.rng
        if not self.approved:
            return self._order_registration()
        ref = self.approved.choice(rng)
        self.approved.discard(ref)
        self.revoked.add(ref)
        event_id, at = self._stamp()
        return OrderRevoked(
            event_id=event_id,
            occurred_at=at,
            order_ref=ref,
            revoked_by=rng.choice(_OFFICERS),
            reason=rng.choice(_REVOCATION_REASONS),
        )

    # -- transfers -------------------------------------------------------------------

    def _transfer(
        self,
        purpose: Purpose,
        rid: str,
        rtype: RecipientType,
        account: str,
        categories: tuple[DataCategory, ...] = _PI,
        *,
        source: str | None = None,
        order_ref: str | None = None,
        fraud_case_ref: str | None = None,
        transaction_ref: str | None = None,
    ) -> Event:
        event_id, at = self._stamp()
        source_service = source or _SOURCE_OF[purpose]
        return TransferRequested(
            event_id=event_id,
            occurred_at=at,
            source_service=source_service,
            account_id=account,
            subject_age=self._age(),
            data_categories=categories,
            recipient=Recipient(id=rid, type=rtype, jurisdiction=self.jurisdiction[rid]),
            purpose=purpose,
            order_ref=order_ref,
            fraud_case_ref=fraud_case_ref,
            transaction_ref=transaction_ref,
            payload_ref=f"outbox://{source_service}/{event_id}",
            size_bytes=self.rng.randint(200, 2_000_000),
        )

    def _processor_recipient(self) -> tuple[str, RecipientType]:
        """Mostly a registered processor under its type; sometimes a stale or wrong one."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.03 and self.retired:  # deregistered, still configured somewhere
            rid = self.retired.choice(rng)
            return rid, self.processors[rid].recipient_type
        if roll < 0.04:  # never registered at all
            return self._new_recipient_id(), rng.choice(PROCESSOR_TYPES)
        rid = self.active.choice(rng)
        rtype = self.processors[rid].recipient_type
        if roll < 0.055:  # registered, but under another type than the request says
            rtype = rng.choice([t for t in PROCESSOR_TYPES if t is not rtype])
        return rid, rtype

    def _processor_purpose(self, rid: str) -> Purpose:
        """Mostly one the processor is registered for; promotional offers come elsewhere."""
        rng = self.rng
        known = self.processors.get(rid)
        registered = known.purposes if known is not None else ()
        roll = rng.random()
        if roll < 0.94:
            usual = [p for p in registered if p in _EVERYDAY_PURPOSES]
            if usual:
                return rng.choice(usual)
        if roll < 0.99:
            return rng.choice(_EVERYDAY_PURPOSES)
        # e.g. an agreement that lists FRAUD_PREVENTION, which no processor may be given
        unusual = [p for p in registered if p in NON_PROCESSOR_PURPOSES]
        return rng.choice(unusual or NON_PROCESSOR_PURPOSES)

    def _processor_transfer(self) -> Event:
        rid, rtype = self._processor_recipient()
        purpose = self._processor_purpose(rid)
        categories = _PI_VDD if self.rng.random() < 0.02 else _PI
        return self._transfer(purpose, rid, rtype, self._account(), categories)

    def _promotional_offer(self) -> Event:
        rng = self.rng
        rid = (self.mailers or self.active).choice(rng)
        roll = rng.random()
        if roll < 0.78 and self.marketing:
            account = self.marketing.choice(rng)
        elif roll < 0.88 and self.marketing_withdrawn:
            account = self.marketing_withdrawn.choice(rng)
        else:
            account = self._account()
        rtype = self.processors[rid].recipient_type
        return self._transfer(Purpose.PROMOTIONAL_OFFERS, rid, rtype, account)

    def _consented_sharing(self) -> Event:
        rng = self.rng
        roll = rng.random()
        if roll < 0.78 and self.sharing:
            account, rid = self.sharing.choice(rng)
        elif roll < 0.88 and self.sharing_withdrawn:
            account, rid = self.sharing_withdrawn.choice(rng)
        else:
            account, rid = self._account(), rng.choice(self.third_parties)
        purpose = Purpose.CONSENTED_SHARING if rng.random() < 0.97 else Purpose.DATA_ANALYSIS
        return self._transfer(purpose, rid, RecipientType.THIRD_PARTY, account)

    def _fraud_exchange(self) -> Event:
        rng = self.rng
        case = f"case-{rng.randint(1, 99_999):05d}" if rng.random() < 0.88 else None
        return self._transfer(
            Purpose.FRAUD_PREVENTION,
            rng.choice(self.fraud_partners),
            RecipientType.FRAUD_PREVENTION_PARTNER,
            self._account(),
            fraud_case_ref=case,
        )

    def _business_transfer(self) -> Event:
        rng = self.rng
        transaction = f"txn-{rng.randint(1, 40):03d}" if rng.random() < 0.85 else None
        return self._transfer(
            Purpose.BUSINESS_TRANSFER,
            rng.choice(self.counterparties),
            RecipientType.BUSINESS_TRANSFER_COUNTERPARTY,
            self._account(),
            transaction_ref=transaction,
        )

    def _law_enforcement(self) -> Event:
        rng = self.rng
        roll = rng.random()
        agency = rng.choice(self.agencies)
        le = RecipientType.LAW_ENFORCEMENT
        if roll < 0.12 or not self.orders:  # no order named
            return self._transfer(Purpose.LEGAL_ORDER, agency, le, self._account())
        if roll < 0.17:  # an order the guard never heard of
            ref = self._new_order_ref()
            return self._transfer(Purpose.LEGAL_ORDER, agency, le, self._account(), order_ref=ref)
        order = self._order_for_request()
        account = rng.choice(order.account_ids) if rng.random() < 0.9 else self._account()
        rid = order.recipient_id if rng.random() < 0.95 else agency
        categories = order.categories if rng.random() < 0.93 else _PI_VDD
        purpose = Purpose.LEGAL_ORDER if rng.random() < 0.98 else Purpose.DATA_ANALYSIS
        return self._transfer(purpose, rid, le, account, categories, order_ref=order.ref)

    def _order_for_request(self) -> _Order:
        """Mostly an approved order; sometimes a recent one that may still await
        approval, or one revoked since."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.75 and self.approved:
            return self.order_by_ref[self.approved.choice(rng)]
        if roll < 0.8 and self.revoked:
            return self.order_by_ref[self.revoked.choice(rng)]
        return rng.choice(self.orders[-12:])

    def _drive_egress(self) -> Event:
        rng = self.rng
        if rng.random() < 0.7:
            rid = self.active.choice(rng)
            rtype = self.processors[rid].recipient_type
            purpose = rng.choice((Purpose.DOCUMENT_PROCESSING, Purpose.DATA_ANALYSIS))
        else:
            rid, rtype = rng.choice(self.third_parties), RecipientType.THIRD_PARTY
            purpose = Purpose.CONSENTED_SHARING
        categories = _VDD if rng.random() < 0.6 else _PI_VDD
        return self._transfer(purpose, rid, rtype, self._account(), categories, source="drive-sync")


def iter_events(count: int, seed: int = 0) -> Iterator[Event]:
    """Yield ``count`` events of the simulated stream for ``seed``, lazily, in order."""
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    return _stream(count, seed)


def _stream(count: int, seed: int) -> Iterator[Event]:
    simulator = _Simulator(seed)
    for _ in range(count):
        yield simulator.next_event()


def simulate(count: int, seed: int = 0) -> list[Event]:
    """The first ``count`` events of the simulated stream for ``seed``."""
    return list(iter_events(count, seed))


def to_jsonl(events: Iterable[Event]) -> bytes:
    """The events as JSON Lines in the contract's JSON form, one event per line.

    Each line is the model's ``model_dump_json()`` (it carries the ``type`` field), so it
    is exactly what ``sharing-guard replay`` reads.
    """
    return b"".join(event.model_dump_json().encode() + b"\n" for event in events)
