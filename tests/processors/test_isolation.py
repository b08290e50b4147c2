"""IsolatingSpanProcessor: one broken processor never breaks the app or its neighbours."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from processors import (
    IsolatingSpanProcessor,
    OperationStatsProcessor,
    OperationStatsStore,
)
from tests.processors._support import T0_NS, CollectingProcessor

ISOLATION_LOGGER = "processors._internal.isolation"


class ProcessorBroke(RuntimeError):
    """The failure of a third-party processor (never the app's exception)."""


# One class per test: failures are logged once per (processor class, hook, exception type) per process.
class EndFailsBeforeStats(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise ProcessorBroke("before-stats on_end broke")


class EndFailsAfterStats(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise ProcessorBroke("after-stats on_end broke")


class EndFailsRepeated(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise ProcessorBroke("repeated on_end broke")


class StartFails(SpanProcessor):
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        raise ProcessorBroke("on_start broke")


class EndingFails(SpanProcessor):
    def _on_ending(self, span: Span) -> None:
        raise ProcessorBroke("_on_ending broke")


class FlushFails(SpanProcessor):
    def force_flush(self, timeout_millis: int = 30000) -> bool:
        raise ProcessorBroke("force_flush broke")


class ShutdownFails(SpanProcessor):
    def shutdown(self) -> None:
        raise ProcessorBroke("shutdown broke")


class CallRecorder(SpanProcessor):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.calls.append("force_flush")
        return True

    def shutdown(self) -> None:
        self.calls.append("shutdown")


def _errors(caplog: pytest.LogCaptureFixture, processor: type) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records
        if r.name == ISOLATION_LOGGER and r.levelno == logging.ERROR and processor.__qualname__ in r.getMessage()
    ]


def _isolated_provider(*processors: SpanProcessor) -> TracerProvider:
    provider = TracerProvider(active_span_processor=IsolatingSpanProcessor())
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def _stats(store: OperationStatsStore, name: str) -> tuple[int, int]:
    (stats,) = store.snapshot(3600, operation=name)
    return stats.count, stats.error_count


def test_app_exception_survives_failing_on_end(caplog: pytest.LogCaptureFixture) -> None:
    """Guards a broken processor replacing the app's own exception and starving later processors."""
    caplog.set_level(logging.ERROR, logger=ISOLATION_LOGGER)
    store = OperationStatsStore(clock=lambda: T0_NS)
    exported = InMemorySpanExporter()
    provider = _isolated_provider(
        EndFailsBeforeStats(), OperationStatsProcessor(store), EndFailsAfterStats(), SimpleSpanProcessor(exported)
    )
    tracer = provider.get_tracer("t")
    with pytest.raises(ValueError, match="app"):
        with tracer.start_as_current_span("op", start_time=T0_NS - 1000):
            raise ValueError("app")
    (span,) = exported.get_finished_spans()
    assert span.name == "op"
    assert span.status.is_ok is False
    assert _stats(store, "op") == (1, 1)
    assert len(_errors(caplog, EndFailsBeforeStats)) == 1
    assert len(_errors(caplog, EndFailsAfterStats)) == 1


def test_repeated_failures_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Guards a processor failing on every span flooding the app's logs."""
    caplog.set_level(logging.ERROR, logger=ISOLATION_LOGGER)
    store = OperationStatsStore(clock=lambda: T0_NS)
    exported = InMemorySpanExporter()
    provider = _isolated_provider(OperationStatsProcessor(store), EndFailsRepeated(), SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("t")
    for _ in range(50):
        with pytest.raises(ValueError, match="app"):
            with tracer.start_as_current_span("op", start_time=T0_NS - 1000):
                raise ValueError("app")
    assert len(exported.get_finished_spans()) == 50
    assert _stats(store, "op") == (50, 50)
    records = _errors(caplog, EndFailsRepeated)
    assert len(records) == 1
    assert isinstance(records[0].exc_info[1], ProcessorBroke)


def test_on_start_failure_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    """Guards a processor's on_start error aborting span creation in the app."""
    caplog.set_level(logging.ERROR, logger=ISOLATION_LOGGER)
    collector = CollectingProcessor()
    provider = _isolated_provider(StartFails(), collector)
    tracer = provider.get_tracer("t")
    for _ in range(3):
        with tracer.start_as_current_span("op") as span:
            assert span.is_recording()
    assert [s.name for s in collector.ended] == ["op"] * 3
    assert len(_errors(caplog, StartFails)) == 1


def test_on_ending_failure_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    """Guards the SDK's _on_ending hook letting an error escape span.end()."""
    caplog.set_level(logging.ERROR, logger=ISOLATION_LOGGER)
    collector = CollectingProcessor()
    provider = _isolated_provider(EndingFails(), collector)
    span = provider.get_tracer("t").start_span("op", start_time=T0_NS - 5)
    span.end(end_time=T0_NS)
    assert [s.name for s in collector.ended] == ["op"]
    assert len(_errors(caplog, EndingFails)) == 1


def test_force_flush_failure_returns_false_and_flushes_others() -> None:
    """Guards a flush error propagating at exit or hiding that a flush failed."""
    before, after = CallRecorder(), CallRecorder()
    provider = _isolated_provider(before, FlushFails(), after)
    assert provider.force_flush(5_000) is False
    assert before.calls == ["force_flush"] and after.calls == ["force_flush"]
    healthy = _isolated_provider(CallRecorder(), CallRecorder())
    assert healthy.force_flush(5_000) is True


def test_shutdown_failure_does_not_propagate() -> None:
    """Guards a shutdown error crashing interpreter exit and skipping later exporters."""
    before, after = CallRecorder(), CallRecorder()
    provider = _isolated_provider(before, ShutdownFails(), after)
    provider.shutdown()
    assert before.calls == ["shutdown"] and after.calls == ["shutdown"]
