"""Which policy the guard enforces: the file it started with, until a version is promoted.

A promotion (:class:`~sharing_guard.contract.policy_events.PolicyPromoted` on
``governance.policy``, one partition) is applied by the worker that owns that topic, as
any governance event: checked (the document must parse and hash to the version it
claims), then written to the recipients changelog, which every worker restores and
follows. Three entries live there:

* ``policy:<version>``: the document of every version ever promoted (the order stage
  decides a forwarded request under the version its account's worker used);
* ``policy:active``: the version in force and the promotion's event id;
* ``policy:applied``: the next offset of ``governance.policy`` the owner has applied.

A worker deciding transfers waits (as for any state) until ``policy:applied`` reaches the
end offset of ``governance.policy`` read after its transfers arrived: a promotion the
broker acknowledged before a transfer was produced applies to that transfer, whichever
worker decides it. Before any promotion, a worker enforces the policy file it started
with (``SHARING_GUARD_POLICY_FILE``, or the bundled one).
"""

import json
import logging
from dataclasses import dataclass

from sharing_guard.contract.policy_events import PolicyPromoted
from sharing_guard.core.policy import Policy, PolicyError, parse_policy
from sharing_guard.stream.batch import Batch
from sharing_guard.stream.changelog import Kind, entry_key
from sharing_guard.stream.store import Write

log = logging.getLogger(__name__)
ACTIVE = entry_key(Kind.POLICY, "active")
APPLIED = entry_key(Kind.POLICY, "applied")


def version_key(version: str) -> bytes:
    """The changelog key of one version's document."""
    return entry_key(Kind.POLICY, f"v:{version}")


@dataclass(frozen=True, slots=True)
class Active:
    """The version in force and the event that promoted it."""

    version: str
    event_id: str

    def encode(self) -> bytes:
        return json.dumps({"version": self.version, "event_id": self.event_id}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "Active":
        data = json.loads(raw)
        return cls(version=str(data["version"]), event_id=str(data["event_id"]))


class PolicyBook:
    """The policies one worker knows, read through a batch from the changelog partition
    ``where`` (the recipients changelog, partition 0). Parsed documents are kept by
    version: a version's content never changes."""

    def __init__(self, initial: Policy, where: tuple[str, int]) -> None:
        self.initial = initial
        self.where = where
        self._parsed: dict[str, Policy] = {initial.version: initial}
        self.enforced = initial.version
        """The version this worker last decided under (for its log and metrics)."""

    def active(self, batch: Batch) -> Policy:
        """The policy in force, as the batch sees the state."""
        changelog, part = self.where
        raw = batch.get(changelog, part, ACTIVE)
        if raw is None:
            return self.initial
        version = Active.decode(raw).version
        policy = self.version(batch, version)
        if policy is None:  # cannot happen: the owner writes the document first
            raise RuntimeError(f"policy {version} is active but its document is missing")
        return policy

    def version(self, batch: Batch, version: str) -> Policy | None:
        """The policy of ``version``, if this worker's file or a promotion had it."""
        known = self._parsed.get(version)
        if known is not None:
            return known
        changelog, part = self.where
        document = batch.get(changelog, part, version_key(version))
        if document is None:
            return None
        policy = parse_policy(document.decode())
        self._parsed[version] = policy
        return policy

    def applied(self, batch: Batch) -> int:
        """The next offset of ``governance.policy`` applied to the state (0: none)."""
        changelog, part = self.where
        raw = batch.get(changelog, part, APPLIED)
        return 0 if raw is None else int(raw)

    def promote(self, event: PolicyPromoted, policy: Policy, batch: Batch) -> None:
        """Record a checked promotion: its document, then the version in force."""
        changelog, part = self.where
        self._parsed[policy.version] = policy
        batch.write(changelog, part, Write(version_key(policy.version), event.document.encode()))
        batch.write(changelog, part, Write(ACTIVE, Active(policy.version, event.event_id).encode()))

    def mark_applied(self, next_offset: int, batch: Batch) -> None:
        """``governance.policy`` is applied up to (not including) ``next_offset``."""
        changelog, part = self.where
        if next_offset > self.applied(batch):
            batch.write(changelog, part, Write(APPLIED, str(next_offset).encode()))

    def note_enforced(self, policy: Policy) -> bool:
        """Note the version decided under; True when it is another than before."""
        if policy.version == self.enforced:
            return False
        log.warning("policy in force: %s (was %s)", policy.version, self.enforced)
        self.enforced = policy.version
        return True


def refusal(exc: PolicyError) -> str:
    """The dead-letter reason of a refused promotion (no document text in it)."""
    return f"policy promotion refused: {exc}"
