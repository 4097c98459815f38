"""How fast the audit sink appends, verifies and proves, with baselines from the same run.

    .venv/bin/python benchmarks/audit_bench.py                 # 100,000 entries
    .venv/bin/python benchmarks/audit_bench.py --quick         # 10,000 entries: a smoke test
    .venv/bin/python benchmarks/audit_bench.py --entries 200000 --repeat 5 --append-rounds 5

1. **Durable appends.** ``--entries`` realistic audit records
   (:func:`audit_sink.samples.sample_records`, Avro-encoded as the guard publishes them, over
   three partitions) go through :meth:`audit_sink.writer.AuditLog.append_batch` in batches of
   ``--batch``, each batch one committed transaction (SQLite: WAL, ``synchronous=FULL``;
   PostgreSQL: ``synchronous_commit`` as the server has it), checkpoint signed per batch.
   Timed: decoding, planning, sealing, hashing, signing, the database. Twice: plain
   ``append_batch`` calls, and as ``audit-sink ingest`` runs them, each batch prepared
   (decoded, MACs, canonical texts: :class:`audit_sink.prepare.PreparePool`) in a helper
   process while the previous one is stored (CPU time then counts this process only).
   Then the **baseline**:
   the very rows the writer stored, read back, inserted into a fresh database of the same
   kind and schema (tables, indexes, triggers) in the same batches and transactions, the
   plainest bulk way (SQLite ``executemany``, PostgreSQL binary ``COPY``). The ratio says
   what the sink adds on top of the database. The three run in ``--append-rounds``
   interleaved rounds (default 5), each into fresh databases; the figures are each way's
   median round, so one disturbed run (a checkpoint of the WAL, a neighbour's burst of
   fsyncs) moves neither side of the ratio.
2. **Full verification** of the SQLite and the PostgreSQL log just written, serial and with
   one helper process per CPU (``--repeat`` runs each, interleaved; median and best).
3. **Proofs at 1,000,000 entries** (``--proof-entries``): built over the Merkle tree alone,
   not a store (1M leaf hashes: one real record leaf at the proven index, the others
   SHA-256 of their index; the proof depends only on the tree). Reported: the size of a
   C2SP tlog-proof bundle (inclusion proof and signed checkpoint), the time to check it
   as a third party does (:func:`audit_sink.proof_bundle.open_proof_bundle`: signature and
   inclusion), and the size and check time of a consistency proof from half the log.

Wall-clock rates plus ``cpu``, the CPU time over the wall time (children included for the
parallel verification): on a shared machine, a ``cpu`` well below the number of busy
processes means the run waited for a core. Everything is written to
``benchmarks/out/audit.json`` (``audit-quick.json`` for ``--quick``). PostgreSQL is found
through ``SHARING_GUARD_TEST_PG_DSN`` (default: the DSN ``scripts/postgres.sh`` prints); it
is skipped, and said so, when it does not answer.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_sink._sql import APPENDED_COLUMNS, PG_COPY_TYPES, insert_sql
from audit_sink.archive import CheckpointArchive
from audit_sink.checkpoint import NoteSigner, sign_checkpoint
from audit_sink.keystore import KeyStore
from audit_sink.leaf import EntryType, Source, encode_leaf, record_body
from audit_sink.merkle import (
    CompactRange,
    SubtreeHasher,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
)
from audit_sink.plan import ConsumedRecord
from audit_sink.prepare import PreparePool
from audit_sink.proof_bundle import build_proof_bundle, open_proof_bundle
from audit_sink.samples import sample_records
from audit_sink.sealing import IndexKey
from audit_sink.store import LogStore
from audit_sink.verification import verify_log
from audit_sink.writer import AuditLog, CheckpointPolicy
from sharing_guard.codec import contract_registry

OUT = Path(__file__).resolve().parent / "out"
TOPIC = "governance.audit"
TARGET_RATIO = 0.6
"""The sink's appends should reach this share of the plain insert's rate, same run (the
ingest's way, with the helper process, is the one that counts)."""
DEFAULT_PG_DSN = "postgresql://sharing_guard:sharing_guard@127.0.0.1:5432/sharing_guard_test"


@dataclass
class Timing:
    """One timed run: wall seconds and CPU seconds (this process and its children)."""

    wall: float
    cpu: float

    def rate(self, count: int) -> float:
        return count / self.wall


@contextmanager
def timed(into: list[Timing]) -> Iterator[None]:
    gc.collect()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu, wall = time.process_time(), time.perf_counter()
    yield
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    into.append(Timing(wall, time.process_time() - cpu + child))


@dataclass
class Figure:
    """A rate with its runs."""

    name: str
    count: int
    runs: list[Timing] = field(default_factory=list)

    @property
    def median(self) -> float:
        return self.count / statistics.median(t.wall for t in self.runs)

    @property
    def best(self) -> float:
        return self.count / min(t.wall for t in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(t.cpu / t.wall for t in self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "per_s_median": round(self.median),
            "per_s_best": round(self.best),
            "cpu_over_wall": round(self.cpu, 2),
            "runs": [{"wall_s": round(t.wall, 4), "cpu_s": round(t.cpu, 4)} for t in self.runs],
        }


@dataclass
class Runs:
    """The append runs of one store, round by round: the ingest's way (``piped``), plain
    ``append_batch`` (``sink``) and the plain insert of the same rows (``plain``)."""

    sink: list[Timing] = field(default_factory=list)
    piped: list[Timing] = field(default_factory=list)
    plain: list[Timing] = field(default_factory=list)

    @staticmethod
    def median(runs: Sequence[Timing]) -> Timing:
        """The run of median wall time (the lower middle one for an even count)."""
        ordered = sorted(runs, key=lambda t: t.wall)
        return ordered[(len(ordered) - 1) // 2]

    def ratios(self, runs: Sequence[Timing]) -> list[float]:
        """Each round's plain wall time over that round's ``runs`` wall time."""
        return [p.wall / t.wall for p, t in zip(self.plain, runs, strict=True)]


# -- the workload --------------------------------------------------------------------------


def workload(count: int) -> list[ConsumedRecord]:
    """``count`` realistic records as consumed from three partitions."""
    registry = contract_registry()
    offsets = [0, 0, 0]
    consumed = []
    for n, record in enumerate(sample_records(count, seed=2026)):
        partition = n % 3
        consumed.append(
            ConsumedRecord(TOPIC, partition, offsets[partition], registry.encode(record))
        )
        offsets[partition] += 1 + (n % 7 == 0)  # offset gaps are normal
    return consumed


def positions(batch: Sequence[ConsumedRecord]) -> dict[tuple[str, int], int]:
    found: dict[tuple[str, int], int] = {}
    for item in batch:
        found[(item.topic, item.partition)] = item.offset + 1
    return found


def append_all(
    log: AuditLog, consumed: Sequence[ConsumedRecord], batch: int, pool: PreparePool | None
) -> None:
    """Append in batches; with a ``pool``, as the ingest does: each batch prepared in the
    helper process while the previous one is stored."""
    parts = [consumed[start : start + batch] for start in range(0, len(consumed), batch)]
    ahead = None if pool is None else pool.submit([m.value for m in parts[0]])
    for number, part in enumerate(parts):
        prepared = None
        if ahead is not None and pool is not None:
            prepared = ahead.result()
            if number + 1 < len(parts):
                ahead = pool.submit([m.value for m in parts[number + 1]])
        result = log.append_batch(part, positions(part), prepared)
        if len(result.appended) != len(part):
            raise SystemExit("the writer skipped records of a fresh stream: not a fair run")


@dataclass
class StoredRows:
    """What the writer stored, read back, per table, for the baseline."""

    leaves: list[tuple[Any, ...]]
    payloads: list[tuple[Any, ...]]
    records: list[tuple[Any, ...]]
    sources: list[tuple[Any, ...]]

    def batches(self, size: int, total: int) -> Iterator[tuple[list[tuple[Any, ...]], ...]]:
        """The rows of entries ``[k*size, (k+1)*size)``, table by table."""
        cursors = [0, 0, 0, 0]
        tables = (self.leaves, self.payloads, self.records, self.sources)
        index_column = (0, 0, 0, 4)
        for end in range(size, total + size, size):
            out = []
            for t, rows in enumerate(tables):
                start = cursors[t]
                stop = start
                column = index_column[t]
                while stop < len(rows) and rows[stop][column] < end:
                    stop += 1
                out.append(rows[start:stop])
                cursors[t] = stop
            yield tuple(out)


TABLES = ("leaves", "payloads", "records", "sources")
"""The tables an append of records writes, in the order :class:`StoredRows` holds them."""


def read_back(query: Callable[[str], list[tuple[Any, ...]]]) -> StoredRows:
    return StoredRows(
        *(
            query(f"SELECT {', '.join(APPENDED_COLUMNS[table])} FROM {table} ORDER BY {order}")
            for table, order in (
                ("leaves", "idx"),
                ("payloads", "idx"),
                ("records", "idx"),
                ("sources", "idx, topic, part, off"),
            )
        )
    )


def read_back_sqlite(path: Path) -> StoredRows:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return read_back(lambda sql: db.execute(sql).fetchall())
    finally:
        db.close()


INDEX_KEY = IndexKey(os.urandom(32))


def writer(store: LogStore, keys: KeyStore, directory: Path, signer: NoteSigner) -> AuditLog:
    return AuditLog(
        store=store,
        keys=keys,
        index_key=INDEX_KEY,
        signer=signer,
        archive=CheckpointArchive(directory / "checkpoints"),
        policy=CheckpointPolicy(every=1000, each_batch=True),
    )


# -- SQLite --------------------------------------------------------------------------------


def sqlite_run(
    consumed: Sequence[ConsumedRecord], batch: int, directory: Path, pool: PreparePool, rounds: int
) -> tuple[Runs, Path, str, NoteSigner]:
    """``rounds`` interleaved rounds of: the ingest's way (helper), plain ``append_batch``,
    the plain insert of the rows the writer stored. The last round's log is kept (and
    verified); the others are deleted as soon as their round ends."""
    import sqlite3

    from audit_sink.keystore_sqlite import SqliteKeyStore
    from audit_sink.store_sqlite import SCHEMA_SQL, SqliteLogStore

    origin = f"audit.bench.invalid/{uuid.uuid4().hex}"
    signer = NoteSigner.generate(origin)
    runs = Runs()
    rows: StoredRows | None = None
    kept = directory
    for number in range(rounds):
        here = directory / f"round-{number}"
        for name, helper, into in (("piped", pool, runs.piped), ("sink", None, runs.sink)):
            (here / name).mkdir(parents=True)
            store = SqliteLogStore(here / name / "log.db", origin)
            keys = SqliteKeyStore(here / name / "keys.db")
            log = writer(store, keys, here / name, signer)
            with timed(into):
                append_all(log, consumed, batch, helper)
            keys.close()
            store.close()
        if rows is None:
            rows = read_back_sqlite(here / "sink" / "log.db")
        plain_db = sqlite3.connect(here / "plain.db", isolation_level=None)
        plain_db.execute("PRAGMA journal_mode = WAL")
        plain_db.execute("PRAGMA synchronous = FULL")
        plain_db.execute("PRAGMA foreign_keys = ON")
        plain_db.execute("PRAGMA cache_size = -65536")  # as the store's writer connection
        plain_db.executescript(SCHEMA_SQL)
        with timed(runs.plain):
            for part in rows.batches(batch, len(consumed)):
                plain_db.execute("BEGIN IMMEDIATE")
                for table, table_rows in zip(TABLES, part, strict=True):
                    plain_db.executemany(insert_sql(table, "?"), table_rows)
                plain_db.execute("COMMIT")
        plain_db.close()
        if number + 1 < rounds:
            shutil.rmtree(here)
        kept = here / "sink"
    return runs, kept / "log.db", origin, signer


# -- PostgreSQL ----------------------------------------------------------------------------


def pg_reachable(dsn: str) -> str | None:
    import psycopg

    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return None


def pg_run(  # noqa: PLR0917 (sqlite_run's arguments and the DSN)
    consumed: Sequence[ConsumedRecord],
    batch: int,
    directory: Path,
    dsn: str,
    pool: PreparePool,
    rounds: int,
) -> tuple[Runs, str, str, NoteSigner, Callable[[], None]]:
    """As :func:`sqlite_run`, on PostgreSQL (plain insert: binary ``COPY``); a schema per
    log, all dropped by the returned ``drop``."""
    import psycopg
    from audit_sink.keystore_postgres import PostgresKeyStore
    from audit_sink.pg_schema import keystore_schema_sql, log_schema_sql
    from audit_sink.store_postgres import PostgresLogStore

    suffix = uuid.uuid4().hex[:10]
    keys_schema = f"audit_bench_k_{suffix}"
    schemas: list[str] = [keys_schema]

    def drop() -> None:
        with psycopg.connect(dsn, autocommit=True) as owner:
            for name in schemas:
                owner.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def fresh(kind: str, number: int) -> str:
        name = f"audit_bench_{kind}{number}_{suffix}"
        schemas.append(name)
        with psycopg.connect(dsn, autocommit=True) as owner:
            owner.execute(log_schema_sql(name))
        return name

    with psycopg.connect(dsn, autocommit=True) as owner:
        owner.execute(keystore_schema_sql(keys_schema))
    origin = f"audit.bench.invalid/{uuid.uuid4().hex}"
    signer = NoteSigner.generate(origin)
    runs = Runs()
    rows: StoredRows | None = None
    kept = ""
    for number in range(rounds):
        for kind, helper, into in (("i", pool, runs.piped), ("s", None, runs.sink)):
            name = fresh(kind, number)
            store = PostgresLogStore(dsn, name, origin)
            keys = PostgresKeyStore(dsn, keys_schema)
            log = writer(store, keys, directory / name, signer)
            with timed(into):
                append_all(log, consumed, batch, helper)
            keys.close()
            store.close()
            kept = name
        plain_schema = fresh("p", number)
        with psycopg.connect(dsn, autocommit=True) as db:
            if rows is None:
                db.execute(f'SET search_path TO "{kept}"')
                rows = read_back(lambda sql: db.execute(sql).fetchall())
            db.execute(f'SET search_path TO "{plain_schema}"')
            with timed(runs.plain):
                for part in rows.batches(batch, len(consumed)):
                    with db.transaction(), db.cursor() as cursor:
                        for table, table_rows in zip(TABLES, part, strict=True):
                            if not table_rows:
                                continue
                            names = ", ".join(APPENDED_COLUMNS[table])
                            sql = f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)"
                            with cursor.copy(sql) as copy:
                                copy.set_types(list(PG_COPY_TYPES[table]))
                                for row in table_rows:
                                    copy.write_row(row)
    return runs, kept, origin, signer, drop


# -- verification --------------------------------------------------------------------------


def read_and_hash(reader: Any) -> int:
    """The floor of any verification of the log: read every leaf and payload row of one
    snapshot (the verifier's own chunked reads) and hash each leaf as RFC 6962 does
    (``SHA-256(0x00 || leaf)``) and each payload; nothing else checked. The rows read."""
    import hashlib

    rows = 0
    for chunk in reader.leaf_chunks(16384):
        for _, leaf, _ in chunk:
            hashlib.sha256(b"\x00" + leaf).digest()
        rows += len(chunk)
    for chunk in reader.payload_chunks(16384):
        for _, sealed in chunk:
            hashlib.sha256(sealed).digest()
        rows += len(chunk)
    return rows


def verify_runs(
    open_store: Callable[[], LogStore],
    signer: NoteSigner,
    count: int,
    repeat: int,
    label: str,
) -> tuple[Figure, Figure, Figure]:
    """Full verification, serial and in parallel, and the read-and-hash floor of the same
    rows, interleaved ``repeat`` times."""
    floor = Figure(f"read and hash {label} (floor)", count)
    serial = Figure(f"verify {label}, serial", count)
    from audit_sink.verification import DEFAULT_SEGMENT

    ways = f"{os.cpu_count()} processes"
    if count < 2 * DEFAULT_SEGMENT:
        ways += f" (serial below {2 * DEFAULT_SEGMENT:,})"
    parallel = Figure(f"verify {label}, {ways}", count)
    for _ in range(repeat):
        store = open_store()
        try:
            with timed(floor.runs), store.reader() as reader:
                read_and_hash(reader)
        finally:
            store.close()
        for figure, workers in ((serial, 1), (parallel, 0)):
            store = open_store()
            try:
                with timed(figure.runs), store.reader() as reader:
                    report = verify_log(
                        reader,
                        trusted_keys=[signer.verifier()],
                        origin=store.origin,
                        workers=workers,
                    )
            finally:
                store.close()
            if not report.ok or report.size != count:
                raise SystemExit(f"{label}: the log does not verify: {report.first}")
    return serial, parallel, floor


# -- proofs --------------------------------------------------------------------------------


def proof_figures(size: int, checks: int) -> dict[str, Any]:
    """Inclusion and consistency proofs over a tree of ``size`` leaves (see the doc)."""
    origin = f"audit.bench.invalid/{uuid.uuid4().hex}"
    signer = NoteSigner.generate(origin)
    target = size - size // 3
    record = next(iter(sample_records(1, seed=5)))
    leaf = encode_leaf(
        EntryType.RECORD,
        index=target,
        prev=bytes(32),
        payload_digest=leaf_hash(b"sealed payload"),
        source=Source(TOPIC, 1, target),
        body=record_body(record, sealed=True),
    )
    started = time.perf_counter()
    hashes = [leaf_hash(i.to_bytes(8, "big")) for i in range(size)]
    hashes[target] = leaf_hash(leaf)
    tree = CompactRange()
    tree.extend(hashes)
    older = size * 5 // 8 + 1  # a typical earlier size (not a power of two)
    half = CompactRange()
    half.extend(hashes[:older])
    build_s = time.perf_counter() - started
    hasher = SubtreeHasher.from_sequence(hashes, cache_level=8)
    proof = inclusion_proof(target, size, hasher)
    note = sign_checkpoint(origin, size, tree.root(), signer)
    bundle = build_proof_bundle(target, proof, note, extra=leaf)
    trusted = [signer.verifier()]
    timings = []
    for _ in range(checks):
        started = time.perf_counter()
        open_proof_bundle(bundle, leaf, trusted, origin)
        timings.append(time.perf_counter() - started)
    consistency = consistency_proof(older, size, hasher)
    ctimings = []
    for _ in range(checks):
        started = time.perf_counter()
        verify_consistency(older, size, consistency, half.root(), tree.root())
        ctimings.append(time.perf_counter() - started)
    return {
        "tree_size": size,
        "tree_built_from": "leaf hashes in memory (CompactRange + SubtreeHasher), no store",
        "tree_build_s": round(build_s, 2),
        "inclusion_proof_hashes": len(proof),
        "inclusion_proof_bytes": 32 * len(proof),
        "bundle_bytes": len(bundle.encode("utf-8")),
        "bundle_bytes_without_leaf": len(build_proof_bundle(target, proof, note).encode()),
        "bundle_check_us_median": round(statistics.median(timings) * 1e6, 1),
        "consistency_from": older,
        "consistency_proof_hashes": len(consistency),
        "consistency_proof_bytes": 32 * len(consistency),
        "consistency_check_us_median": round(statistics.median(ctimings) * 1e6, 1),
    }


# -- the machine and the report --------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    free = ""
    if shutil.which("free"):
        free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "free_h": free.strip(),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<52} {value:>16}  {note}")


def measure_stores(
    args: argparse.Namespace, dsn: str, results: dict[str, Any]
) -> tuple[dict[str, Runs], list[Figure]]:
    """Appends and verification on SQLite, then on PostgreSQL if it answers."""
    from audit_sink.store_postgres import PostgresLogStore
    from audit_sink.store_sqlite import SqliteLogStore

    consumed = workload(args.entries)
    figures: list[Figure] = []
    appends: dict[str, Runs] = {}
    workdir = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    pool = PreparePool(INDEX_KEY)
    try:
        appends["sqlite"], path, origin, signer = sqlite_run(
            consumed, args.batch, workdir / "sqlite", pool, args.append_rounds
        )
        figures.extend(
            verify_runs(
                lambda: SqliteLogStore(path, origin, read_only=True),
                signer,
                args.entries,
                args.repeat,
                "SQLite",
            )
        )
        reason = "--no-postgres" if args.no_postgres else pg_reachable(dsn)
        if reason is not None:
            print(f"  PostgreSQL skipped: {reason}")
            results["postgres_skipped"] = reason
            return appends, figures
        runs, schema, pg_origin, pg_signer, drop = pg_run(
            consumed, args.batch, workdir / "postgres", dsn, pool, args.append_rounds
        )
        try:
            appends["postgres"] = runs
            figures.extend(
                verify_runs(
                    lambda: PostgresLogStore(dsn, schema, pg_origin),
                    pg_signer,
                    args.entries,
                    args.repeat,
                    "PostgreSQL",
                )
            )
        finally:
            drop()
    finally:
        pool.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return appends, figures


def report_verify_ratios(figures: Sequence[Figure]) -> dict[str, float]:
    """Each verification's median rate over the read-and-hash floor of the same store."""
    print("\nverification over the read-and-hash floor of the same rows (target 0.6)")
    ratios: dict[str, float] = {}
    for store in ("SQLite", "PostgreSQL"):
        floor = next((f for f in figures if f.name == f"read and hash {store} (floor)"), None)
        if floor is None:
            continue
        for figure in figures:
            if figure.name.startswith(f"verify {store}"):
                ratio = figure.median / floor.median
                ratios[figure.name] = round(ratio, 3)
                verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
                line(figure.name, f"{ratio:.3f}", f"{verdict} 0.6")
    return ratios


def report_appends(appends: dict[str, Runs], entries: int, results: dict[str, Any]) -> None:
    """Each way's median round, and the ratios of the medians (each round's own ratio,
    lowest and highest, beside them)."""
    rounds = max((len(r.plain) for r in appends.values()), default=0)
    print(
        "\ndurable appends (one transaction per batch, a checkpoint signed per batch; "
        f"`audit-sink ingest` appends with the helper; median of {rounds} interleaved round(s))"
    )
    results["appends"] = {}
    for name, runs in appends.items():
        sink, piped, plain = (Runs.median(r) for r in (runs.sink, runs.piped, runs.plain))
        for label, timing in (
            ("append_batch", sink),
            ("append_batch, next batch prepared in a helper (ingest)", piped),
            ("plain batched insert of the same rows", plain),
        ):
            line(
                f"{name}: {label}",
                f"{timing.rate(entries):,.0f}/s",
                f"cpu {timing.cpu / timing.wall:.2f}, {timing.cpu / entries * 1e6:.0f} µs/entry",
            )
        for label, timing, each in (
            ("append_batch / plain", sink, runs.ratios(runs.sink)),
            ("as the ingest runs it (helper) / plain", piped, runs.ratios(runs.piped)),
        ):
            ratio = plain.wall / timing.wall
            verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
            spread = f"rounds {min(each):.2f}-{max(each):.2f}"
            line(f"{name}: {label}", f"{ratio:.3f}", f"{verdict} {TARGET_RATIO}; {spread}")
        results["appends"][name] = {
            kind: {
                "per_s": round(timing.rate(entries)),
                "cpu_over_wall": round(timing.cpu / timing.wall, 2),
                "cpu_us_per_entry": round(timing.cpu / entries * 1e6, 1),
                "rounds_per_s": [round(entries / t.wall) for t in every],
            }
            for kind, timing, every in (
                ("append_batch", sink, runs.sink),
                ("pipelined", piped, runs.piped),
                ("plain", plain, runs.plain),
            )
        }
        results["appends"][name]["append_batch_over_plain"] = round(plain.wall / sink.wall, 3)
        results["appends"][name]["pipelined_over_plain"] = round(plain.wall / piped.wall, 3)
        results["appends"][name]["pipelined_over_plain_rounds"] = [
            round(r, 3) for r in runs.ratios(runs.piped)
        ]
        results["appends"][name]["target_ratio"] = TARGET_RATIO
        results["appends"][name]["ingest_meets_target"] = plain.wall / piped.wall >= TARGET_RATIO


def report_proofs(proofs: dict[str, Any]) -> None:
    print(
        f"\nproofs at {proofs['tree_size']:,} entries (tree built in memory in "
        f"{proofs['tree_build_s']} s)"
    )
    line(
        "inclusion proof",
        f"{proofs['inclusion_proof_hashes']} hashes",
        f"{proofs['inclusion_proof_bytes']} bytes",
    )
    line(
        "tlog-proof bundle (proof, leaf, signed checkpoint)",
        f"{proofs['bundle_bytes']} bytes",
        f"{proofs['bundle_bytes_without_leaf']} bytes without the leaf",
    )
    line("bundle check (signature + inclusion)", f"{proofs['bundle_check_us_median']} µs", "median")
    line(
        f"consistency proof from {proofs['consistency_from']:,} entries",
        f"{proofs['consistency_proof_hashes']} hashes",
        f"{proofs['consistency_proof_bytes']} bytes, "
        f"checked in {proofs['consistency_check_us_median']} µs",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000, help="records per transaction")
    parser.add_argument("--repeat", type=int, default=3, help="verification runs per way")
    parser.add_argument(
        "--append-rounds", type=int, default=5, help="interleaved rounds of the three appends"
    )
    parser.add_argument("--proof-entries", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="10,000 entries, one run each")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.entries, args.repeat, args.proof_entries = 10_000, 1, 1 << 16
        args.append_rounds = 1
    dsn = os.environ.get("SHARING_GUARD_TEST_PG_DSN", DEFAULT_PG_DSN)
    results: dict[str, Any] = {
        "machine": machine(),
        "entries": args.entries,
        "batch": args.batch,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(
        f"audit sink benchmark: {args.entries:,} entries, batches of {args.batch:,}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    appends, figures = measure_stores(args, dsn, results)
    report_appends(appends, args.entries, results)
    print("\nfull verification (entries/s: median, best)")
    for figure in figures:
        line(
            figure.name,
            f"{figure.median:,.0f}/s",
            f"best {figure.best:,.0f}/s, cpu {figure.cpu:.2f}",
        )
    results["verification"] = [f.as_dict() for f in figures]
    results["verification_ratios"] = report_verify_ratios(figures)
    proofs = proof_figures(args.proof_entries, checks=200 if args.quick else 1000)
    results["proofs"] = proofs
    report_proofs(proofs)
    results["load_average_after"] = os.getloadavg()
    OUT.mkdir(exist_ok=True)
    out = OUT / ("audit-quick.json" if args.quick else "audit.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
