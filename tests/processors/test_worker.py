"""PeriodicWorker: a daemon thread running one task on an interval, when woken, and on flush."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from processors._internal import errors as errors_module
from processors._internal.worker import PeriodicWorker
from tests.support.forking import run_in_child

WORKER_LOGGER = "processors._internal.worker"
LONG = 60.0  # an interval that never elapses during a test: runs only happen when asked for
WAIT = 5.0  # generous upper bound for waits that normally end in milliseconds


class TaskFailed(Exception):
    pass


class Task:
    """Records the thread of every run; optionally fails or blocks on chosen runs."""

    def __init__(self, fail_runs: frozenset[int] = frozenset(), block_first: bool = False) -> None:
        self.threads: list[str] = []
        self.fail_runs = fail_runs
        self.block_first = block_first
        self.started = threading.Event()
        self.release = threading.Event()
        self.ran = threading.Condition()

    @property
    def runs(self) -> int:
        return len(self.threads)

    def __call__(self) -> None:
        run = len(self.threads)
        if run == 0 and self.block_first:
            self.started.set()
            assert self.release.wait(WAIT)
        with self.ran:
            self.threads.append(threading.current_thread().name)
            self.ran.notify_all()
        if run in self.fail_runs:
            raise TaskFailed(f"run {run}")

    def wait_for_runs(self, count: int) -> bool:
        with self.ran:
            return self.ran.wait_for(lambda: len(self.threads) >= count, WAIT)


@pytest.fixture
def workers() -> Iterator[Callable[..., PeriodicWorker]]:
    """Makes workers and stops every one of them after the test."""
    made: list[PeriodicWorker] = []

    def make(task: Callable[[], object], interval_s: float = LONG, name: str = "test-worker") -> PeriodicWorker:
        worker = PeriodicWorker(task, interval_s, name)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop(WAIT)
        if worker._thread is not None:
            worker._thread.join(WAIT)


@pytest.fixture
def fresh_report_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """report_once remembers causes process-wide; give each test a clean memory."""
    monkeypatch.setattr(errors_module, "_seen", set())


def _worker_threads(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == name]


def test_flush_without_thread_runs_inline(workers: Callable[..., PeriodicWorker]) -> None:
    """Guards flush doing nothing (or hanging) when the worker was never started."""
    task = Task()
    worker = workers(task, name="never-started")
    assert worker.flush(WAIT) is True
    assert task.threads == [threading.current_thread().name]
    assert _worker_threads("never-started") == []


def test_flush_runs_task_on_worker_thread(workers: Callable[..., PeriodicWorker]) -> None:
    """Guards flush returning before the task ran."""
    task = Task()
    worker = workers(task, name="flush-worker")
    worker.ensure_started()
    worker.ensure_started()
    assert len(_worker_threads("flush-worker")) == 1
    assert task.runs == 0  # the interval has not elapsed and nobody asked
    assert worker.flush(WAIT) is True
    assert task.threads == ["flush-worker"]
    assert worker.flush(WAIT) is True
    assert task.threads == ["flush-worker"] * 2
    thread = worker._thread
    assert thread is not None and thread.daemon


def test_flush_waits_for_a_run_started_after_the_call(workers: Callable[..., PeriodicWorker]) -> None:
    """Guards flush returning on a run that began before the call (and so missed the caller's work)."""
    task = Task(block_first=True)
    worker = workers(task, name="busy-worker")
    worker.ensure_started()
    worker.wake()
    assert task.started.wait(WAIT)  # run 1 is in progress and blocked
    releaser = threading.Timer(0.02, task.release.set)
    releaser.start()
    try:
        assert worker.flush(WAIT) is True
    finally:
        releaser.join(WAIT)
    assert task.runs == 2  # run 1 finishing was not enough


def test_flush_times_out(workers: Callable[..., PeriodicWorker]) -> None:
    """Guards flush blocking the caller longer than the time it was given."""
    task = Task(block_first=True)
    worker = workers(task, name="stuck-worker")
    worker.ensure_started()
    worker.wake()
    assert task.started.wait(WAIT)
    assert worker.flush(0.02) is False
    task.release.set()
    assert worker.flush(WAIT) is True


def test_wake_and_interval_trigger_runs(workers: Callable[..., PeriodicWorker]) -> None:
    """Guards a worker that only runs on flush."""
    woken = Task()
    worker = workers(woken, name="woken-worker")
    worker.ensure_started()
    worker.wake()
    assert woken.wait_for_runs(1)

    ticking = Task()
    workers(ticking, interval_s=0.005, name="ticking-worker").ensure_started()
    assert ticking.wait_for_runs(3)
    assert set(ticking.threads) == {"ticking-worker"}


def test_failing_task_is_logged_once_and_worker_goes_on(
    workers: Callable[..., PeriodicWorker], caplog: pytest.LogCaptureFixture, fresh_report_once: None
) -> None:
    """Guards one bad batch killing the worker thread, or every failure flooding the logs."""
    caplog.set_level(logging.ERROR, logger=WORKER_LOGGER)
    task = Task(fail_runs=frozenset({0, 1, 3}))
    worker = workers(task, name="failing-worker")
    worker.ensure_started()
    for _ in range(5):
        assert worker.flush(WAIT) is True
    assert task.threads == ["failing-worker"] * 5
    thread = worker._thread
    assert thread is not None and thread.is_alive()
    records = [r for r in caplog.records if r.name == WORKER_LOGGER]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert "failing-worker" in records[0].getMessage()
    assert records[0].exc_info is not None and isinstance(records[0].exc_info[1], TaskFailed)


def test_failing_task_inline_does_not_raise(
    workers: Callable[..., PeriodicWorker], caplog: pytest.LogCaptureFixture, fresh_report_once: None
) -> None:
    """Guards flush from the app's thread raising the task's error into the app."""
    caplog.set_level(logging.ERROR, logger=WORKER_LOGGER)
    task = Task(fail_runs=frozenset({0, 1}))
    worker = workers(task, name="failing-inline")
    assert worker.flush(WAIT) is True
    assert worker.flush(WAIT) is True
    assert task.runs == 2
    assert len([r for r in caplog.records if r.name == WORKER_LOGGER]) == 1


def test_stop_flushes_and_ends_thread(workers: Callable[..., PeriodicWorker]) -> None:
    """Guards stop leaving the thread running (or skipping the final flush)."""
    task = Task()
    worker = workers(task, name="stopping-worker")
    worker.ensure_started()
    thread = worker._thread
    assert thread is not None
    assert worker.stop(WAIT) is True
    assert task.runs >= 1
    thread.join(1.0)
    assert not thread.is_alive()
    worker.ensure_started()  # a stopped worker stays stopped
    assert worker._thread is thread and not thread.is_alive()
    runs = task.runs
    assert worker.flush(WAIT) is True  # no live thread: inline
    assert task.threads[runs:] == [threading.current_thread().name]


def test_forked_child_runs_inline_then_starts_its_own_thread(workers: Callable[..., PeriodicWorker]) -> None:
    """Guards a child waiting on the parent's thread, which does not exist after fork."""
    task = Task()
    worker = workers(task, name="forked-worker")
    worker.ensure_started()
    assert worker.flush(WAIT) is True

    def child() -> dict[str, Any]:
        before = task.runs
        inline = worker.flush(WAIT)
        inline_runs = task.threads[before:]
        worker.ensure_started()
        threaded = worker.flush(WAIT)
        return {
            "inline": [inline, inline_runs == [threading.current_thread().name]],
            "threaded": [threaded, task.threads[before + 1:]],
        }

    assert run_in_child(child) == {"inline": [True, True], "threaded": [True, ["forked-worker"]]}
    assert task.threads == ["forked-worker"]  # the child's runs did not happen here
