"""What the guard does with each input record, given the state it has: the adapter between
Kafka records and the pure core. No consumer, no producer, no waiting: every effect goes
into a :class:`~sharing_guard.stream.batch.Batch` that the input loop makes durable.

* A **governance record** (consent, subject right, recipient, order) is decoded, applied
  once per ``event_id`` to the state of its changelog partition, and audited.
* A **transfer** is decided on the state of its account partition, its decision stored
  under its ``event_id`` (a repeat gets the stored decision, marked duplicate), then
  published, routed and audited. A law-enforcement transfer naming an order is forwarded,
  with a snapshot of its account's facts, to the order stage.
* An **order request** (the order stage, one partition) is decided on the order's state,
  an ALLOW spending one disclosure.
* A **policy promotion** is checked and recorded (:mod:`sharing_guard.stream.policies`);
  transfers are decided under the version in force when they are, and an order request
  under the version its account's worker forwarded it with.
* With a **shadow policy**, every fresh decision is also made under the candidate, on
  the same facts; that decision goes to the shadow topic and the metrics, never to
  routing, the state or the audit trail.
* A record that does not decode (or does not belong on its topic) is a dead letter, as
  is a promotion whose document is refused (the policy in force stays).
"""

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sharing_guard.audit_trail import audit_avro_record
from sharing_guard.codec import CodecRegistry, DecodeError, decision_record
from sharing_guard.contract.decision import Decision
from sharing_guard.contract.enums import Outcome, RecipientType
from sharing_guard.contract.events import (
    ConsentChanged,
    EventBase,
    GovernanceEvent,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    RecipientDeregistered,
    RecipientRegistered,
    SubjectRightsChanged,
    TransferRequested,
)
from sharing_guard.contract.policy_events import PolicyPromoted
from sharing_guard.core.engine import Facts, evaluate, gather_facts, guard_error
from sharing_guard.core.policy import Policy, PolicyError, check_promotion
from sharing_guard.core.state import (
    ConsentState,
    OrderState,
    RecipientState,
    RightsState,
    StateRecord,
    StateTable,
    state_change,
    with_disclosure,
)
from sharing_guard.settings import Topics
from sharing_guard.stream.batch import Batch
from sharing_guard.stream.changelog import Changelogs, Kind, entry_key
from sharing_guard.stream.kafka_io import (
    Headers,
    dead_letter_headers,
    decision_headers,
    encode_optional,
    header_list,
)
from sharing_guard.stream.policies import PolicyBook, refusal
from sharing_guard.stream.state_codec import (
    decode_decision,
    decode_state,
    encode_decision,
    encode_state,
)
from sharing_guard.stream.store import Write
from sharing_guard.stream.telemetry import Telemetry
from sharing_guard.stream.window import Window

log = logging.getLogger(__name__)
FACTS_HEADER = "guard.facts"
POLICY_HEADER = "guard.decide-under"
"""Header of a forwarded order request: the policy version its account's worker was in."""
KIND_OF = {
    StateTable.CONSENTS: Kind.CONSENT,
    StateTable.RIGHTS: Kind.RIGHTS,
    StateTable.RECIPIENTS: Kind.RECIPIENT,
    StateTable.ORDERS: Kind.ORDER,
}


@dataclass(frozen=True, slots=True)
class Pending:
    """A decoded transfer waiting in a batch, with where it came from."""

    transfer: TransferRequested
    raw: bytes
    headers: Headers
    topic: str
    partition: int
    offset: int
    timestamp_ms: float | None
    received_ns: int


class StateReader:
    """The core's :class:`~sharing_guard.core.engine.StateView` for one account partition,
    read through a batch (its own writes first, then the local store).

    Decoded records are kept with the bytes they came from and reused while the state
    holds the same bytes (records are immutable); the cache is emptied at ``cache_size``.
    """

    def __init__(self, changelogs: Changelogs, cache_size: int = 16_384) -> None:
        self._changelogs = changelogs
        self._cache_size = cache_size
        self._decoded: dict[tuple[str, int, bytes], tuple[bytes, StateRecord]] = {}
        self.batch: Batch | None = None
        self.partition = 0

    def at(self, batch: Batch, partition: int) -> "StateReader":
        """This reader, reading ``batch`` for account partition ``partition``."""
        self.batch = batch
        self.partition = partition
        return self

    def record(self, table: StateTable, key: str) -> StateRecord | None:
        """The state record of ``table`` under ``key``, or ``None``."""
        changelog, part = self.where(table)
        raw_key = entry_key(KIND_OF[table], key)
        assert self.batch is not None
        raw = self.batch.get(changelog, part, raw_key)
        if raw is None:
            return None
        cache_key = (changelog, part, raw_key)
        cached = self._decoded.get(cache_key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        record = decode_state(table, raw)
        if len(self._decoded) >= self._cache_size:
            self._decoded.clear()
        self._decoded[cache_key] = (raw, record)
        return record

    def where(self, table: StateTable) -> tuple[str, int]:
        """The changelog partition that holds ``table`` for this account partition."""
        if table is StateTable.RECIPIENTS:
            return self._changelogs.recipients, 0
        if table is StateTable.ORDERS:
            return self._changelogs.orders, 0
        return self._changelogs.account, self.partition

    def recipient(self, recipient_id: str) -> RecipientState | None:
        """The registered recipient, or ``None``."""
        record = self.record(StateTable.RECIPIENTS, recipient_id)
        assert record is None or isinstance(record, RecipientState)
        return record

    def consent(self, key: str) -> ConsentState | None:
        """The latest consent under the key, or ``None``."""
        record = self.record(StateTable.CONSENTS, key)
        assert record is None or isinstance(record, ConsentState)
        return record

    def rights(self, account_id: str) -> RightsState | None:
        """Rights exercised on the account, or ``None``."""
        record = self.record(StateTable.RIGHTS, account_id)
        assert record is None or isinstance(record, RightsState)
        return record

    def order(self, order_ref: str) -> OrderState | None:
        """The registered order, or ``None``."""
        record = self.record(StateTable.ORDERS, order_ref)
        assert record is None or isinstance(record, OrderState)
        return record


class Processor:
    """Turns input records into a batch's changes and outputs (see the module docstring)."""

    def __init__(  # noqa: PLR0917 (the processor's collaborators, wired in one place)
        self,
        topics: Topics,
        changelogs: Changelogs,
        policy: Policy,
        registry: CodecRegistry,
        telemetry: Telemetry,
        window: Window,
        *,
        shadow: Policy | None = None,
    ) -> None:
        self.topics = topics
        self.changelogs = changelogs
        self.policies = PolicyBook(policy, (changelogs.recipients, 0))
        self.shadow = shadow
        self.registry = registry
        self.telemetry = telemetry
        self.window = window
        self.audit_codec = registry.codec("AuditRecord")
        self.decision_codec = registry.codec("Decision")
        self.reader = StateReader(changelogs)
        t = topics
        self.accepted: dict[str, tuple[type[EventBase], ...]] = {
            t.consents: (ConsentChanged,),
            t.rights: (SubjectRightsChanged,),
            t.recipients: (RecipientRegistered, RecipientDeregistered),
            t.orders: (OrderRegistered, OrderApproved, OrderRevoked),
            t.policy: (PolicyPromoted,),
        }
        telemetry.policy_versions["enforced"] = policy.version
        if shadow is not None:
            telemetry.policy_versions["shadow"] = shadow.version

    def changelog_of(self, topic: str, partition: int) -> tuple[str, int]:
        """The changelog partition that holds the state an input partition changes."""
        t, c = self.topics, self.changelogs
        if topic in (t.recipients, t.policy):
            return c.recipients, 0
        if topic in (t.orders, t.order_requests):
            return c.orders, 0
        return c.account, partition

    # --- governance ---------------------------------------------------------------------

    def apply_governance(self, records: Sequence[Any], batch: Batch, now_ms: int) -> None:
        """Apply governance records (of one partition, in offset order), once per
        ``event_id``, and audit each (each application traced)."""
        for record in records:
            event = self._decode(record, self.accepted[record.topic], batch)
            if event is not None:
                changelog, part = self.changelog_of(record.topic, record.partition)
                seen = entry_key(Kind.SEEN, event.event_id)
                if batch.get(changelog, part, seen) is None:
                    span, headers = self.telemetry.apply_span(event, header_list(record.headers))
                    if self._apply(event, record, changelog, part, batch):
                        expires = self.window.expires_at(record.topic, now_ms)
                        batch.write(changelog, part, Write(seen, event.type.encode(), expires))
                        self._audit(batch, event, None, headers)
                    span.end()
            if record.topic == self.topics.policy:
                self.policies.mark_applied(record.offset + 1, batch)
            batch.processed(record.topic, record.partition, record.offset)

    def _apply(
        self,
        event: GovernanceEvent | PolicyPromoted,
        record: Any,
        changelog: str,
        part: int,
        batch: Batch,
    ) -> bool:
        """Apply one event to the state; False when it is refused (a dead letter)."""
        if isinstance(event, PolicyPromoted):
            try:
                policy = check_promotion(event)
            except PolicyError as exc:
                self.telemetry.policy_refused.add(1)
                log.warning("policy promotion %s refused: %s", event.event_id, exc)
                self._dead_letter(record, refusal(exc), batch)
                return False
            self.policies.promote(event, policy, batch)
            log.warning("policy %s promoted (event %s)", policy.version, event.event_id)
            return True
        change = state_change(event)
        key = entry_key(KIND_OF[change.table], change.key)
        raw = batch.get(changelog, part, key)
        current = None if raw is None else decode_state(change.table, raw)
        record = change.advance(current)
        batch.write(changelog, part, Write(key, None if record is None else encode_state(record)))
        return True

    # --- transfers ----------------------------------------------------------------------

    def decode_transfers(self, records: Sequence[Any], batch: Batch) -> list[Pending]:
        """The transfers among ``records`` (dead letters for the rest, processed)."""
        pending = []
        received_ns = time.time_ns()
        for record in records:
            transfer = self._decode(record, (TransferRequested,), batch)
            if transfer is None:
                batch.processed(record.topic, record.partition, record.offset)
                continue
            pending.append(
                Pending(
                    transfer=transfer,
                    raw=record.value,
                    headers=header_list(record.headers),
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    timestamp_ms=record.timestamp,
                    received_ns=received_ns,
                )
            )
        return pending

    def decide_transfers(
        self, pending: Sequence[Pending], caught_up: bool, batch: Batch, now_ms: int
    ) -> None:
        """Decide the transfers of one transfers partition (``caught_up``: its state is
        applied up to where the ordering promise needs it; otherwise GUARD_ERROR), under
        the policy in force."""
        policy = self._in_force(batch)
        decided: list[tuple[Pending, Decision, bool]] = []
        for item in pending:
            transfer = item.transfer
            changelog, part = self.changelogs.account, item.partition
            key = entry_key(Kind.DECISION, transfer.event_id)
            stored = batch.get(changelog, part, key)
            if stored is not None:
                decided.append((item, decode_decision(stored), True))
            elif not caught_up:
                decided.append(
                    self._store(self._fault(transfer.event_id, policy), item, key, batch, now_ms)
                )
            elif (
                transfer.recipient.type is RecipientType.LAW_ENFORCEMENT
                and transfer.order_ref is not None
            ):
                self._forward_to_order_stage(item, batch, policy)
            else:
                reader = self.reader.at(batch, item.partition)
                facts = partial(gather_facts, transfer, reader)
                decision = self._evaluate(item, facts, policy, batch)
                decided.append(self._store(decision, item, key, batch, now_ms))
            batch.processed(item.topic, item.partition, item.offset)
        self._publish(decided, batch)

    def _store(
        self, decision: Decision, item: Pending, key: bytes, batch: Batch, now_ms: int
    ) -> tuple[Pending, Decision, bool]:
        changelog, part = self.changelog_of(item.topic, item.partition)
        expires = self.window.expires_at(item.topic, now_ms)
        batch.write(changelog, part, Write(key, encode_decision(decision), expires))
        return item, decision, False

    def _in_force(self, batch: Batch) -> Policy:
        """The policy in force as the batch sees the state (noted for the log and the
        metrics when it changes)."""
        policy = self.policies.active(batch)
        if self.policies.note_enforced(policy):
            self.telemetry.policy_versions["enforced"] = policy.version
        return policy

    def _forward_to_order_stage(self, item: Pending, batch: Batch, policy: Policy) -> None:
        transfer = item.transfer
        facts = gather_facts(transfer, self.reader.at(batch, item.partition))
        snapshot = json.dumps(
            {
                "recipient": encode_optional(facts.recipient),
                "marketing_consent": encode_optional(facts.marketing_consent),
                "third_party_consent": encode_optional(facts.third_party_consent),
                "rights": encode_optional(facts.rights),
            }
        ).encode()
        assert transfer.order_ref is not None
        batch.outputs.add(
            self.topics.order_requests,
            transfer.order_ref.encode(),
            item.raw,
            [*item.headers, (FACTS_HEADER, snapshot), (POLICY_HEADER, policy.version.encode())],
        )

    # --- the order stage ----------------------------------------------------------------

    def decide_order_requests(
        self, pending: Sequence[Pending], caught_up: bool, batch: Batch, now_ms: int
    ) -> None:
        """Decide order requests (``caught_up``: the orders are applied up to where the
        promise needs them); an ALLOW under an order spends one of its disclosures."""
        changelog = self.changelogs.orders
        decided: list[tuple[Pending, Decision, bool]] = []
        for item in pending:
            transfer = item.transfer
            key = entry_key(Kind.DECISION, transfer.event_id)
            stored = batch.get(changelog, 0, key)
            if stored is not None:
                decided.append((item, decode_decision(stored), True))
            else:
                policy = self._forwarded_under(item, batch)
                if caught_up and policy is not None:
                    facts = partial(self._order_facts, item, batch)
                    decision = self._evaluate(item, facts, policy, batch)
                else:
                    decision = self._fault(transfer.event_id, policy or self._in_force(batch))
                if decision.outcome is Outcome.ALLOW and decision.order_ref is not None:
                    order = self.reader.at(batch, 0).order(decision.order_ref)
                    assert order is not None
                    batch.write(
                        changelog,
                        0,
                        Write(
                            entry_key(Kind.ORDER, decision.order_ref),
                            encode_state(with_disclosure(order)),
                        ),
                    )
                decided.append(self._store(decision, item, key, batch, now_ms))
            batch.processed(item.topic, item.partition, item.offset)
        self._publish(decided, batch)

    def _forwarded_under(self, item: Pending, batch: Batch) -> Policy | None:
        """The policy an order request is decided under: the version its account's
        worker was in (``None``, hence GUARD_ERROR, if this worker does not know it)."""
        raw = dict(item.headers).get(POLICY_HEADER)
        if raw is None:  # forwarded by a worker of an earlier release
            return self._in_force(batch)
        policy = self.policies.version(batch, raw.decode())
        if policy is None:
            log.warning(
                "order request %s forwarded under a policy this worker does not know",
                item.transfer.event_id,
            )
        return policy

    def _order_facts(self, item: Pending, batch: Batch) -> Facts:
        raw = dict(item.headers).get(FACTS_HEADER)
        if raw is None:
            raise ValueError("order request without a facts snapshot")
        snap = json.loads(raw)

        def load(name: str, table: StateTable) -> Any:
            value = snap.get(name)
            return None if value is None else decode_state(table, value.encode())

        ref = item.transfer.order_ref
        return Facts(
            recipient=load("recipient", StateTable.RECIPIENTS),
            marketing_consent=load("marketing_consent", StateTable.CONSENTS),
            third_party_consent=load("third_party_consent", StateTable.CONSENTS),
            rights=load("rights", StateTable.RIGHTS),
            order=self.reader.at(batch, 0).order(ref) if ref is not None else None,
        )

    # --- decisions and outputs ----------------------------------------------------------

    def _evaluate(
        self, item: Pending, facts: Callable[[], Facts], policy: Policy, batch: Batch
    ) -> Decision:
        """Gather the facts and decide; any fault (a state record that does not load,
        a bug) blocks with GUARD_ERROR instead of stopping the worker (fail closed).
        With a shadow policy, decide under it too, on the same facts."""
        transfer = item.transfer
        try:
            gathered = facts()
            decision = evaluate(transfer, gathered, policy)
        except Exception:
            log.exception("guard fault on transfer %s", transfer.event_id)
            return self._fault(transfer.event_id, policy)
        if self.shadow is not None:
            self._shadow(item, gathered, decision, batch)
        return decision

    def _fault(self, event_id: str, policy: Policy) -> Decision:
        self.telemetry.guard_errors.add(1)
        return guard_error(event_id, policy)

    def _shadow(self, item: Pending, facts: Facts, enforced: Decision, batch: Batch) -> None:
        """Decide under the shadow policy and publish that decision to the shadow topic
        (never routed, never stored, never audited); count agreement by reason."""
        assert self.shadow is not None
        transfer = item.transfer
        try:
            candidate = evaluate(transfer, facts, self.shadow)
        except Exception:  # the candidate's fault never touches what is enforced
            log.exception("shadow policy fault on transfer %s", transfer.event_id)
            self.telemetry.shadow_faults.add(1)
            return
        agrees = self.telemetry.record_shadow(enforced, candidate)
        batch.outputs.add(
            self.topics.shadow,
            transfer.account_id.encode(),
            self.decision_codec.encode_record(decision_record(candidate)),
            shadow_headers(enforced, agrees),
        )

    def _publish(self, decided: Sequence[tuple[Pending, Decision, bool]], batch: Batch) -> None:
        """Publish, route and audit each decision (sent once the batch's changelog writes
        are acknowledged) under its span, whose context the outputs carry."""
        t = self.topics
        for item, decision, duplicate in decided:
            transfer = item.transfer
            span, traced = self.telemetry.decision_span(item, decision, duplicate)
            headers = decision_headers(traced, decision, duplicate)
            key = transfer.account_id.encode()
            batch.outputs.add(
                t.decisions,
                key,
                self.decision_codec.encode_record(decision_record(decision)),
                headers,
            )
            route = t.approved if decision.outcome is Outcome.ALLOW else t.blocked
            batch.outputs.add(route, key, item.raw, headers)
            self._audit(batch, transfer, decision, headers)
            batch.decided.append((item, decision, duplicate, span))

    def _audit(self, batch: Batch, event: Any, decision: Decision | None, headers: Headers) -> None:
        batch.outputs.add(
            self.topics.audit,
            event.event_id.encode(),
            self.audit_codec.encode_record(audit_avro_record(event, decision)),
            headers,
        )

    # --- decoding and dead letters ------------------------------------------------------

    def _decode(self, record: Any, accepted: tuple[type[EventBase], ...], batch: Batch) -> Any:
        """The event in ``record``, or ``None`` after queueing it as a dead letter."""
        try:
            decoded = self.registry.decode(record.value if record.value is not None else b"")
        except DecodeError as exc:
            self._dead_letter(record, str(exc), batch)
            return None
        except Exception as exc:  # a codec defect: still a dead letter, never a crash
            log.exception("unexpected decode failure at %s/%d", record.topic, record.partition)
            self._dead_letter(record, f"undecodable record ({type(exc).__name__})", batch)
            return None
        if not isinstance(decoded, accepted):
            reason = f"{type(decoded).__name__} does not belong on topic {record.topic}"
            self._dead_letter(record, reason, batch)
            return None
        return decoded

    def _dead_letter(self, record: Any, reason: str, batch: Batch) -> None:
        self.telemetry.dead_letters.add(1, {"topic": record.topic})
        batch.outputs.add(
            self.topics.dlq,
            record.key,
            record.value,
            dead_letter_headers(
                header_list(record.headers),
                reason,
                record.topic,
                record.partition,
                record.offset,
            ),
        )


def shadow_headers(enforced: Decision, agrees: bool) -> Headers:
    """What a shadow decision's record says of the decision actually enforced."""
    return [
        ("guard.event_id", enforced.event_id.encode()),
        ("guard.enforced_outcome", enforced.outcome.value.encode()),
        ("guard.enforced_version", enforced.policy_version.encode()),
        ("guard.enforced_codes", ",".join(code.value for code in enforced.codes).encode()),
        ("guard.agrees", b"1" if agrees else b"0"),
    ]
