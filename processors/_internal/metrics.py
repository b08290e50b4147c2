"""RED metrics per operation, read from the statistics store's totals.

Recording into an SDK histogram on every span would cost about half a bare
span. Instead the store already aggregates every span (sampled or not) into
base-2 exponential buckets, and this module turns its running totals into
OpenTelemetry metric data at collection time: nothing is added per span, the
exported histogram and the monitor's percentiles come from the same counts,
and histograms of many processes merge exactly.

The steps are small pure functions (points from totals, downscaling, delta
from two totals); :class:`OperationMetrics` holds the little state a delta
reader needs, and :class:`OperationMetricsReader` hands the result to any
standard metric exporter alongside the SDK's own instruments.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry.metrics import MeterProvider as ApiMeterProvider
from opentelemetry.sdk.metrics._internal.instrument import (  # the keys readers map temporality by
    _Counter,
    _Histogram,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, StatusCode

from processors._internal.errors import report_once
from processors._internal.pipeline import PROCESS_PID_ATTRIBUTE
from processors._internal.stats import OperationStatsStore, OperationTotals

__all__ = [
    "CALLS_METRIC",
    "DEFAULT_EXPLICIT_BOUNDS_S",
    "DEFAULT_EXPONENTIAL_MAX_SIZE",
    "DURATION_METRIC",
    "SLOW_CALLS_METRIC",
    "SUCCESS_RATE_METRIC",
    "HistogramAggregation",
    "OperationMetrics",
    "OperationMetricsMixin",
    "OperationMetricsReader",
    "downscale",
    "subtract_buckets",
]

_logger = logging.getLogger(__name__)


def _installed_version() -> str:
    try:
        return version("otel-ext")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return ""


DURATION_METRIC = "otel_ext.operation.duration"
CALLS_METRIC = "otel_ext.operation.calls"
SLOW_CALLS_METRIC = "otel_ext.operation.slow_calls"
SUCCESS_RATE_METRIC = "otel_ext.operation.success_rate"
# The dimensions, and their values, that the Collector's spanmetrics connector uses.
SERVICE_NAME_ATTRIBUTE = "service.name"
SPAN_NAME_ATTRIBUTE = "span.name"
SPAN_KIND_ATTRIBUTE = "span.kind"
STATUS_CODE_ATTRIBUTE = "status.code"

# The bounds the HTTP semantic conventions advise for request durations, in seconds.
DEFAULT_EXPLICIT_BOUNDS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)
DEFAULT_EXPONENTIAL_MAX_SIZE = 160  # the SDK's default for base-2 exponential histograms
_SCOPE = InstrumentationScope("otel_ext", _installed_version())
_NS_PER_S = 1e9


class HistogramAggregation(enum.Enum):
    """How the duration histogram is exported."""

    EXPONENTIAL = "exponential"
    """Base-2 exponential buckets: fine resolution, merge exactly across processes."""
    EXPLICIT = "explicit"
    """Fixed bounds (``le`` buckets): what Prometheus' classic histograms and ``histogram_quantile`` take."""


def downscale(offset: int, counts: Sequence[int], scale: int, max_size: int) -> tuple[int, int, list[int]]:
    """(scale, offset, counts) with at most ``max_size`` buckets.

    Lowering the scale by one merges each pair of neighbouring buckets
    (index ``i`` becomes ``i >> 1``), exactly as the SDK's exponential
    aggregation does, so bounds stay powers of the new base.
    """
    if max_size < 2:
        raise ValueError(f"max_size must be at least 2, got {max_size}")  # buckets either side of 1 never merge
    first = next((i for i, count in enumerate(counts) if count), None)
    if first is None:
        return scale, 0, []
    last = max(i for i, count in enumerate(counts) if count)
    low, high = offset + first, offset + last
    shift = 0
    while (high >> shift) - (low >> shift) + 1 > max_size:
        shift += 1
    merged = [0] * ((high >> shift) - (low >> shift) + 1)
    for position in range(first, last + 1):
        merged[((offset + position) >> shift) - (low >> shift)] += counts[position]
    return scale - shift, low >> shift, merged


def subtract_buckets(
    current: tuple[int, Sequence[int]], previous: tuple[int, Sequence[int]]
) -> tuple[int, list[int]]:
    """Bucket counts of ``current`` minus ``previous`` (both as (offset, counts)), never below zero.

    A histogram only folds its lowest buckets together, so a count can sit
    lower in ``previous`` than in ``current``: it is taken from the lowest
    bucket still present.
    """
    offset, counts = current[0], list(current[1])
    for position, count in enumerate(previous[1]):
        index = max(previous[0] + position - offset, 0)
        if index < len(counts):
            counts[index] = max(counts[index] - count, 0)
    return offset, counts


def _kind_label(kind: SpanKind) -> str:
    return f"SPAN_KIND_{kind.name}"


def _operation_attributes(totals: OperationTotals) -> dict[str, str]:
    return {
        SERVICE_NAME_ATTRIBUTE: totals.service,
        SPAN_NAME_ATTRIBUTE: totals.name,
        SPAN_KIND_ATTRIBUTE: _kind_label(totals.kind),
    }


def _status_counts(totals: OperationTotals) -> dict[str, int]:
    """Calls per status code; UNSET and ERROR even at zero, OK only once seen (instrumentations rarely set it).

    A series that appears at 1 hides its first increase from ``rate()``: an
    operation's first error would never fire an alert, and a success-rate
    query over ``status_code!="STATUS_CODE_ERROR"`` would drop an operation
    that only ever failed.
    """
    unset = totals.count - totals.error_count - totals.ok_count
    counts = {StatusCode.UNSET: unset, StatusCode.OK: totals.ok_count, StatusCode.ERROR: totals.error_count}
    return {f"STATUS_CODE_{code.name}": count for code, count in counts.items() if count or code is not StatusCode.OK}


@dataclass(frozen=True)
class _Interval:
    """What a data point covers: since ``start`` (process or previous collection) until ``now``."""

    start: int
    now: int
    previous: OperationTotals | None  # set for delta points


def _exponential_point(
    totals: OperationTotals, interval: _Interval, max_size: int
) -> ExponentialHistogramDataPoint:
    histogram = totals.histogram
    buckets: tuple[int, Sequence[int]] = histogram.buckets()
    zero_count = histogram.zero_count
    if interval.previous is not None:
        before = interval.previous.histogram
        buckets = subtract_buckets(buckets, before.buckets())
        zero_count -= before.zero_count
    scale, offset, counts = downscale(buckets[0], buckets[1], histogram.scale, max_size)
    count, total, minimum, maximum = _histogram_summary(totals, interval)
    return ExponentialHistogramDataPoint(
        attributes=_operation_attributes(totals),
        start_time_unix_nano=interval.start,
        time_unix_nano=interval.now,
        count=count,
        sum=total,
        scale=scale,
        zero_count=zero_count,
        positive=Buckets(offset, counts),
        negative=Buckets(0, []),
        flags=0,
        min=minimum,  # type: ignore[arg-type]
        max=maximum,  # type: ignore[arg-type]
    )


def _explicit_point(totals: OperationTotals, interval: _Interval, bounds: Sequence[float]) -> HistogramDataPoint:
    counts = list(totals.explicit_counts or ())
    if interval.previous is not None:
        counts = [now - then for now, then in zip(counts, interval.previous.explicit_counts or (), strict=True)]
    count, total, minimum, maximum = _histogram_summary(totals, interval)
    return HistogramDataPoint(
        attributes=_operation_attributes(totals),
        start_time_unix_nano=interval.start,
        time_unix_nano=interval.now,
        count=count,
        sum=total,
        bucket_counts=counts,
        explicit_bounds=list(bounds),
        min=minimum,  # type: ignore[arg-type]
        max=maximum,  # type: ignore[arg-type]
    )


def _histogram_summary(totals: OperationTotals, interval: _Interval) -> tuple[int, float, float | None, float | None]:
    """(count, sum in seconds, min, max) of a duration point; min and max are unknown for a later delta interval
    (OTLP leaves them unset)."""
    histogram = totals.histogram
    if interval.previous is None:
        return histogram.count, histogram.sum / _NS_PER_S, histogram.min / _NS_PER_S, histogram.max / _NS_PER_S
    before = interval.previous.histogram
    return histogram.count - before.count, (histogram.sum - before.sum) / _NS_PER_S, None, None


def _counter_points(
    totals: OperationTotals, interval: _Interval, by_status: bool
) -> list[NumberDataPoint]:
    """Call counts (per status code when ``by_status``), or slow-call counts."""
    attributes = _operation_attributes(totals)
    if by_status:
        now = _status_counts(totals)
        then = _status_counts(interval.previous) if interval.previous is not None else {}
        values = {status: count - then.get(status, 0) for status, count in now.items()}
        return [
            NumberDataPoint({**attributes, STATUS_CODE_ATTRIBUTE: status}, interval.start, interval.now, value)
            for status, value in values.items()
            if value or interval.previous is None
        ]
    slow = totals.slow_count - (interval.previous.slow_count if interval.previous is not None else 0)
    if not slow and interval.previous is not None:
        return []  # a delta with nothing new; a cumulative zero is kept so that rate() reads 0, not nothing
    return [NumberDataPoint(attributes, interval.start, interval.now, slow)]


class OperationMetrics:
    """The store's totals as OpenTelemetry metrics, for one reader.

    Threading contract: ``collect`` is called by one reader at a time (the
    SDK's readers serialise collection); it takes the store's lock briefly to
    read totals, and keeps the previous totals only for delta temporality.
    Memory is bounded by the store's operation cap.
    """

    def __init__(
        self,
        store: OperationStatsStore,
        aggregation: HistogramAggregation = HistogramAggregation.EXPONENTIAL,
        exponential_max_size: int = DEFAULT_EXPONENTIAL_MAX_SIZE,
    ) -> None:
        if aggregation is HistogramAggregation.EXPLICIT and store.explicit_bounds_s is None:
            raise ValueError("explicit buckets need a store created with explicit_bounds_s")
        if exponential_max_size < 2:
            raise ValueError(f"exponential_max_size must be at least 2, got {exponential_max_size}")
        self.store = store
        self.aggregation = aggregation
        self.exponential_max_size = exponential_max_size
        self._previous: dict[tuple[str, str, SpanKind], OperationTotals] = {}
        self._previous_time = 0
        self._store_start = 0

    def collect(
        self,
        counter_temporality: AggregationTemporality,
        histogram_temporality: AggregationTemporality,
        now: int | None = None,
    ) -> list[Metric]:
        """Duration histogram, call and slow-call counters and success-rate gauge, per operation."""
        now = time.time_ns() if now is None else now
        store_start = self.store.start_time_ns
        if store_start != self._store_start:  # first call, or a forked child that started afresh
            self._store_start, self._previous, self._previous_time = store_start, {}, store_start
        all_totals = self.store.totals()

        def interval(totals: OperationTotals, temporality: AggregationTemporality) -> _Interval:
            if temporality is AggregationTemporality.DELTA:
                previous = self._previous.get((totals.service, totals.name, totals.kind))
                return _Interval(self._previous_time, now, previous)
            return _Interval(store_start, now, None)

        durations = []
        calls: list[NumberDataPoint] = []
        slow_calls: list[NumberDataPoint] = []
        for totals in all_totals:
            duration_interval = interval(totals, histogram_temporality)
            previous = duration_interval.previous
            if previous is None or totals.count > previous.count:
                durations.append(self._duration_point(totals, duration_interval))
            counter_interval = interval(totals, counter_temporality)
            calls.extend(_counter_points(totals, counter_interval, by_status=True))
            slow_calls.extend(_counter_points(totals, counter_interval, by_status=False))
        if AggregationTemporality.DELTA in (counter_temporality, histogram_temporality):
            self._previous = {(totals.service, totals.name, totals.kind): totals for totals in all_totals}
            self._previous_time = now

        duration_data: ExponentialHistogram | Histogram
        if self.aggregation is HistogramAggregation.EXPONENTIAL:
            duration_data = ExponentialHistogram(durations, histogram_temporality)  # type: ignore[arg-type]
        else:
            duration_data = Histogram(durations, histogram_temporality)  # type: ignore[arg-type]
        metrics = [
            Metric(DURATION_METRIC, "Duration of each operation (span), sampled or not.", "s", duration_data),
            Metric(CALLS_METRIC, "Operations (spans) ended, by status code.", "{call}",
                   Sum(calls, counter_temporality, is_monotonic=True)),
            Metric(SLOW_CALLS_METRIC, "Operations that reached their slow threshold.", "{call}",
                   Sum(slow_calls, counter_temporality, is_monotonic=True)),
            self._success_rate(now),
        ]
        return [metric for metric in metrics if metric.data.data_points]

    def _duration_point(
        self, totals: OperationTotals, interval: _Interval
    ) -> ExponentialHistogramDataPoint | HistogramDataPoint:
        if self.aggregation is HistogramAggregation.EXPONENTIAL:
            return _exponential_point(totals, interval, self.exponential_max_size)
        return _explicit_point(totals, interval, self.store.explicit_bounds_s or ())

    def _success_rate(self, now: int) -> Metric:
        """Share of calls not ending in ERROR over the monitor's shortest window: the figure it shows."""
        window_s = self.store.windows_s[0]
        points = [
            NumberDataPoint(
                {SERVICE_NAME_ATTRIBUTE: service, SPAN_NAME_ATTRIBUTE: name, SPAN_KIND_ATTRIBUTE: _kind_label(kind)},
                now - window_s * 1_000_000_000,
                now,
                (calls - errors) / calls,
            )
            for service, name, kind, calls, errors in self.store.call_counts(window_s)
        ]
        return Metric(
            SUCCESS_RATE_METRIC,
            f"Share of operations not ending in ERROR over the last {window_s} s.",
            "1",
            Gauge(points),
        )


def _with_current_pid(resource: Resource) -> Resource:
    """In a forked child, the same resource under the child's ``process.pid``.

    The resource is built once in the parent; two processes exporting
    cumulative series under one identity would overwrite each other's.
    """
    pid = os.getpid()
    if resource.attributes.get(PROCESS_PID_ATTRIBUTE) in (None, pid):
        return resource
    return resource.merge(Resource({PROCESS_PID_ATTRIBUTE: pid}))


def _merged(sdk_data: MetricsData | None, own: Sequence[Metric], resource: Resource) -> MetricsData | None:
    """The SDK's metrics plus otel-ext's scope, every resource under the current pid."""
    resource_metrics = list(sdk_data.resource_metrics) if sdk_data is not None else []
    if own:
        scope = ScopeMetrics(_SCOPE, list(own), "")
        for position, existing in enumerate(resource_metrics):
            if existing.resource == resource:
                resource_metrics[position] = ResourceMetrics(
                    existing.resource, [*existing.scope_metrics, scope], existing.schema_url
                )
                break
        else:
            resource_metrics.append(ResourceMetrics(resource, [scope], ""))
    if not resource_metrics:
        return None
    return MetricsData(
        [
            ResourceMetrics(_with_current_pid(item.resource), item.scope_metrics, item.schema_url)
            for item in resource_metrics
        ]
    )


class OperationMetricsMixin(MetricReader):
    """Adds otel-ext's per-operation metrics to a metric reader's collections.

    Any SDK ``MetricReader`` subclass can mix it in, first in the bases, and
    is then created with ``operation_metrics=OperationMetrics(store)`` besides
    its own arguments. The
    SDK has no metric producer API yet, and its ``collect`` passes nothing on
    when the app has no instruments of its own, so ``collect`` is redefined:
    it collects the SDK's instruments as before, adds otel-ext's metrics with
    the temporality this reader prefers for counters and histograms, and
    hands both to ``_receive_metrics``. A failure in otel-ext's part is logged
    once and the SDK's metrics still go out.
    """

    _operation_metrics_resource: Resource = Resource.get_empty()

    def __init__(self, *args: Any, operation_metrics: OperationMetrics, **kwargs: Any) -> None:
        self._operation_metrics = operation_metrics  # before the reader's own start: a periodic one may collect at once
        super().__init__(*args, **kwargs)

    def _set_meter_provider(self, meter_provider: ApiMeterProvider) -> None:
        super()._set_meter_provider(meter_provider)
        sdk_config = getattr(meter_provider, "_sdk_config", None)
        self._operation_metrics_resource = getattr(sdk_config, "resource", None) or Resource.create()

    def collect(self, timeout_millis: float = 10_000) -> None:  # type: ignore[misc]  # see the class docstring
        if self._collect is None:
            _logger.warning("Cannot call collect on a MetricReader until it is registered on a MeterProvider")
            return
        sdk_data: MetricsData | None = self._collect(self, timeout_millis=timeout_millis)  # type: ignore[call-arg,assignment]  # the SDK calls it so
        own: list[Metric] = []
        try:
            temporality = self._instrument_class_temporality
            own = self._operation_metrics.collect(temporality[_Counter], temporality[_Histogram])
        except Exception as error:  # noqa: BLE001 - the SDK's own metrics must still go out
            report_once(_logger, "collecting operation metrics", error)
        metrics_data = _merged(sdk_data, own, self._operation_metrics_resource)
        if metrics_data is not None:
            self._receive_metrics(metrics_data, timeout_millis=timeout_millis)


class OperationMetricsReader(OperationMetricsMixin, PeriodicExportingMetricReader):
    """A periodic exporting reader that also exports otel-ext's per-operation metrics.

    Pass it to any ``MeterProvider`` with any metric exporter (OTLP over
    gRPC or HTTP, console, ...). Interval, timeout and temporality come from
    the exporter and the standard variables as for the SDK's own reader; the
    final collection at shutdown includes the last spans ended.
    """

    def __init__(
        self,
        exporter: MetricExporter,
        operation_metrics: OperationMetrics,
        export_interval_millis: float | None = None,
        export_timeout_millis: float | None = None,
    ) -> None:
        super().__init__(
            exporter,
            export_interval_millis,
            export_timeout_millis,
            operation_metrics=operation_metrics,
        )
