"""Merkle proofs: generation against the RFC definitions, corruption probes, properties.

The reference functions below transcribe RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1 literally
(recursive MTH, PATH, SUBPROOF) as an independent check of the iterative generators.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator, Sequence

import pytest
from audit_sink.merkle import (
    EMPTY_ROOT,
    CompactRange,
    InvalidProofError,
    SubtreeHasher,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(hashes: Sequence[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = _k(len(hashes))
    return node_hash(ref_mth(hashes[:k]), ref_mth(hashes[k:]))


def ref_path(m: int, hashes: Sequence[bytes]) -> list[bytes]:
    n = len(hashes)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, hashes[:k]), ref_mth(hashes[k:])]
    return [*ref_path(m - k, hashes[k:]), ref_mth(hashes[:k])]


def ref_subproof(m: int, hashes: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(hashes)
    if m == n:
        return [] if b else [ref_mth(hashes)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, hashes[:k], b), ref_mth(hashes[k:])]
    return [*ref_subproof(m - k, hashes[k:], False), ref_mth(hashes[:k])]


def tree(size: int, seed: int = 0) -> list[bytes]:
    return [leaf_hash(f"{seed}:{i}".encode()) for i in range(size)]


def flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


GARBAGE = hashlib.sha256(b"garbage").digest()


def rejects(check: Callable[[], None]) -> bool:
    try:
        check()
    except InvalidProofError:
        return True
    return False


# --- generation -----------------------------------------------------------------------


def test_proofs_equal_the_rfc_definitions_for_every_index_and_size_up_to_40() -> None:
    hashes = tree(40)
    hasher = SubtreeHasher.from_sequence(hashes, cache_level=2)
    for size in range(1, 41):
        prefix = hashes[:size]
        assert root_of(prefix) == ref_mth(prefix) == hasher(0, size)
        for index in range(size):
            assert inclusion_proof(index, size, hasher) == ref_path(index, prefix)
        for size1 in range(1, size + 1):
            expected = [] if size1 == size else ref_subproof(size1, prefix, True)
            assert consistency_proof(size1, size, hasher) == expected


def test_exhaustive_verification_up_to_64() -> None:
    hashes = tree(64, seed=7)
    hasher = SubtreeHasher.from_sequence(hashes)
    roots = [root_of(hashes[:n]) for n in range(65)]
    for size in range(1, 65):
        for index in range(size):
            proof = inclusion_proof(index, size, hasher)
            verify_inclusion(hashes[index], index, size, proof, roots[size])
        for size1 in range(1, size + 1):
            proof = consistency_proof(size1, size, hasher)
            verify_consistency(size1, size, proof, roots[size1], roots[size])


def test_generators_reject_impossible_arguments() -> None:
    hasher = SubtreeHasher.from_sequence(tree(4))
    for index, size in ((0, 0), (4, 4), (5, 4), (-1, 4)):
        with pytest.raises(ValueError):  # noqa: PT011
            inclusion_proof(index, size, hasher)
    for size1, size2 in ((0, 3), (4, 3), (-1, 3)):
        with pytest.raises(ValueError):  # noqa: PT011
            consistency_proof(size1, size2, hasher)


def test_proof_generation_reads_only_what_it_needs() -> None:
    hashes = tree(1000)
    reads: list[tuple[int, int]] = []

    def leaf_range(start: int, end: int) -> Sequence[bytes]:
        reads.append((start, end))
        return hashes[start:end]

    hasher = SubtreeHasher(leaf_range, cache_level=4)
    root = hasher(0, 1000)
    assert root == root_of(hashes)
    reads.clear()
    # Warm cache: a proof now reads fewer than 2**4 leaves for the siblings below the
    # cached level, and fewer than 2**4 more for the right edge of the tree.
    proof = inclusion_proof(777, 1000, hasher)
    assert 0 < sum(end - start for start, end in reads) < 32
    verify_inclusion(hashes[777], 777, 1000, proof, root)


def test_subtree_hasher_checks_the_store() -> None:
    hasher = SubtreeHasher(lambda start, end: [GARBAGE] * (end - start - 1))
    with pytest.raises(LookupError):
        hasher(0, 4)
    good = SubtreeHasher.from_sequence(tree(3))
    assert good(2, 2) == EMPTY_ROOT
    with pytest.raises(ValueError):  # noqa: PT011
        good(2, 1)


# --- inclusion probes on every (index, size) of trees of sizes 1..8 and 13 ---------------


def inclusion_cases() -> Iterator[tuple[int, int]]:
    for size in (*range(1, 9), 13):
        for index in range(size):
            yield index, size


@pytest.mark.parametrize(("index", "size"), list(inclusion_cases()))
def test_inclusion_corruption_probes(index: int, size: int) -> None:
    hashes = tree(size)
    root = root_of(hashes)
    leaf = hashes[index]
    proof = inclusion_proof(index, size, SubtreeHasher.from_sequence(hashes))
    verify_inclusion(leaf, index, size, proof, root)

    probes: dict[str, tuple[bytes, int, int, list[bytes], bytes]] = {
        "index+1": (leaf, index + 1, size, proof, root),
        "index-1": (leaf, index - 1, size, proof, root),
        "index=size": (leaf, size, size, proof, root),
        "size*2": (leaf, index, size * 2, proof, root),
        "size//2": (leaf, index, size // 2, proof, root),
        "size=0": (leaf, index, 0, proof, root),
        "extra element": (leaf, index, size, [*proof, GARBAGE], root),
        "trailing root": (leaf, index, size, [*proof, root], root),
        "prepended garbage": (leaf, index, size, [GARBAGE, *proof], root),
        "prepended leaf": (leaf, index, size, [leaf, *proof], root),
        "empty element prepended": (leaf, index, size, [b"", *proof], root),
        "empty element appended": (leaf, index, size, [*proof, b""], root),
        "wrong root": (leaf, index, size, proof, GARBAGE),
        "empty-tree root": (leaf, index, size, proof, EMPTY_ROOT),
        "empty root": (leaf, index, size, proof, b""),
        "root with a flipped bit": (leaf, index, size, proof, flip(root, 0)),
        "wrong leaf": (leaf_hash(b"not the leaf"), index, size, proof, root),
        "leaf with a flipped bit": (flip(leaf, 255), index, size, proof, root),
        "leaf data instead of leaf hash": (b"\x00" + leaf, index, size, proof, root),
        "truncated leaf hash": (leaf[:31], index, size, proof, root),
    }
    if size > 1:
        other = hashes[(index + 1) % size]
        probes["another leaf of the tree"] = (other, index, size, proof, root)
        probes["root of the previous size"] = (leaf, index, size, proof, root_of(hashes[:-1]))
    for i in range(len(proof)):
        probes[f"missing element {i}"] = (leaf, index, size, proof[:i] + proof[i + 1 :], root)
        probes[f"element {i} with trailing byte"] = (
            leaf,
            index,
            size,
            [*proof[:i], proof[i] + b"\x00", *proof[i + 1 :]],
            root,
        )
        probes[f"element {i} truncated"] = (
            leaf,
            index,
            size,
            [*proof[:i], proof[i][:31], *proof[i + 1 :]],
            root,
        )
        for bit in range(256):
            probes[f"element {i} bit {bit}"] = (
                leaf,
                index,
                size,
                [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]],
                root,
            )
    if len(proof) >= 2 and proof[0] != proof[1]:
        probes["first two elements swapped"] = (
            leaf,
            index,
            size,
            [proof[1], proof[0], *proof[2:]],
            root,
        )
    accepted = [
        name
        for name, args in probes.items()
        if not rejects(lambda args=args: verify_inclusion(*args))  # type: ignore[misc]
    ]
    assert accepted == []


def test_inclusion_size_is_not_bound_by_the_root_alone() -> None:
    # Documented limitation of RFC 6962 inclusion proofs: the root does not commit to the
    # tree size, so (leaf 0, size 4) verifies against the size-3 root with the size-3
    # proof. The signed checkpoint binds size and root; always verify against it.
    hashes = tree(3)
    proof = inclusion_proof(0, 3, SubtreeHasher.from_sequence(hashes))
    assert root_from_inclusion_proof(hashes[0], 0, 4, proof) == root_of(hashes)


def test_verifiers_reject_non_int_and_out_of_range_numbers() -> None:
    hashes = tree(2)
    proof = inclusion_proof(0, 2, SubtreeHasher.from_sequence(hashes))
    with pytest.raises(TypeError):
        verify_inclusion(hashes[0], True, 2, proof, root_of(hashes))
    with pytest.raises(InvalidProofError):
        verify_inclusion(hashes[0], 0, 1 << 64, proof, root_of(hashes))
    with pytest.raises(InvalidProofError):
        verify_consistency(1, 1 << 64, proof, hashes[0], root_of(hashes))


# --- consistency probes on every 1 <= size1 <= size2 <= 8, and into 13 -------------------


def consistency_cases() -> Iterator[tuple[int, int]]:
    for size2 in (*range(1, 9), 13):
        for size1 in range(1, size2 + 1):
            yield size1, size2


@pytest.mark.parametrize(("size1", "size2"), list(consistency_cases()))
def test_consistency_corruption_probes(size1: int, size2: int) -> None:
    hashes = tree(size2)
    root1, root2 = root_of(hashes[:size1]), root_of(hashes)
    proof = consistency_proof(size1, size2, SubtreeHasher.from_sequence(hashes))
    verify_consistency(size1, size2, proof, root1, root2)

    probes: dict[str, tuple[int, int, list[bytes], bytes, bytes]] = {
        "size1=0": (0, size2, proof, EMPTY_ROOT, root2),
        "size1 > size2": (size2 + 1, size2, proof, root1, root2),
        "size2*2": (size1, size2 * 2, proof, root1, root2),
        "extra element": (size1, size2, [*proof, GARBAGE], root1, root2),
        "trailing root1": (size1, size2, [*proof, root1], root1, root2),
        "trailing root2": (size1, size2, [*proof, root2], root1, root2),
        "prepended garbage": (size1, size2, [GARBAGE, *proof], root1, root2),
        "prepended root1": (size1, size2, [root1, *proof], root1, root2),
        "empty element appended": (size1, size2, [*proof, b""], root1, root2),
        "wrong root1": (size1, size2, proof, GARBAGE, root2),
        "wrong root2": (size1, size2, proof, root1, GARBAGE),
        "root1 with a flipped bit": (size1, size2, proof, flip(root1, 7), root2),
        "root2 with a flipped bit": (size1, size2, proof, root1, flip(root2, 7)),
        "empty root1": (size1, size2, proof, b"", root2),
        "empty root2": (size1, size2, proof, root1, b""),
    }
    if size1 != size2:
        probes["swapped sizes"] = (size2, size1, proof, root2, root1)
        probes["swapped roots"] = (size1, size2, proof, root2, root1)
        probes["empty proof"] = (size1, size2, [], root1, root2)
        probes["size1+1"] = (size1 + 1, size2, proof, root1, root2)
        probes["size1-1"] = (size1 - 1, size2, proof, root1, root2)
        probes["size2//2 (if still >= size1)"] = (
            size1,
            max(size1, size2 // 2),
            proof,
            root1,
            root2,
        )
    for i in range(len(proof)):
        probes[f"missing element {i}"] = (size1, size2, proof[:i] + proof[i + 1 :], root1, root2)
        probes[f"element {i} with trailing byte"] = (
            size1,
            size2,
            [*proof[:i], proof[i] + b"\x00", *proof[i + 1 :]],
            root1,
            root2,
        )
        for bit in range(256):
            probes[f"element {i} bit {bit}"] = (
                size1,
                size2,
                [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]],
                root1,
                root2,
            )
    accepted = [
        name
        for name, args in probes.items()
        if not rejects(lambda args=args: verify_consistency(*args))  # type: ignore[misc]
    ]
    assert accepted == []


def test_consistency_size_is_not_bound_by_the_roots_alone() -> None:
    # Same limitation as for inclusion: the proof from 1 to 3 also "verifies" from 1 to 4
    # against the size-3 root. Sizes are bound to roots only by the signed checkpoint.
    hashes = tree(3)
    proof = consistency_proof(1, 3, SubtreeHasher.from_sequence(hashes))
    verify_consistency(1, 4, proof, hashes[0], root_of(hashes))


def test_equal_sizes_compare_roots_byte_for_byte() -> None:
    # As the transparency-dev probe "sizes are equal (one) and proof is empty": with equal
    # sizes there is nothing to prove but root1 == root2.
    verify_consistency(5, 5, [], b"same", b"same")
    with pytest.raises(InvalidProofError):
        verify_consistency(5, 5, [], b"same", b"other")
    with pytest.raises(InvalidProofError):
        verify_consistency(5, 5, [GARBAGE], GARBAGE, GARBAGE)


# --- properties on random trees ------------------------------------------------------


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(min_value=1, max_value=300))
    seed = draw(st.integers(min_value=0, max_value=2**32))
    index = draw(st.integers(min_value=0, max_value=size - 1))
    return tree(size, seed), index


@st.composite
def tree_and_sizes(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size2 = draw(st.integers(min_value=1, max_value=300))
    seed = draw(st.integers(min_value=0, max_value=2**32))
    size1 = draw(st.integers(min_value=1, max_value=size2))
    return tree(size2, seed), size1


@settings(max_examples=150, deadline=None)
@given(case=tree_and_index(), data=st.data())
def test_random_inclusion_proofs_verify_and_any_bit_flip_fails(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    hashes, index = case
    size = len(hashes)
    root = root_of(hashes)
    proof = inclusion_proof(index, size, SubtreeHasher.from_sequence(hashes, cache_level=3))
    assert proof == ref_path(index, hashes)
    verify_inclusion(hashes[index], index, size, proof, root)
    if proof:
        element = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bit = data.draw(st.integers(min_value=0, max_value=255))
        bad = [*proof[:element], flip(proof[element], bit), *proof[element + 1 :]]
        with pytest.raises(InvalidProofError):
            verify_inclusion(hashes[index], index, size, bad, root)
    bit = data.draw(st.integers(min_value=0, max_value=255))
    with pytest.raises(InvalidProofError):
        verify_inclusion(flip(hashes[index], bit), index, size, proof, root)
    with pytest.raises(InvalidProofError):
        verify_inclusion(hashes[index], index, size, proof, flip(root, bit))


@settings(max_examples=150, deadline=None)
@given(case=tree_and_sizes(), data=st.data())
def test_random_consistency_proofs_verify_and_any_bit_flip_fails(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    hashes, size1 = case
    size2 = len(hashes)
    root1, root2 = root_of(hashes[:size1]), root_of(hashes)
    proof = consistency_proof(size1, size2, SubtreeHasher.from_sequence(hashes, cache_level=3))
    assert proof == ([] if size1 == size2 else ref_subproof(size1, hashes, True))
    verify_consistency(size1, size2, proof, root1, root2)
    if proof:
        element = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bit = data.draw(st.integers(min_value=0, max_value=255))
        bad = [*proof[:element], flip(proof[element], bit), *proof[element + 1 :]]
        with pytest.raises(InvalidProofError):
            verify_consistency(size1, size2, bad, root1, root2)
    bit = data.draw(st.integers(min_value=0, max_value=255))
    with pytest.raises(InvalidProofError):
        verify_consistency(size1, size2, proof, flip(root1, bit), root2)
    with pytest.raises(InvalidProofError):
        verify_consistency(size1, size2, proof, root1, flip(root2, bit))


@settings(max_examples=60, deadline=None)
@given(case=tree_and_index(), data=st.data())
def test_every_proof_of_a_random_tree_verifies(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    hashes, _ = case
    size = len(hashes)
    hasher = SubtreeHasher.from_sequence(hashes, cache_level=2)
    built = CompactRange()
    roots = [built.root()]
    for h in hashes:
        built.append(h)
        roots.append(built.root())
    for index in range(size):
        verify_inclusion(
            hashes[index], index, size, inclusion_proof(index, size, hasher), roots[size]
        )
    size1 = data.draw(st.integers(min_value=1, max_value=size))
    for later in range(size1, size + 1):
        proof = consistency_proof(size1, later, hasher)
        verify_consistency(size1, later, proof, roots[size1], roots[later])


# --- the builder ---------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=600),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=6),
)
def test_compact_range_matches_root_of_however_it_is_fed(size: int, cuts: list[int]) -> None:
    hashes = tree(size, seed=size)
    bounds = sorted({0, size, *(c for c in cuts if c <= size)})
    built = CompactRange()
    for start, end in itertools.pairwise(bounds):
        if end - start == 1:
            built.append(hashes[start])
        else:
            built.extend(iter(hashes[start:end]))
        assert built.size == end
        assert built.root() == ref_mth(hashes[:end])
        assert len(built.peaks) == end.bit_count()
    restored = CompactRange.from_state(built.size, built.peaks)
    assert restored.root() == built.root()
    extra = leaf_hash(b"next")
    restored.append(extra)
    assert restored.root() == ref_mth([*hashes, extra])


def test_compact_range_large_batch_and_copy() -> None:
    hashes = tree(70_000)
    built = CompactRange()
    built.extend(hashes[:5])
    snapshot = built.copy()
    built.extend(hashes[5:])
    assert built.root() == root_of(hashes)
    assert snapshot.size == 5
    assert snapshot.root() == root_of(hashes[:5])


def test_compact_range_rejects_bad_input_and_stays_consistent() -> None:
    hashes = tree(20)
    built = CompactRange()
    with pytest.raises(ValueError, match="leaf hash #12"):
        built.extend([*hashes[:12], b"short", *hashes[12:]])
    assert built.size == 12
    assert built.root() == root_of(hashes[:12])
    with pytest.raises(ValueError, match="32-byte"):
        built.append(b"\x00" * 33)
    with pytest.raises(ValueError, match="peaks"):
        CompactRange.from_state(3, [hashes[0]])
    with pytest.raises(ValueError, match="32-byte"):
        root_of([hashes[0], b""])
