"""Heads notes of a sharded trail (audit_sink.heads): round trips, every refusal, successors.

A heads note is signed by the one deployment key under ``<origin>/heads``; the pinned key is
that key under the trail's origin. Notes whose text is changed after signing must fail the
signature; notes *signed* with a wrong text (as only the key holder could make) must still be
refused by the structural checks, so those are built here with :func:`signed_raw`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import pytest
from audit_sink._encoding import encode_base64
from audit_sink.checkpoint import NoteSigner, NoteVerifier, sign_note
from audit_sink.heads import (
    HeadsError,
    HeadsNote,
    MemberHead,
    check_successor,
    heads_origin,
    member_order,
    member_verifier,
    open_heads,
    partition_of,
    shard_origin,
    sign_heads,
)
from audit_sink.merkle import CompactRange, leaf_hash
from hypothesis import given, settings
from hypothesis import strategies as st

ORIGIN = "audit.test.invalid/trail"
SEED = hashlib.sha256(b"heads test seed").digest()
SIGNER = NoteSigner.from_seed(heads_origin(ORIGIN), SEED)
PINNED = NoteVerifier(ORIGIN, SIGNER.public_key)
OTHER_KEY = NoteSigner.from_seed(heads_origin(ORIGIN), hashlib.sha256(b"other").digest())


def root(tag: object) -> bytes:
    return hashlib.sha256(repr(tag).encode()).digest()


def head(partition: int | None, size: int, tag: object = None) -> MemberHead:
    member = ORIGIN if partition is None else shard_origin(ORIGIN, partition)
    return MemberHead(member, size, root((partition, size) if tag is None else tag))


HEADS = (head(None, 120), head(0, 51), head(1, 49), head(2, 0))


def merkle_root(lines: Sequence[str]) -> bytes:
    tree = CompactRange()
    tree.extend([leaf_hash(line.encode()) for line in lines])
    return tree.root()


def signed_raw(
    lines: Sequence[str],
    *,
    size: int | None = None,
    tree_root: bytes | None = None,
    origin: str = ORIGIN,
    signer: NoteSigner = SIGNER,
) -> str:
    """A heads note signed over exactly ``lines`` (by default its size and root match them)."""
    text = [
        heads_origin(origin),
        str(len(lines) if size is None else size),
        encode_base64(merkle_root(lines) if tree_root is None else tree_root),
        *lines,
    ]
    return sign_note("".join(line + "\n" for line in text), [signer])


def opened(heads: Sequence[MemberHead]) -> HeadsNote:
    return open_heads(sign_heads(ORIGIN, heads, SIGNER), PINNED, ORIGIN)


# -- names ----------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_a_shard_origin_gives_back_its_partition(partition: int) -> None:
    member = shard_origin(ORIGIN, partition)

    assert member == f"{ORIGIN}/shards/{partition}"
    assert partition_of(ORIGIN, member) == partition
    assert member_order(ORIGIN, member) == (1, partition)


def test_the_origin_itself_is_the_legacy_member_and_comes_first() -> None:
    assert partition_of(ORIGIN, ORIGIN) is None
    assert member_order(ORIGIN, ORIGIN) < member_order(ORIGIN, shard_origin(ORIGIN, 0))
    with pytest.raises(ValueError, match="not negative"):
        shard_origin(ORIGIN, -1)


@pytest.mark.parametrize(
    "member",
    [
        f"{ORIGIN}/shards/01",  # a leading zero: two spellings of one shard
        f"{ORIGIN}/shards/",
        f"{ORIGIN}/shards/-1",
        f"{ORIGIN}/shards/1/x",
        f"{ORIGIN}/shards/\u0663",  # an Arabic-Indic digit
        f"{ORIGIN}x/shards/1",
        f"{ORIGIN}/heads",
        "audit.test.invalid/other/shards/1",
        "audit.test.invalid",
    ],
)
def test_an_origin_of_no_member_of_the_trail_is_refused(member: str) -> None:
    with pytest.raises(ValueError, match="not a member"):
        partition_of(ORIGIN, member)


# -- signing and opening --------------------------------------------------------------------

origins_st = st.sampled_from(["audit.test.invalid/t", "a.example/b/c", "x"])
heads_st = st.dictionaries(
    st.one_of(st.none(), st.integers(min_value=0, max_value=2000)),
    st.tuples(st.integers(min_value=0, max_value=2**63), st.binary(min_size=32, max_size=32)),
    max_size=12,
)


def as_heads(origin: str, drawn: dict[int | None, tuple[int, bytes]]) -> list[MemberHead]:
    return [
        MemberHead(origin if p is None else shard_origin(origin, p), size, r)
        for p, (size, r) in drawn.items()
    ]


@settings(max_examples=150, deadline=None)
@given(origins_st, heads_st, st.randoms(use_true_random=False))
def test_a_signed_heads_note_opens_to_the_same_heads_in_member_order(
    origin: str, drawn: dict[int | None, tuple[int, bytes]], rnd: random.Random
) -> None:
    signer = NoteSigner.from_seed(heads_origin(origin), SEED)
    heads = as_heads(origin, drawn)
    shuffled = list(heads)
    rnd.shuffle(shuffled)

    note = sign_heads(origin, shuffled, signer)
    found = open_heads(note, NoteVerifier(origin, signer.public_key), origin)

    expected = sorted(heads, key=lambda h: member_order(origin, h.origin))
    assert list(found.heads) == expected
    assert found.origin == heads_origin(origin)
    assert found.note == note
    assert found.by_origin() == {h.origin: h for h in heads}
    assert note.split("\n")[1] == str(len(heads))


@settings(max_examples=200, deadline=None)
@given(heads_st.filter(bool), st.data())
def test_any_changed_byte_of_the_text_is_refused(
    drawn: dict[int | None, tuple[int, bytes]], data: st.DataObject
) -> None:
    note = sign_heads(ORIGIN, as_heads(ORIGIN, drawn), SIGNER)
    text_end = note.index("\n\n")
    at = data.draw(st.integers(min_value=0, max_value=text_end - 1), label="at")
    replacement = data.draw(
        st.sampled_from("0123456789abcdefABCDEF+/= ./_-x").filter(lambda c: c != note[at]),
        label="by",
    )

    with pytest.raises(HeadsError):
        open_heads(note[:at] + replacement + note[at + 1 :], PINNED, ORIGIN)


LINES = [h.line for h in HEADS]
CHANGED = [*LINES[:2], head(1, 50).line, LINES[3]]
SWAPPED = [LINES[0], LINES[2], LINES[1], LINES[3]]
FORGED_NOTES = {
    "a changed line": lambda: signed_raw(CHANGED, tree_root=merkle_root(LINES)),
    "a dropped line": lambda: signed_raw(LINES[:3], size=4, tree_root=merkle_root(LINES)),
    "a dropped line, root recomputed": lambda: signed_raw(LINES[:3], size=4),
    "a line twice": lambda: signed_raw([*LINES, LINES[3]], size=4),
    "a line twice, root and size recomputed": lambda: signed_raw([*LINES, LINES[3]]),
    "swapped lines": lambda: signed_raw(SWAPPED, tree_root=merkle_root(LINES)),
    "swapped lines, root recomputed": lambda: signed_raw(SWAPPED),
    "legacy last": lambda: signed_raw([*LINES[1:], LINES[0]]),
    "another size": lambda: signed_raw(LINES, size=5),
    "size zero": lambda: signed_raw(LINES, size=0),
    "another root": lambda: signed_raw(LINES, tree_root=root("forged")),
}


def test_the_forgery_control_opens() -> None:
    assert open_heads(signed_raw(LINES), PINNED, ORIGIN).heads == HEADS


@pytest.mark.parametrize("forgery", sorted(FORGED_NOTES))
def test_a_changed_line_root_size_or_order_is_refused_even_when_signed(forgery: str) -> None:
    with pytest.raises(HeadsError):
        open_heads(FORGED_NOTES[forgery](), PINNED, ORIGIN)


@pytest.mark.parametrize(
    "line",
    [
        f"{ORIGIN}/shards/1 49",
        f"{ORIGIN}/shards/1 049 {encode_base64(root(1))}",
        f"{ORIGIN}/shards/1 -1 {encode_base64(root(1))}",
        f"{ORIGIN}/shards/1 \u00b2 {encode_base64(root(1))}",  # superscript two: isdigit()
        f"{ORIGIN}/shards/1 \u0663 {encode_base64(root(1))}",  # Arabic-Indic three
        f"{ORIGIN}/shards/1 49 {encode_base64(root(1)[:31])}",
        f"{ORIGIN}/shards/1 49 {encode_base64(root(1))[:-1]}A",  # not canonical base64
        f"{ORIGIN}/shards/1  49 {encode_base64(root(1))}",
        f"{ORIGIN}/shards/1 49 {encode_base64(root(1))} x",
        f"audit.test.invalid/other/shards/1 49 {encode_base64(root(1))}",
        f"{ORIGIN}/shards/01 49 {encode_base64(root(1))}",
        f"{ORIGIN}/shards/1 {2**64} {encode_base64(root(1))}",
    ],
)
def test_a_malformed_head_line_is_refused_even_when_signed(line: str) -> None:
    with pytest.raises(HeadsError):
        open_heads(signed_raw([line]), PINNED, ORIGIN)


def test_a_member_of_another_trail_is_refused() -> None:
    other = "audit.test.invalid/trail2"
    stranger = MemberHead(shard_origin(other, 1), 3, root("x"))
    lines = [HEADS[0].line, stranger.line]

    with pytest.raises(HeadsError, match="not a member"):
        open_heads(signed_raw(lines), PINNED, ORIGIN)
    with pytest.raises(ValueError, match="not a member"):  # nor does sign_heads list it
        sign_heads(ORIGIN, [HEADS[0], stranger], SIGNER)


def test_the_heads_note_of_another_trail_is_refused() -> None:
    other = "audit.test.invalid/trail2"
    signer = NoteSigner.from_seed(heads_origin(other), SEED)  # the same key, another name
    note = sign_heads(other, [MemberHead(shard_origin(other, 0), 1, root(0))], signer)

    with pytest.raises(HeadsError, match="not a heads note"):
        open_heads(note, PINNED, ORIGIN)
    with pytest.raises(HeadsError, match="not a heads note"):
        open_heads(note, NoteVerifier(other, SIGNER.public_key), ORIGIN)


def test_a_signature_by_another_key_or_under_another_name_is_refused() -> None:
    lines = [h.line for h in HEADS]
    by_other_key = signed_raw(lines, signer=OTHER_KEY)
    under_origin = signed_raw(lines, signer=NoteSigner.from_seed(ORIGIN, SEED))
    under_shard = signed_raw(lines, signer=NoteSigner.from_seed(shard_origin(ORIGIN, 0), SEED))

    for note in (by_other_key, under_origin, under_shard):
        with pytest.raises(HeadsError, match="not a heads note"):
            open_heads(note, PINNED, ORIGIN)
    with pytest.raises(HeadsError):  # a note made for another pinned key
        open_heads(signed_raw(lines), OTHER_KEY.verifier(), ORIGIN)
    with pytest.raises(HeadsError):
        open_heads("not a note\n", PINNED, ORIGIN)


def test_sign_heads_refuses_a_member_twice_or_a_wrongly_named_signer() -> None:
    with pytest.raises(HeadsError, match="twice"):
        sign_heads(ORIGIN, [HEADS[1], head(0, 52)], SIGNER)
    with pytest.raises(HeadsError, match="named"):
        sign_heads(ORIGIN, HEADS, NoteSigner.from_seed(ORIGIN, SEED))


def test_an_empty_heads_note_round_trips() -> None:
    assert opened([]).heads == ()


def test_member_verifier_is_the_pinned_key_under_the_members_name() -> None:
    verifier = member_verifier(PINNED, shard_origin(ORIGIN, 7))

    assert verifier.name == f"{ORIGIN}/shards/7"
    assert verifier.public_key == PINNED.public_key
    assert verifier.key_id != PINNED.key_id


# -- successors -----------------------------------------------------------------------------


def test_growth_and_new_members_are_successors() -> None:
    before = opened(HEADS[1:3])
    after = opened([HEADS[0], head(0, 60), HEADS[2], head(2, 1), head(9, 4)])

    assert check_successor(before, after) == []
    assert check_successor(before, before) == []


def test_a_dropped_member_is_found() -> None:
    problems = check_successor(opened(HEADS), opened([h for h in HEADS if h != HEADS[2]]))

    assert len(problems) == 1
    assert f"{ORIGIN}/shards/1 is no longer listed" in problems[0]


def test_a_smaller_member_is_found() -> None:
    after = [HEADS[0], head(0, 50, tag=(0, 51)), HEADS[2], HEADS[3]]

    problems = check_successor(opened(HEADS), opened(after))

    assert problems == [f"{ORIGIN}/shards/0 went from 51 to 50 entries"]


def test_a_fork_at_equal_size_is_found() -> None:
    after = [head(None, 120, tag="fork"), *HEADS[1:]]

    problems = check_successor(opened(HEADS), opened(after))

    assert problems == [f"{ORIGIN} has another root at size 120 (a fork)"]


def test_every_problem_is_found_at_once() -> None:
    after = [head(None, 120, tag="fork"), head(0, 3), head(5, 1)]

    problems = check_successor(opened(HEADS), opened(after))

    assert len(problems) == 4  # legacy forked, shard 0 smaller, shards 1 and 2 dropped


@settings(max_examples=150, deadline=None)
@given(heads_st, st.data())
def test_a_successor_is_exactly_one_where_no_member_shrinks_forks_or_goes(
    drawn: dict[int | None, tuple[int, bytes]], data: st.DataObject
) -> None:
    before = as_heads(ORIGIN, drawn)
    after: list[MemberHead] = []
    broken = 0
    for h in before:
        change = data.draw(st.sampled_from(["same", "grow", "drop", "shrink", "fork"]))
        if change == "same":
            after.append(h)
        elif change == "grow":
            after.append(MemberHead(h.origin, h.size + 1 + data.draw(st.integers(0, 9)), h.root))
        elif change == "drop":
            broken += 1
        elif change == "shrink" and h.size > 0:
            after.append(MemberHead(h.origin, h.size - 1, h.root))
            broken += 1
        elif change in ("shrink", "fork"):
            after.append(MemberHead(h.origin, h.size, hashlib.sha256(h.root).digest()))
            broken += 1
    newcomers = data.draw(st.sets(st.integers(min_value=3000, max_value=3010), max_size=3))
    after.extend(head(p, 1) for p in newcomers)

    problems = check_successor(opened(before), opened(after))

    assert len(problems) == broken
