"""Crash test of the ingest: ``audit-sink ingest`` killed with SIGKILL again and again.

A stream of 50,000 realistic audit records (:func:`audit_sink.samples.sample_records`) is
produced to a private three-partition topic, paced so that the sink is always chasing it
(and gated by the kills, so that each restarted sink has new records to take).
The sink runs as a subprocess (configured only by ``AUDIT_SINK_*`` variables) and is killed
with SIGKILL at a random moment 0.5 to 2 s after it has shown progress, then restarted, at
least ten times while the stream still flows; finally it catches up and is stopped with
SIGTERM, which it must honour (exit 0). Then the log must hold every record exactly once
(by Kafka position and by audit_id), each partition's records in offset order, and
``audit-sink verify`` (also against the archived checkpoints) must pass.

Nothing here is timed: the pacing and kill delays only choose *when* to crash, and every
wait is for a condition, bounded by a generous deadline.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from audit_sink.leaf import EntryType
from audit_sink.samples import sample_records
from sharing_guard.codec import contract_registry
from test_audit_ingest_support import (
    SinkRig,
    produce,
    rig,  # noqa: F401
)
from test_audit_support import (
    backend,  # noqa: F401
    pg_names,  # noqa: F401
)

pytestmark = pytest.mark.kafka

RECORDS = 50_000
WAVES = 50
MIN_KILLS = 10
DEADLINE_S = 900


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    state: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``condition`` until it holds (``pytest.fail`` after ``timeout`` seconds, with
    what ``state`` says of the moment)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what} {state()}".rstrip())
        time.sleep(0.05)


def waves_allowed(kills: int) -> int:
    """How many waves the producer may send once the sink has been killed ``kills`` times:
    a share more after each kill, all of them only after the last required kill."""
    return WAVES if kills >= MIN_KILLS else WAVES * (kills + 1) // (MIN_KILLS + 1)


class PacedProducer(threading.Thread):
    """Produces the stream in waves, paced, so that the sink is killed while records still
    arrive. The waves are also gated by the kills (:func:`waves_allowed`): each kill lets a
    few more waves out, so every one of the first ``MIN_KILLS`` kills hits a sink whose
    stream is not complete, and every restarted sink has records it has never seen (a sink
    that had stored everything the gate let out could make no progress)."""

    def __init__(self, bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
        super().__init__(name="paced-producer", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.values = values
        self.placed: list[tuple[int, int]] = []
        self.error: BaseException | None = None
        self._kills = 0
        self._gate = threading.Condition()

    def killed(self, kills: int) -> None:
        """The sink has now been killed ``kills`` times: let the next waves out."""
        with self._gate:
            self._kills = kills
            self._gate.notify_all()

    def run(self) -> None:
        try:
            size = -(-len(self.values) // WAVES)
            for wave, start in enumerate(range(0, len(self.values), size)):
                with self._gate:
                    self._gate.wait_for(
                        lambda: wave < waves_allowed(self._kills),  # noqa: B023
                        timeout=DEADLINE_S,
                    )
                self.placed += produce(
                    self.bootstrap, self.topic, self.values[start : start + size]
                )
                time.sleep(0.3)
        except BaseException as exc:  # re-raised by the test
            self.error = exc


def kill_repeatedly(on: SinkRig, producer: PacedProducer, rng: random.Random) -> int:
    """SIGKILL the sink 0.5-2 s after each start's first progress, at least ``MIN_KILLS``
    times and for as long as the stream flows; return the kills made while the stream was
    not yet complete or not yet fully stored."""
    deadline = time.monotonic() + DEADLINE_S
    kills = mid_stream = 0

    def drained() -> bool:  # the whole stream is out and stored: nothing left to crash in
        return not producer.is_alive() and on.consumed() >= RECORDS

    while (kills < MIN_KILLS or producer.is_alive()) and time.monotonic() < deadline:
        before = on.consumed()
        sink = on.start("ingest")
        wait_for(
            lambda: on.consumed() > before or sink.poll() is not None or drained(),  # noqa: B023
            timeout=120,
            what="the sink to make progress",
            state=lambda: (
                f"(start {kills + 1}: {on.consumed()} positions stored, "  # noqa: B023
                f"{len(producer.placed)} records produced, producer "
                f"{'running' if producer.is_alive() else 'done'}, error {producer.error!r})"
            ),
        )
        assert sink.poll() is None, f"the sink exited ({sink.returncode}); see sink.log"
        if drained() and on.consumed() == before:
            sink.send_signal(signal.SIGKILL)
            sink.wait(timeout=30)
            break
        time.sleep(rng.uniform(0.5, 2.0))
        complete = drained()
        sink.send_signal(signal.SIGKILL)
        sink.wait(timeout=30)
        # Nothing of a killed sink lingers (its preparing helper holds the batch in hand).
        wait_for(
            lambda: not on.session_alive(sink),  # noqa: B023
            timeout=60,
            what="the killed sink's helper processes to exit",
            state=lambda: f"(still alive: {on.session_alive(sink)})",  # noqa: B023
        )
        kills += 1
        mid_stream += not complete
        producer.killed(kills)
    producer.killed(MIN_KILLS)
    return mid_stream


def check_exactly_once(on: SinkRig, placed: list[tuple[int, int]], audit_ids: list[str]) -> None:
    """Every produced record stored once, at its position, each partition in offset order."""
    # Exactly once, by Kafka position...
    sources = on.sources()
    positions = Counter((p, o) for p, o, _ in sources)
    assert len(sources) == RECORDS
    assert set(positions) == set(placed)
    assert max(positions.values()) == 1
    # ... and by audit_id, each record at the position it was produced at.
    produced = dict(zip(placed, audit_ids, strict=True))
    stored = on.sql("SELECT audit_id, idx FROM records")
    assert sorted(a for a, _ in stored) == sorted(audit_ids)
    by_index = {idx: (p, o) for p, o, idx in sources}
    assert all(produced[by_index[int(idx)]] == audit_id for audit_id, idx in stored)
    # Every entry is a record, and each partition's records are in offset order.
    entries = on.leaf_sources()
    assert [e[0] for e in entries] == list(range(RECORDS))
    assert {e[1] for e in entries} == {int(EntryType.RECORD)}
    for partition in range(3):
        offsets = [o for _, _, p, o in entries if p == partition]
        assert offsets == sorted(offsets)
        assert offsets == sorted(o for p, o in placed if p == partition)


def test_sigkill_many_times_loses_and_duplicates_nothing(rig: SinkRig) -> None:  # noqa: F811
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"kill schedule seed {seed}")
    registry = contract_registry()
    records = list(sample_records(RECORDS, seed=seed % 1000))
    values = [(r.event_id.encode(), registry.encode(r)) for r in records]
    producer = PacedProducer(rig.env["AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS"], rig.topic, values)
    producer.start()

    mid_stream = kill_repeatedly(rig, producer, random.Random(seed))
    producer.join(timeout=120)
    assert producer.error is None, producer.error
    assert len(producer.placed) == RECORDS
    assert mid_stream >= MIN_KILLS

    assigned = rig.assignments()
    sink = rig.start("ingest")
    wait_for(
        lambda: rig.assignments() > assigned and rig.consumed() >= RECORDS,
        timeout=300,
        what="the sink to run and catch up",
    )
    sink.send_signal(signal.SIGTERM)
    assert sink.wait(timeout=60) == 0, "SIGTERM must stop the sink gracefully (exit 0)"

    check_exactly_once(rig, producer.placed, [r.audit_id for r in records])
    verified = rig.run("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"OK: {RECORDS} entries intact")
    archive = rig.env["AUDIT_SINK_CHECKPOINT_DIR"]
    trusted = rig.run("verify", "--trusted-checkpoint", archive)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr


def test_sigterm_finishes_the_batch_and_exits_cleanly(rig: SinkRig) -> None:  # noqa: F811
    registry = contract_registry()
    values = [(r.event_id.encode(), registry.encode(r)) for r in sample_records(3000, seed=7)]
    produce(rig.env["AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS"], rig.topic, values)

    sink = rig.start("ingest")
    wait_for(lambda: rig.consumed() > 0 or sink.poll() is not None, 120, "progress")
    sink.send_signal(signal.SIGTERM)
    assert sink.wait(timeout=60) == 0
    stopped_at = rig.consumed()

    finished = rig.run("ingest", "--stop-at-end")
    assert finished.returncode == 0, finished.stderr
    assert rig.consumed() == 3000
    assert rig.sql("SELECT count(*) FROM leaves")[0][0] == 3000
    assert stopped_at <= 3000
    assert rig.run("verify").returncode == 0
