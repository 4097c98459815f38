"""The guard's decision on one transfer (contract section 3)."""

from pydantic import BaseModel, ConfigDict

from sharing_guard.contract.enums import Clause, Outcome, ReasonCode


class Reason(BaseModel):
    """One reason of a decision: a block code or an allow basis, with its clause."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: ReasonCode
    clause: Clause


class Decision(BaseModel):
    """ALLOW or BLOCK for one ``TransferRequested``, with every reason behind it.

    For ALLOW, ``reasons`` holds the legal basis; for BLOCK, every rule that blocks.
    ``order_ref`` names the order the guard evaluated for a law-enforcement transfer.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    outcome: Outcome
    reasons: tuple[Reason, ...]
    policy_version: str
    order_ref: str | None = None

    @property
    def codes(self) -> tuple[ReasonCode, ...]:
        """The reason codes alone, in order."""
        return tuple(reason.code for reason in self.reasons)


__all__ = ["Decision", "Outcome", "Reason"]
