"""The sink is only trustworthy if the real SDK exporters round-trip through it."""

from __future__ import annotations

from typing import Callable

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from opentelemetry.proto.trace.v1.trace_pb2 import Status as StatusProto
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, format_span_id, format_trace_id

from tests.support.otlp_sink import DataPoint, OtlpSink

RESOURCE = Resource.create({"service.name": "sink-test"})

SPAN_EXPORTERS: dict[str, Callable[[OtlpSink], SpanExporter]] = {
    "grpc": lambda sink: GrpcSpanExporter(
        endpoint=sink.grpc_endpoint, insecure=True, headers={"x-test": "grpc"}
    ),
    # gzip so the sink's Content-Encoding handling is exercised end to end.
    "http": lambda sink: HttpSpanExporter(
        endpoint=f"{sink.http_endpoint}/v1/traces",
        headers={"x-test": "http"},
        compression=Compression.Gzip,
    ),
}
METRIC_EXPORTERS: dict[str, Callable[[OtlpSink], MetricExporter]] = {
    "grpc": lambda sink: GrpcMetricExporter(endpoint=sink.grpc_endpoint, insecure=True),
    "http": lambda sink: HttpMetricExporter(endpoint=f"{sink.http_endpoint}/v1/metrics"),
}
EXPECTED_TRACE_PATHS = {
    "grpc": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "http": "/v1/traces",
}


def _export_counter(exporter: MetricExporter) -> None:
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader], resource=RESOURCE)
    provider.get_meter("sink.tests").create_counter("requests").add(3, {"route": "/a"})
    provider.shutdown()  # collects and exports synchronously


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_spans_round_trip(otlp_sink: OtlpSink, transport: str) -> None:
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(SPAN_EXPORTERS[transport](otlp_sink)))
    tracer = provider.get_tracer("sink.tests")
    with tracer.start_as_current_span(
        "parent",
        kind=SpanKind.SERVER,
        attributes={"s": "v", "i": 7, "f": 1.5, "b": True, "l": ["x", "y"]},
    ) as parent:
        with tracer.start_as_current_span("child") as child:
            child.add_event("cache.miss", {"key": "user:1"})
            child.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()

    spans = {span.name: span for span in otlp_sink.spans()}
    assert set(spans) == {"parent", "child"}
    trace_id = format_trace_id(parent.get_span_context().trace_id)
    assert spans["parent"].trace_id == spans["child"].trace_id == trace_id
    assert spans["parent"].span_id == format_span_id(parent.get_span_context().span_id)
    assert spans["child"].span_id == format_span_id(child.get_span_context().span_id)
    assert spans["parent"].parent_span_id is None
    assert spans["child"].parent_span_id == spans["parent"].span_id
    assert spans["parent"].kind == SpanProto.SpanKind.SPAN_KIND_SERVER
    assert spans["parent"].attributes == {"s": "v", "i": 7, "f": 1.5, "b": True, "l": ["x", "y"]}
    assert spans["child"].kind == SpanProto.SpanKind.SPAN_KIND_INTERNAL
    assert spans["child"].events == [("cache.miss", {"key": "user:1"})]
    assert spans["child"].status_code == StatusProto.StatusCode.STATUS_CODE_ERROR
    assert spans["child"].status_message == "boom"
    assert spans["parent"].status_code == StatusProto.StatusCode.STATUS_CODE_UNSET
    assert spans["parent"].resource["service.name"] == "sink-test"
    assert spans["parent"].scope == "sink.tests"
    assert 0 < spans["parent"].start_ns <= spans["child"].start_ns
    assert spans["child"].end_ns <= spans["parent"].end_ns

    assert otlp_sink.paths() == [EXPECTED_TRACE_PATHS[transport]] * 2
    request = otlp_sink.requests[0]
    assert (request.transport, request.signal) == (transport, "traces")
    assert request.headers["x-test"] == transport
    if transport == "http":
        assert request.headers["content-encoding"] == "gzip"


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_counter_round_trip(otlp_sink: OtlpSink, transport: str) -> None:
    _export_counter(METRIC_EXPORTERS[transport](otlp_sink))

    [metric] = otlp_sink.metrics()
    assert (metric.name, metric.kind, metric.scope) == ("requests", "sum", "sink.tests")
    assert metric.points == [DataPoint({"route": "/a"}, 3)]
    assert metric.proto.sum.is_monotonic
    assert metric.resource["service.name"] == "sink-test"
    assert [(r.transport, r.signal) for r in otlp_sink.requests] == [(transport, "metrics")]


def test_http_custom_path_is_classified_by_payload(otlp_sink: OtlpSink) -> None:
    """A metrics body also parses as traces, so classification must not be fooled."""
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(
        SimpleSpanProcessor(HttpSpanExporter(endpoint=f"{otlp_sink.http_endpoint}/custom"))
    )
    provider.get_tracer("sink.tests").start_span("op").end()
    provider.shutdown()
    _export_counter(HttpMetricExporter(endpoint=f"{otlp_sink.http_endpoint}/custom"))

    assert [(r.path, r.signal) for r in otlp_sink.requests] == [
        ("/custom", "traces"),
        ("/custom", "metrics"),
    ]
    assert [s.name for s in otlp_sink.spans()] == ["op"]
    assert [m.name for m in otlp_sink.metrics()] == ["requests"]


def test_grpc_logs_are_recorded(otlp_sink: OtlpSink) -> None:
    provider = LoggerProvider(resource=RESOURCE)
    exporter = GrpcLogExporter(endpoint=otlp_sink.grpc_endpoint, insecure=True)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("sink.tests").emit(body="hello", severity_text="INFO")
    provider.shutdown()

    [request] = otlp_sink.requests
    assert (request.transport, request.signal) == ("grpc", "logs")
    [record] = request.request.resource_logs[0].scope_logs[0].log_records
    assert record.body.string_value == "hello"


def test_wait_for_spans_polls_batch_export(otlp_sink: OtlpSink) -> None:
    provider = TracerProvider(resource=RESOURCE)
    exporter = GrpcSpanExporter(endpoint=otlp_sink.grpc_endpoint, insecure=True)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    tracer = provider.get_tracer("sink.tests")
    for i in range(3):
        tracer.start_span(f"op{i}").end()

    try:
        assert sorted(s.name for s in otlp_sink.wait_for_spans(3)) == ["op0", "op1", "op2"]
    finally:
        provider.shutdown()
    with pytest.raises(AssertionError, match="expected 4 spans"):
        otlp_sink.wait_for_spans(4, timeout=0.1)
