"""The transparency-dev/merkle known-good vectors and corruption probes, reproduced.

Data in tests/vectors/ (see its README for provenance):
- transparency_dev_merkle.json: hasher checks, leaves, roots of sizes 0..8, node hashes,
  the published inclusion and consistency proofs;
- transparency_dev_{inclusion,consistency}_probes.json: every probe of testdata/ (happy
  paths must verify, every corrupted one must be rejected).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    root_of,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


TREE = _load("transparency_dev_merkle.json")
INCLUSION_PROBES = _load("transparency_dev_inclusion_probes.json")["probes"]
CONSISTENCY_PROBES = _load("transparency_dev_consistency_probes.json")["probes"]
LEAVES = [bytes.fromhex(x) for x in TREE["leaves"]]
LEAF_HASHES = [leaf_hash(x) for x in LEAVES]
ROOTS = [bytes.fromhex(x) for x in TREE["roots_by_size"]]


def _hexes(items: list[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in items]


def test_vector_files_are_complete() -> None:
    assert len(LEAVES) == 8
    assert len(ROOTS) == 9
    assert len(TREE["inclusion_proofs"]) == 5
    assert len(TREE["consistency_proofs"]) == 5
    assert len(INCLUSION_PROBES) == 98
    assert len(CONSISTENCY_PROBES) == 98


def test_hasher_vectors() -> None:
    h = TREE["hasher"]
    assert EMPTY_ROOT.hex() == h["empty_root"] == TREE["empty_root"]
    assert leaf_hash(b"").hex() == h["leaf_hash_of_empty"]
    assert leaf_hash(b"L123456").hex() == h["leaf_hash_of_L123456"]
    assert node_hash(b"N123", b"N456").hex() == h["node_hash_of_N123_N456"]


@pytest.mark.parametrize("size", range(9))
def test_roots_of_sizes_0_to_8(size: int) -> None:
    assert root_of(LEAF_HASHES[:size]) == ROOTS[size]
    built = CompactRange()
    built.extend(LEAF_HASHES[:size])
    assert built.root() == ROOTS[size]
    one_by_one = CompactRange()
    for data in LEAVES[:size]:
        one_by_one.append_leaf(data)
    assert one_by_one.root() == ROOTS[size]
    assert one_by_one.size == size
    assert SubtreeHasher.from_sequence(LEAF_HASHES)(0, size) == ROOTS[size]


def test_node_hashes_by_level() -> None:
    levels = [_hexes(level) for level in TREE["node_hashes_by_level"]]
    assert levels[0] == LEAF_HASHES
    hasher = SubtreeHasher.from_sequence(LEAF_HASHES, cache_level=1)
    for level, hashes in enumerate(levels):
        width = 1 << level
        for index, expected in enumerate(hashes):
            assert hasher(index * width, (index + 1) * width) == expected


def test_compact_range_peaks_match_published_compact_trees() -> None:
    # testonly.CompactTrees(): the compact range after each size, as node hashes.
    levels = [_hexes(level) for level in TREE["node_hashes_by_level"]]
    expected = {
        0: [],
        1: [levels[0][0]],
        2: [levels[1][0]],
        3: [levels[1][0], levels[0][2]],
        4: [levels[2][0]],
        5: [levels[2][0], levels[0][4]],
        6: [levels[2][0], levels[1][2]],
        7: [levels[2][0], levels[1][2], levels[0][6]],
        8: [levels[3][0]],
    }
    built = CompactRange()
    for size in range(9):
        assert list(built.peaks) == expected[size]
        if size < 8:
            built.append(LEAF_HASHES[size])


@pytest.mark.parametrize(
    "vector", TREE["inclusion_proofs"], ids=lambda v: f"index{v['index']}-size{v['size']}"
)
def test_published_inclusion_proofs(vector: dict[str, Any]) -> None:
    index, size = vector["index"], vector["size"]
    expected = _hexes(vector["proof"])
    generated = inclusion_proof(index, size, SubtreeHasher.from_sequence(LEAF_HASHES[:size]))
    assert generated == expected
    verify_inclusion(LEAF_HASHES[index], index, size, expected, ROOTS[size])


@pytest.mark.parametrize(
    "vector", TREE["consistency_proofs"], ids=lambda v: f"{v['size1']}-to-{v['size2']}"
)
def test_published_consistency_proofs(vector: dict[str, Any]) -> None:
    size1, size2 = vector["size1"], vector["size2"]
    expected = _hexes(vector["proof"])
    generated = consistency_proof(size1, size2, SubtreeHasher.from_sequence(LEAF_HASHES[:size2]))
    assert generated == expected
    verify_consistency(size1, size2, expected, ROOTS[size1], ROOTS[size2])


def _probe_id(probe: dict[str, Any]) -> str:
    return str(probe["source"]).removeprefix("testdata/")


@pytest.mark.parametrize("probe", INCLUSION_PROBES, ids=_probe_id)
def test_transparency_dev_inclusion_probe(probe: dict[str, Any]) -> None:
    args = (
        bytes.fromhex(probe["leaf_hash"]),
        probe["index"],
        probe["size"],
        _hexes(probe["proof"]),
        bytes.fromhex(probe["root"]),
    )
    if probe["want_error"]:
        with pytest.raises(InvalidProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("probe", CONSISTENCY_PROBES, ids=_probe_id)
def test_transparency_dev_consistency_probe(probe: dict[str, Any]) -> None:
    args = (
        probe["size1"],
        probe["size2"],
        _hexes(probe["proof"]),
        bytes.fromhex(probe["root1"]),
        bytes.fromhex(probe["root2"]),
    )
    if probe["want_error"]:
        with pytest.raises(InvalidProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_probe_sets_cover_the_corruption_kinds() -> None:
    inclusion = {p["desc"] for p in INCLUSION_PROBES}
    consistency = {p["desc"] for p in CONSISTENCY_PROBES}
    for desc in (
        "leafIdx plus @1",
        "leafIdx sub @1",
        "treeSize mul @2",
        "treeSize div @2",
        "modified proof[0] bit @3",
        "trailing garbage",
        "preceding garbage",
        "removed component",
        "inserted component",
        "wrong leaf",
        "random root",
        "empty root",
    ):
        assert desc in inclusion, desc
    for desc in (
        "size1 plus @1",
        "size1 sub @1",
        "size2 mul @2",
        "size2 div @2",
        "modified proof@0 bit @4",
        "truncated proof",
        "trailing garbage",
        "preceding garbage",
        "swapped roots",
        "wrong root1",
        "wrong root2",
        "size1 is greater than size2",
    ):
        assert desc in consistency, desc
