"""The shard model's names and the signed tree of shard heads (pure: no I/O).

With ``AUDIT_SINK_SHARDING=partition`` the trail is several logs (**members**): one per
partition of the audit topic (a **shard**, origin ``<origin>/shards/<partition>``) and,
after a migration, the single log that came before them (the **legacy** member, origin
``<origin>``, frozen). Each member is a complete log of its own (tree, chain, signed
checkpoints, proofs), signed by the deployment's one key under the member's origin as key
name: a verifier pins the one vkey and derives each member's verifier from it
(:func:`member_verifier`), so a checkpoint of one shard never passes for another's.

A **heads note** commits to every member at once: a C2SP signed note that is a tlog
checkpoint whose origin is ``<origin>/heads``, whose size is the number of members and
whose root is the RFC 6962 Merkle root over the members' heads, listed after it as
extension lines, one per member, in member order::

    audit.example.com/sharing-guard/prod/heads
    3
    <base64 Merkle root over the three lines below>
    audit.example.com/sharing-guard/prod 120400 <base64 root>
    audit.example.com/sharing-guard/prod/shards/0 5100 <base64 root>
    audit.example.com/sharing-guard/prod/shards/1 4980 <base64 root>

A member's head is the size and root of one of its signed checkpoints; the leaf hashed for
it is the line's UTF-8 bytes. A heads note is only ever replaced by one that lists every
member it listed, none smaller (:func:`check_successor`): so a verifier holding any heads
note detects a member deleted, truncated or rolled back since.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from audit_sink._encoding import decode_base64, encode_base64, parse_uint64
from audit_sink.checkpoint import (
    MalformedCheckpointError,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    sign_note,
)
from audit_sink.merkle import HASH_SIZE, CompactRange, leaf_hash

__all__ = [
    "HeadsError",
    "HeadsNote",
    "MemberHead",
    "check_successor",
    "heads_origin",
    "member_order",
    "member_verifier",
    "open_heads",
    "partition_of",
    "shard_origin",
    "sign_heads",
]

_SHARD: Final = re.compile(r"/shards/(0|[1-9][0-9]{0,9})")


class HeadsError(ValueError):
    """A heads note is malformed, unsigned, inconsistent, or not a successor of another."""


def shard_origin(origin: str, partition: int) -> str:
    """The origin (and key name) of the shard of ``partition``."""
    if partition < 0:
        raise ValueError("a partition is not negative")
    return f"{origin}/shards/{partition}"


def heads_origin(origin: str) -> str:
    """The origin (and key name) of the heads notes of the trail ``origin``."""
    return f"{origin}/heads"


def partition_of(origin: str, member: str) -> int | None:
    """The partition of the shard ``member`` of the trail ``origin``; ``None`` for the
    legacy member; ``ValueError`` for an origin that is no member of this trail."""
    if member == origin:
        return None
    tail = member[len(origin) :] if member.startswith(origin) else ""
    match = _SHARD.fullmatch(tail)
    if match is None:
        raise ValueError(f"{member!r} is not a member of the trail {origin!r}")
    return int(match.group(1))


def member_order(origin: str, member: str) -> tuple[int, int]:
    """Sort key of members: the legacy log first, then the shards by partition."""
    partition = partition_of(origin, member)
    return (0, 0) if partition is None else (1, partition)


def member_verifier(pinned: NoteVerifier, member: str) -> NoteVerifier:
    """The verifier of ``member``'s notes: the pinned public key under the member's name."""
    return NoteVerifier(member, pinned.public_key)


@dataclass(frozen=True, order=True)
class MemberHead:
    """One member's head: its origin and the size and root of one of its checkpoints."""

    origin: str
    size: int
    root: bytes

    @property
    def line(self) -> str:
        """The extension line (and the leaf bytes, UTF-8) of this head."""
        return f"{self.origin} {self.size} {encode_base64(self.root)}"


@dataclass(frozen=True)
class HeadsNote:
    """A verified heads note: the members' heads in member order."""

    origin: str
    heads: tuple[MemberHead, ...]
    note: str

    def by_origin(self) -> dict[str, MemberHead]:
        """The heads keyed by member origin."""
        return {head.origin: head for head in self.heads}


def _root(heads: Sequence[MemberHead]) -> bytes:
    tree = CompactRange()
    tree.extend([leaf_hash(head.line.encode()) for head in heads])
    return tree.root()


def sign_heads(origin: str, heads: Iterable[MemberHead], signer: NoteSigner) -> str:
    """The signed heads note of the trail ``origin`` (``signer`` named by
    :func:`heads_origin`), listing ``heads`` in member order."""
    ordered = sorted(heads, key=lambda head: member_order(origin, head.origin))
    if len({head.origin for head in ordered}) != len(ordered):
        raise HeadsError("a member is listed twice")
    if signer.name != heads_origin(origin):
        raise HeadsError("the heads signer must be named after the heads origin")
    lines = [heads_origin(origin), str(len(ordered)), encode_base64(_root(ordered))]
    lines.extend(head.line for head in ordered)
    return sign_note("".join(line + "\n" for line in lines), [signer])


def _parse_head(origin: str, line: str) -> MemberHead:
    parts = line.split(" ")
    size = parse_uint64(parts[1]) if len(parts) == 3 else None
    if size is None:  # not int(): it takes non-ASCII digits ("\u0663") and raises on others
        raise HeadsError(f"a head line is not '<origin> <size> <root>': {line[:200]!r}")
    try:
        partition_of(origin, parts[0])
    except ValueError as exc:
        raise HeadsError(str(exc)) from None
    root = decode_base64(parts[2])
    if root is None or len(root) != HASH_SIZE:
        raise HeadsError(f"the root of {parts[0]} is not base64 of a {HASH_SIZE}-byte hash")
    return MemberHead(parts[0], size, root)


def open_heads(note: str, pinned: NoteVerifier, origin: str) -> HeadsNote:
    """Verify a heads note of the trail ``origin`` with the pinned key and return its heads.

    ``HeadsError`` unless it is signed by the pinned key under the heads name, lists as
    many heads as its size says, in member order, each once, and its root is the Merkle
    root over them.
    """
    verifier = member_verifier(pinned, heads_origin(origin))
    try:
        checkpoint = open_checkpoint(note, [verifier], origin=heads_origin(origin))
    except (MalformedCheckpointError, ValueError) as exc:
        raise HeadsError(f"not a heads note of this trail: {exc}") from None
    heads = tuple(_parse_head(origin, line) for line in checkpoint.extensions)
    if len(heads) != checkpoint.size:
        raise HeadsError(f"the note lists {len(heads)} heads but its size is {checkpoint.size}")
    keys = [member_order(origin, head.origin) for head in heads]
    if keys != sorted(set(keys)):
        raise HeadsError("the heads are not listed once each in member order")
    if _root(heads) != checkpoint.root:
        raise HeadsError("the root is not the Merkle root of the listed heads")
    return HeadsNote(checkpoint.origin, heads, note)


def check_successor(previous: HeadsNote, following: HeadsNote) -> list[str]:
    """What makes ``following`` no valid successor of ``previous`` (empty: it is one): a
    member dropped, a member smaller, or the same size with another root."""
    problems: list[str] = []
    after: Mapping[str, MemberHead] = following.by_origin()
    for head in previous.heads:
        later = after.get(head.origin)
        if later is None:
            problems.append(f"{head.origin} is no longer listed (a member dropped)")
        elif later.size < head.size:
            problems.append(f"{head.origin} went from {head.size} to {later.size} entries")
        elif later.size == head.size and later.root != head.root:
            problems.append(f"{head.origin} has another root at size {head.size} (a fork)")
    return problems
