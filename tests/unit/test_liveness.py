"""The liveness rule behind ``/livez``: a worker with lag and no progress for the timeout
is not alive; an idle one is; a worker whose input loop ended never is."""

from __future__ import annotations

from sharing_guard.stream.liveness import Liveness


def test_a_worker_with_lag_and_no_progress_for_the_timeout_is_not_alive() -> None:
    liveness = Liveness(timeout_s=30, last_progress_s=100)
    assert liveness.alive(now_s=129, lag=5)
    assert not liveness.alive(now_s=130, lag=5)


def test_an_idle_worker_is_alive_however_long_since_its_last_batch() -> None:
    liveness = Liveness(timeout_s=30, last_progress_s=100)
    assert liveness.alive(now_s=10_000, lag=0)


def test_progress_makes_a_stalled_worker_alive_again() -> None:
    liveness = Liveness(timeout_s=30, last_progress_s=100)
    assert not liveness.alive(now_s=200, lag=1)
    liveness.progressed(195)
    assert liveness.alive(now_s=200, lag=1)
    assert liveness.stalled_for(200) == 5


def test_a_worker_whose_loop_ended_is_not_alive() -> None:
    liveness = Liveness(timeout_s=30, last_progress_s=100)
    liveness.loop_running = False
    assert not liveness.alive(now_s=100, lag=0)
