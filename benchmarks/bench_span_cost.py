"""Per-span cost of the bare OpenTelemetry SDK vs the SDK with otel-ext as the product wires it.

Both configurations live in one process and run interleaved (A B, then B A, ...)
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

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import DEFAULT_ON
from opentelemetry.trace import SpanContext, SpanKind, Tracer

from processors import (
    IsolatingSpanProcessor,
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


class NoOpExporter(SpanExporter):
    """Accepts every batch and only counts the spans, so the SDK's own cost is what remains."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""


@dataclass
class Config:
    """One tracing setup under test."""

    label: str
    provider: TracerProvider
    exporter: NoOpExporter

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


def with_otel_ext() -> tuple[Config, OperationStatsStore]:
    """(b) The same plus otel-ext, wired as ``otel_ext._internal.setup._build`` does."""
    exporter = NoOpExporter()
    store = OperationStatsStore(rules())
    provider = TracerProvider(
        sampler=RecordUnsampledSampler(DEFAULT_ON),
        resource=Resource.create({"service.name": "bench"}),
        active_span_processor=IsolatingSpanProcessor(),
    )
    provider.add_span_processor(OperationStatsProcessor(store))
    steps = (tag_slow_spans(store.rules), refresh_process_pid())
    provider.add_span_processor(BatchSpanProcessor(SpanPipelineExporter(exporter, steps)))
    return Config("(b) SDK + otel-ext", provider, exporter), store


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
    args = parser.parse_args(argv)

    bare = bare_sdk()
    ext, store = with_otel_ext()
    configs = (bare, ext)
    print(
        f"Python {platform.python_version()}, opentelemetry-sdk {version('opentelemetry-sdk')}, "
        f"{platform.machine()}, {args.rounds} rounds x {args.spans} spans, median per configuration"
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

    medians = {label: statistics.median(values) for label, values in timings.items()}
    base, extended = medians[bare.label], medians[ext.label]
    print()
    print(f"{'configuration':<24}{'median us/span':>15}{'min':>9}{'max':>9}{'exported':>11}")
    for config in configs:
        values = timings[config.label]
        print(
            f"{config.label:<24}{medians[config.label] * 1e6:>15.2f}{min(values) * 1e6:>9.2f}"
            f"{max(values) * 1e6:>9.2f}{config.exporter.exported:>11}"
        )
    print(f"ratio of medians (b)/(a): {extended / base:.3f}   overhead: {(extended / base - 1) * 100:+.1f} %"
          f"   (+{(extended - base) * 1e6:.2f} us/span)")
    # Each round times (a) and (b) back to back, so the ratio within a round cancels the slow drifts of a
    # shared machine; the median of those ratios is the steadiest figure.
    paired = statistics.median(b / a for a, b in zip(timings[bare.label], timings[ext.label], strict=True))
    print(f"median of per-round ratios: {paired:.3f}   overhead: {(paired - 1) * 100:+.1f} %")
    operations = {(stats.name, stats.count) for stats in store.snapshot(3600)}
    print(f"otel-ext store: {len(operations)} operations, {sum(count for _, count in operations)} spans counted")

    print()
    print(f"otel-ext pieces in isolation ({args.spans} pre-built ReadableSpans, median of {args.rounds}):")
    for label, seconds in hot_path(args.spans, args.rounds).items():
        print(f"  {label:<54}{seconds * 1e6:>8.2f} us/span")

    for config in configs:
        config.provider.shutdown()


if __name__ == "__main__":
    main()
