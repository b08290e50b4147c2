"""SpanPipelineExporter with tag_slow_spans / refresh_process_pid, behind real SDK processors."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    set_span_in_context,
)

from processors import (
    SLOW_ATTRIBUTE,
    SLOW_THRESHOLD_ATTRIBUTE,
    SpanPipelineExporter,
    SpanStep,
    ThresholdRules,
    refresh_process_pid,
    tag_slow_spans,
)
from tests.processors._support import NS_PER_MS, T0_NS, emit
from tests.support.forking import run_in_child

PIPELINE_LOGGER = "processors._internal.pipeline"


@dataclass
class Rig:
    """A provider whose spans go raw to ``raw`` and through the pipeline to ``exported``."""

    provider: TracerProvider
    tracer: Tracer
    raw: InMemorySpanExporter
    exported: InMemorySpanExporter


def make_rig(steps: Sequence[SpanStep], resource: Resource | None = None, limits: SpanLimits | None = None) -> Rig:
    raw, exported = InMemorySpanExporter(), InMemorySpanExporter()
    provider = TracerProvider(
        resource=resource or Resource.create({"service.name": "shop", "deployment.environment": "test"}),
        span_limits=limits,
    )
    provider.add_span_processor(SimpleSpanProcessor(raw))
    provider.add_span_processor(SimpleSpanProcessor(SpanPipelineExporter(exported, steps)))
    return Rig(provider, provider.get_tracer("tests.pipeline", "1.2.3", schema_url="https://x/s"), raw, exported)


def _one_pair(rig: Rig) -> tuple[ReadableSpan, ReadableSpan]:
    (raw,), (exported,) = rig.raw.get_finished_spans(), rig.exported.get_finished_spans()
    return raw, exported


@pytest.mark.parametrize("threshold_ms", [1000, 250])
@pytest.mark.parametrize("factor", [1.2, 1.0])
def test_spans_at_or_above_threshold_are_tagged(threshold_ms: int, factor: float) -> None:
    """Guards slow spans reaching the backend without the otel_ext.slow tag."""
    rig = make_rig([tag_slow_spans(ThresholdRules(default_ms=threshold_ms))])
    emit(rig.tracer, "GET /books", T0_NS, int(threshold_ms * factor) * NS_PER_MS)
    raw, exported = _one_pair(rig)
    assert exported is not raw
    assert exported.attributes[SLOW_ATTRIBUTE] is True
    threshold = exported.attributes[SLOW_THRESHOLD_ATTRIBUTE]
    assert threshold == threshold_ms and type(threshold) is int
    assert SLOW_ATTRIBUTE not in raw.attributes  # the original span is not mutated


@pytest.mark.parametrize("threshold_ms", [1000, 250])
def test_span_just_below_threshold_is_same_object(threshold_ms: int) -> None:
    """Guards fast spans paying for a copy, or being tagged at 1 ns under the threshold."""
    rig = make_rig([tag_slow_spans(ThresholdRules(default_ms=threshold_ms))])
    emit(rig.tracer, "GET /books", T0_NS, threshold_ms * NS_PER_MS - 1)
    emit(rig.tracer, "GET /books", T0_NS, (threshold_ms - 1) * NS_PER_MS)
    for raw, exported in zip(rig.raw.get_finished_spans(), rig.exported.get_finished_spans(), strict=True):
        assert exported is raw
        assert SLOW_ATTRIBUTE not in exported.attributes


def test_fractional_threshold_is_reported_as_float() -> None:
    """Guards a 0.5 ms threshold being truncated to 0 in the tag."""
    rig = make_rig([tag_slow_spans(ThresholdRules(default_ms=0.5))])
    emit(rig.tracer, "cache.get", T0_NS, NS_PER_MS // 2)
    _, exported = _one_pair(rig)
    assert exported.attributes[SLOW_THRESHOLD_ATTRIBUTE] == 0.5


def _rich_span(tracer: Tracer) -> None:
    parent = tracer.start_span("parent", start_time=T0_NS - 5_000 * NS_PER_MS)
    other = tracer.start_span("other", start_time=T0_NS - 5_000 * NS_PER_MS)
    link = Link(other.get_span_context(), {"link.kind": "follows"})

    def configure(span: Span) -> None:
        span.set_attribute("db.system", "postgresql")
        span.set_attribute("db.rows", 42)
        span.set_attribute("retry.delays", [0.1, 0.2])
        span.add_event("retry", {"attempt": 2}, timestamp=T0_NS - 100 * NS_PER_MS)
        span.set_status(Status(StatusCode.ERROR, "db timeout on primary"))

    emit(
        tracer, "SELECT orders", T0_NS, 1200 * NS_PER_MS, kind=SpanKind.CLIENT, configure=configure,
        context=set_span_in_context(parent), links=[link],
    )
    other.end(end_time=T0_NS)
    parent.end(end_time=T0_NS)


def test_tagged_copy_preserves_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Guards the rebuilt span losing status, events, links, parent, resource or scope."""
    caplog.set_level(logging.DEBUG)
    rig = make_rig([tag_slow_spans(ThresholdRules())])
    _rich_span(rig.tracer)
    raw = next(s for s in rig.raw.get_finished_spans() if s.name == "SELECT orders")
    exported = next(s for s in rig.exported.get_finished_spans() if s.name == "SELECT orders")
    assert exported is not raw
    assert dict(exported.attributes) == {**raw.attributes, SLOW_ATTRIBUTE: True, SLOW_THRESHOLD_ATTRIBUTE: 1000}
    assert exported.attributes["retry.delays"] == (0.1, 0.2)
    assert exported.status.status_code is StatusCode.ERROR
    assert exported.status.description == "db timeout on primary"
    assert [(e.name, dict(e.attributes), e.timestamp) for e in exported.events] == [
        ("retry", {"attempt": 2}, T0_NS - 100 * NS_PER_MS)
    ]
    assert [(l.context, dict(l.attributes)) for l in exported.links] == [
        (raw.links[0].context, {"link.kind": "follows"})
    ]
    assert exported.kind is SpanKind.CLIENT
    assert exported.context == raw.context
    assert exported.parent == raw.parent and exported.parent is not None
    assert exported.parent.span_id == next(s for s in rig.raw.get_finished_spans() if s.name == "parent").context.span_id
    assert exported.resource is raw.resource
    assert exported.resource.attributes["service.name"] == "shop"
    assert exported.instrumentation_scope == raw.instrumentation_scope
    assert (exported.instrumentation_scope.name, exported.instrumentation_scope.version) == ("tests.pipeline", "1.2.3")
    assert (exported.start_time, exported.end_time) == (T0_NS - 1200 * NS_PER_MS, T0_NS)
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]  # B01
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_tagged_copy_keeps_dropped_attribute_count() -> None:
    """Guards the backend being told no attributes were dropped when some were."""
    rig = make_rig([tag_slow_spans(ThresholdRules())], limits=SpanLimits(max_span_attributes=4))
    emit(rig.tracer, "op", T0_NS, 2000 * NS_PER_MS,
         configure=lambda span: span.set_attributes({f"k{n}": n for n in range(10)}))
    raw, exported = _one_pair(rig)
    assert raw.dropped_attributes == 6
    assert exported.dropped_attributes == 6
    assert {k: exported.attributes[k] for k in raw.attributes} == dict(raw.attributes)
    assert exported.attributes[SLOW_ATTRIBUTE] is True


def test_tagged_copy_keeps_dropped_event_and_link_counts() -> None:
    """Guards the exported span under-reporting dropped events and links."""
    rig = make_rig([tag_slow_spans(ThresholdRules())], limits=SpanLimits(max_events=2, max_links=1))
    other = rig.tracer.start_span("other", start_time=T0_NS)
    links = [Link(other.get_span_context()), Link(other.get_span_context()), Link(other.get_span_context())]

    def configure(span: Span) -> None:
        for number in range(5):
            span.add_event(f"e{number}", timestamp=T0_NS - 10)

    emit(rig.tracer, "op", T0_NS, 2000 * NS_PER_MS, configure=configure, links=links)
    raw, exported = _one_pair(rig)
    assert (raw.dropped_events, raw.dropped_links) == (3, 2)
    assert exported.attributes[SLOW_ATTRIBUTE] is True
    assert (exported.dropped_events, exported.dropped_links) == (3, 2)


def test_failing_step_exports_span_unchanged_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """Guards a buggy step losing spans or flooding logs once per span."""

    class PipelineStepBoom(RuntimeError):
        pass

    def exploding_step_for_pipeline_test(span: ReadableSpan) -> ReadableSpan:
        raise PipelineStepBoom("step broke")

    caplog.set_level(logging.ERROR, logger=PIPELINE_LOGGER)
    rig = make_rig([exploding_step_for_pipeline_test])
    for offset in range(100):
        emit(rig.tracer, "op", T0_NS - offset, 1500 * NS_PER_MS)
    raw, exported = rig.raw.get_finished_spans(), rig.exported.get_finished_spans()
    assert len(exported) == 100
    assert all(e is r for e, r in zip(exported, raw, strict=True))
    errors = [r for r in caplog.records if r.name == PIPELINE_LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "exploding_step_for_pipeline_test" in errors[0].getMessage()
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], PipelineStepBoom)


def test_steps_after_a_failing_step_still_run(caplog: pytest.LogCaptureFixture) -> None:
    """Guards one broken step disabling slow tagging for every span."""

    class PipelineStepBoomTwo(RuntimeError):
        pass

    def exploding_step_before_tagging(span: ReadableSpan) -> ReadableSpan:
        raise PipelineStepBoomTwo

    rig = make_rig([exploding_step_before_tagging, tag_slow_spans(ThresholdRules())])
    emit(rig.tracer, "op", T0_NS, 1500 * NS_PER_MS)
    _, exported = _one_pair(rig)
    assert exported.attributes[SLOW_ATTRIBUTE] is True


def test_force_flush_and_shutdown_reach_wrapped_exporter() -> None:
    """Guards buffered spans being lost at shutdown because calls are not forwarded."""
    calls: list[str] = []

    class Recording(InMemorySpanExporter):
        def force_flush(self, timeout_millis: int = 30000) -> bool:
            calls.append(f"flush:{timeout_millis}")
            return True

        def shutdown(self) -> None:
            calls.append("shutdown")
            super().shutdown()

    pipeline = SpanPipelineExporter(Recording(), [])
    assert pipeline.force_flush(1234) is True
    pipeline.shutdown()
    assert calls == ["flush:1234", "shutdown"]


def test_refresh_process_pid_is_a_no_op_in_the_configuring_process() -> None:
    """Guards the parent's spans being needlessly copied."""
    resource = Resource.create({"service.name": "web", "process.pid": os.getpid()})
    rig = make_rig([refresh_process_pid()], resource=resource)
    emit(rig.tracer, "op", T0_NS, NS_PER_MS)
    raw, exported = _one_pair(rig)
    assert exported is raw


def test_refresh_process_pid_in_forked_child() -> None:
    """Guards every pre-fork worker reporting the master's process.pid."""
    parent_pid = os.getpid()
    resource = Resource.create({"service.name": "web", "process.pid": parent_pid})
    rig = make_rig([refresh_process_pid(), tag_slow_spans(ThresholdRules())], resource=resource)

    def child() -> dict[str, object]:
        rig.exported.clear()
        emit(rig.tracer, "op", T0_NS, 1500 * NS_PER_MS)
        emit(rig.tracer, "fast", T0_NS, NS_PER_MS)
        slow, fast = rig.exported.get_finished_spans()
        return {
            "pid": os.getpid(),
            "exported_pids": [slow.resource.attributes["process.pid"], fast.resource.attributes["process.pid"]],
            "service": fast.resource.attributes["service.name"],
            "slow": slow.attributes.get(SLOW_ATTRIBUTE),
        }

    result = run_in_child(child)
    assert result["pid"] != parent_pid
    assert result["exported_pids"] == [result["pid"], result["pid"]]
    assert result["service"] == "web"
    assert result["slow"] is True
    # The parent is untouched.
    emit(rig.tracer, "op", T0_NS, NS_PER_MS)
    assert rig.exported.get_finished_spans()[-1].resource.attributes["process.pid"] == parent_pid


def test_refresh_process_pid_keeps_dropped_attribute_count() -> None:
    """Guards forked workers under-reporting dropped attributes."""
    resource = Resource.create({"service.name": "web", "process.pid": os.getpid()})
    rig = make_rig([refresh_process_pid()], resource=resource, limits=SpanLimits(max_span_attributes=4))

    def child() -> dict[str, object]:
        rig.exported.clear()
        emit(rig.tracer, "op", T0_NS, NS_PER_MS,
             configure=lambda span: span.set_attributes({f"k{n}": n for n in range(10)}))
        (exported,) = rig.exported.get_finished_spans()
        return {"pid_ok": exported.resource.attributes["process.pid"] == os.getpid(),
                "dropped": exported.dropped_attributes}

    assert run_in_child(child) == {"pid_ok": True, "dropped": 6}
