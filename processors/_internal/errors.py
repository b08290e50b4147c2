"""Report otel-ext's own failures without ever raising into the host app."""

from __future__ import annotations

import logging
import threading

__all__ = ["report_once"]

_MAX_REMEMBERED = 1024
_seen: set[tuple[str, ...]] = set()
_seen_lock = threading.Lock()


def report_once(logger: logging.Logger, where: str, error: BaseException) -> None:
    """Log ``error`` with its traceback the first time this cause is seen.

    A cause is the place plus the exception type: a broken processor fails on
    every span, and one line per span would flood the app's logs.
    """
    cause = (where, type(error).__module__, type(error).__qualname__)
    with _seen_lock:
        if cause in _seen:
            return
        if len(_seen) < _MAX_REMEMBERED:
            _seen.add(cause)
    logger.error("otel-ext: %s failed; the app is unaffected, further %s errors are not logged", where,
                 type(error).__name__, exc_info=error)
