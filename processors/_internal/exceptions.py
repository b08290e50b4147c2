"""Exceptions recorded on spans, kept as objects until their spans end.

The SDK turns a recorded exception into strings on a span event. An error
tracker needs the exception object (type, frames) and one event per failure,
however many spans the exception crossed and whoever else reported it. So
``Span.record_exception`` is wrapped: the exception is stamped once with the id
of the event that will represent it, the id is set on the span while the span
can still change (ended spans are frozen), and the pair is queued. Statistics
and sending happen later on a worker thread, after the span ended.

The stamp lives on the exception object, which is what every reporter shares:
nested spans, the app's own ``capture_exception``, a logging handler.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan, Span
from opentelemetry.trace import SpanKind, StatusCode

from processors._internal.errors import report_once
from processors._internal.names import operation_name

__all__ = [
    "ExceptionStamp",
    "ExceptionTracker",
    "FingerprintRateLimiter",
    "LinkState",
    "RecordedException",
    "exception_fingerprint",
    "exception_type_name",
    "handled_client_error",
    "install_record_hook",
    "set_stamp",
    "stamp_of",
]

_logger = logging.getLogger(__name__)

_STAMP_ATTRIBUTE = "__otel_ext_stamp__"
_HOOK_MARK = "_otel_ext_record_hook"
_HTTP_STATUS_ATTRIBUTES = ("http.response.status_code", "http.status_code")
DEFAULT_MAX_PENDING = 1000
DEFAULT_MAX_FINGERPRINTS = 4096


class LinkState(enum.Enum):
    """Where an exception stands with the error tracker."""

    PENDING = "pending"  # otel-ext will send an event with the stamped id
    SENT = "sent"  # an event with the stamped id was sent (by otel-ext or the app)
    SUPPRESSED = "suppressed"  # rate-limited: the stamped id is the fingerprint's latest event
    UNLINKED = "unlinked"  # nothing will be sent: no error tracker was active
    DEFERRED = "deferred"  # recorded on a server span answering 4xx: an event only if the span ends as an error


@dataclass(slots=True)
class ExceptionStamp:
    """The event that represents one exception object; mutable, shared by all its reporters."""

    event_id: str | None
    state: LinkState
    suppressed_before: int = 0  # identical errors rate-limited since the fingerprint's previous event
    origin: Span | None = None  # the first span that recorded the exception: where the event points
    counted_spans: set[int] = field(default_factory=set)  # span ids it was counted on


def stamp_of(exception: BaseException) -> ExceptionStamp | None:
    stamp = getattr(exception, _STAMP_ATTRIBUTE, None)
    return stamp if isinstance(stamp, ExceptionStamp) else None


def set_stamp(exception: BaseException, stamp: ExceptionStamp) -> bool:
    """False when the exception object takes no attributes (then dedup across spans is lost)."""
    try:
        setattr(exception, _STAMP_ATTRIBUTE, stamp)
    except (AttributeError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class RecordedException:
    """An exception recorded on a span that has ended."""

    span: ReadableSpan
    exception: BaseException
    stamp: ExceptionStamp


def exception_type_name(exception: BaseException) -> str:
    """``module.Qualname`` as the SDK writes ``exception.type`` (builtins unqualified)."""
    cls = type(exception)
    module = cls.__module__
    return cls.__qualname__ if module in (None, "builtins") else f"{module}.{cls.__qualname__}"


def exception_fingerprint(span_name: str, exception: BaseException) -> tuple[str, str, str, int]:
    """Identical errors: same type, same operation, raised at the same line."""
    traceback = exception.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    if traceback is None:
        return exception_type_name(exception), span_name, "", 0
    return exception_type_name(exception), span_name, traceback.tb_frame.f_code.co_filename, traceback.tb_lineno


def handled_client_error(span: ReadableSpan) -> bool:
    """A server span answered 4xx and is not an error: the exception was the client's, and handled.

    Instrumentations such as Django's record ``Http404`` on the server span but
    leave its status UNSET, as the HTTP semantic conventions ask.
    """
    if span.kind is not SpanKind.SERVER or span.status.status_code is StatusCode.ERROR:
        return False
    attributes = span.attributes or {}
    for name in _HTTP_STATUS_ATTRIBUTES:
        code = attributes.get(name)
        if isinstance(code, int) and not isinstance(code, bool):
            return 400 <= code < 500
    return False


@dataclass(slots=True)
class _Fingerprint:
    window_start: float
    sent: int = 0
    suppressed: int = 0
    latest_event_id: str | None = None


@dataclass
class FingerprintRateLimiter:
    """At most ``limit`` events per fingerprint per ``interval_s``; the others are counted.

    ``limit`` None means unlimited. The number of fingerprints remembered is
    bounded (the oldest is forgotten first), so a storm of distinct errors
    cannot grow memory.

    Threading contract: ``stamp`` from any thread; one short lock, no I/O.
    """

    limit: int | None = 10
    interval_s: float = 60.0
    max_fingerprints: int = DEFAULT_MAX_FINGERPRINTS
    clock: Callable[[], float] = time.monotonic
    suppressed_total: int = 0
    _entries: dict[Hashable, _Fingerprint] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stamp(self, fingerprint: Hashable) -> ExceptionStamp:
        """A new event id for an admitted error, or the fingerprint's latest id for a suppressed one."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(fingerprint)
            if entry is None:
                if len(self._entries) >= self.max_fingerprints:
                    del self._entries[next(iter(self._entries))]
                entry = self._entries[fingerprint] = _Fingerprint(now)
            elif now - entry.window_start >= self.interval_s:
                entry.window_start, entry.sent = now, 0
            if self.limit is None or entry.sent < self.limit or entry.latest_event_id is None:
                entry.sent += 1
                stamp = ExceptionStamp(uuid.uuid4().hex, LinkState.PENDING, suppressed_before=entry.suppressed)
                entry.suppressed = 0
                entry.latest_event_id = stamp.event_id
                return stamp
            entry.suppressed += 1
            self.suppressed_total += 1
            return ExceptionStamp(entry.latest_event_id, LinkState.SUPPRESSED)


class ExceptionTracker:
    """Counts the exceptions recorded on spans, and keeps those owed an event until their spans end.

    ``should_link()`` says whether an error tracker is active now; only then
    are exceptions stamped with event ids and ``link_attribute`` set on spans.
    ``on_error(item)`` counts an error when it is recorded (once per span and
    exception), whatever happens to its event, so counts stay exact when the
    queue is full or events are rate-limited. Only exceptions still owed an
    event (PENDING) or a decision (DEFERRED: a 4xx server span may yet end as
    an error) are queued, at most ``max_pending``; ``after_record()`` runs
    after each one.

    Threading contract: ``on_record`` runs on the app's threads, inside
    ``Span.record_exception`` (a short lock in the rate limiter and in
    ``on_error``, no I/O); ``collect`` runs on one worker thread. Nothing here
    runs for spans without exceptions.
    """

    def __init__(
        self,
        rate_limiter: FingerprintRateLimiter,
        link_attribute: str,
        should_link: Callable[[], bool] = lambda: False,
        max_pending: int = DEFAULT_MAX_PENDING,
        after_record: Callable[[], object] = lambda: None,
        on_error: Callable[[RecordedException], object] = lambda item: None,
        fold_ids: bool = True,
    ) -> None:
        self.rate_limiter = rate_limiter
        self.fold_ids = fold_ids  # fingerprints use the operation name, ids folded, as the statistics do
        self.link_attribute = link_attribute
        self.should_link = should_link
        self.max_pending = max_pending
        self.after_record = after_record  # e.g. make sure the worker that calls collect() runs
        self.on_error = on_error
        self.dropped = 0  # errors given no event because the queue was full (still counted)
        self._pending: deque[tuple[Span, BaseException, ExceptionStamp]] = deque()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._pending.clear)

    def on_record(self, span: Span, exception: BaseException) -> None:
        if span.end_time is not None:
            return  # the SDK ignores events on ended spans too
        if not isinstance(exception, Exception):
            return  # SystemExit, KeyboardInterrupt, GeneratorExit: how a program stops, not an error
        stamp = stamp_of(exception)
        if stamp is None:
            stamp = self._new_stamp(span, exception)
            set_stamp(exception, stamp)
        if stamp.origin is None:
            stamp.origin = span
        if stamp.event_id is not None:
            span.set_attribute(self.link_attribute, stamp.event_id)
        if stamp.state is not LinkState.DEFERRED and span.context.span_id not in stamp.counted_spans:
            stamp.counted_spans.add(span.context.span_id)  # recorded twice on one span: one error
            self.on_error(RecordedException(span, exception, stamp))
        if stamp.state in (LinkState.PENDING, LinkState.DEFERRED):
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                return
            self._pending.append((span, exception, stamp))
            self.after_record()

    def _new_stamp(self, span: Span, exception: BaseException) -> ExceptionStamp:
        if handled_client_error(span):
            return ExceptionStamp(None, LinkState.DEFERRED)
        if not self.should_link():
            return ExceptionStamp(None, LinkState.UNLINKED)
        if len(self._pending) >= self.max_pending:
            self.dropped += 1  # no room to send it: counted, and no span points at an event never sent
            return ExceptionStamp(None, LinkState.UNLINKED)
        return self.rate_limiter.stamp(exception_fingerprint(operation_name(span.name, self.fold_ids), exception))

    def collect(self) -> list[RecordedException]:
        """Exceptions whose spans have ended, once per span and exception; the rest stay queued."""
        ready: list[RecordedException] = []
        seen: set[tuple[int, int]] = set()
        still_open = []
        for _ in range(len(self._pending)):
            span, exception, stamp = self._pending.popleft()
            if span.end_time is None:
                still_open.append((span, exception, stamp))
                continue
            key = (id(span), id(exception))
            if key not in seen:  # recorded twice on one span (record_exception, then re-raised)
                seen.add(key)
                ready.append(RecordedException(span, exception, stamp))
        self._pending.extendleft(reversed(still_open))
        return ready

    @property
    def pending(self) -> int:
        return len(self._pending)


_active_tracker: ExceptionTracker | None = None


def install_record_hook(tracker: ExceptionTracker | None) -> None:
    """Route ``Span.record_exception`` of every SDK span to ``tracker`` (None: stop).

    The wrapper is installed once per process; the SDK's own recording always
    runs first and a failing tracker never reaches the caller.
    """
    global _active_tracker
    _active_tracker = tracker
    original = Span.record_exception
    if getattr(original, _HOOK_MARK, False):
        return

    @functools.wraps(original)
    def record_exception(self: Span, exception: BaseException, *args: object, **kwargs: object) -> None:
        original(self, exception, *args, **kwargs)  # type: ignore[arg-type]
        tracker = _active_tracker
        if tracker is None:
            return
        try:
            tracker.on_record(self, exception)
        except Exception as error:  # noqa: BLE001 - the app's exception must stay the app's
            report_once(_logger, "exception tracking", error)

    setattr(record_exception, _HOOK_MARK, True)
    Span.record_exception = record_exception  # type: ignore[method-assign]
