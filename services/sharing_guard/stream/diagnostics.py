"""What a guard worker logs on ``kill -USR1 <pid>``: where each asyncio task waits, and
the consumer's flow state (which partitions Faust fetches, pauses or holds back, and
where each stands). For diagnosing a worker that runs but makes no progress; it reads
Faust and aiokafka internals defensively and never changes them."""

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


def dump_tasks() -> None:
    """Log the chain of awaited coroutines and async generators of every task."""
    for task in asyncio.all_tasks():
        frames: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None and len(frames) < 40:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
            if frame is not None:
                frames.append(
                    f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} "
                    f"{frame.f_code.co_name}"
                )
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
        log.warning("task %s waits at: %s", task.get_name(), " -> ".join(frames))


def _tps(tps: Any) -> str:
    if tps is None:
        return "None"
    return ",".join(sorted(f"{tp.topic}/{tp.partition}" for tp in tps)) or "-"


def flow_state(app: Any) -> list[str]:
    """Lines describing the consumer's flow state; missing internals are reported, not
    raised."""
    lines: list[str] = []
    try:
        consumer = app.consumer
        lines.append(
            f"app: rebalancing={app.rebalancing} in_recovery={app.in_recovery} "
            f"generation={app.consumer_generation_id} "
            f"flow_control_active={app.flow_control.is_active()}"
        )
        lines.append(
            f"consumer: flow_active={consumer.flow_active} "
            f"can_resume_flow={consumer.can_resume_flow.is_set()} "
            f"suspend_flow={consumer.suspend_flow.is_set()} "
            f"unacked={len(consumer._unacked_messages)}"
        )
        lines.append(f"assigned: {_tps(consumer.assignment())}")
        lines.append(f"active: {_tps(consumer._active_partitions)}")
        lines.append(f"paused: {_tps(consumer._paused_partitions)}")
        lines.append(f"buffered: {_tps(consumer._buffered_partitions)}")
        committed = consumer._committed_offset
        read = consumer._read_offset
        lines.append(
            "faust offsets (read/committed): "
            + " ".join(
                f"{tp.topic}/{tp.partition}={read.get(tp)}/{committed.get(tp)}"
                for tp in sorted(consumer.assignment())
            )
        )
    except Exception as exc:  # diagnostics never raise
        lines.append(f"faust consumer state unavailable: {exc!r}")
    try:
        kafka = app.consumer._thread._consumer
        assignment = kafka._subscription.subscription.assignment
        states = []
        for tp in sorted(assignment.tps):
            state = assignment.state_value(tp)
            states.append(
                f"{tp.topic}/{tp.partition}:pos={state._position} paused={state.paused} "
                f"status={state._status.name}"
            )
        lines.append("aiokafka: " + " ".join(states))
    except Exception as exc:
        lines.append(f"aiokafka state unavailable: {exc!r}")
    try:
        for agent in app.agents.values():
            for actor in agent._actors:
                stream = actor.stream
                queue = stream.channel.queue
                lines.append(
                    f"agent {agent.name}: queue={queue.qsize()}/{queue.maxsize} "
                    f"pending_drop_callbacks={len(queue._pending_pressure_drop_callbacks)} "
                    f"passive={stream._passive} stopped={actor.should_stop}"
                )
    except Exception as exc:
        lines.append(f"agent state unavailable: {exc!r}")
    return lines


def dump(app: Any) -> None:
    """Log the tasks and the flow state of ``app``."""
    dump_tasks()
    for line in flow_state(app):
        log.warning("flow: %s", line)
