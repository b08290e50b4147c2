"""Per-operation call counts, success rates and latency percentiles over sliding windows."""

from __future__ import annotations

import fnmatch
import heapq
import logging
import math
import os
import re
import threading
import time
import weakref
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from processors._internal.errors import report_once
from processors._internal.names import operation_name, replace_ids
from processors._internal.sketch import LogHistogram
from processors._internal.thresholds import ThresholdRules

__all__ = [
    "DEFAULT_WINDOWS_S",
    "OVERFLOW_OPERATION",
    "OperationStats",
    "OperationStatsProcessor",
    "OperationStatsStore",
    "OperationTotals",
    "SlowSpan",
    "operation_filter",
]

_logger = logging.getLogger(__name__)

DEFAULT_WINDOWS_S: tuple[int, ...] = (60, 300, 900, 3600)
DEFAULT_MAX_OPERATIONS = 500
DEFAULT_SLOWEST_KEPT = 5
OVERFLOW_OPERATION = "otel_ext.overflow"
SLOTS_PER_WINDOW = 6
_DRAIN_BATCH = 64
_PENDING_LIMIT = 50_000
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000
_ALIASES_PER_OPERATION = 10  # raw names remembered per operation slot, so most spans skip replace_ids


def operation_filter(operation: str | None) -> Callable[[str], bool]:
    """Matches an exact name (even one with glob characters, such as ``GET /items/[id]``) or a glob.

    A raw span name copied from a trace (``GET /users/42``) also matches the
    operation it counts under (``GET /users/{id}``).
    """
    if operation is None:
        return lambda name: True
    glob = re.compile(fnmatch.translate(operation)).match
    folded = replace_ids(operation)
    return lambda name: name in (operation, folded) or glob(name) is not None


@dataclass(frozen=True)
class SlowSpan:
    """One of the slowest recent spans of an operation, to jump to its trace."""

    trace_id: str
    span_id: str
    duration_ms: float
    end_time_unix_nano: int


@dataclass(frozen=True)
class OperationStats:
    """What the monitor shows for one operation over one window.

    ``slow_threshold_ms`` is None for the ``otel_ext.overflow`` operation,
    whose spans are each judged by their own name's threshold.
    """

    service: str
    name: str
    kind: str
    count: int
    error_count: int
    success_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    slow_count: int
    slow_threshold_ms: float | None
    slowest: tuple[SlowSpan, ...]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class OperationTotals:
    """Everything one operation has recorded since ``start_time_unix_nano``: what metrics export.

    ``histogram`` holds durations in nanoseconds in buckets bounded in seconds
    (``unit=1e-9``); ``explicit_counts`` are counts per explicit bucket
    (``le`` semantics: bucket ``i`` holds durations in ``(bounds[i-1], bounds[i]]``)
    when the store was asked to keep them.
    """

    service: str
    name: str
    kind: SpanKind
    count: int
    error_count: int
    ok_count: int
    slow_count: int
    histogram: LogHistogram
    explicit_counts: tuple[int, ...] | None


def _span_kind(kind: object) -> SpanKind:
    """The span's kind as a ``SpanKind``: the SDK keeps whatever the app passed (``kind=2`` too)."""
    if isinstance(kind, SpanKind):
        return kind
    try:
        return SpanKind(kind)
    except ValueError:
        return SpanKind.INTERNAL


def _duration_histogram() -> LogHistogram:
    """Nanoseconds in, bucket bounds in seconds: the bounds that metrics export."""
    return LogHistogram(unit=1 / _NS_PER_S)


class _Slot:
    """Everything recorded for one operation in one time slot."""

    __slots__ = ("errors", "histogram", "index", "oks", "slow", "slowest")

    def __init__(self, index: int) -> None:
        self.index = index
        self.errors = 0
        self.oks = 0
        self.slow = 0
        self.histogram = _duration_histogram()
        self.slowest: list[tuple[int, int, int, int]] = []

    def merge(self, other: _Slot, slowest_kept: int) -> None:
        self.histogram.merge(other.histogram)
        self.errors += other.errors
        self.oks += other.oks
        self.slow += other.slow
        self.slowest = heapq.nlargest(slowest_kept, self.slowest + other.slowest)
        heapq.heapify(self.slowest)


class _Operation:
    """An operation's open slot (the newest base slot), per window a ring of closed slots,
    and the running total of every closed slot (what metrics export, with the open slot)."""

    __slots__ = ("closed_total", "explicit", "kind", "name", "open", "rings", "service", "threshold_ns")

    def __init__(
        self,
        service: str,
        name: str,
        kind: SpanKind,
        threshold_ns: int | None,
        window_count: int,
        explicit_buckets: int | None,
    ) -> None:
        self.service = service
        self.name = name
        self.kind = kind
        self.threshold_ns = threshold_ns
        self.open: _Slot | None = None
        self.rings: list[list[_Slot | None]] = [[None] * SLOTS_PER_WINDOW for _ in range(window_count)]
        self.closed_total = _Slot(-1)
        self.explicit = None if explicit_buckets is None else array("Q", [0]) * explicit_buckets


class OperationStatsStore:
    """Aggregates ended spans per operation (service, span name, span kind).

    Threading contract: ``record`` may be called from any thread and never
    waits for a lock in the common case: it appends the span to a queue, and
    every ``_DRAIN_BATCH`` spans the thread that finds the lock free folds the
    queue into the aggregates. ``snapshot`` may be called from any thread.

    Memory is bounded: each window keeps ``SLOTS_PER_WINDOW`` slots of
    ``window / SLOTS_PER_WINDOW`` seconds per operation, each slot a bounded
    histogram, and operations beyond ``max_operations`` fold into one
    ``otel_ext.overflow`` operation. A window therefore covers the last
    ``window`` seconds at a resolution of one slot.

    Cost: a span updates only its operation's open slot, whose width is the
    greatest common divisor of the windows' slot widths (10 s by default);
    when a newer slot opens, the closed one is merged into every window and
    into the operation's running total once. ``totals`` (what metrics export)
    reads those totals plus the open slot, so exporting costs nothing per span.
    ``explicit_bounds_s`` also counts every duration into explicit buckets
    (one bisection per span), for exporters that cannot take exponential ones.

    Cardinality: with ``rules.fold_ids`` (the default), span names with
    id-like path segments (``GET /users/8a7f…``) count under one operation
    (``GET /users/{id}``), the name the thresholds match too; the raw names
    seen are remembered, up to a bound, so that such spans cost no more than others.
    """

    def __init__(
        self,
        rules: ThresholdRules | None = None,
        windows_s: Sequence[int] = DEFAULT_WINDOWS_S,
        max_operations: int = DEFAULT_MAX_OPERATIONS,
        slowest_kept: int = DEFAULT_SLOWEST_KEPT,
        clock: Callable[[], int] = time.time_ns,
        explicit_bounds_s: Sequence[float] | None = None,
    ) -> None:
        if not windows_s or any(window < SLOTS_PER_WINDOW for window in windows_s):
            raise ValueError(f"windows must be at least {SLOTS_PER_WINDOW} s each, got {list(windows_s)}")
        self.rules = rules or ThresholdRules()
        self.windows_s = tuple(sorted(set(windows_s)))
        self.max_operations = max_operations
        self.slowest_kept = slowest_kept
        self._clock = clock
        self.explicit_bounds_s = None if explicit_bounds_s is None else tuple(explicit_bounds_s)
        if self.explicit_bounds_s is not None and list(self.explicit_bounds_s) != sorted(set(self.explicit_bounds_s)):
            raise ValueError(f"explicit bounds must be strictly increasing, got {list(self.explicit_bounds_s)}")
        self._explicit_bounds_ns = (
            None if self.explicit_bounds_s is None else [round(bound * _NS_PER_S) for bound in self.explicit_bounds_s]
        )
        # Slot i of a window of W seconds holds spans ending in [i*W/6, (i+1)*W/6) s. With
        # g = gcd of the windows, every slot is a whole number of base slots of g/6 s.
        # Indices are computed as ``end_ns * 6 // (W * 1e9)`` so no width is ever rounded.
        base_seconds = math.gcd(*self.windows_s)
        self._base_divisor = base_seconds * 1_000_000_000
        self._slots_per_base = [window // base_seconds for window in self.windows_s]
        self._pending: deque[ReadableSpan] = deque()
        self._first_record_hooks: list[Callable[[], None]] = []
        self._init_aggregates()
        if hasattr(os, "register_at_fork"):
            reset = weakref.WeakMethod(self._init_aggregates)
            os.register_at_fork(after_in_child=lambda: (method := reset()) is not None and method())

    def _init_aggregates(self) -> None:
        """Start empty; also run in a forked child, whose spans are its own."""
        self._lock = threading.Lock()
        self._pending.clear()
        self._operations: dict[tuple[str, str, int], _Operation] = {}
        self._aliases: dict[tuple[str, str, int], _Operation] = {}
        self._last_resource: object = None
        self._last_service = ""
        self.overflow_warned = False
        self.start_time_ns = self._clock()

    def record(self, span: ReadableSpan) -> None:
        """Hot path: queue the span; fold the queue in now and then."""
        if self._first_record_hooks:
            hooks, self._first_record_hooks = self._first_record_hooks, []
            for hook in hooks:
                hook()
        pending = self._pending
        pending.append(span)
        if len(pending) >= _DRAIN_BATCH and self._lock.acquire(blocking=len(pending) >= _PENDING_LIMIT):
            try:
                self._drain()
            finally:
                self._lock.release()

    def call_on_next_record(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` once, on the thread that records the next span; it must return at once."""
        self._first_record_hooks.append(hook)

    def is_empty(self) -> bool:
        """True while this process has recorded no span (a pre-fork master, say)."""
        return not self._pending and not self._operations

    def snapshot(
        self, window_s: int, operation: str | None = None, kind: SpanKind | None = None
    ) -> list[OperationStats]:
        """Stats per operation over the last ``window_s`` seconds (one of ``windows_s``).

        ``operation`` is an exact name (even one with glob characters, such
        as ``GET /items/[id]``) or a glob (``GET /books*``).
        """
        result = []
        with self._lock:
            self._drain()
            for op, slots in self._window_slots(window_s, operation, kind):
                stats = self._summarise(op, slots)
                if stats is not None:
                    result.append(stats)
        result.sort(key=lambda stats: (stats.service, stats.name, stats.kind))
        return result

    def call_counts(self, window_s: int) -> list[tuple[str, str, SpanKind, int, int]]:
        """(service, name, kind, calls, errors) per operation over the last ``window_s`` seconds.

        What ``snapshot`` counts, without merging histograms for percentiles:
        a success-rate gauge reads this on every metric collection.
        """
        result = []
        with self._lock:
            self._drain()
            for op, slots in self._window_slots(window_s, None, None):
                calls = sum(slot.histogram.count for slot in slots)
                if calls:
                    result.append((op.service, op.name, op.kind, calls, sum(slot.errors for slot in slots)))
        return result

    def _window_slots(
        self, window_s: int, operation: str | None, kind: SpanKind | None
    ) -> Iterator[tuple[_Operation, list[_Slot]]]:
        """Each matching operation with its slots inside the window; the caller holds the lock."""
        window_position = self.windows_s.index(window_s)
        slots_per_base = self._slots_per_base[window_position]
        oldest_slot = self._clock() * SLOTS_PER_WINDOW // self._base_divisor // slots_per_base - (SLOTS_PER_WINDOW - 1)
        matches = operation_filter(operation)
        for op in self._operations.values():
            if kind is not None and op.kind is not kind:
                continue
            if not matches(op.name):
                continue
            slots = [slot for slot in op.rings[window_position] if slot is not None and slot.index >= oldest_slot]
            if op.open is not None and op.open.index // slots_per_base >= oldest_slot:
                slots.append(op.open)
            yield op, slots

    def totals(self) -> list[OperationTotals]:
        """Per operation, everything recorded since ``start_time_ns`` (reset in a forked child).

        Memory stays bounded: an operation's total is one histogram, and
        operations past the cap are the overflow operation's.
        """
        result = []
        with self._lock:
            self._drain()
            for op in self._operations.values():
                total = op.closed_total
                histogram = total.histogram.copy()
                errors, oks, slow = total.errors, total.oks, total.slow
                if op.open is not None:
                    histogram.merge(op.open.histogram)
                    errors, oks, slow = errors + op.open.errors, oks + op.open.oks, slow + op.open.slow
                if histogram.count == 0:
                    continue
                result.append(
                    OperationTotals(
                        service=op.service,
                        name=op.name,
                        kind=op.kind,
                        count=histogram.count,
                        error_count=errors,
                        ok_count=oks,
                        slow_count=slow,
                        histogram=histogram,
                        explicit_counts=None if op.explicit is None else tuple(op.explicit),
                    )
                )
        result.sort(key=lambda totals: (totals.service, totals.name, totals.kind.value))
        return result

    def _summarise(self, op: _Operation, slots: Iterable[_Slot]) -> OperationStats | None:
        merged = _duration_histogram()
        errors = slow = 0
        slowest: list[tuple[int, int, int, int]] = []
        for slot in slots:
            merged.merge(slot.histogram)
            errors += slot.errors
            slow += slot.slow
            slowest.extend(slot.slowest)
        if merged.count == 0:
            return None

        def milliseconds(quantile: float) -> float:
            return (merged.quantile(quantile) or 0.0) / _NS_PER_MS

        return OperationStats(
            service=op.service,
            name=op.name,
            kind=op.kind.name,
            count=merged.count,
            error_count=errors,
            success_rate=(merged.count - errors) / merged.count,
            p50_ms=milliseconds(0.50),
            p95_ms=milliseconds(0.95),
            p99_ms=milliseconds(0.99),
            max_ms=merged.max / _NS_PER_MS,
            slow_count=slow,
            slow_threshold_ms=None if op.threshold_ns is None else self.rules.for_name(op.name)[1],
            slowest=tuple(
                SlowSpan(f"{trace_id:032x}", f"{span_id:016x}", duration / _NS_PER_MS, end)
                for duration, end, trace_id, span_id in heapq.nlargest(self.slowest_kept, slowest)
            ),
        )

    def _drain(self) -> None:
        """Fold queued spans into the aggregates; the caller holds the lock.

        This loop runs once per span, so its common path is written inline
        with the lookups it needs bound once per batch; slot changes, new
        operations and the slowest-span list go through helper methods.
        """
        pending, operations, divisor = self._pending, self._operations, self._base_divisor
        error_code, ok_code, kept = StatusCode.ERROR, StatusCode.OK, self.slowest_kept
        explicit_bounds = self._explicit_bounds_ns
        while pending:
            try:
                span = pending.popleft()
            except IndexError:
                return
            try:
                start, end = span.start_time, span.end_time
                if start is None or end is None:
                    continue
                duration = end - start if end > start else 0
                if span.resource is not self._last_resource:
                    self._remember_service(span)
                kind = span.kind
                # id(kind): SpanKind members are singletons, and hashing an Enum member runs Python code.
                operation = operations.get((self._last_service, span.name, id(kind)))
                if operation is None:
                    operation = self._operation_for(span.name, kind)
                index = end * SLOTS_PER_WINDOW // divisor
                slot = operation.open
                late = False
                if slot is None or slot.index != index:
                    slot, late = self._slot_for(operation, index)
                slot.histogram.add(duration)
                status_code = span.status.status_code
                if status_code is error_code:
                    slot.errors += 1
                elif status_code is ok_code:
                    slot.oks += 1
                if explicit_bounds is not None:
                    operation.explicit[bisect_left(explicit_bounds, duration)] += 1  # type: ignore[index]
                threshold_ns = operation.threshold_ns
                if threshold_ns is None:  # the overflow operation: each span keeps its own threshold
                    threshold_ns = self.rules.for_name(span.name)[0]
                if duration >= threshold_ns:
                    slot.slow += 1
                slowest = slot.slowest
                if len(slowest) < kept or (slowest and duration > slowest[0][0]):
                    self._keep_slowest(slowest, span, duration, end)
                if late:
                    self._close(operation, slot)
            except Exception as error:  # noqa: BLE001 - one bad span must not stop the rest
                report_once(_logger, "aggregating span statistics", error)

    def _remember_service(self, span: ReadableSpan) -> None:
        resource = self._last_resource = span.resource
        self._last_service = str(resource.attributes.get("service.name", "")) if resource else ""

    def _slot_for(self, operation: _Operation, index: int) -> tuple[_Slot, bool]:
        """The slot for a span ending in base slot ``index``, and whether it is a late one.

        A newer slot closes the open one; a span that ended before the open
        slot (queued out of order) gets a slot of its own, closed right after.
        """
        slot = operation.open
        if slot is not None and slot.index > index:
            return _Slot(index), True
        if slot is not None:
            self._close(operation, slot)
        slot = operation.open = _Slot(index)
        return slot, False

    def _keep_slowest(
        self, slowest: list[tuple[int, int, int, int]], span: ReadableSpan, duration: int, end: int
    ) -> None:
        context = span.context
        candidate = (duration, end, context.trace_id, context.span_id)
        if len(slowest) < self.slowest_kept:
            heapq.heappush(slowest, candidate)
        else:
            heapq.heapreplace(slowest, candidate)

    def _close(self, operation: _Operation, closed: _Slot) -> None:
        """Merge a closed base slot into the slot of each window that contains it, and into the total."""
        operation.closed_total.merge(closed, 0)
        for ring, slots_per_base in zip(operation.rings, self._slots_per_base, strict=True):
            index = closed.index // slots_per_base
            position = index % SLOTS_PER_WINDOW
            slot = ring[position]
            if slot is None or slot.index < index:
                slot = ring[position] = _Slot(index)
            elif slot.index > index:
                continue  # older than this window reaches back
            slot.merge(closed, self.slowest_kept)

    def _operation_for(self, name: str, kind: SpanKind) -> _Operation:
        """The operation of a span name not registered as such: an alias, a folded name, or a new one."""
        key = (self._last_service, name, id(kind))
        operation = self._aliases.get(key)
        if operation is not None:
            return operation
        folded = operation_name(name, self.rules.fold_ids)
        if folded == name:
            return self._new_operation(name, kind)
        operation = self._operations.get((self._last_service, folded, id(kind))) or self._new_operation(folded, kind)
        if len(self._aliases) < _ALIASES_PER_OPERATION * self.max_operations:
            self._aliases[key] = operation
        return operation

    def _new_operation(self, name: str, kind: SpanKind) -> _Operation:
        """Register an operation, or fold it into the overflow operation past the cap."""
        service = self._last_service
        if len(self._operations) >= self.max_operations:
            if not self.overflow_warned:
                self.overflow_warned = True
                _logger.warning(
                    "otel-ext: more than %d distinct operations; further ones are counted under %r "
                    "(raise OTEL_EXT_MAX_OPERATIONS, or give spans low-cardinality names)",
                    self.max_operations,
                    OVERFLOW_OPERATION,
                )
            name = OVERFLOW_OPERATION
            overflow = self._operations.get((service, name, id(kind)))
            if overflow is not None:
                return overflow
        threshold_ns = None if name == OVERFLOW_OPERATION else self.rules.for_name(name)[0]
        explicit_buckets = None if self._explicit_bounds_ns is None else len(self._explicit_bounds_ns) + 1
        operation = self._operations[(service, name, id(kind))] = _Operation(
            service, name, _span_kind(kind), threshold_ns, len(self.windows_s), explicit_buckets
        )
        return operation


class OperationStatsProcessor(SpanProcessor):
    """Feeds every ended span into an :class:`OperationStatsStore`.

    Threading contract: ``on_end`` runs on whatever thread ends the span; it
    only queues the span (see the store) and never raises.
    """

    def __init__(self, store: OperationStatsStore) -> None:
        self.store = store

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self.store.record(span)
        except Exception as error:  # noqa: BLE001 - the host app must never see our failures
            report_once(_logger, "recording span statistics", error)
