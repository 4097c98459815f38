"""The real audit service behind the security console, with a populated trail (no tests here).

:func:`console_service` builds, on the real broker and PostgreSQL:

1. a fresh PostgreSQL log and key store (schemas and roles of their own, dropped after);
2. a private Kafka topic holding sample records (:func:`audit_sink.samples.sample_records`)
   and three written for the story a reviewer follows: a **blocked transfer of Virtual
   Drive Data** of :data:`VDD_ACCOUNT` (reason ``VDD_EGRESS_FORBIDDEN`` under clause
   ``C-VDD-NO-SHARING``), an allowed transfer of the same account, and one transfer of
   :data:`ERASED_ACCOUNT`;
3. the real ingest (``audit-sink ingest --stop-at-end``) of that topic, then the real
   erasure (``audit-sink erase``) of :data:`ERASED_ACCOUNT`;
4. the real ``audit-sink serve`` on a free loopback port, in a process of its own.

It yields a :class:`ConsoleService`: the console's address, the token, the published vkey,
and the database owner's SQL on the log (to tamper with it). A screenshot script can use it
the same way (``with console_service(...) as service:``).
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from audit_sink.samples import POLICY_VERSION, sample_records
from audit_sink.signing import create_signing_key
from sharing_guard.audit_trail import audit_record
from sharing_guard.contract.audit import AuditRecord
from sharing_guard.contract.decision import Decision, Reason
from sharing_guard.contract.enums import (
    Clause,
    DataCategory,
    Outcome,
    Purpose,
    ReasonCode,
    RecipientType,
)
from sharing_guard.contract.events import Recipient, TransferRequested
from test_audit_ingest_support import kafka_env, private_topic, produce
from test_audit_support import PgNames, encode, pg_backend

VDD_ACCOUNT: Final = "acct-vdd-reviewed"
VDD_EVENT: Final = "evt-vdd-blocked-1"
VDD_ALLOWED_EVENT: Final = "evt-vdd-account-allowed-1"
VDD_TRACE: Final = "4bf92f3577b34da6a3ce929d0e0e4736"
"""The trace id the blocked VDD transfer's audit record carries (its ``traceparent``)."""
ERASED_ACCOUNT: Final = "acct-erase-me"
ERASED_EVENT: Final = "evt-erased-1"
STORY_AT: Final = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
SAMPLES: Final = 40


@dataclass
class ConsoleService:
    """The running ``audit-sink serve`` over the populated trail."""

    url: str
    """The console's address, ``http://127.0.0.1:<port>/console/``."""
    base: str
    """The API's address, ``http://127.0.0.1:<port>``."""
    token: str
    vkey: str
    origin: str
    env: dict[str, str] = field(repr=False)
    owner: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]] = field(repr=False)
    disable_triggers: Callable[[str], None] = field(repr=False)
    log_path: Path = field(repr=False)

    def index_of(self, event_id: str) -> int:
        """The leaf index of the decision about ``event_id`` (read as the owner)."""
        rows = self.owner("SELECT idx FROM records WHERE audit_id = ?", [f"DECISION:{event_id}"])
        return int(rows[0][0])

    def flip_leaf_byte(self, index: int) -> None:
        """Tamper with the store as the database owner: one byte of a leaf's body changed,
        its triggers disabled first (as an attacker with the owner's rights would)."""
        self.disable_triggers("leaves")
        (leaf,) = self.owner("SELECT leaf FROM leaves WHERE idx = ?", [index])[0]
        leaf = bytes(leaf)
        changed = leaf[:-2] + bytes([leaf[-2] ^ 1]) + leaf[-1:]
        self.owner("UPDATE leaves SET leaf = ? WHERE idx = ?", [changed, index])


def story_records() -> list[AuditRecord]:
    """The records the reviewer looks for (module doc)."""

    def transfer(  # noqa: PLR0917 - one story line each
        event_id: str,
        account: str,
        minutes: int,
        categories: tuple[DataCategory, ...],
        outcome: Outcome,
        reason: tuple[ReasonCode, Clause],
    ) -> AuditRecord:
        event = TransferRequested(
            event_id=event_id,
            occurred_at=STORY_AT.replace(minute=STORY_AT.minute + minutes),
            source_service="drive-sync",
            account_id=account,
            data_categories=categories,
            recipient=Recipient(
                id="rcp-archive-co", type=RecipientType.SUBCONTRACTOR, jurisdiction="DE"
            ),
            purpose=Purpose.DOCUMENT_PROCESSING,
        )
        decision = Decision(
            event_id=event_id,
            outcome=outcome,
            reasons=(Reason(code=reason[0], clause=reason[1]),),
            policy_version=POLICY_VERSION,
        )
        return audit_record(event, decision)

    return [
        transfer(
            VDD_EVENT,
            VDD_ACCOUNT,
            0,
            (DataCategory.PERSONAL_INFORMATION, DataCategory.VIRTUAL_DRIVE_DATA),
            Outcome.BLOCK,
            (ReasonCode.VDD_EGRESS_FORBIDDEN, Clause.VDD_NO_SHARING),
        ),
        transfer(
            VDD_ALLOWED_EVENT,
            VDD_ACCOUNT,
            1,
            (DataCategory.PERSONAL_INFORMATION,),
            Outcome.ALLOW,
            (ReasonCode.PROCESSOR, Clause.PROCESSOR_PURPOSE),
        ),
        transfer(
            ERASED_EVENT,
            ERASED_ACCOUNT,
            2,
            (DataCategory.PERSONAL_INFORMATION,),
            Outcome.ALLOW,
            (ReasonCode.PROCESSOR, Clause.PROCESSOR_PURPOSE),
        ),
    ]


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(env: dict[str, str], *argv: str, timeout: float = 180) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "audit_sink", *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"audit-sink {argv[0]} failed ({result.returncode}): {result.stderr}")
    return result.stderr


def _wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"audit-sink serve exited: {log.read_text(errors='replace')}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("audit-sink serve did not answer /healthz within 60 s")


def _drop(owner_db: Any, names: PgNames) -> None:
    owner_db.execute(f'DROP SCHEMA IF EXISTS "{names.schema}" CASCADE')
    owner_db.execute(f'DROP SCHEMA IF EXISTS "{names.keys_schema}" CASCADE')
    for role in names.roles:
        if owner_db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            owner_db.execute(f'DROP OWNED BY "{role}"')
            owner_db.execute(f'DROP ROLE "{role}"')


@contextlib.contextmanager
def console_service(
    tmp_path: Path, *, pg_dsn: str, kafka_bootstrap: str, samples: int = SAMPLES
) -> Iterator[ConsoleService]:
    """The populated trail served by the real ``audit-sink serve`` (module doc)."""
    import psycopg
    from kafka import KafkaAdminClient

    names = PgNames.fresh()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    process: subprocess.Popen[bytes] | None = None
    topic: str | None = None
    with psycopg.connect(pg_dsn, autocommit=True) as owner_db:
        try:
            backend = pg_backend(pg_dsn, tmp_path, names, owner_db)
            signer = create_signing_key(tmp_path / "signing.key", backend.origin)
            token = "tok_" + base64.urlsafe_b64encode(os.urandom(30)).decode("ascii")
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("AUDIT_SINK_")},
                "AUDIT_SINK_ORIGIN": backend.origin,
                "AUDIT_SINK_DATA_DIR": str(tmp_path / "sink"),
                "AUDIT_SINK_SIGNING_KEY_FILE": str(tmp_path / "signing.key"),
                "AUDIT_SINK_INDEX_KEY": base64.b64encode(os.urandom(32)).decode("ascii"),
                "AUDIT_SINK_VKEY": signer.verifier().vkey,
                "AUDIT_SINK_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
                "AUDIT_SINK_BACKEND": "postgres",
                "AUDIT_SINK_POSTGRES__DSN": pg_dsn,
                "AUDIT_SINK_POSTGRES__SCHEMA_NAME": names.schema,
                "AUDIT_SINK_POSTGRES__ROLE": names.writer,
                "AUDIT_SINK_POSTGRES__READER_ROLE": names.reader,
                "AUDIT_SINK_POSTGRES__KEYS_SCHEMA": names.keys_schema,
                "AUDIT_SINK_POSTGRES__KEYS_ROLE": names.key_role,
                "AUDIT_SINK_VERIFY_WORKERS": "1",
            }
            topic = private_topic(admin, partitions=1)
            env = kafka_env(env, kafka_bootstrap, topic)
            records = [*sample_records(samples, seed=11), *story_records()]
            traced = [("traceparent", f"00-{VDD_TRACE}-00f067aa0ba902b7-01".encode())]
            produce(
                kafka_bootstrap,
                topic,
                [(r.event_id.encode("utf-8"), encode(r)) for r in records],
                [traced if r.event_id == VDD_EVENT else [] for r in records],
            )
            _run(env, "ingest", "--stop-at-end")
            _run(env, "erase", ERASED_ACCOUNT)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            log_path = tmp_path / "serve.log"
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "audit_sink", "serve", "--port", str(port)],
                    env={**env, "AUDIT_SINK_API_TOKEN": token},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            _wait_until_up(base, process, log_path)
            yield ConsoleService(
                url=f"{base}/console/",
                base=base,
                token=token,
                vkey=signer.verifier().vkey,
                origin=backend.origin,
                env=env,
                owner=backend.owner,
                disable_triggers=backend.disable_triggers,
                log_path=log_path,
            )
        finally:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=20)
            if topic is not None:
                with contextlib.suppress(Exception):
                    admin.delete_topics([topic])
            admin.close()
            _drop(owner_db, names)
