"""Fixtures for tests against the real services: Apache Kafka and PostgreSQL.

``scripts/kafka.sh start`` and ``scripts/postgres.sh start`` run them on loopback. The tests
find them through the environment:

- ``KAFKA_BOOTSTRAP_SERVERS`` (default ``127.0.0.1:19092``, what ``kafka.sh`` prints);
- ``SHARING_GUARD_TEST_PG_DSN`` (default the DSN ``postgres.sh`` prints, built with the
  test-only password ``PGPASSWORD_TEST``, default ``sharing_guard``).

When a service does not answer, its tests **fail** if ``CI`` is set or ``REQUIRE_SERVICES=1``
(a CI run must not pass by skipping), and are skipped otherwise, the reason naming the
script that starts the service. Nothing connects at import time.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:19092"
CONNECT_TIMEOUT_S = 5


def _services_required() -> bool:
    ci = os.environ.get("CI", "").strip().lower()
    return ci not in ("", "0", "false", "no") or os.environ.get("REQUIRE_SERVICES") == "1"


def _unavailable(service: str, address: str, script: str, problem: object) -> NoReturn:
    message = f"{service} is not reachable at {address} ({problem}); start it with `{script}`"
    if _services_required():
        pytest.fail(f"{message} [services are required: CI or REQUIRE_SERVICES=1]")
    pytest.skip(message)


def load_topics_module() -> ModuleType:
    """``scripts/kafka/topics.py``, the one reader of the topic declarations."""
    path = REPO_ROOT / "scripts" / "kafka" / "topics.py"
    name = "sharing_guard_dev_kafka_topics"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The bootstrap address of a broker that answers a metadata request."""
    from kafka import KafkaAdminClient

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA_BOOTSTRAP)
    problem: Exception | None = None
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=CONNECT_TIMEOUT_S * 1000,
            bootstrap_timeout_ms=CONNECT_TIMEOUT_S * 1000,
        )
        try:
            admin.describe_cluster()
        finally:
            admin.close()
    except Exception as exc:  # any failure to reach the broker
        problem = exc
    if problem is not None:  # reported outside the handler: no chained traceback
        _unavailable("Kafka", bootstrap, "scripts/kafka.sh start", problem)
    return bootstrap


@pytest.fixture
def kafka_admin(kafka_bootstrap: str) -> Iterator[Any]:
    """A kafka-python admin client on the test broker, closed afterwards."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    yield admin
    admin.close()


@pytest.fixture(scope="session")
def declared_partitions() -> dict[str, int]:
    """Topic name to partition count, as declared (overrides from the environment applied)."""
    topics = load_topics_module()
    return {spec.name: spec.partitions for spec in topics.load_topic_specs()}


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The DSN of a PostgreSQL server that accepts a connection."""
    import psycopg

    password = os.environ.get("PGPASSWORD_TEST", "sharing_guard")
    default = f"postgresql://sharing_guard:{password}@127.0.0.1:5432/sharing_guard_test"
    dsn = os.environ.get("SHARING_GUARD_TEST_PG_DSN", default)
    problem: psycopg.Error | None = None
    try:
        psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S).close()
    except psycopg.Error as exc:
        problem = exc
    if problem is not None:
        shown = psycopg.conninfo.make_conninfo(dsn, password="***")
        _unavailable("PostgreSQL", shown, "scripts/postgres.sh start", problem)
    return dsn


@pytest.fixture
def pg_connection(pg_dsn: str) -> Iterator[Any]:
    """A connection to the test database; its transaction is rolled back afterwards."""
    import psycopg

    with psycopg.connect(pg_dsn, connect_timeout=CONNECT_TIMEOUT_S) as connection:
        yield connection
        connection.rollback()
