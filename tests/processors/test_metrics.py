"""OperationMetrics / OperationMetricsReader: the stats store's totals exported as OpenTelemetry metrics.

Expected values are computed here from the raw span durations with exact
rational arithmetic, never by calling the code under test.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction

import pytest
from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    DataPointT,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AnyValue

import processors._internal.errors as errors_module
from processors import (
    CALLS_METRIC,
    DEFAULT_EXPLICIT_BOUNDS_S,
    DURATION_METRIC,
    SLOW_CALLS_METRIC,
    SUCCESS_RATE_METRIC,
    HistogramAggregation,
    OperationMetrics,
    OperationMetricsReader,
    OperationStatsProcessor,
    OperationStatsStore,
)
from processors._internal.metrics import downscale, subtract_buckets
from processors._internal.sketch import DEFAULT_SCALE, relative_accuracy
from tests.processors._support import (
    NS_PER_MS,
    T0_NS,
    Clock,
    allowed_indices,
    emit,
    exact_quantile,
    provider_with,
    relative_error,
)

SECOND = 1_000_000_000
CUMULATIVE = AggregationTemporality.CUMULATIVE
DELTA = AggregationTemporality.DELTA
SLACK = 1e-9  # float rounding in the estimate itself
METRICS_LOGGER = "processors._internal.metrics"
OPERATION = {"service.name": "checkout", "span.name": "GET /books", "span.kind": "SPAN_KIND_SERVER"}


# --- independent arithmetic ---------------------------------------------------------------------------


def seconds(duration_ns: int) -> Fraction:
    return Fraction(duration_ns, SECOND)


def rank_of(count: int, quantile: float) -> int:
    """Nearest rank, with ``quantile`` read exactly from its decimal text."""
    return max(1, math.ceil(Fraction(str(quantile)) * count))


def rank_bucket(zero_count: int, offset: int, counts: Sequence[int], count: int, quantile: float) -> int | None:
    """Index of the exported bucket holding the nearest-rank sample (None: it is a zero)."""
    rank = rank_of(count, quantile)
    if rank <= zero_count:
        return None
    seen = zero_count
    for position, bucket_count in enumerate(counts):
        seen += bucket_count
        if seen >= rank:
            return offset + position
    raise AssertionError(f"rank {rank} beyond the {seen} counted values")


def point_rank_bucket(point: ExponentialHistogramDataPoint, quantile: float) -> int | None:
    return rank_bucket(point.zero_count, point.positive.offset, point.positive.bucket_counts, point.count, quantile)


def bucket_estimate(scale: int, index: int) -> float:
    """2*upper/(base+1): the point whose relative distance to both bounds is the same."""
    base = 2.0 ** (2.0**-scale)
    return 2.0 * base ** (index + 1) / (base + 1.0)


def expected_buckets(durations_ns: Sequence[int], scale: int) -> dict[int, int]:
    """Count per bucket index at ``scale`` of durations that sit unambiguously inside a bucket."""
    indices: Counter[int] = Counter()
    for duration in durations_ns:
        if duration > 0:
            (index,) = allowed_indices(seconds(duration), scale)
            indices[index] += 1
    return dict(indices)


def sparse(offset: int, counts: Sequence[int]) -> dict[int, int]:
    return {offset + position: count for position, count in enumerate(counts) if count}


def le_counts(durations_ns: Sequence[int], bounds_s: Sequence[float]) -> list[int]:
    """Explicit-bucket counts with ``le`` semantics: bucket i holds (bounds[i-1], bounds[i]], the last (max, +inf)."""
    counts = [0] * (len(bounds_s) + 1)
    exact_bounds = [Fraction(str(bound)) for bound in bounds_s]
    for duration in durations_ns:
        value = seconds(duration)
        counts[next((i for i, bound in enumerate(exact_bounds) if value <= bound), len(bounds_s))] += 1
    return counts


def unambiguous(rng: random.Random, draw: Callable[[random.Random], int], n: int) -> list[int]:
    """``n`` positive durations none of which lies within 1e-12 of a scale-6 bound (so of any coarser bound)."""
    durations: list[int] = []
    while len(durations) < n:
        duration = max(1, draw(rng))
        if len(allowed_indices(seconds(duration), DEFAULT_SCALE)) == 1:
            durations.append(duration)
    return durations


def lognormal(median_ms: float, sigma: float) -> Callable[[random.Random], int]:
    return lambda rng: int(rng.lognormvariate(math.log(median_ms * NS_PER_MS), sigma))


def log_uniform(low_ns: float, high_ns: float) -> Callable[[random.Random], int]:
    return lambda rng: int(10 ** rng.uniform(math.log10(low_ns), math.log10(high_ns)))


# --- fixtures and helpers -----------------------------------------------------------------------------


def _status(code: StatusCode) -> Callable[[Span], None]:
    def configure(span: Span) -> None:
        if code is not StatusCode.UNSET:
            span.set_status(Status(code))

    return configure


def record(
    tracer: Tracer,
    durations_ns: Sequence[int],
    name: str = "GET /books",
    end_ns: int = T0_NS,
    code: StatusCode = StatusCode.UNSET,
) -> None:
    for offset, duration in enumerate(durations_ns):
        emit(tracer, name, end_ns - offset, duration, kind=SpanKind.SERVER, configure=_status(code))


def by_name(metrics: Sequence[Metric]) -> dict[str, Metric]:
    named = {metric.name: metric for metric in metrics}
    assert len(named) == len(metrics), "each metric exported once"
    return named


def attributes_of(point: DataPointT) -> dict[str, AnyValue]:
    """A point's attributes as a plain dict (the SDK types them as optional)."""
    return dict(point.attributes or {})


def str_attribute(point: DataPointT, key: str) -> str:
    value = attributes_of(point)[key]
    assert isinstance(value, str), (key, value)
    return value


def value_of(point: DataPointT) -> int | float:
    """The value of a counter or gauge point."""
    assert isinstance(point, NumberDataPoint), point
    return point.value


def temporality_of(metric: Metric) -> AggregationTemporality:
    """The aggregation temporality of a sum or histogram metric (a gauge has none)."""
    assert not isinstance(metric.data, Gauge), metric
    return metric.data.aggregation_temporality


def exponential_points(metric: Metric) -> list[ExponentialHistogramDataPoint]:
    assert isinstance(metric.data, ExponentialHistogram), metric.data
    return list(metric.data.data_points)


def only_point(metric: Metric, span_name: str = "GET /books") -> DataPointT:
    points = [point for point in metric.data.data_points if attributes_of(point)["span.name"] == span_name]
    assert len(points) == 1, points
    return points[0]


def only_number_point(metric: Metric, span_name: str = "GET /books") -> NumberDataPoint:
    point = only_point(metric, span_name)
    assert isinstance(point, NumberDataPoint), point
    return point


def only_histogram_point(
    metric: Metric, span_name: str = "GET /books"
) -> HistogramDataPoint | ExponentialHistogramDataPoint:
    """The point of a duration histogram, whichever its aggregation (count, sum and times are common to both)."""
    point = only_point(metric, span_name)
    assert isinstance(point, (HistogramDataPoint, ExponentialHistogramDataPoint)), point
    return point


def only_explicit_point(metric: Metric, span_name: str = "GET /books") -> HistogramDataPoint:
    point = only_point(metric, span_name)
    assert isinstance(point, HistogramDataPoint), point
    return point


def only_exponential_point(metric: Metric, span_name: str = "GET /books") -> ExponentialHistogramDataPoint:
    point = only_point(metric, span_name)
    assert isinstance(point, ExponentialHistogramDataPoint), point
    return point


def calls_by_status(metric: Metric, span_name: str = "GET /books") -> dict[str, int | float]:
    points = [point for point in metric.data.data_points if attributes_of(point)["span.name"] == span_name]
    result = {str_attribute(point, "status.code"): value_of(point) for point in points}
    assert len(result) == len(points)
    return result


def exact_quantile_ns(durations_ns: Sequence[int], quantile: float) -> int:
    """``exact_quantile`` of integer durations: one of them, so an int."""
    exact = exact_quantile(durations_ns, quantile)
    assert isinstance(exact, int), exact
    return exact


# --- downscale / subtract_buckets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "max_size"),
    [(-300, 160), (-7, 160), (0, 160), (1000, 160), (-3, 2), (-200, 2), (5, 3), (-40, 20), (-1_000_000, 160)],
)
def test_downscale_fits_max_size_with_the_smallest_shift(offset: int, max_size: int) -> None:
    """Guards exported exponential histograms exceeding the bucket limit, losing counts or coarsening needlessly."""
    rng = random.Random(f"{offset}-{max_size}")
    counts = [rng.choice([0, 0, 1, 3, 17]) for _ in range(700)]
    counts[0], counts[-1] = 0, 0  # leading/trailing empty buckets must not widen the result
    counts[5], counts[650] = 2, 9
    scale, new_offset, new_counts = downscale(offset, counts, DEFAULT_SCALE, max_size)
    shift = DEFAULT_SCALE - scale
    assert shift >= 0
    assert len(new_counts) <= max_size
    assert sum(new_counts) == sum(counts)
    expected: Counter[int] = Counter()
    for position, count in enumerate(counts):
        if count:
            expected[(offset + position) >> shift] += count
    assert sparse(new_offset, new_counts) == dict(expected)
    assert new_counts[0] and new_counts[-1], "no empty buckets at either end"
    # Minimal: one shift less would need more than max_size buckets.
    nonzero = [position for position, count in enumerate(counts) if count]
    low, high = offset + nonzero[0], offset + nonzero[-1]

    def span_at(shift: int) -> int:
        return (high >> shift) - (low >> shift) + 1

    assert span_at(shift) <= max_size
    if shift > 0:
        assert span_at(shift - 1) > max_size


def test_downscale_keeps_scale_when_it_fits() -> None:
    """Guards a histogram that already fits being coarsened (needless loss of accuracy)."""
    assert downscale(-4, [0, 1, 2, 0, 3, 0], 6, 4) == (6, -3, [1, 2, 0, 3])
    # Indices -3, -2, 0 (counts 1, 2, 3) need 4 buckets; at scale 5 they are -2, -1, 0.
    assert downscale(-4, [0, 1, 2, 0, 3, 0], 6, 3) == (5, -2, [1, 2, 3])
    assert downscale(10, [5], 3, 2) == (3, 10, [5])


@pytest.mark.parametrize("counts", [[], [0], [0, 0, 0]])
def test_downscale_of_empty_buckets(counts: list[int]) -> None:
    """Guards an operation with only zero-duration spans crashing the export or exporting junk buckets."""
    scale, offset, new_counts = downscale(17, counts, DEFAULT_SCALE, 160)
    assert new_counts == []
    assert scale == DEFAULT_SCALE
    assert offset == 0


def test_subtract_buckets_same_offset() -> None:
    """Guards delta histograms repeating counts already exported."""
    assert subtract_buckets((3, [5, 7, 9]), (3, [1, 7, 4])) == (3, [4, 0, 5])


def test_subtract_buckets_different_offsets() -> None:
    """Guards delta histograms shifting counts into neighbouring buckets when the range grew."""
    # Current grew both ways; previous covered indices 5..7.
    current = (3, [1, 2, 5, 6, 7, 8])  # indices 3..8
    previous = (5, [4, 1, 2])  # indices 5..7
    offset, counts = subtract_buckets(current, previous)
    assert sparse(offset, counts) == {3: 1, 4: 2, 5: 1, 6: 5, 7: 5, 8: 8}
    # Previous empty: everything is new.
    assert sparse(*subtract_buckets((2, [1, 0, 3]), (0, []))) == {2: 1, 4: 3}


def test_subtract_buckets_never_negative() -> None:
    """Guards negative bucket counts (invalid OTLP, rejected by backends) after the lowest buckets fold."""
    offset, counts = subtract_buckets((10, [3, 1]), (8, [2, 2, 5, 4]))
    assert all(count >= 0 for count in counts)
    assert offset == 10
    offset, counts = subtract_buckets((0, [1, 1]), (0, [4, 9]))
    assert counts == [0, 0]


# --- cumulative points --------------------------------------------------------------------------------


def test_cumulative_exponential_point_count_sum_zeros_min_max_and_attributes(
    tracer: Tracer, store: OperationStatsStore
) -> None:
    """Guards the exported duration histogram disagreeing with the spans (count, seconds, zeros, min/max, labels)."""
    rng = random.Random(21)
    durations = unambiguous(rng, lognormal(30, 0.8), 500) + [0, 0]
    record(tracer, durations)
    now = T0_NS + 5 * SECOND
    metrics = by_name(OperationMetrics(store).collect(CUMULATIVE, CUMULATIVE, now=now))
    assert set(metrics) == {DURATION_METRIC, CALLS_METRIC, SLOW_CALLS_METRIC, SUCCESS_RATE_METRIC}
    duration = metrics[DURATION_METRIC]
    assert isinstance(duration.data, ExponentialHistogram)
    assert duration.data.aggregation_temporality is CUMULATIVE
    assert duration.unit == "s"
    point = only_point(duration)
    assert isinstance(point, ExponentialHistogramDataPoint)
    assert attributes_of(point) == OPERATION
    assert (point.start_time_unix_nano, point.time_unix_nano) == (store.start_time_ns, now)
    assert point.count == len(durations)
    assert point.zero_count == 2
    assert point.sum == pytest.approx(sum(durations) / SECOND, rel=1e-12)
    assert (point.min, point.max) == (0.0, max(durations) / SECOND)
    assert point.negative.bucket_counts == [] or sum(point.negative.bucket_counts) == 0
    assert len(point.positive.bucket_counts) <= 160
    assert sparse(point.positive.offset, point.positive.bucket_counts) == expected_buckets(durations, point.scale)


@pytest.mark.parametrize(
    ("draw", "expect_downscaled"),
    [(lognormal(30, 0.15), False), (lognormal(30, 1.2), True), (log_uniform(1_000, 60 * SECOND), True)],
    ids=["narrow", "lognormal", "wide"],
)
def test_percentiles_read_from_exported_buckets_match_exact(
    tracer: Tracer, store: OperationStatsStore, draw: Callable[[random.Random], int], expect_downscaled: bool
) -> None:
    """Guards dashboards' percentiles (read from exported buckets) drifting beyond the accuracy of their scale."""
    rng = random.Random(f"pct-{expect_downscaled}-{draw}")
    durations = [max(1, draw(rng)) for _ in range(2_000)]
    record(tracer, durations)
    point = only_exponential_point(
        by_name(OperationMetrics(store).collect(CUMULATIVE, CUMULATIVE, now=T0_NS))[DURATION_METRIC]
    )
    assert (point.scale < DEFAULT_SCALE) is expect_downscaled, point.scale
    accuracy = relative_accuracy(point.scale)
    for quantile in (0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = exact_quantile_ns(durations, quantile)
        index = point_rank_bucket(point, quantile)
        assert index is not None
        assert index in allowed_indices(seconds(exact), point.scale), (quantile, index, exact)
        estimate = bucket_estimate(point.scale, index)
        assert relative_error(estimate, exact / SECOND) <= accuracy + SLACK, (quantile, estimate, exact)


def test_explicit_point_counts_with_le_semantics(clock: Clock) -> None:
    """Guards Prometheus-style le buckets off by one at the bound (a 5 ms call counted above le=0.005)."""
    store = OperationStatsStore(clock=clock, explicit_bounds_s=DEFAULT_EXPLICIT_BOUNDS_S)
    tracer = provider_with(OperationStatsProcessor(store)).get_tracer("t")
    rng = random.Random(3)
    at_bounds = [round(Fraction(str(bound)) * SECOND) for bound in DEFAULT_EXPLICIT_BOUNDS_S]
    durations = (
        at_bounds
        + [bound + 1 for bound in at_bounds]
        + [bound - 1 for bound in at_bounds]
        + [0, 1, 30 * SECOND]
        + [rng.randint(1, 12 * SECOND) for _ in range(500)]
    )
    record(tracer, durations)
    metrics = OperationMetrics(store, aggregation=HistogramAggregation.EXPLICIT).collect(
        CUMULATIVE, CUMULATIVE, now=T0_NS
    )
    duration = by_name(metrics)[DURATION_METRIC]
    assert isinstance(duration.data, Histogram)
    point = only_point(duration)
    assert isinstance(point, HistogramDataPoint)
    assert attributes_of(point) == OPERATION
    assert list(point.explicit_bounds) == list(DEFAULT_EXPLICIT_BOUNDS_S)
    assert list(point.bucket_counts) == le_counts(durations, DEFAULT_EXPLICIT_BOUNDS_S)
    assert point.count == len(durations) == sum(point.bucket_counts)
    assert point.sum == pytest.approx(sum(durations) / SECOND, rel=1e-12)
    assert (point.min, point.max) == (0.0, 30.0)


def test_explicit_needs_a_store_with_bounds(store: OperationStatsStore) -> None:
    """Guards a misconfigured explicit export silently exporting empty buckets."""
    with pytest.raises(ValueError, match="explicit_bounds_s"):
        OperationMetrics(store, aggregation=HistogramAggregation.EXPLICIT)


def test_calls_counter_per_status_code(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards error rates computed from the calls counter being wrong (UNSET counted as OK or ERROR)."""
    record(tracer, [NS_PER_MS] * 5, code=StatusCode.UNSET)
    record(tracer, [NS_PER_MS] * 3, code=StatusCode.OK)
    record(tracer, [NS_PER_MS] * 2, code=StatusCode.ERROR)
    record(tracer, [NS_PER_MS] * 4, name="GET /authors", code=StatusCode.OK)
    calls = by_name(OperationMetrics(store).collect(CUMULATIVE, CUMULATIVE, now=T0_NS))[CALLS_METRIC]
    assert isinstance(calls.data, Sum)
    assert calls.data.is_monotonic and calls.data.aggregation_temporality is CUMULATIVE
    assert calls_by_status(calls) == {"STATUS_CODE_UNSET": 5, "STATUS_CODE_OK": 3, "STATUS_CODE_ERROR": 2}
    assert calls_by_status(calls, "GET /authors") == {"STATUS_CODE_OK": 4, "STATUS_CODE_UNSET": 0, "STATUS_CODE_ERROR": 0}
    for point in calls.data.data_points:
        assert {key: value for key, value in attributes_of(point).items() if key != "status.code"} == {
            **OPERATION, "span.name": attributes_of(point)["span.name"]
        }
        assert point.start_time_unix_nano == store.start_time_ns


def test_slow_calls_counter_uses_the_store_threshold(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards slow-call alerts firing on 999 ms calls or missing 1000 ms ones (default threshold, inclusive)."""
    durations = [1000 * NS_PER_MS, 1000 * NS_PER_MS - 1, 1500 * NS_PER_MS, 10 * NS_PER_MS, 60 * SECOND]
    record(tracer, durations)
    record(tracer, [999 * NS_PER_MS], name="GET /fast")
    metrics = by_name(OperationMetrics(store).collect(CUMULATIVE, CUMULATIVE, now=T0_NS))
    threshold_ns = round(store.rules.default_ms * NS_PER_MS)
    assert threshold_ns == SECOND
    slow = metrics[SLOW_CALLS_METRIC]
    assert only_number_point(slow).value == sum(1 for duration in durations if duration >= threshold_ns) == 3
    assert only_number_point(slow, "GET /fast").value == 0, "a cumulative zero is exported so rate() reads 0"


def test_success_rate_gauge_over_the_shortest_window(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards the exported success rate disagreeing with the monitor (or counting calls outside its window)."""
    record(tracer, [NS_PER_MS] * 5, end_ns=T0_NS - 200 * SECOND, code=StatusCode.ERROR)  # outside the 60 s window
    record(tracer, [NS_PER_MS] * 6, code=StatusCode.OK)
    record(tracer, [NS_PER_MS] * 2, code=StatusCode.ERROR)
    now = T0_NS + 1
    metrics = by_name(OperationMetrics(store).collect(CUMULATIVE, CUMULATIVE, now=now))
    gauge = metrics[SUCCESS_RATE_METRIC]
    assert isinstance(gauge.data, Gauge)
    point = only_number_point(gauge)
    assert attributes_of(point) == OPERATION
    assert point.value == (8 - 2) / 8
    assert (point.start_time_unix_nano, point.time_unix_nano) == (now - 60 * SECOND, now)
    # The counters still hold every call since start.
    assert sum(calls_by_status(metrics[CALLS_METRIC]).values()) == 13


# --- delta temporality --------------------------------------------------------------------------------


def test_delta_points_hold_only_new_spans(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards delta exporters re-sending old spans (double counting) or dropping new ones."""
    rng = random.Random(8)
    first_books = unambiguous(rng, lognormal(40, 0.7), 300)
    first_authors = unambiguous(rng, lognormal(5, 0.2), 50)
    record(tracer, first_books, end_ns=T0_NS - 5 * SECOND)
    record(tracer, first_books[:10], end_ns=T0_NS - 5 * SECOND, code=StatusCode.ERROR)
    record(tracer, first_authors, name="GET /authors", end_ns=T0_NS - 5 * SECOND)
    metrics = OperationMetrics(store)
    t1, t2 = T0_NS + 10 * SECOND, T0_NS + 70 * SECOND
    first = by_name(metrics.collect(DELTA, DELTA, now=t1))
    first_point = only_histogram_point(first[DURATION_METRIC])
    assert first_point.count == 310
    assert first_point.start_time_unix_nano == store.start_time_ns
    assert temporality_of(first[DURATION_METRIC]) is DELTA
    assert temporality_of(first[CALLS_METRIC]) is DELTA

    second_books = unambiguous(rng, log_uniform(1_000, 3 * SECOND), 120) + [0]
    record(tracer, second_books, end_ns=T0_NS + 30 * SECOND)
    record(tracer, [2_100_000_000] * 3, end_ns=T0_NS + 30 * SECOND, code=StatusCode.ERROR)
    second = by_name(metrics.collect(DELTA, DELTA, now=t2))
    durations = exponential_points(second[DURATION_METRIC])
    assert [attributes_of(point)["span.name"] for point in durations] == ["GET /books"], "no point without new spans"
    point = durations[0]
    new = second_books + [2_100_000_000] * 3
    assert (point.start_time_unix_nano, point.time_unix_nano) == (t1, t2)
    assert point.count == len(new)
    assert point.zero_count == 1
    assert point.sum == pytest.approx(sum(new) / SECOND, rel=1e-9)
    assert sparse(point.positive.offset, point.positive.bucket_counts) == expected_buckets(new, point.scale)
    assert point.min is None and point.max is None, "min/max of one interval are unknown"
    calls = second[CALLS_METRIC]
    assert calls_by_status(calls) == {"STATUS_CODE_UNSET": len(second_books), "STATUS_CODE_ERROR": 3}
    assert calls_by_status(calls, "GET /authors") == {}
    assert all(p.start_time_unix_nano == t1 and p.time_unix_nano == t2 for p in calls.data.data_points)
    slow = second[SLOW_CALLS_METRIC].data.data_points
    expected_slow = sum(1 for duration in new if duration >= SECOND)
    assert [(attributes_of(p)["span.name"], value_of(p)) for p in slow] == [("GET /books", expected_slow)]

    third = by_name(metrics.collect(DELTA, DELTA, now=t2 + 60 * SECOND))
    assert DURATION_METRIC not in third and CALLS_METRIC not in third and SLOW_CALLS_METRIC not in third


def test_explicit_delta_points_hold_only_new_spans(clock: Clock) -> None:
    """Guards delta le buckets re-sending earlier calls (inflated request rates per bucket)."""
    bounds = (0.01, 0.1, 1.0)
    store = OperationStatsStore(clock=clock, explicit_bounds_s=bounds)
    tracer = provider_with(OperationStatsProcessor(store)).get_tracer("t")
    metrics = OperationMetrics(store, aggregation=HistogramAggregation.EXPLICIT)
    first = [5 * NS_PER_MS, 10 * NS_PER_MS, 10 * NS_PER_MS + 1, 2 * SECOND]
    record(tracer, first)
    t1 = T0_NS + SECOND
    point = only_explicit_point(by_name(metrics.collect(DELTA, DELTA, now=t1))[DURATION_METRIC])
    assert list(point.bucket_counts) == le_counts(first, bounds) == [2, 1, 0, 1]
    second = [100 * NS_PER_MS, 100 * NS_PER_MS + 1, SECOND, 3 * NS_PER_MS]
    record(tracer, second, end_ns=T0_NS + 2 * SECOND)
    t2 = T0_NS + 3 * SECOND
    point = only_explicit_point(by_name(metrics.collect(DELTA, DELTA, now=t2))[DURATION_METRIC])
    assert list(point.bucket_counts) == le_counts(second, bounds) == [1, 1, 2, 0]
    assert point.count == 4
    assert point.sum == pytest.approx(sum(second) / SECOND, rel=1e-12)
    assert (point.start_time_unix_nano, point.time_unix_nano) == (t1, t2)
    assert point.min is None and point.max is None


def test_delta_after_fork_like_reset_starts_afresh(clock: Clock, store: OperationStatsStore, tracer: Tracer) -> None:
    """Guards a forked worker's first delta subtracting the parent's totals (negative or missing points)."""
    record(tracer, [NS_PER_MS] * 50, end_ns=T0_NS - SECOND)
    metrics = OperationMetrics(store)
    assert only_histogram_point(
        by_name(metrics.collect(DELTA, DELTA, now=T0_NS + SECOND))[DURATION_METRIC]
    ).count == 50

    clock.now_ns = T0_NS + 20 * SECOND
    store._init_aggregates()  # noqa: SLF001 - what the store's at-fork hook runs in the child
    assert store.start_time_ns == T0_NS + 20 * SECOND
    record(tracer, [3 * NS_PER_MS] * 7, end_ns=T0_NS + 25 * SECOND)
    now = T0_NS + 30 * SECOND
    after = by_name(metrics.collect(DELTA, DELTA, now=now))
    point = only_histogram_point(after[DURATION_METRIC])
    assert point.count == 7
    assert point.sum == pytest.approx(7 * 3 * NS_PER_MS / SECOND)
    assert (point.start_time_unix_nano, point.time_unix_nano) == (store.start_time_ns, now)
    assert calls_by_status(after[CALLS_METRIC]) == {"STATUS_CODE_UNSET": 7, "STATUS_CODE_ERROR": 0}
    cumulative = by_name(OperationMetrics(store).collect(CUMULATIVE, CUMULATIVE, now=now))
    assert only_point(cumulative[DURATION_METRIC]).start_time_unix_nano == T0_NS + 20 * SECOND


# --- one source of truth: monitor and metrics ---------------------------------------------------------


@pytest.mark.parametrize(
    "draw", [lognormal(25, 0.4), lognormal(25, 1.5), log_uniform(500, 120 * SECOND)], ids=["narrow", "wide", "huge"]
)
def test_monitor_p95_lies_in_the_exported_p95_bucket(
    tracer: Tracer, store: OperationStatsStore, draw: Callable[[random.Random], int]
) -> None:
    """Guards the monitor page and the dashboard (exported buckets) showing contradictory p95s."""
    rng = random.Random(f"agree-{draw}")
    durations = [max(1, draw(rng)) for _ in range(3_000)]
    record(tracer, durations)
    (stats,) = store.snapshot(60)
    assert stats.count == len(durations)
    point = only_exponential_point(by_name(OperationMetrics(store, exponential_max_size=160).collect(
        CUMULATIVE, CUMULATIVE, now=T0_NS))[DURATION_METRIC])
    assert len(point.positive.bucket_counts) <= 160
    for quantile, monitor_ms in ((0.5, stats.p50_ms), (0.95, stats.p95_ms), (0.99, stats.p99_ms)):
        index = point_rank_bucket(point, quantile)
        assert index is not None
        monitor_s = Fraction(monitor_ms) / 1000
        assert index in allowed_indices(monitor_s, point.scale), (quantile, monitor_ms, index, point.scale)


def test_merging_two_processes_points_gives_the_union_percentiles(clock: Clock) -> None:
    """Guards fleet-wide p95 (histograms of several processes summed in the backend) being wrong."""
    rng = random.Random(77)
    fast = [max(1, lognormal(8, 0.15)(rng)) for _ in range(4_000)]
    slow = [max(1, log_uniform(50 * NS_PER_MS, 40 * SECOND)(rng)) for _ in range(400)]
    points: list[ExponentialHistogramDataPoint] = []
    for durations in (fast, slow):
        store = OperationStatsStore(clock=clock)
        provider = provider_with(OperationStatsProcessor(store))
        record(provider.get_tracer("t"), durations)
        provider.shutdown()
        metrics = by_name(OperationMetrics(store).collect(CUMULATIVE, CUMULATIVE, now=T0_NS))
        points.append(only_exponential_point(metrics[DURATION_METRIC]))
    assert points[0].attributes == points[1].attributes
    assert points[0].scale != points[1].scale, "the test needs points at different scales"
    scale = min(point.scale for point in points)
    merged: Counter[int] = Counter()
    for point in points:
        shift = point.scale - scale
        for position, count in enumerate(point.positive.bucket_counts):
            merged[(point.positive.offset + position) >> shift] += count
    offset = min(merged)
    counts = [merged[index] for index in range(offset, max(merged) + 1)]
    zero_count = sum(point.zero_count for point in points)
    union = fast + slow
    assert sum(counts) + zero_count == sum(point.count for point in points) == len(union)
    for quantile in (0.5, 0.9, 0.95, 0.99):
        exact = exact_quantile_ns(union, quantile)
        index = rank_bucket(zero_count, offset, counts, len(union), quantile)
        assert index is not None
        assert index in allowed_indices(seconds(exact), scale), quantile
        estimate = bucket_estimate(scale, index)
        assert relative_error(estimate, exact / SECOND) <= relative_accuracy(scale) + SLACK, (quantile, estimate)


# --- OperationMetricsReader with a recording exporter -------------------------------------------------


class RecordingExporter(MetricExporter):
    """Test double for a network metric exporter: keeps every MetricsData it is handed.

    The real OTLP path (gRPC/HTTP to a collector) is tested elsewhere; this
    one only shows what the reader hands to any exporter.
    """

    def __init__(self, preferred_temporality: dict[type, AggregationTemporality] | None = None) -> None:
        super().__init__(preferred_temporality=preferred_temporality)
        self.exported: list[MetricsData] = []
        self.shut_down = False

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self.shut_down = True


RESOURCE = Resource.create({"service.name": "checkout"})


def _reader_setup(
    store: OperationStatsStore, exporter: RecordingExporter
) -> tuple[MeterProvider, OperationMetricsReader]:
    # A long interval: collections happen only on force_flush and at shutdown (the ticker's last one).
    reader = OperationMetricsReader(exporter, OperationMetrics(store), export_interval_millis=3_600_000)
    return MeterProvider(metric_readers=[reader], resource=RESOURCE, shutdown_on_exit=False), reader


def scopes(data: MetricsData) -> dict[str, dict[str, Metric]]:
    """Metrics by scope name, checking everything sits under the one app resource."""
    assert len(data.resource_metrics) == 1, data.resource_metrics
    (resource_metrics,) = data.resource_metrics
    assert resource_metrics.resource.attributes["service.name"] == "checkout"
    assert dict(resource_metrics.resource.attributes) == dict(RESOURCE.attributes)
    result = {scope.scope.name: by_name(scope.metrics) for scope in resource_metrics.scope_metrics}
    assert len(result) == len(resource_metrics.scope_metrics)
    return result


@pytest.fixture
def provider_and_exporter(store: OperationStatsStore) -> Iterator[tuple[MeterProvider, RecordingExporter]]:
    exporter = RecordingExporter()
    provider, _ = _reader_setup(store, exporter)
    yield provider, exporter
    provider.shutdown()


def test_reader_exports_operation_metrics_without_app_instruments(
    tracer: Tracer, provider_and_exporter: tuple[MeterProvider, RecordingExporter]
) -> None:
    """Guards an app with no metrics of its own exporting nothing (the SDK skips empty collections)."""
    provider, exporter = provider_and_exporter
    record(tracer, [5 * NS_PER_MS] * 4)
    provider.force_flush()
    assert len(exporter.exported) == 1
    exported = scopes(exporter.exported[0])
    assert set(exported) == {"otel_ext"}
    own = exported["otel_ext"]
    assert set(own) == {DURATION_METRIC, CALLS_METRIC, SLOW_CALLS_METRIC, SUCCESS_RATE_METRIC}
    assert temporality_of(own[CALLS_METRIC]) is CUMULATIVE, "the exporter's default preference"
    assert calls_by_status(own[CALLS_METRIC]) == {"STATUS_CODE_UNSET": 4, "STATUS_CODE_ERROR": 0}
    assert only_histogram_point(own[DURATION_METRIC]).count == 4


def test_reader_exports_app_and_operation_metrics_under_one_resource(
    tracer: Tracer, provider_and_exporter: tuple[MeterProvider, RecordingExporter]
) -> None:
    """Guards otel-ext's metrics arriving as a second, differently identified resource (split dashboards)."""
    provider, exporter = provider_and_exporter
    provider.get_meter("shop").create_counter("orders").add(3)
    record(tracer, [5 * NS_PER_MS] * 2)
    provider.force_flush()
    exported = scopes(exporter.exported[-1])
    assert set(exported) == {"shop", "otel_ext"}
    (orders,) = exported["shop"]["orders"].data.data_points
    assert value_of(orders) == 3
    assert calls_by_status(exported["otel_ext"][CALLS_METRIC]) == {"STATUS_CODE_UNSET": 2, "STATUS_CODE_ERROR": 0}


def test_reader_honours_the_exporters_delta_preference(store: OperationStatsStore, tracer: Tracer) -> None:
    """Guards delta backends (Datadog, Dynatrace...) receiving cumulative otel-ext metrics they misread."""
    exporter = RecordingExporter({SdkCounter: DELTA, SdkHistogram: DELTA})
    provider, _ = _reader_setup(store, exporter)
    try:
        orders = provider.get_meter("shop").create_counter("orders")
        orders.add(3)
        record(tracer, [5 * NS_PER_MS] * 3)
        provider.force_flush()
        orders.add(1)
        record(tracer, [7 * NS_PER_MS] * 2, end_ns=T0_NS + SECOND)
        provider.force_flush()
    finally:
        provider.shutdown()
    first, second = scopes(exporter.exported[0]), scopes(exporter.exported[1])
    for exported in (first, second):
        assert temporality_of(exported["shop"]["orders"]) is DELTA
        assert temporality_of(exported["otel_ext"][CALLS_METRIC]) is DELTA
        if SLOW_CALLS_METRIC in exported["otel_ext"]:  # a delta with no new slow call has no point at all
            assert temporality_of(exported["otel_ext"][SLOW_CALLS_METRIC]) is DELTA
        assert temporality_of(exported["otel_ext"][DURATION_METRIC]) is DELTA
    assert [value_of(p) for p in second["shop"]["orders"].data.data_points] == [1]
    assert calls_by_status(second["otel_ext"][CALLS_METRIC]) == {"STATUS_CODE_UNSET": 2}  # a delta: no zeros
    second_point = only_histogram_point(second["otel_ext"][DURATION_METRIC])
    first_point = only_histogram_point(first["otel_ext"][DURATION_METRIC])
    assert second_point.count == 2
    assert second_point.sum == pytest.approx(2 * 7 * NS_PER_MS / SECOND)
    assert second_point.start_time_unix_nano == first_point.time_unix_nano


def test_reader_logs_operation_metrics_failure_once_and_still_exports_app_metrics(
    store: OperationStatsStore,
    tracer: Tracer,
    provider_and_exporter: tuple[MeterProvider, RecordingExporter],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Guards a bug in otel-ext's metrics stopping the app's own metrics, or flooding the log every interval."""
    provider, exporter = provider_and_exporter
    monkeypatch.setattr(errors_module, "_seen", set())

    def broken() -> list[object]:
        raise RuntimeError("totals exploded")

    monkeypatch.setattr(store, "totals", broken)
    caplog.set_level(logging.ERROR, logger=METRICS_LOGGER)
    orders = provider.get_meter("shop").create_counter("orders")
    record(tracer, [5 * NS_PER_MS])
    for value in (2, 5):
        orders.add(value)
        provider.force_flush()
    assert len(exporter.exported) == 2
    for data, total in zip(exporter.exported, (2, 7), strict=True):
        exported = scopes(data)
        assert set(exported) == {"shop"}
        assert [value_of(p) for p in exported["shop"]["orders"].data.data_points] == [total]
    errors = [r for r in caplog.records if r.name == METRICS_LOGGER and r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "collecting operation metrics" in errors[0].getMessage()
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], RuntimeError)


def test_shutdown_exports_a_final_collection_with_the_last_spans(store: OperationStatsStore, tracer: Tracer) -> None:
    """Guards the last seconds of calls before a deploy/restart never reaching the backend."""
    exporter = RecordingExporter()
    provider, _ = _reader_setup(store, exporter)
    record(tracer, [5 * NS_PER_MS] * 3)
    provider.force_flush()
    assert calls_by_status(scopes(exporter.exported[-1])["otel_ext"][CALLS_METRIC]) == {"STATUS_CODE_UNSET": 3, "STATUS_CODE_ERROR": 0}
    record(tracer, [9 * NS_PER_MS] * 4, end_ns=T0_NS + SECOND, code=StatusCode.ERROR)  # ended just before shutdown
    exported_before = len(exporter.exported)
    provider.shutdown()
    assert len(exporter.exported) == exported_before + 1
    final = scopes(exporter.exported[-1])["otel_ext"]
    assert calls_by_status(final[CALLS_METRIC]) == {"STATUS_CODE_UNSET": 3, "STATUS_CODE_ERROR": 4}
    assert only_histogram_point(final[DURATION_METRIC]).count == 7
    assert exporter.shut_down
