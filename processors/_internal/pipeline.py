"""Span post-processing at the export boundary: small pure steps over ended spans.

Ended spans are frozen (see open-telemetry/opentelemetry-python#5614: even the
``_on_ending`` hook runs after the freeze), so attributes decided at end time
cannot be set on the span. Instead the exporter is wrapped and each step
returns either the span unchanged or a rebuilt copy. This runs on the export
thread, so the request path pays nothing for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.util.types import AttributeValue

from processors._internal.errors import report_once
from processors._internal.thresholds import ThresholdRules

__all__ = [
    "SLOW_ATTRIBUTE",
    "SLOW_THRESHOLD_ATTRIBUTE",
    "SpanPipelineExporter",
    "SpanStep",
    "refresh_process_pid",
    "tag_slow_spans",
    "with_attributes",
    "with_resource",
]

_logger = logging.getLogger(__name__)

SLOW_ATTRIBUTE = "otel_ext.slow"
SLOW_THRESHOLD_ATTRIBUTE = "otel_ext.slow_threshold_ms"
PROCESS_PID_ATTRIBUTE = "process.pid"

SpanStep = Callable[[ReadableSpan], ReadableSpan]
T = TypeVar("T")


def _rebuild(
    span: ReadableSpan, extra_attributes: Mapping[str, AttributeValue] | None = None, resource: Resource | None = None
) -> ReadableSpan:
    """A copy of ``span`` with attributes added or the resource replaced.

    Attributes, events and links are copied into bounded containers carrying
    the original dropped counts, which exporters report.
    """
    attributes = BoundedAttributes(maxlen=None, attributes={**(span.attributes or {}), **(extra_attributes or {})},
                                   immutable=True)
    attributes.dropped = span.dropped_attributes
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=resource or span.resource,
        attributes=attributes,
        events=_bounded(span.events, span.dropped_events),
        links=_bounded(span.links, span.dropped_links),
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _bounded(items: Sequence[T], dropped: int) -> BoundedList:
    bounded = BoundedList.from_seq(None, items)
    bounded.dropped = dropped
    return bounded


def with_attributes(span: ReadableSpan, extra: Mapping[str, AttributeValue]) -> ReadableSpan:
    """A copy of ``span`` with ``extra`` attributes added; dropped counts are kept."""
    return _rebuild(span, extra_attributes=extra)


def with_resource(span: ReadableSpan, resource: Resource) -> ReadableSpan:
    return _rebuild(span, resource=resource)


def tag_slow_spans(rules: ThresholdRules) -> SpanStep:
    """Step: mark spans at or above their threshold with ``otel_ext.slow``.

    Fast spans pass through untouched (no attribute, no copy).
    """

    def tag(span: ReadableSpan) -> ReadableSpan:
        if span.start_time is None or span.end_time is None:
            return span
        if not rules.is_slow(span.name, span.end_time - span.start_time):
            return span
        threshold_ms = rules.for_name(span.name)[1]
        shown: float | int = int(threshold_ms) if float(threshold_ms).is_integer() else threshold_ms
        return with_attributes(span, {SLOW_ATTRIBUTE: True, SLOW_THRESHOLD_ATTRIBUTE: shown})

    return tag


def refresh_process_pid() -> SpanStep:
    """Step: in a forked child, export spans under the child's ``process.pid``.

    The resource is built once in the parent; without this, every worker of a
    pre-fork server would report the parent's pid. Until a fork happens the
    step costs one attribute check per span.
    """
    child_pid: list[int] = []  # set in a forked child; empty means nothing to do
    fixed: dict[int, tuple[Resource, Resource]] = {}

    def remember_child_pid() -> None:
        child_pid[:] = [os.getpid()]

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=remember_child_pid)

    def refresh(span: ReadableSpan) -> ReadableSpan:
        if not child_pid:
            return span
        pid = child_pid[0]
        resource = span.resource
        if resource.attributes.get(PROCESS_PID_ATTRIBUTE) in (None, pid):
            return span
        cached = fixed.get(id(resource))
        if cached is None or cached[0] is not resource or cached[1].attributes[PROCESS_PID_ATTRIBUTE] != pid:
            cached = fixed[id(resource)] = (resource, resource.merge(Resource({PROCESS_PID_ATTRIBUTE: pid})))
        return with_resource(span, cached[1])

    return refresh


class SpanPipelineExporter(SpanExporter):
    """Runs each span through ``steps`` and hands the result to ``exporter``.

    Threading contract: called by the export processor's worker thread; a
    failing step is logged once and the span is exported as it was, so no
    recorded span is lost because of otel-ext.
    """

    def __init__(self, exporter: SpanExporter, steps: Sequence[SpanStep]) -> None:
        self.exporter = exporter
        self.steps = tuple(steps)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for step in self.steps:
            try:
                spans = [step(span) for span in spans]
            except Exception:  # noqa: BLE001 - find the failing spans one by one, keep them as they are
                spans = [self._apply(step, span) for span in spans]
        return self.exporter.export(spans)

    @staticmethod
    def _apply(step: SpanStep, span: ReadableSpan) -> ReadableSpan:
        try:
            return step(span)
        except Exception as error:  # noqa: BLE001 - export the span as it is rather than lose it
            report_once(_logger, f"span step {getattr(step, '__qualname__', step)!s}", error)
            return span

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)
