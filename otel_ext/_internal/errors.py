"""Exceptions recorded on spans → error statistics, and Sentry events when Sentry is linked.

Always on: ``/monitoring/errors`` counts errors with or without Sentry. The
request path stamps, counts and queues the exception (see
``processors._internal.exceptions``); building and sending events run on a worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from otel_ext._internal.config import Settings
from processors import (
    ErrorStatsStore,
    ExceptionTracker,
    FingerprintRateLimiter,
    LinkState,
    PeriodicWorker,
    RecordedException,
    handled_client_error,
    install_record_hook,
)

if TYPE_CHECKING:
    from otel_ext._internal.integrations.sentry import SentryLink

__all__ = ["EVENT_ID_ATTRIBUTE", "ErrorPipeline", "sentry_problem", "start_error_pipeline"]

_logger = logging.getLogger("otel_ext")

EVENT_ID_ATTRIBUTE = "sentry.event_id"
SENTRY_DSN = "SENTRY_DSN"  # read by sentry-sdk itself, with SENTRY_ENVIRONMENT and SENTRY_RELEASE


class ErrorPipeline:
    """Tracks recorded exceptions, counts them per operation and type, and hands them to Sentry.

    Threading contract: the record hook runs on app threads and only stamps,
    counts and queues (no I/O); ``process`` runs on the worker thread; ``refresh``, ``delivery`` and
    ``shutdown`` may be called from any thread.
    """

    def __init__(self, settings: Settings, link: SentryLink | None) -> None:
        self.settings = settings
        self.link = link
        limit, interval_s = settings.sentry_rate_limit or (None, 60)
        self.rate_limiter = FingerprintRateLimiter(limit, interval_s)
        self.store = ErrorStatsStore(settings.windows_s, settings.max_operations, settings.fold_name_ids)
        self.worker = PeriodicWorker(self.process, settings.error_flush_interval_ms / 1000, "otel-ext-errors")
        self.tracker = ExceptionTracker(
            self.rate_limiter,
            EVENT_ID_ATTRIBUTE,
            should_link=link.is_active if link is not None else (lambda: False),
            max_pending=settings.error_queue_size,
            after_record=self._after_record,
            on_error=self.store.record,
            fold_ids=settings.fold_name_ids,
        )
        if link is not None:
            link.flush_queue = self.worker.flush
        install_record_hook(self.tracker)

    def _after_record(self) -> None:
        """Start the worker in this process; wake it early when the queue is half full (a burst of errors)."""
        self.worker.ensure_started()
        if self.tracker.pending * 2 >= self.tracker.max_pending:
            self.worker.wake()

    def process(self) -> None:
        """Send one event per exception, with every span it crossed; count deferred ones that ended as errors.

        Other errors were counted when they were recorded.
        """
        crossed: dict[int, list[RecordedException]] = {}
        for item in self.tracker.collect():
            if not handled_client_error(item.span):
                crossed.setdefault(id(item.exception), []).append(item)
        for items in crossed.values():
            deferred = items[0].stamp.state is LinkState.DEFERRED
            if self.link is not None:
                self.link.deliver(items)  # first: it gives a deferred exception its event id
            if deferred:
                for item in items:
                    self.store.record(item)

    def refresh(self, timeout_s: float = 1.0) -> None:
        """Process the queue now, so deferred errors whose spans ended are counted (the monitor calls this)."""
        self.worker.flush(timeout_s)

    def delivery(self) -> dict[str, object]:
        report: dict[str, object] = {
            "linked": self.link is not None and self.link.is_active(),
            "waiting": self.tracker.pending,
            "dropped_queue_full": self.tracker.dropped,
            "rate_limited": self.rate_limiter.suppressed_total,
        }
        if self.link is not None:
            report.update(self.link.counts.as_dict())
        return report

    def shutdown(self) -> None:
        timeout_s = self.settings.sentry_shutdown_timeout_ms / 1000
        if self.link is not None:
            self.link.close()
        self.worker.stop(timeout_s)


def start_error_pipeline(settings: Settings) -> ErrorPipeline:
    """The pipeline, with Sentry linked when sentry-sdk is installed and configured."""
    return ErrorPipeline(settings, _sentry_link(settings))


def sentry_problem(environ: Mapping[str, str]) -> str | None:
    """Why ``SENTRY_DSN`` cannot be used: sentry-sdk does not import, or the DSN is malformed."""
    raw = environ.get(SENTRY_DSN, "")
    if not raw.strip():
        return None
    try:
        from otel_ext._internal.integrations.sentry import dsn_problem  # noqa: PLC0415 - the optional dependency
    except ImportError as error:
        return f"{SENTRY_DSN} is set but {error}; exceptions are counted, not sent"
    problem = dsn_problem(raw)
    if problem is None:
        return None
    return f"{SENTRY_DSN} is invalid: {problem}; the Sentry link is off, exceptions are counted"


def _sentry_link(settings: Settings) -> SentryLink | None:
    if not settings.sentry_enabled:
        return None
    problem = sentry_problem(os.environ)
    if problem is not None:
        _logger.warning("otel-ext: %s", problem)
        return None
    try:
        from otel_ext._internal.integrations.sentry import start_sentry_link  # noqa: PLC0415
    except ImportError:
        return None  # sentry-sdk is not installed and SENTRY_DSN is unset: nothing to link to
    try:
        return start_sentry_link(settings)
    except Exception as error:  # noqa: BLE001 - the rest of otel-ext must start without Sentry
        _logger.warning("otel-ext: the Sentry link could not start (%s: %s); exceptions are counted, not sent",
                        type(error).__name__, error)
        return None
