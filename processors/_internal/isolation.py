"""Keep one failing span processor from breaking the app or the other processors."""

from __future__ import annotations

import logging
from time import time_ns

from opentelemetry.context import Context
from opentelemetry.sdk.trace import (
    ReadableSpan,
    Span,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
)

from processors._internal.errors import report_once

__all__ = ["IsolatingSpanProcessor"]

_logger = logging.getLogger(__name__)


class IsolatingSpanProcessor(SynchronousMultiSpanProcessor):
    """The SDK's sequential multi-processor, with every call guarded.

    The SDK lets an exception from ``on_end`` escape through ``span.end()``,
    where it replaces the application's own exception and skips the
    processors after it (open-telemetry/opentelemetry-python#5624). Pass an
    instance as ``TracerProvider(active_span_processor=...)``: each processor
    added later is isolated too, and its failures are logged once per cause.

    Threading contract: same as the SDK's; processors are kept in tuples that
    are replaced, never mutated, so iteration needs no lock. Processors that
    inherit the base class's empty ``on_start`` / ``_on_ending`` are not called
    for those hooks: two calls per span saved for each of them.
    """

    def __init__(self) -> None:
        super().__init__()
        self._starting: tuple[SpanProcessor, ...] = ()
        self._ending: tuple[SpanProcessor, ...] = ()

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        with self._lock:
            self._span_processors += (span_processor,)
            if type(span_processor).on_start is not SpanProcessor.on_start:
                self._starting += (span_processor,)
            if type(span_processor)._on_ending is not SpanProcessor._on_ending:  # noqa: SLF001
                self._ending += (span_processor,)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._starting:
            try:
                processor.on_start(span, parent_context=parent_context)
            except Exception as error:  # noqa: BLE001
                _report(processor, "on_start", error)

    def _on_ending(self, span: Span) -> None:
        for processor in self._ending:
            try:
                processor._on_ending(span)  # noqa: SLF001 - forwarding the SDK's own hook
            except Exception as error:  # noqa: BLE001
                _report(processor, "_on_ending", error)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self._span_processors:
            try:
                processor.on_end(span)
            except Exception as error:  # noqa: BLE001
                _report(processor, "on_end", error)

    def shutdown(self) -> None:
        for processor in self._span_processors:
            try:
                processor.shutdown()
            except Exception as error:  # noqa: BLE001
                _report(processor, "shutdown", error)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline_ns = time_ns() + timeout_millis * 1_000_000
        flushed = True
        for processor in self._span_processors:
            remaining_ms = (deadline_ns - time_ns()) // 1_000_000
            if remaining_ms <= 0:
                return False
            try:
                flushed = processor.force_flush(remaining_ms) and flushed
            except Exception as error:  # noqa: BLE001
                _report(processor, "force_flush", error)
                flushed = False
        return flushed


def _report(processor: SpanProcessor, hook: str, error: Exception) -> None:
    report_once(_logger, f"{type(processor).__qualname__}.{hook}", error)
