"""In-process OTLP receiver (gRPC + HTTP/protobuf) for end-to-end tests.

Tests export through the real SDK exporters and assert on what actually went
over the wire, so the sink decodes requests with opentelemetry-proto instead of
trusting any in-memory exporter.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Literal, Union

import grpc
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, NumberDataPoint

from tests.support.serving import Served, serve_in_background

Signal = Literal["traces", "metrics", "logs"]
Transport = Literal["grpc", "http"]
ExportRequest = Union[
    trace_service_pb2.ExportTraceServiceRequest,
    metrics_service_pb2.ExportMetricsServiceRequest,
    logs_service_pb2.ExportLogsServiceRequest,
]

_REQUEST_TYPES: dict[Signal, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}
_RESPONSE_TYPES: dict[Signal, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
}
_GRPC_METHODS: dict[Signal, str] = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}


@dataclass(frozen=True)
class Received:
    """One export request as it arrived on the wire."""

    transport: Transport
    path: str
    headers: dict[str, str]
    signal: Signal
    request: ExportRequest


@dataclass(frozen=True)
class CapturedSpan:
    """A span flattened out of its resource/scope envelope for easy asserts."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    scope: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class DataPoint:
    """Minimal view of a data point: numeric value, or sum + count for histograms."""

    attributes: dict[str, Any]
    value: int | float | None
    count: int | None = None


@dataclass(frozen=True)
class CapturedMetric:
    """A metric flattened out of its envelope; `proto` keeps everything else."""

    resource: dict[str, Any]
    scope: str
    name: str
    kind: str
    points: list[DataPoint]
    proto: Metric = field(repr=False)


def decode_any_value(value: AnyValue) -> Any:
    """Convert an OTLP AnyValue into the equivalent plain Python value."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return [decode_any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return None if which is None else getattr(value, which)


def decode_attributes(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    """Convert repeated KeyValue into a dict."""
    return {kv.key: decode_any_value(kv.value) for kv in attributes}


def _looks_like_traces(request: trace_service_pb2.ExportTraceServiceRequest) -> bool:
    """Tell real spans apart from a metrics payload that also parses as traces.

    Both messages use field 1 for their resource list, so a metrics body decodes
    "successfully" as traces; genuine spans always carry 16/8-byte ids and a
    start time.
    """
    spans = [
        span
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    return bool(spans) and all(
        len(s.trace_id) == 16 and len(s.span_id) == 8 and s.start_time_unix_nano for s in spans
    )


def _http_signal(path: str, body: bytes) -> Signal:
    """Pick the signal from the standard path suffix, else by decoding the body."""
    suffix = path.split("?", 1)[0].rstrip("/")
    for signal in _REQUEST_TYPES:
        if suffix.endswith(f"v1/{signal}"):
            return signal
    try:
        as_traces = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    except DecodeError:
        return "metrics"
    return "traces" if _looks_like_traces(as_traces) else "metrics"


def _merge_headers(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Lowercase header names, joining repeated headers like HTTP does."""
    headers: dict[str, Any] = {}
    for key, value in pairs:
        key = key.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sink: OtlpSink) -> None:
        super().__init__(("127.0.0.1", 0), _HttpHandler)
        self.sink = sink


class _HttpHandler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        signal = _http_signal(self.path, body)
        try:
            request = _REQUEST_TYPES[signal].FromString(body)
        except DecodeError as exc:
            self._reply(400, "text/plain", str(exc).encode())
            return
        self.server.sink._record(
            Received("http", self.path, _merge_headers(self.headers.items()), signal, request)
        )
        self._reply(200, "application/x-protobuf", _RESPONSE_TYPES[signal]().SerializeToString())

    def _reply(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep per-request access logs out of test output."""


class _GrpcServicer(
    trace_service_pb2_grpc.TraceServiceServicer,
    metrics_service_pb2_grpc.MetricsServiceServicer,
    logs_service_pb2_grpc.LogsServiceServicer,
):
    """One servicer for all three services: each only defines `Export`."""

    def __init__(self, sink: OtlpSink) -> None:
        self._sink = sink

    def Export(self, request: ExportRequest, context: grpc.ServicerContext) -> Message:
        signal = next(s for s, t in _REQUEST_TYPES.items() if isinstance(request, t))
        headers = _merge_headers(context.invocation_metadata())
        self._sink._record(Received("grpc", _GRPC_METHODS[signal], headers, signal, request))
        return _RESPONSE_TYPES[signal]()


class OtlpSink(Served):
    """Captures OTLP exports over gRPC and HTTP/protobuf on free local ports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Received] = []
        self._grpc_server: grpc.Server | None = None
        self._grpc_port: int | None = None
        self._http_server: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None

    def start(self) -> OtlpSink:
        servicer = _GrpcServicer(self)
        self._grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, self._grpc_server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(servicer, self._grpc_server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(servicer, self._grpc_server)
        self._grpc_port = self._grpc_server.add_insecure_port("127.0.0.1:0")
        self._grpc_server.start()

        self._http_server = _HttpServer(self)
        self._http_thread = serve_in_background(self._http_server, "otlp-sink-http")
        return self

    def stop(self) -> None:
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait()
            self._grpc_server = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
        if self._http_thread is not None:
            self._http_thread.join()
            self._http_thread = None


    @property
    def grpc_endpoint(self) -> str:
        if self._grpc_server is None:
            raise RuntimeError("OtlpSink is not started")
        return f"http://127.0.0.1:{self._grpc_port}"

    @property
    def http_endpoint(self) -> str:
        if self._http_server is None:
            raise RuntimeError("OtlpSink is not started")
        return f"http://127.0.0.1:{self._http_server.server_address[1]}"

    @property
    def requests(self) -> list[Received]:
        """Snapshot of everything received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def _record(self, received: Received) -> None:
        with self._lock:
            self._requests.append(received)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def spans(self) -> list[CapturedSpan]:
        return [
            CapturedSpan(
                name=span.name,
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=span.parent_span_id.hex() or None,
                kind=span.kind,
                status_code=span.status.code,
                status_message=span.status.message,
                attributes=decode_attributes(span.attributes),
                resource=decode_attributes(resource_spans.resource.attributes),
                events=[(e.name, decode_attributes(e.attributes)) for e in span.events],
                scope=scope_spans.scope.name,
                start_ns=span.start_time_unix_nano,
                end_ns=span.end_time_unix_nano,
            )
            for received in self.requests
            if received.signal == "traces"
            for resource_spans in received.request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def metrics(self) -> list[CapturedMetric]:
        return [
            CapturedMetric(
                resource=decode_attributes(resource_metrics.resource.attributes),
                scope=scope_metrics.scope.name,
                name=metric.name,
                kind=metric.WhichOneof("data") or "",
                points=_data_points(metric),
                proto=metric,
            )
            for received in self.requests
            if received.signal == "metrics"
            for resource_metrics in received.request.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        ]

    def wait_for_spans(self, n: int, timeout: float = 10) -> list[CapturedSpan]:
        """Poll until at least `n` spans arrived; batch exporters deliver asynchronously."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if len(spans) >= n:
                return spans
            if time.monotonic() >= deadline:
                raise AssertionError(f"expected {n} spans within {timeout}s, got {len(spans)}")
            time.sleep(0.02)


def _data_points(metric: Metric) -> list[DataPoint]:
    kind = metric.WhichOneof("data")
    if kind is None:
        return []
    points = getattr(metric, kind).data_points
    if kind in ("sum", "gauge"):
        return [DataPoint(decode_attributes(p.attributes), _number(p)) for p in points]
    return [DataPoint(decode_attributes(p.attributes), p.sum, p.count) for p in points]


def _number(point: NumberDataPoint) -> int | float | None:
    which = point.WhichOneof("value")
    return None if which is None else getattr(point, which)
