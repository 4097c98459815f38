"""No account id is ever stored in clear: not in a leaf, not anywhere in the log or key store.

Accounts come from hypothesis (any Unicode); after each batch the whole log is searched for
each id in UTF-8 and as escaped JSON: the SQLite files byte for byte (WAL included), every
row of every PostgreSQL table as text.
"""

# The fixtures come from test_audit_support; pytest resolves parameters named after them.
# ruff: noqa: F811

from __future__ import annotations

import itertools
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_audit_support import (
    Backend,
    backend,  # noqa: F401
    consumed,
    pg_names,  # noqa: F401
    record,
)

ACCOUNTS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30
).map(lambda s: f"ACCT#{s}")
_counter = itertools.count()


def spellings(account: str) -> list[bytes]:
    escaped = json.dumps(account)[1:-1]
    return [account.encode("utf-8"), escaped.encode("utf-8"), json.dumps(escaped)[1:-1].encode()]


def stored_bytes(backend: Backend, tmp_path: Path) -> bytes:
    if backend.name == "sqlite":
        return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("*.db*")))
    tables = backend.owner(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema LIKE 'audit\\_%' AND table_type = 'BASE TABLE'",
        [],
    )
    dumped = []
    for schema, table in tables:
        rows = backend.owner(f'SELECT t::text FROM "{schema}"."{table}" t', [])
        dumped.extend(row[0].encode("utf-8") for row in rows)
    # bytea columns print as hex: search their decoded bytes too
    for schema, table in tables:
        for column in ("leaf", "sealed", "key"):
            try:
                rows = backend.owner(f'SELECT {column} FROM "{schema}"."{table}"', [])
            except Exception:  # no such column in this table
                continue
            dumped.extend(bytes(row[0]) for row in rows if isinstance(row[0], bytes | memoryview))
    return b"\n".join(dumped)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(accounts=st.lists(ACCOUNTS, min_size=1, max_size=5, unique=True))
def test_no_account_id_is_stored_in_clear(
    backend: Backend, tmp_path: Path, accounts: list[str]
) -> None:
    store, keys = backend.open_store(), backend.open_keys()
    try:
        numbers = [next(_counter) for _ in accounts]
        records = [record(n, account=a) for n, a in zip(numbers, accounts, strict=True)]
        backend.log(store=store, keys=keys).append_batch(consumed(records, start=numbers[0]), {})
    finally:
        store.close()
        keys.close()

    stored = stored_bytes(backend, tmp_path)

    for account in accounts:
        for spelling in spellings(account):
            assert spelling not in stored
    assert backend.verify().ok
