"""The local store holds exactly a prefix of each changelog partition: its entries and the
next offset move together, survive a reopen, and expired entries are found oldest first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sharing_guard.stream.store import LocalStore, Write

CL = "app-account-state-changelog"


def test_entries_and_position_survive_a_reopen(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s.sqlite3")
    store.apply(CL, 2, 3, [Write(b"a", b"1"), Write(b"b", b"2", 50)], now_ms=10)
    store.close()
    again = LocalStore(tmp_path / "s.sqlite3")
    assert again.position(CL, 2) == 3
    assert again.get(CL, 2, b"a") == b"1"
    assert again.get(CL, 3, b"a") is None  # another partition
    assert again.position(CL, 3) is None


def test_a_tombstone_removes_the_entry(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s.sqlite3", cached=(b"a",))
    store.apply(CL, 0, 1, [Write(b"a", b"1")], now_ms=1)
    assert store.get(CL, 0, b"a") == b"1"  # cached now
    store.apply(CL, 0, 2, [Write(b"a", None)], now_ms=2)
    assert store.get(CL, 0, b"a") is None
    assert store.count(CL) == 0


def test_expired_lists_entries_past_their_expiry_oldest_first(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s.sqlite3")
    writes = [Write(b"late", b"x", 300), Write(b"early", b"x", 100), Write(b"state", b"x")]
    store.apply(CL, 0, 3, writes, now_ms=1)
    assert store.expired(CL, 0, now_ms=301, limit=10) == [b"early", b"late"]
    assert store.expired(CL, 0, now_ms=200, limit=10) == [b"early"]
    assert store.expired(CL, 0, now_ms=301, limit=1) == [b"early"]


def test_a_failed_apply_changes_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s.sqlite3")
    store.apply(CL, 0, 1, [Write(b"a", b"1")], now_ms=1)

    unstorable = Write(b"c", object())  # type: ignore[arg-type]
    with pytest.raises(sqlite3.ProgrammingError):
        store.apply(CL, 0, 5, [Write(b"b", b"2"), unstorable], now_ms=2)
    assert store.position(CL, 0) == 1
    assert store.get(CL, 0, b"b") is None


def test_reset_forgets_the_partition_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s.sqlite3")
    store.apply(CL, 0, 4, [Write(b"a", b"1")], now_ms=1)
    store.apply(CL, 1, 9, [Write(b"a", b"2")], now_ms=1)
    store.reset(CL, 0, 2, now_ms=5)
    assert store.position(CL, 0) == 2
    assert store.get(CL, 0, b"a") is None
    assert store.get(CL, 1, b"a") == b"2"
    assert store.updated_ms(CL, 0) == 5


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([b"k1", b"k2", b"k3"]), st.none() | st.binary(max_size=4)),
        max_size=30,
    )
)
def test_the_store_holds_what_replaying_the_changelog_leaves(
    tmp_path_factory: pytest.TempPathFactory, records: list[tuple[bytes, bytes | None]]
) -> None:
    store = LocalStore(tmp_path_factory.mktemp("s") / "s.sqlite3", cached=(b"k1",), cache_size=2)
    expected: dict[bytes, bytes] = {}
    for offset, (key, value) in enumerate(records):
        store.apply(CL, 0, offset + 1, [Write(key, value)], now_ms=offset)
        if value is None:
            expected.pop(key, None)
        else:
            expected[key] = value
    for key in (b"k1", b"k2", b"k3"):
        assert store.get(CL, 0, key) == expected.get(key)
    assert store.count(CL, [0]) == len(expected)
    assert store.position(CL, 0) == (len(records) or None)
