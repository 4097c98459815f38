"""The guard's fast encodings write exactly the bytes of the contract models.

The guard builds each audit record and each decision as a plain dict for the Avro writer
(:func:`~sharing_guard.audit_trail.audit_avro_record`,
:func:`~sharing_guard.codec.decision_record`) instead of validating and dumping the
models; the audit sink and every consumer of ``sharing.decisions`` decode those bytes with
the models. Over simulated streams (every event type, allowed and blocked decisions,
orders with actors and order references), both ways must give the same bytes.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from sharing_guard.audit_trail import audit_avro_record, audit_record
from sharing_guard.codec import contract_registry, decision_record
from sharing_guard.contract.audit import AuditRecord
from sharing_guard.contract.events import TransferRequested
from sharing_guard.core.ledger import GovernanceState, step
from sharing_guard.policy_file import load_policy
from sharing_guard.simulation import simulate

REGISTRY = contract_registry()
AUDIT = REGISTRY.codec("AuditRecord")
DECISION = REGISTRY.codec("Decision")
POLICY = load_policy()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=100_000))
def test_fast_encodings_equal_the_models_for_every_event(seed: int) -> None:
    state = GovernanceState()
    kinds = set()
    for event in simulate(400, seed):
        result = step(state, event, POLICY)
        state = result.state
        decision = result.decision if isinstance(event, TransferRequested) else None
        fast = AUDIT.encode_record(audit_avro_record(event, decision))
        assert fast == REGISTRY.encode(audit_record(event, decision))
        decoded = REGISTRY.decode(fast)
        assert isinstance(decoded, AuditRecord)
        assert decoded == audit_record(event, decision)
        kinds.add((type(event).__name__, decoded.outcome))
        if decision is not None:
            fast_decision = DECISION.encode_record(decision_record(decision))
            assert fast_decision == REGISTRY.encode(decision)
            assert REGISTRY.decode(fast_decision) == decision
    assert ("TransferRequested", None) not in kinds  # every transfer record had a decision
    assert {"ConsentChanged", "TransferRequested"} <= {name for name, _ in kinds}


def test_fast_decision_encoding_covers_order_decisions() -> None:
    state = GovernanceState()
    with_order = 0
    for event in simulate(5_000, 1):
        result = step(state, event, POLICY)
        state = result.state
        if isinstance(event, TransferRequested) and result.decision is not None:
            decision = result.decision
            fast = DECISION.encode_record(decision_record(decision))
            assert fast == REGISTRY.encode(decision)
            with_order += decision.order_ref is not None
    assert with_order > 10  # order references (a non-null union branch) were written
