"""The guard's fast audit encoding writes exactly the bytes of the audit record model.

The guard builds each audit record as a plain dict for the Avro writer
(:func:`~sharing_guard.audit_trail.audit_avro_record`) instead of validating and dumping
the :class:`~sharing_guard.contract.audit.AuditRecord` model; the audit sink decodes those
bytes with the model. Over simulated streams (every event type, allowed and blocked
decisions, orders with actors), both ways must give the same bytes for every event.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from sharing_guard.audit_trail import audit_avro_record, audit_record
from sharing_guard.codec import contract_registry
from sharing_guard.contract.audit import AuditRecord
from sharing_guard.contract.events import TransferRequested
from sharing_guard.core.ledger import GovernanceState, step
from sharing_guard.policy_file import load_policy
from sharing_guard.simulation import simulate

REGISTRY = contract_registry()
AUDIT = REGISTRY.codec("AuditRecord")
POLICY = load_policy()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=100_000))
def test_fast_audit_encoding_equals_the_models_for_every_event(seed: int) -> None:
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
    assert ("TransferRequested", None) not in kinds  # every transfer record had a decision
    assert {"ConsentChanged", "TransferRequested"} <= {name for name, _ in kinds}
