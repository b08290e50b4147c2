"""A daemon thread that runs one task on an interval and on demand."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from processors._internal.errors import report_once

__all__ = ["PeriodicWorker"]

_logger = logging.getLogger(__name__)


class PeriodicWorker:
    """Runs ``task`` every ``interval_s`` on a daemon thread, and when woken or flushed.

    Work handed to the worker (sending to an error tracker, say) leaves the
    request path; the thread is a daemon, so it never holds the process open,
    and ``flush`` waits at most the time it is given.

    Threading contract: every method may be called from any thread. ``task``
    runs on one thread at a time; a task that raises is logged once and the
    worker goes on. After a fork the child starts its own thread on first use.
    """

    def __init__(self, task: Callable[[], object], interval_s: float, name: str) -> None:
        self.task = task
        self.interval_s = interval_s
        self.name = name
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._runs_started = 0
        self._runs_done = 0
        self._run_lock = threading.Lock()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._thread_pid = -1
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset_after_fork)

    def _reset_after_fork(self) -> None:
        """The parent's thread does not exist here, and it may have held these when the fork happened."""
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._run_lock = threading.Lock()
        self._thread = None

    def ensure_started(self) -> None:
        if self._thread_pid == os.getpid() or self._stopped:
            return
        with self._done:
            if self._thread_pid == os.getpid():
                return
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread_pid = os.getpid()
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def flush(self, timeout_s: float) -> bool:
        """Run the task once more and wait for it, at most ``timeout_s``; False on timeout."""
        thread = self._thread
        if thread is None or self._stopped or self._thread_pid != os.getpid() or not thread.is_alive():
            self._run()  # no worker in this process (never started, forked, or stopped): run here
            return True
        with self._done:
            wanted = self._runs_started + 1
            self._wake.set()
            return self._done.wait_for(lambda: self._runs_done >= wanted, timeout_s)

    def stop(self, timeout_s: float) -> bool:
        """Flush, then end the thread."""
        flushed = self.flush(timeout_s)
        self._stopped = True
        self._wake.set()
        return flushed

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stopped:
                return
            with self._done:
                self._runs_started += 1
            self._run()
            with self._done:
                self._runs_done += 1
                self._done.notify_all()

    def _run(self) -> None:
        with self._run_lock:
            try:
                self.task()
            except Exception as error:  # noqa: BLE001 - the worker must outlive a bad batch
                report_once(_logger, f"worker {self.name}", error)
