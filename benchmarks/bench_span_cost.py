"""Per-span cost of the bare OpenTelemetry SDK vs the SDK with otel-ext as the product wires it.

Configurations: (a) the bare SDK; (b) the bare SDK plus one SDK ``Histogram.record``
per span (what a span-metrics processor built on SDK instruments costs, for
comparison); (c) otel-ext with its metrics reader (exponential histogram);
(d) otel-ext with explicit buckets as well (the Prometheus path). The metric
readers collect into a no-op exporter every 60 s, the SDK's default; ``--collect-interval-ms 1000``
puts 60 times the collection work into the timed runs.

All configurations live in one process and run interleaved (A B C D, then D C B A, ...)
so that CPU frequency, cache and allocator drift hit both alike. Each timed run
creates ``--spans`` spans and then calls ``provider.force_flush()`` inside the
timed region, so the export thread's work (batching, pipeline steps, the no-op
export) is counted, not only the request-path cost. Figures are medians over
``--rounds`` rounds. It only prints figures; nothing is asserted.

Run: ``python benchmarks/bench_span_cost.py [--spans 20000] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import DEFAULT_ON
from opentelemetry.trace import SpanContext, SpanKind, Tracer

from processors import (
    DEFAULT_EXPLICIT_BOUNDS_S,
    DURATION_METRIC,
    HistogramAggregation,
    IsolatingSpanProcessor,
    OperationMetrics,
    OperationMetricsReader,
    OperationStatsProcessor,
    OperationStatsStore,
    RecordUnsampledSampler,
    SpanPipelineExporter,
    ThresholdRules,
    refresh_process_pid,
    tag_slow_spans,
)

NAMES: tuple[str, ...] = tuple(f"GET /api/v1/resource{i}" for i in range(20))
WARMUP_FRACTION = 4
DEFAULT_COLLECT_INTERVAL_MS = 60_000  # the SDK's default, OTEL_METRIC_EXPORT_INTERVAL


class NoOpExporter(SpanExporter):
    """Accepts every batch and only counts the spans, so the SDK's own cost is what remains."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""


class NoOpMetricExporter(MetricExporter):
    """Accepts every collection and counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.collections = 0

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        self.collections += 1
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        """Nothing to release."""


class SdkHistogramProcessor(SpanProcessor):
    """Records every span's duration into an SDK histogram: the approach otel-ext avoids."""

    def __init__(self, meter_provider: MeterProvider) -> None:
        self._histogram = meter_provider.get_meter("bench").create_histogram("span.duration", unit="s")

    def on_end(self, span: ReadableSpan) -> None:
        self._histogram.record(
            (span.end_time - span.start_time) / 1e9,  # type: ignore[operator]
            {"span.name": span.name, "span.kind": span.kind.name},
        )


@dataclass
class Config:
    """One tracing setup under test."""

    label: str
    provider: TracerProvider
    exporter: NoOpExporter
    meter_provider: MeterProvider | None = None

    @property
    def tracer(self) -> Tracer:
        return self.provider.get_tracer("bench")


def rules() -> ThresholdRules:
    """Thresholds like a real deployment: a default plus a couple of glob overrides."""
    return ThresholdRules(default_ms=500.0, overrides=[("GET /api/v1/resource1*", 200.0), ("POST *", 1000.0)])


def bare_sdk() -> Config:
    """(a) ``TracerProvider()`` + ``BatchSpanProcessor(NoOpExporter)``."""
    exporter = NoOpExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Config("(a) bare SDK", provider, exporter)


def sdk_histogram(collect_interval_ms: int) -> Config:
    """(b) The bare SDK plus one exponential SDK ``Histogram.record`` per span."""
    config = bare_sdk()
    meter_provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(NoOpMetricExporter(), collect_interval_ms)],
        views=[View(instrument_name="span.duration", aggregation=ExponentialBucketHistogramAggregation())],
    )
    config.provider.add_span_processor(SdkHistogramProcessor(meter_provider))
    return Config("(b) SDK + SDK histogram", config.provider, config.exporter, meter_provider)


def with_otel_ext(aggregation: HistogramAggregation, collect_interval_ms: int) -> tuple[Config, OperationStatsStore]:
    """(c)/(d) The SDK plus otel-ext and its metrics reader, wired as ``otel_ext._internal.setup._build`` does."""
    exporter = NoOpExporter()
    explicit = aggregation is HistogramAggregation.EXPLICIT
    store = OperationStatsStore(rules(), explicit_bounds_s=DEFAULT_EXPLICIT_BOUNDS_S if explicit else None)
    provider = TracerProvider(
        sampler=RecordUnsampledSampler(DEFAULT_ON),
        resource=Resource.create({"service.name": "bench"}),
        active_span_processor=IsolatingSpanProcessor(),
    )
    provider.add_span_processor(OperationStatsProcessor(store))
    steps = (tag_slow_spans(store.rules), refresh_process_pid())
    provider.add_span_processor(BatchSpanProcessor(SpanPipelineExporter(exporter, steps)))
    reader = OperationMetricsReader(NoOpMetricExporter(), OperationMetrics(store, aggregation), collect_interval_ms)
    meter_provider = MeterProvider(resource=provider.resource, metric_readers=[reader])
    label = "(d) otel-ext, explicit" if explicit else "(c) otel-ext"
    return Config(label, provider, exporter, meter_provider), store


def workload(tracer: Tracer, spans: int) -> None:
    """``spans`` server spans over ``len(NAMES)`` names, two attributes each."""
    names = NAMES
    count = len(names)
    for i in range(spans):
        with tracer.start_as_current_span(names[i % count], kind=SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", "GET")
            span.set_attribute("http.response.status_code", 200)


def timed_run(config: Config, spans: int) -> float:
    """Seconds per span for ``spans`` spans including the flush of the export queue."""
    gc.collect()
    tracer = config.tracer
    start = time.perf_counter()
    workload(tracer, spans)
    config.provider.force_flush()
    return (time.perf_counter() - start) / spans


def prebuilt_spans(spans: int) -> list[ReadableSpan]:
    """Ended spans as the SDK hands them to ``on_end``: same resource, recent end times."""
    resource = Resource.create({"service.name": "bench"})
    now = time.time_ns()
    result = []
    for i in range(spans):
        end = now - (spans - i) * 1_000
        result.append(
            ReadableSpan(
                name=NAMES[i % len(NAMES)],
                context=SpanContext(trace_id=i + 1, span_id=i + 1, is_remote=False),
                resource=resource,
                attributes={"http.request.method": "GET", "http.response.status_code": 200},
                kind=SpanKind.SERVER,
                start_time=end - 1_000_000 - (i % 97) * 10_000,
                end_time=end,
            )
        )
    return result


def median_per_call(action: Callable[[], object], calls: int, rounds: int) -> float:
    """Median over ``rounds`` of seconds per call when ``action`` does ``calls`` calls."""
    timings = []
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        action()
        timings.append((time.perf_counter() - start) / calls)
    return statistics.median(timings)


def hot_path(spans: int, rounds: int) -> dict[str, float]:
    """Seconds per span of otel-ext's own pieces, measured on pre-built spans."""
    batch = prebuilt_spans(spans)

    def record_all() -> None:
        processor = OperationStatsProcessor(OperationStatsStore(rules()))
        on_end = processor.on_end
        for span in batch:
            on_end(span)
        processor.store.snapshot(60)

    def queue_only() -> None:
        pending = OperationStatsStore(rules())._pending
        for span in batch:
            pending.append(span)

    pipeline = SpanPipelineExporter(NoOpExporter(), (tag_slow_spans(rules()), refresh_process_pid()))
    return {
        "OperationStatsProcessor.on_end + drain + snapshot(60)": median_per_call(record_all, spans, rounds),
        "  of which: deque.append alone (lower bound)": median_per_call(queue_only, spans, rounds),
        "SpanPipelineExporter steps (export thread)": median_per_call(lambda: pipeline.export(batch), spans, rounds),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000, help="spans per timed run (default 20000)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--collect-interval-ms", type=int, default=DEFAULT_COLLECT_INTERVAL_MS,
                        help=f"metric collection interval (default {DEFAULT_COLLECT_INTERVAL_MS}; the SDK's is 60000)")
    args = parser.parse_args(argv)

    bare = bare_sdk()
    ext, store = with_otel_ext(HistogramAggregation.EXPONENTIAL, args.collect_interval_ms)
    explicit, _ = with_otel_ext(HistogramAggregation.EXPLICIT, args.collect_interval_ms)
    configs = (bare, sdk_histogram(args.collect_interval_ms), ext, explicit)
    print(
        f"Python {platform.python_version()}, opentelemetry-sdk {version('opentelemetry-sdk')}, "
        f"{platform.machine()}, {args.rounds} rounds x {args.spans} spans, metrics collected every "
        f"{args.collect_interval_ms} ms, median per configuration"
    )

    for config in configs:
        workload(config.tracer, max(1, args.spans // WARMUP_FRACTION))
        config.provider.force_flush()
    for config in configs:
        config.exporter.exported = 0

    timings: dict[str, list[float]] = {config.label: [] for config in configs}
    for round_number in range(args.rounds):
        order = configs if round_number % 2 == 0 else configs[::-1]
        for config in order:
            timings[config.label].append(timed_run(config, args.spans))

    # Each round times every configuration back to back, so the ratio within a round cancels the slow
    # drifts of a shared machine; the median of those ratios is the steadiest figure.
    base = timings[bare.label]
    print()
    print(f"{'configuration':<26}{'median us/span':>15}{'min':>9}{'max':>9}{'exported':>10}{'vs (a), paired':>16}")
    for config in configs:
        values = timings[config.label]
        paired = statistics.median(b / a for a, b in zip(base, values, strict=True))
        print(
            f"{config.label:<26}{statistics.median(values) * 1e6:>15.2f}{min(values) * 1e6:>9.2f}"
            f"{max(values) * 1e6:>9.2f}{config.exporter.exported:>10}{(paired - 1) * 100:>+15.1f}%"
        )
    operations = {(stats.name, stats.count) for stats in store.snapshot(3600)}
    print(f"otel-ext store (c): {len(operations)} operations, {sum(count for _, count in operations)} spans counted")
    cumulative = AggregationTemporality.CUMULATIVE
    collected = OperationMetrics(store).collect(cumulative, cumulative)
    (duration,) = [metric for metric in collected if metric.name == DURATION_METRIC]
    exported = sum(point.count for point in duration.data.data_points if isinstance(point, ExponentialHistogramDataPoint))
    print(f"otel-ext metrics (c): duration histogram count {exported}")
    seconds = median_per_call(lambda: OperationMetrics(store).collect(cumulative, cumulative), 1, args.rounds)
    print(f"one collection of otel-ext's metrics ({len(operations)} operations): {seconds * 1e3:.2f} ms")

    print()
    print(f"otel-ext pieces in isolation ({args.spans} pre-built ReadableSpans, median of {args.rounds}):")
    for label, seconds in hot_path(args.spans, args.rounds).items():
        print(f"  {label:<54}{seconds * 1e6:>8.2f} us/span")

    for config in configs:
        config.provider.shutdown()
        if config.meter_provider is not None:
            config.meter_provider.shutdown()


if __name__ == "__main__":
    main()
