"""The policy's own governance event: a version promoted to be enforced by every worker.

``PolicyPromoted`` travels on its own topic (``governance.policy``, one partition, kept
for ever), is written only by ``sharing-guard policy promote`` and carries the whole
policy document, so that a worker needs nothing but the topic to enforce it. It is not
one of the contract's section 2 events (``replay`` neither reads nor needs it).
"""

from typing import Annotated, Literal

from pydantic import Field

from sharing_guard.contract.events import EventBase
from sharing_guard.contract.types import Identifier

MAX_POLICY_DOCUMENT_CHARS = 256 * 1024
"""A policy document is a few kilobytes; this is far above any real one and far below
the broker's record limit."""

MAX_WHAT_IF_CHARS = 64 * 1024


class PolicyPromoted(EventBase):
    """A policy version was promoted: from here on, the guard enforces it."""

    type: Literal["PolicyPromoted"] = "PolicyPromoted"
    policy_name: Identifier
    version: Annotated[str, Field(min_length=1, max_length=300)]
    document: Annotated[str, Field(min_length=1, max_length=MAX_POLICY_DOCUMENT_CHARS)]
    promoted_by: Identifier
    previous_version: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    what_if: Annotated[str, Field(max_length=MAX_WHAT_IF_CHARS)]
