"""End to end: otel-ext's operation metrics as a real OTLP receiver decodes them.

Each test runs ``apps/metrics_app.py`` in a subprocess (zero-code unless
noted) with spans of exactly known durations, names and statuses, lets the
real OTLP metric exporter (gRPC or HTTP/protobuf) send the metrics to the
loopback sink, and checks the decoded protobuf points against values this file
computes itself from the raw durations: exact counts and le-bucket counts,
nearest-rank percentiles read from the exported exponential buckets (the exact
value must lie in the bucket holding its rank, and the bucket's midpoint
estimate within the bucket's relative accuracy of it), and the monitor's
percentiles against the same buckets.

The export interval is set far beyond a test's length, so what arrives is the
final collection at exit (plus one per explicit ``force_flush``).
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogramDataPoint,
    Metric,
)

from tests.support.otlp_sink import OtlpSink, decode_attributes
from tests.support.processes import INSTRUMENT, Run, clean_environment, free_port

APP = Path(__file__).resolve().parent / "apps" / "metrics_app.py"
PROTOCOLS = ["grpc", "http/protobuf"]
SCOPE = "otel_ext"
DURATION, CALLS, SLOW_CALLS, SUCCESS_RATE = (
    "otel_ext.operation.duration",
    "otel_ext.operation.calls",
    "otel_ext.operation.slow_calls",
    "otel_ext.operation.success_rate",
)
DELTA, CUMULATIVE = 1, 2  # AggregationTemporality in OTLP
NS_PER_S = 1_000_000_000
QUANTILES = {"p50": Fraction(50, 100), "p95": Fraction(95, 100), "p99": Fraction(99, 100)}


# ---------------------------------------------------------------- running the app


def _endpoint(sink: OtlpSink, protocol: str) -> str:
    return sink.grpc_endpoint if protocol == "grpc" else sink.http_endpoint


def metric_variables(sink: OtlpSink, protocol: str = "grpc", **extra: str) -> dict[str, str]:
    """Metrics (only) over OTLP to the sink; no periodic export within a test's length."""
    return {
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": _endpoint(sink, protocol),
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        "OTEL_SERVICE_NAME": "shop",
        **extra,
    }


def start_app(spec: dict[str, Any], directory: Path, **variables: str) -> subprocess.Popen[str]:
    """The metrics app with ``spec`` under ``opentelemetry-instrument`` (or plain python if it configures itself)."""
    spec_path = directory / f"spec-{uuid.uuid4().hex}.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    prefix = [] if spec.get("configure") else [str(INSTRUMENT)]
    return subprocess.Popen(
        [*prefix, sys.executable, str(APP), str(spec_path)],
        env=clean_environment(**variables),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 30) -> Run:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"metrics app did not exit within {timeout} s; stderr:\n{stderr[-3000:]}") from None
    return Run(process.returncode, stdout, stderr)


def run_app(spec: dict[str, Any], directory: Path, **variables: str) -> Run:
    run = finish(start_app(spec, directory, **variables))
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def operation(name: str, durations_ns: Sequence[int], kind: str = "SERVER", errors: Iterable[int] = (),
              oks: Iterable[int] = ()) -> dict[str, Any]:
    return {"name": name, "kind": kind, "durations_ns": list(durations_ns), "errors": sorted(errors),
            "oks": sorted(oks)}


def lognormal_ns(seed: int, count: int, median_ms: float, sigma: float = 1.0) -> list[int]:
    """Seeded latencies: a long right tail, as real request durations have."""
    rng = random.Random(seed)
    return [max(1, round(rng.lognormvariate(math.log(median_ms * 1e6), sigma))) for _ in range(count)]


# ---------------------------------------------------------------- reading what arrived


@dataclass(frozen=True)
class Export:
    """One otel-ext metric as one export request carried it."""

    request: int
    resource: dict[str, Any]
    metric: Metric

    def points(self) -> list[Any]:
        kind = self.metric.WhichOneof("data")
        assert kind is not None
        return list(getattr(self.metric, kind).data_points)


def exports(sink: OtlpSink, name: str) -> list[Export]:
    """Every ``name`` metric in otel-ext's scope, in arrival order, tagged with its request's position."""
    found: list[Export] = []
    for position, received in enumerate(r for r in sink.requests if r.signal == "metrics"):
        for resource_metrics in received.request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                if scope_metrics.scope.name != SCOPE:
                    continue
                found.extend(
                    Export(position, decode_attributes(resource_metrics.resource.attributes), metric)
                    for metric in scope_metrics.metrics
                    if metric.name == name
                )
    return found


def last(sink: OtlpSink, name: str) -> Export:
    found = exports(sink, name)
    assert found, f"no {name} arrived; metric requests: {len([r for r in sink.requests if r.signal == 'metrics'])}"
    return found[-1]


def attributes(point: Any) -> dict[str, Any]:
    return decode_attributes(point.attributes)


def by_operation(points: Iterable[Any]) -> dict[str, Any]:
    """Points keyed by span.name (one per name expected)."""
    keyed: dict[str, Any] = {}
    for point in points:
        name = attributes(point)["span.name"]
        assert name not in keyed, f"two points for {name!r}"
        keyed[name] = point
    return keyed


def calls_by_status(points: Iterable[Any], name: str) -> dict[str, int]:
    return {attributes(p)["status.code"]: p.as_int for p in points if attributes(p)["span.name"] == name}


# ---------------------------------------------------------------- exact expectations


def rank(count: int, quantile: Fraction) -> int:
    """1-based nearest rank, in exact arithmetic."""
    return max(1, math.ceil(quantile * count))


def exact_quantile_s(durations_ns: Sequence[int], quantile: Fraction) -> float:
    ordered = sorted(durations_ns)
    return ordered[rank(len(ordered), quantile) - 1] / NS_PER_S


def accuracy(scale: int) -> float:
    """Worst relative error of a bucket's midpoint estimate, from the bucket bounds alone."""
    base = 2.0 ** (2.0**-scale)
    return (base - 1) / (base + 1)


@dataclass(frozen=True)
class Exponential:
    """An exported exponential histogram's positive buckets, as plain numbers."""

    scale: int
    zero_count: int
    offset: int
    counts: list[int]

    @classmethod
    def of(cls, point: ExponentialHistogramDataPoint) -> Exponential:
        assert not point.negative.bucket_counts, "durations are never negative"
        return cls(point.scale, point.zero_count, point.positive.offset, list(point.positive.bucket_counts))

    @property
    def base(self) -> float:
        return 2.0 ** (2.0**-self.scale)

    def bounds(self, index: int) -> tuple[float, float]:
        return self.base**index, self.base ** (index + 1)

    def at_scale(self, scale: int) -> Exponential:
        """The same counts at a lower scale: index i becomes i >> (self.scale - scale)."""
        shift = self.scale - scale
        assert shift >= 0
        merged: Counter[int] = Counter()
        for position, count in enumerate(self.counts):
            merged[(self.offset + position) >> shift] += count
        return Exponential.from_counter(scale, self.zero_count, merged)

    @staticmethod
    def from_counter(scale: int, zero_count: int, counts: Counter[int]) -> Exponential:
        if not counts:
            return Exponential(scale, zero_count, 0, [])
        low, high = min(counts), max(counts)
        return Exponential(scale, zero_count, low, [counts.get(index, 0) for index in range(low, high + 1)])

    def bucket_of_rank(self, wanted: int) -> tuple[float, float]:
        assert wanted > self.zero_count, "these tests read percentiles above the zeros"
        seen = self.zero_count
        for position, count in enumerate(self.counts):
            seen += count
            if seen >= wanted:
                return self.bounds(self.offset + position)
        raise AssertionError(f"rank {wanted} beyond the {seen} counted values")

    def total(self) -> int:
        return self.zero_count + sum(self.counts)


def merge(histograms: Sequence[Exponential]) -> Exponential:
    """Merge as a backend does: bring every histogram to the lowest scale and add bucket by bucket."""
    scale = min(histogram.scale for histogram in histograms)
    merged: Counter[int] = Counter()
    for histogram in histograms:
        lowered = histogram.at_scale(scale)
        for position, count in enumerate(lowered.counts):
            merged[lowered.offset + position] += count
    return Exponential.from_counter(scale, sum(h.zero_count for h in histograms), merged)


def check_quantile(histogram: Exponential, durations_ns: Sequence[int], quantile: Fraction) -> dict[str, float]:
    """The exact quantile lies in the bucket holding its rank; the bucket's estimate is within its accuracy."""
    exact = exact_quantile_s(durations_ns, quantile)
    lower, upper = histogram.bucket_of_rank(rank(len(durations_ns), quantile))
    assert lower * (1 - 1e-12) < exact <= upper * (1 + 1e-12), (quantile, lower, exact, upper)
    estimate = 2 * upper / (histogram.base + 1)
    assert abs(estimate - exact) <= accuracy(histogram.scale) * exact * (1 + 1e-9), (quantile, estimate, exact)
    return {"exact": exact, "estimate": estimate, "lower": lower, "upper": upper}


def le_counts(durations_ns: Sequence[int], bounds_s: Sequence[float]) -> list[int]:
    """Counts per explicit bucket, ``le`` semantics: bucket i holds (bounds[i-1], bounds[i]], the last (bounds[-1], inf)."""
    bounds_ns = [round(bound * NS_PER_S) for bound in bounds_s]
    counts = [0] * (len(bounds_ns) + 1)
    for duration in durations_ns:
        counts[next((i for i, bound in enumerate(bounds_ns) if duration <= bound), len(bounds_ns))] += 1
    return counts


# ---------------------------------------------------------------- 1. values over both transports


CHECKOUT_COUNT = 3000
SLOW_THRESHOLD_MS = 120
ZERO_COUNT = 6


def _checkout() -> tuple[list[int], set[int], set[int]]:
    durations = lognormal_ns(seed=20240601, count=CHECKOUT_COUNT, median_ms=40)
    durations[:3] = [SLOW_THRESHOLD_MS * 1_000_000] * 3  # exactly at the threshold: slow (>=)
    durations[3:3 + ZERO_COUNT] = [0] * ZERO_COUNT  # start == end (a clock too coarse): exact zeros
    rng = random.Random(7)
    errors = set(rng.sample(range(CHECKOUT_COUNT), 137))
    oks = set(rng.sample(sorted(set(range(CHECKOUT_COUNT)) - errors), 411))
    return durations, errors, oks


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_exported_counts_sum_percentiles_slow_calls_and_success_rate_are_exact(
    otlp_sink: OtlpSink, tmp_path: Path, protocol: str
) -> None:
    """A dashboard reading the exported metrics sees the app's real traffic: exact call counts per status,
    exact slow-call count, exact success rate, and p50/p95/p99 within the histogram's stated accuracy."""
    durations, errors, oks = _checkout()
    health = [1_000_000] * 20
    spec = {"batches": [[operation("POST /checkout", durations, errors=errors, oks=oks),
                         operation("GET /health", health, kind="INTERNAL")]]}
    run_app(spec, tmp_path, **metric_variables(otlp_sink, protocol, OTEL_EXT_SLOW_THRESHOLD_MS=str(SLOW_THRESHOLD_MS)))

    assert len(exports(otlp_sink, DURATION)) == 1, "one final collection at exit"
    duration = last(otlp_sink, DURATION)
    assert duration.metric.unit == "s"
    assert duration.metric.WhichOneof("data") == "exponential_histogram"
    assert duration.metric.exponential_histogram.aggregation_temporality == CUMULATIVE
    assert duration.resource["service.name"] == "shop"
    points = by_operation(duration.points())
    assert set(points) == {"POST /checkout", "GET /health"}
    point = points["POST /checkout"]
    assert attributes(point) == {"service.name": "shop", "span.name": "POST /checkout", "span.kind": "SPAN_KIND_SERVER"}
    assert attributes(points["GET /health"])["span.kind"] == "SPAN_KIND_INTERNAL"
    assert point.count == CHECKOUT_COUNT
    assert math.isclose(point.sum, sum(durations) / NS_PER_S, rel_tol=1e-9)
    assert (point.min, point.max) == (min(durations) / NS_PER_S, max(durations) / NS_PER_S)
    histogram = Exponential.of(point)
    assert histogram.zero_count == ZERO_COUNT
    assert histogram.total() == CHECKOUT_COUNT
    assert len(histogram.counts) <= 160, "the default OTEL_EXT_METRICS_EXPONENTIAL_MAX_SIZE"
    for quantile in QUANTILES.values():
        check_quantile(histogram, durations, quantile)

    calls = last(otlp_sink, CALLS)
    assert calls.metric.unit == "{call}" and calls.metric.sum.is_monotonic
    assert calls_by_status(calls.points(), "POST /checkout") == {
        "STATUS_CODE_UNSET": CHECKOUT_COUNT - len(errors) - len(oks),
        "STATUS_CODE_OK": len(oks),
        "STATUS_CODE_ERROR": len(errors),
    }
    assert calls_by_status(calls.points(), "GET /health") == {"STATUS_CODE_UNSET": 20, "STATUS_CODE_ERROR": 0}

    slow = by_operation(last(otlp_sink, SLOW_CALLS).points())
    assert slow["POST /checkout"].as_int == sum(d >= SLOW_THRESHOLD_MS * 1_000_000 for d in durations)
    assert slow["GET /health"].as_int == 0, "a cumulative zero is exported, so rate() reads 0 rather than nothing"

    rate = last(otlp_sink, SUCCESS_RATE)
    assert rate.metric.unit == "1" and rate.metric.WhichOneof("data") == "gauge"
    rates = by_operation(rate.points())
    assert rates["POST /checkout"].as_double == (CHECKOUT_COUNT - len(errors)) / CHECKOUT_COUNT
    assert rates["GET /health"].as_double == 1.0


def test_spans_that_ended_long_ago_are_counted_but_not_in_the_success_rate_window(
    otlp_sink: OtlpSink, tmp_path: Path
) -> None:
    """Spans reported late (ended two hours ago, before or after current ones) still count in the
    cumulative calls and duration; the success-rate gauge covers only the last minute, as the monitor does."""
    now = [7_000_000] * 30
    spec = {"batches": [[
        operation("nightly.export", [9_000_000] * 50, kind="INTERNAL", errors=range(10)) | {"ended_ago_s": 7200},
        operation("nightly.export", now, kind="INTERNAL", errors=range(3)),
        operation("nightly.export", [11_000_000] * 20, kind="INTERNAL", errors=range(20)) | {"ended_ago_s": 7000},
    ]]}
    run_app(spec, tmp_path, **metric_variables(otlp_sink))

    (point,) = last(otlp_sink, DURATION).points()
    assert point.count == 100
    assert math.isclose(point.sum, (50 * 9e6 + 30 * 7e6 + 20 * 11e6) / NS_PER_S, rel_tol=1e-9)
    assert calls_by_status(last(otlp_sink, CALLS).points(), "nightly.export") == {
        "STATUS_CODE_UNSET": 100 - 33, "STATUS_CODE_ERROR": 33}
    (rate,) = last(otlp_sink, SUCCESS_RATE).points()
    assert rate.as_double == (30 - 3) / 30


@pytest.mark.parametrize("max_size", ["2", "20"])
def test_small_bucket_budget_exports_a_coarser_but_consistent_histogram(
    otlp_sink: OtlpSink, tmp_path: Path, max_size: str
) -> None:
    """OTEL_EXT_METRICS_EXPONENTIAL_MAX_SIZE caps the buckets a backend stores; the lower scale must still
    hold every count, with each exact percentile inside the bucket that holds its rank."""
    durations = lognormal_ns(seed=31, count=1000, median_ms=30, sigma=2.0)
    run_app({"batches": [[operation("GET /wide", durations)]]}, tmp_path,
            **metric_variables(otlp_sink, OTEL_EXT_METRICS_EXPONENTIAL_MAX_SIZE=max_size))

    (point,) = last(otlp_sink, DURATION).points()
    histogram = Exponential.of(point)
    assert len(histogram.counts) <= int(max_size)
    assert histogram.scale >= -10, "OTLP's lowest scale"
    assert point.count == histogram.total() == len(durations)
    for quantile in QUANTILES.values():
        check_quantile(histogram, durations, quantile)


# ---------------------------------------------------------------- 2. the monitor and the metrics agree


@pytest.mark.parametrize("max_size", [None, "4096"], ids=["downscaled", "full-scale"])
def test_monitor_percentiles_come_from_the_exported_buckets(
    otlp_sink: OtlpSink, tmp_path: Path, max_size: str | None
) -> None:
    """The monitor page and the exported histogram must tell an operator the same p95, not two different numbers."""
    durations, errors, oks = _checkout()
    spec = {"batches": [[operation("POST /checkout", durations, errors=errors, oks=oks)]], "monitor": "window=1m"}
    extra = {"OTEL_EXT_MONITOR_PORT": str(free_port())}
    if max_size:
        extra["OTEL_EXT_METRICS_EXPONENTIAL_MAX_SIZE"] = max_size
    run = run_app(spec, tmp_path, **metric_variables(otlp_sink, **extra))

    (shown,) = run.result["monitor"]["operations"]
    assert shown["count"] == CHECKOUT_COUNT and shown["error_count"] == len(errors)
    point = by_operation(last(otlp_sink, DURATION).points())["POST /checkout"]
    histogram = Exponential.of(point)
    if max_size:
        assert histogram.scale == 6, "nothing to downscale: the monitor's own scale"
        for quantile in QUANTILES.values():
            check_quantile(histogram, durations, quantile)  # within 0.54 %
    for label, quantile in QUANTILES.items():
        shown_s = shown[f"{label}_ms"] / 1000
        lower, upper = histogram.bucket_of_rank(rank(CHECKOUT_COUNT, quantile))
        slack = 1e-5  # the monitor rounds to 6 significant digits
        assert lower * (1 - slack) < shown_s <= upper * (1 + slack), (label, lower, shown_s, upper)
        exact = exact_quantile_s(durations, quantile)
        assert abs(shown_s - exact) <= (accuracy(6) + slack) * exact, (label, shown_s, exact)
        if histogram.scale == 6:  # the very same bucket: the same midpoint (clamped to the observed range)
            estimate = min(max(2 * upper / (histogram.base + 1), point.min), point.max)
            assert math.isclose(shown_s, estimate, rel_tol=slack), (label, shown_s, estimate)


# ---------------------------------------------------------------- 3. explicit buckets


@pytest.mark.parametrize("bounds", [None, "0.001,0.02,0.1,0.3,1.5"], ids=["default-bounds", "custom-bounds"])
def test_explicit_bucket_counts_equal_counts_from_raw_durations(
    otlp_sink: OtlpSink, tmp_path: Path, bounds: str | None
) -> None:
    """With OTEL_EXT_METRICS_HISTOGRAM=explicit, classic-histogram backends (histogram_quantile) get
    exact le-bucket counts, including durations exactly on a bound."""
    bounds_s = (
        [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
        if bounds is None else [float(part) for part in bounds.split(",")]
    )
    durations = lognormal_ns(seed=99, count=2000, median_ms=60, sigma=1.5)
    for bound in bounds_s:  # on a bound counts in that bucket (le); one ns above, in the next
        durations += [round(bound * NS_PER_S)] * 2 + [round(bound * NS_PER_S) + 1]
    extra = {"OTEL_EXT_METRICS_HISTOGRAM": "explicit"}
    if bounds is not None:
        extra["OTEL_EXT_METRICS_EXPLICIT_BOUNDS"] = bounds
    run_app({"batches": [[operation("GET /search", durations)]]}, tmp_path, **metric_variables(otlp_sink, **extra))

    duration = last(otlp_sink, DURATION)
    assert duration.metric.WhichOneof("data") == "histogram"
    assert duration.metric.histogram.aggregation_temporality == CUMULATIVE
    (point,) = duration.points()
    assert list(point.explicit_bounds) == bounds_s
    assert list(point.bucket_counts) == le_counts(durations, bounds_s)
    assert point.count == len(durations)
    assert math.isclose(point.sum, sum(durations) / NS_PER_S, rel_tol=1e-9)
    assert (point.min, point.max) == (min(durations) / NS_PER_S, max(durations) / NS_PER_S)


def test_explicit_delta_bucket_counts_cover_each_interval(otlp_sink: OtlpSink, tmp_path: Path) -> None:
    """Explicit buckets under delta temporality: each export's le-bucket counts are exactly its own interval's."""
    first = lognormal_ns(seed=3, count=500, median_ms=20, sigma=1.0)
    second = lognormal_ns(seed=4, count=400, median_ms=400, sigma=1.0)
    spec = {"configure": True, "batches": [[operation("GET /export", first)], [operation("GET /export", second)]]}
    run_app(spec, tmp_path, **metric_variables(otlp_sink, OTEL_EXT_METRICS_HISTOGRAM="explicit",
                                               OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="delta"))

    durations = [export for export in exports(otlp_sink, DURATION) if export.points()]
    assert [d.metric.histogram.aggregation_temporality for d in durations] == [DELTA, DELTA]
    bounds_s = list(durations[0].points()[0].explicit_bounds)
    for export, batch in zip(durations, (first, second), strict=True):
        (point,) = export.points()
        assert list(point.bucket_counts) == le_counts(batch, bounds_s)
        assert point.count == len(batch)
        assert math.isclose(point.sum, sum(batch) / NS_PER_S, rel_tol=1e-9)


# ---------------------------------------------------------------- 4. temporality


def _two_batches() -> tuple[list[int], list[int], set[int], set[int]]:
    first = lognormal_ns(seed=1, count=800, median_ms=10, sigma=0.5)
    second = lognormal_ns(seed=2, count=600, median_ms=500, sigma=0.5)
    return first, second, set(range(0, 800, 10)), set(range(0, 600, 4))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_delta_points_each_cover_only_their_own_interval(otlp_sink: OtlpSink, tmp_path: Path, protocol: str) -> None:
    """With OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta a backend adds up the points it gets:
    each must hold only the spans since the previous export, or the backend double counts."""
    first, second, first_errors, second_errors = _two_batches()
    spec = {"configure": True, "batches": [
        [operation("GET /report", first, errors=first_errors), operation("GET /once", [5_000_000] * 7)],
        [operation("GET /report", second, errors=second_errors)],
    ]}
    run_app(spec, tmp_path, **metric_variables(otlp_sink, protocol,
                                               OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="delta"))

    durations = [export for export in exports(otlp_sink, DURATION) if export.points()]
    assert [d.metric.exponential_histogram.aggregation_temporality for d in durations] == [DELTA, DELTA]
    one, two = (by_operation(export.points()) for export in durations)
    assert set(one) == {"GET /report", "GET /once"}
    assert set(two) == {"GET /report"}, "an operation with no new spans has no delta point"
    for point, batch in ((one["GET /report"], first), (two["GET /report"], second)):
        assert point.count == len(batch)
        assert math.isclose(point.sum, sum(batch) / NS_PER_S, rel_tol=1e-9)
        for field, exact in (("min", min(batch)), ("max", max(batch))):  # unknown after a previous export
            assert not point.HasField(field) or getattr(point, field) == exact / NS_PER_S, (field, point)
        histogram = Exponential.of(point)
        assert histogram.total() == len(batch)
        for quantile in QUANTILES.values():
            check_quantile(histogram, batch, quantile)  # 10 ms vs 500 ms: a mixed point fails here
    assert not two["GET /report"].HasField("min") and not two["GET /report"].HasField("max")
    assert one["GET /report"].time_unix_nano == two["GET /report"].start_time_unix_nano, "contiguous intervals"
    assert one["GET /report"].start_time_unix_nano < one["GET /report"].time_unix_nano

    calls = [export for export in exports(otlp_sink, CALLS) if export.points()]
    assert [c.metric.sum.aggregation_temporality for c in calls] == [DELTA, DELTA]
    assert calls_by_status(calls[0].points(), "GET /report") == {
        "STATUS_CODE_UNSET": len(first) - len(first_errors), "STATUS_CODE_ERROR": len(first_errors)}
    assert calls_by_status(calls[1].points(), "GET /report") == {
        "STATUS_CODE_UNSET": len(second) - len(second_errors), "STATUS_CODE_ERROR": len(second_errors)}
    assert calls_by_status(calls[0].points(), "GET /once") == {"STATUS_CODE_UNSET": 7, "STATUS_CODE_ERROR": 0}
    assert calls_by_status(calls[1].points(), "GET /once") == {}


def test_cumulative_points_are_running_totals_from_one_start(otlp_sink: OtlpSink, tmp_path: Path) -> None:
    """The default (cumulative): every export repeats the totals since the start, as rate() and increase() expect."""
    first, second, first_errors, second_errors = _two_batches()
    spec = {"configure": True, "batches": [
        [operation("GET /report", first, errors=first_errors), operation("GET /once", [5_000_000] * 7)],
        [operation("GET /report", second, errors=second_errors)],
    ]}
    run_app(spec, tmp_path, **metric_variables(otlp_sink))

    durations = exports(otlp_sink, DURATION)
    assert [d.metric.exponential_histogram.aggregation_temporality for d in durations] == [CUMULATIVE, CUMULATIVE]
    one, two = (by_operation(export.points()) for export in durations)
    assert (one["GET /report"].count, two["GET /report"].count) == (len(first), len(first) + len(second))
    assert two["GET /once"].count == 7, "kept in every cumulative export"
    assert one["GET /report"].start_time_unix_nano == two["GET /report"].start_time_unix_nano
    assert math.isclose(two["GET /report"].sum, (sum(first) + sum(second)) / NS_PER_S, rel_tol=1e-9)
    for quantile in QUANTILES.values():
        check_quantile(Exponential.of(two["GET /report"]), first + second, quantile)
    calls = exports(otlp_sink, CALLS)
    assert [c.metric.sum.aggregation_temporality for c in calls] == [CUMULATIVE, CUMULATIVE]
    assert calls_by_status(calls[-1].points(), "GET /report") == {
        "STATUS_CODE_UNSET": len(first) + len(second) - len(first_errors) - len(second_errors),
        "STATUS_CODE_ERROR": len(first_errors) + len(second_errors),
    }


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_periodic_exports_while_threads_end_spans_lose_and_double_count_nothing(
    otlp_sink: OtlpSink, tmp_path: Path, temporality: str
) -> None:
    """Collections every 50 ms race with four threads ending spans: cumulative series never go down
    (a backend would read a counter reset) and end at the exact totals; delta points add up to the exact
    totals, buckets included, so no span is lost or counted twice between two collections."""
    rng = random.Random(17)
    spans = {f"GET /api/v{index}": (lognormal_ns(seed=100 + index, count=4000, median_ms=15 * (index + 1)),
                                    set(rng.sample(range(4000), 50 * (index + 1))))
             for index in range(4)}
    spec = {"concurrent": True, "batches": [[
        operation(name, durations, errors=errors) | {"pause_every": 200, "pause_s": 0.005}
        for name, (durations, errors) in spans.items()
    ]]}
    extra = {"OTEL_METRIC_EXPORT_INTERVAL": "50"}
    if temporality == "delta":
        extra["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"] = "delta"
    run_app(spec, tmp_path, **metric_variables(otlp_sink, **extra))

    duration_exports = [by_operation(export.points()) for export in exports(otlp_sink, DURATION)]
    call_exports = [export.points() for export in exports(otlp_sink, CALLS)]
    assert len(duration_exports) >= 4, "several periodic collections happened while spans were ending"
    for name, (durations, errors) in spans.items():
        points = [export[name] for export in duration_exports if name in export]
        calls = [calls_by_status(points, name) for points in call_exports]
        exact_calls = {"STATUS_CODE_UNSET": len(durations) - len(errors), "STATUS_CODE_ERROR": len(errors)}
        if temporality == "cumulative":
            counts = [point.count for point in points]
            assert counts == sorted(counts), f"{name}: a cumulative count went down: {counts}"
            assert len(set(counts)) > 1, "collections saw the operation part-way"
            assert points[-1].count == len(durations)
            assert calls[-1] == exact_calls
            for status in exact_calls:
                sequence = [by_status.get(status, 0) for by_status in calls]
                assert sequence == sorted(sequence), (name, status, sequence)
            histogram = Exponential.of(points[-1])
        else:
            assert sum(point.count for point in points) == len(durations)
            assert math.isclose(sum(point.sum for point in points), sum(durations) / NS_PER_S, rel_tol=1e-9)
            assert {status: sum(by_status.get(status, 0) for by_status in calls) for status in exact_calls} == exact_calls
            histogram = merge([Exponential.of(point) for point in points])
        assert histogram.total() == len(durations)
        for quantile in QUANTILES.values():
            check_quantile(histogram, durations, quantile)


# ---------------------------------------------------------------- 5. merging processes


def test_histograms_of_two_processes_merge_into_the_union_percentiles(otlp_sink: OtlpSink, tmp_path: Path) -> None:
    """Two workers of one service: a backend merging their exponential points (lower scale, add buckets)
    must get the p95 of all requests, and the two series must not collide (different process.pid)."""
    fast = lognormal_ns(seed=11, count=2500, median_ms=20, sigma=0.6)
    slow = lognormal_ns(seed=12, count=1500, median_ms=300, sigma=1.2)
    variables = metric_variables(otlp_sink)
    processes = [start_app({"batches": [[operation("GET /feed", batch)]]}, tmp_path, **variables)
                 for batch in (fast, slow)]
    runs = [finish(process) for process in processes]
    assert all(run.returncode == 0 for run in runs), [run.stderr[-2000:] for run in runs]
    pids = {run.result["pid"] for run in runs}

    found = exports(otlp_sink, DURATION)
    assert {export.resource["process.pid"] for export in found} == pids and len(pids) == 2
    points = [by_operation(export.points())["GET /feed"] for export in found]
    assert sorted(point.count for point in points) == sorted([len(fast), len(slow)])
    histograms = [Exponential.of(point) for point in points]
    assert len({histogram.scale for histogram in histograms}) == 2, "different widths: different scales to merge"
    union = merge(histograms)
    assert union.total() == len(fast) + len(slow)
    for quantile in QUANTILES.values():
        check_quantile(union, fast + slow, quantile)


# ---------------------------------------------------------------- 6. sampling


def test_sampled_traces_leave_but_metrics_count_every_operation(otlp_sink: OtlpSink, tmp_path: Path) -> None:
    """At 10 % head sampling, spans exported are the sampled tenth, while calls and the monitor count all 2000."""
    count = 2000
    spec = {"batches": [[operation("GET /items", [3_000_000] * count)]], "monitor": "window=1m"}
    run = run_app(spec, tmp_path, **metric_variables(
        otlp_sink, OTEL_TRACES_EXPORTER="otlp", OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.1", OTEL_EXT_MONITOR_PORT=str(free_port())))

    spans = otlp_sink.spans()
    accepted = sum(int(span.trace_id, 16) & (2**64 - 1) < round(0.1 * 2**64) for span in spans)
    assert accepted == len(spans), "only traces the ratio sampler accepts are exported"
    assert 130 <= len(spans) <= 270, len(spans)  # binomial(2000, 0.1): mean 200, sd 13.4
    assert calls_by_status(last(otlp_sink, CALLS).points(), "GET /items") == {"STATUS_CODE_UNSET": count, "STATUS_CODE_ERROR": 0}
    assert by_operation(last(otlp_sink, DURATION).points())["GET /items"].count == count
    (shown,) = run.result["monitor"]["operations"]
    assert shown["count"] == count


# ---------------------------------------------------------------- 7. cardinality


def _user_paths(count: int) -> list[str]:
    rng = random.Random(5)
    names = [f"GET /users/{uuid.UUID(int=rng.getrandbits(128), version=4)}" for _ in range(count)]
    assert len(set(names)) == count
    return names


def test_id_segments_fold_into_one_exported_series(otlp_sink: OtlpSink, tmp_path: Path) -> None:
    """Span names carrying user ids must not explode the metric backend: 10,000 ids are one series."""
    names = _user_paths(10_000)
    spec = {"batches": [[{"names": names, "kind": "SERVER", "durations_ns": [2_000_000] * len(names)}]]}
    run_app(spec, tmp_path, **metric_variables(otlp_sink))

    (point,) = last(otlp_sink, DURATION).points()
    assert attributes(point)["span.name"] == "GET /users/{id}"
    assert point.count == 10_000
    assert calls_by_status(last(otlp_sink, CALLS).points(), "GET /users/{id}") == {"STATUS_CODE_UNSET": 10_000, "STATUS_CODE_ERROR": 0}


def test_operation_cap_keeps_first_operations_and_counts_the_rest_as_overflow(
    otlp_sink: OtlpSink, tmp_path: Path
) -> None:
    """Past OTEL_EXT_MAX_OPERATIONS the series count stays bounded (cap + one overflow per kind),
    no call goes uncounted, and overflowed spans are still judged slow by their own name's threshold."""
    names = _user_paths(10_000)
    durations = [(1 + index % 2) * 1_000_000 for index in range(len(names))]  # 1 ms, 2 ms, ...
    spec = {"batches": [[
        {"names": names, "kind": "SERVER", "durations_ns": durations},
        operation("consume orders", [1_000_000] * 3, kind="CONSUMER"),
    ]]}
    run_app(spec, tmp_path, **metric_variables(otlp_sink, OTEL_EXT_FOLD_NAME_IDS="false",
                                               OTEL_EXT_MAX_OPERATIONS="100",
                                               OTEL_EXT_SLOW_THRESHOLDS="GET /users/*=1.5"))

    points = last(otlp_sink, DURATION).points()
    server = by_operation(p for p in points if attributes(p)["span.kind"] == "SPAN_KIND_SERVER")
    consumer = by_operation(p for p in points if attributes(p)["span.kind"] == "SPAN_KIND_CONSUMER")
    assert len(server) == 100 + 1
    assert set(server) - {"otel_ext.overflow"} == set(names[:100]), "the first operations keep their names"
    assert server["otel_ext.overflow"].count == 10_000 - 100
    assert set(consumer) == {"otel_ext.overflow"}, "the cap is reached: a new kind overflows too, under its own kind"
    assert consumer["otel_ext.overflow"].count == 3
    calls = last(otlp_sink, CALLS).points()
    assert sum(p.as_int for p in calls if attributes(p)["span.kind"] == "SPAN_KIND_SERVER") == 10_000
    assert len({attributes(p)["span.name"] for p in calls}) == 101
    slow = by_operation(p for p in last(otlp_sink, SLOW_CALLS).points()
                        if attributes(p)["span.kind"] == "SPAN_KIND_SERVER")
    assert slow["otel_ext.overflow"].as_int == sum(d >= 1_500_000 for d in durations[100:]) == 4950
    assert sum(slow[name].as_int for name in names[:100]) == 50
