"""RecordUnsampledSampler: stats see 100 % of spans, exporters only the sampled ones."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import set_span_in_context

from processors import (
    OperationStatsProcessor,
    OperationStatsStore,
    RecordUnsampledSampler,
)
from tests.processors._support import (
    T0_NS,
    CollectingProcessor,
    SeededIdGenerator,
    provider_with,
)

ROOTS = 4000
RATE = 0.25


def _ratio_accepts(trace_id: int) -> bool:
    """The W3C/SDK ratio rule, recomputed here: low 64 bits below rate * 2**64."""
    return trace_id & 0xFFFFFFFFFFFFFFFF < round(RATE * 2**64)


def _export_processor(kind: str, exporter: InMemorySpanExporter) -> SpanProcessor:
    if kind == "simple":
        return SimpleSpanProcessor(exporter)
    return BatchSpanProcessor(exporter, max_queue_size=2 * ROOTS, max_export_batch_size=512, schedule_delay_millis=50)


def _rig(sampler: Sampler, kind: str, seed: int) -> tuple[TracerProvider, OperationStatsStore, CollectingProcessor,
                                                           InMemorySpanExporter]:
    store = OperationStatsStore(clock=lambda: T0_NS)
    collector, exporter = CollectingProcessor(), InMemorySpanExporter()
    provider = provider_with(
        OperationStatsProcessor(store), collector, _export_processor(kind, exporter),
        sampler=sampler, id_generator=SeededIdGenerator(seed),
    )
    return provider, store, collector, exporter


@pytest.mark.parametrize("kind", ["simple", "batch"])
def test_all_roots_measured_only_sampled_exported(kind: str) -> None:
    """Guards stats undercounting by the sampling rate, or unsampled spans leaking to the backend."""
    provider, store, collector, exporter = _rig(RecordUnsampledSampler(TraceIdRatioBased(RATE)), kind, seed=2024)
    tracer = provider.get_tracer("t")
    for index in range(ROOTS):
        span = tracer.start_span("GET /books", start_time=T0_NS - 1000 - index)
        span.end(end_time=T0_NS - index)
    assert provider.force_flush(10_000)
    (stats,) = store.snapshot(60)
    assert stats.count == ROOTS
    assert len(collector.ended) == ROOTS
    expected = {s.context.trace_id for s in collector.ended if _ratio_accepts(s.context.trace_id)}
    exported = exporter.get_finished_spans()
    assert {s.context.trace_id for s in exported} == expected
    assert len(exported) == len(expected)
    assert 0.22 * ROOTS <= len(exported) <= 0.28 * ROOTS
    # The sampled flag matches the decision, so propagation downstream is consistent.
    assert all(s.context.trace_flags.sampled == _ratio_accepts(s.context.trace_id) for s in collector.ended)
    provider.shutdown()


def test_children_of_unsampled_parents_recorded_not_exported() -> None:
    """Guards child spans of unsampled requests vanishing from stats (or being exported)."""
    sampler = RecordUnsampledSampler(ParentBased(TraceIdRatioBased(RATE)))
    provider, store, collector, exporter = _rig(sampler, "simple", seed=7)
    tracer = provider.get_tracer("t")
    roots = 1000
    for index in range(roots):
        root = tracer.start_span("root", start_time=T0_NS - 2000)
        child = tracer.start_span("child", context=set_span_in_context(root), start_time=T0_NS - 1000)
        assert child.get_span_context().trace_id == root.get_span_context().trace_id
        assert child.is_recording()
        child.end(end_time=T0_NS - index)
        root.end(end_time=T0_NS - index)
    counts = {s.name: s.count for s in store.snapshot(60)}
    assert counts == {"root": roots, "child": roots}
    sampled_traces = {s.context.trace_id for s in collector.ended if s.name == "root" and _ratio_accepts(s.context.trace_id)}
    exported = exporter.get_finished_spans()
    assert sorted((s.name, s.context.trace_id) for s in exported) == sorted(
        (name, trace_id) for trace_id in sampled_traces for name in ("root", "child")
    )
    assert 0 < len(sampled_traces) < roots


def test_sampled_decisions_pass_through_unchanged() -> None:
    """Guards the wrapper altering RECORD_AND_SAMPLE decisions or the description."""
    provider, store, _, exporter = _rig(RecordUnsampledSampler(ALWAYS_ON), "simple", seed=1)
    tracer = provider.get_tracer("t")
    for _ in range(10):
        tracer.start_span("op", start_time=T0_NS - 10).end(end_time=T0_NS)
    assert len(exporter.get_finished_spans()) == 10
    assert store.snapshot(60)[0].count == 10
    off_provider, off_store, _, off_exporter = _rig(RecordUnsampledSampler(ALWAYS_OFF), "simple", seed=1)
    for _ in range(10):
        off_provider.get_tracer("t").start_span("op", start_time=T0_NS - 10).end(end_time=T0_NS)
    assert off_exporter.get_finished_spans() == ()
    assert off_store.snapshot(60)[0].count == 10
    assert RecordUnsampledSampler(TraceIdRatioBased(RATE)).get_description() == (
        f"RecordUnsampled{{{TraceIdRatioBased(RATE).get_description()}}}"
    )
