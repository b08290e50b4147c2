"""End to end: an app under ``opentelemetry-instrument`` exports over real OTLP to a loopback receiver."""

from __future__ import annotations

import json
import math
import time

import pytest

from tests.support.otlp_sink import OtlpSink
from tests.support.processes import otlp_variables, run_plain, run_scenario

PROTOCOLS = ["grpc", "http/protobuf"]
STATUS_ERROR = 2


def _endpoint(sink: OtlpSink, protocol: str) -> str:
    return sink.grpc_endpoint if protocol == "grpc" else sink.http_endpoint


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_slow_tags_statuses_and_service_on_exported_spans(otlp_sink: OtlpSink, protocol: str) -> None:
    run = run_scenario(
        "slow_tags",
        **otlp_variables(_endpoint(otlp_sink, protocol), protocol, OTEL_SERVICE_NAME="checkout",
                         OTEL_EXT_SLOW_THRESHOLDS="db.*=50"),
    )
    assert run.returncode == 0, run.stderr
    spans = {span.name: span for span in otlp_sink.wait_for_spans(5)}
    assert set(spans) == {"op.slow", "op.boundary", "op.fast", "db.query", "op.failing"}
    slow = {name for name, span in spans.items() if span.attributes.get("otel_ext.slow") is True}
    assert slow == {"op.slow", "op.boundary", "db.query"}, "tags exactly on spans >= their threshold"
    assert spans["op.slow"].attributes["otel_ext.slow_threshold_ms"] == 1000
    assert spans["db.query"].attributes["otel_ext.slow_threshold_ms"] == 50
    assert "otel_ext.slow_threshold_ms" not in spans["op.fast"].attributes
    assert spans["op.failing"].status_code == STATUS_ERROR
    assert spans["op.failing"].status_message == "db timeout on primary"
    assert all(span.resource["service.name"] == "checkout" for span in spans.values())
    assert "warn" not in run.stderr.lower(), run.stderr

    stats = {op["name"]: op for op in run.result}
    assert stats["op.slow"]["count"] == 1 and stats["op.slow"]["slow_count"] == 1
    assert math.isclose(stats["op.slow"]["p50_ms"], 1200, rel_tol=0.01)
    assert stats["op.boundary"]["slow_count"] == 1 and stats["op.fast"]["slow_count"] == 0
    assert stats["op.failing"]["error_count"] == 1 and stats["op.failing"]["success_rate"] == 0.0
    assert stats["op.slow"]["slowest"][0]["trace_id"] == spans["op.slow"].trace_id


def test_bad_own_variable_warns_and_app_runs_on_default(otlp_sink: OtlpSink) -> None:
    run = run_scenario("slow_tags", **otlp_variables(otlp_sink.grpc_endpoint, "grpc", OTEL_EXT_SLOW_THRESHOLD_MS="fast"))
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("OTEL_EXT_SLOW_THRESHOLD_MS='fast' is invalid") == 1
    assert "OTEL_EXT_SLOW_THRESHOLD_MS='fast' is invalid: expected a number of ms >= 0, e.g. 1000; using 1000" in run.stderr
    spans = {span.name: span for span in otlp_sink.wait_for_spans(5)}
    assert spans["op.boundary"].attributes["otel_ext.slow_threshold_ms"] == 1000
    assert "otel_ext.slow" not in spans["op.fast"].attributes


def test_sdk_disabled_sets_nothing_up(otlp_sink: OtlpSink) -> None:
    run = run_scenario("short_lived", "return",
                       **otlp_variables(otlp_sink.grpc_endpoint, "grpc", OTEL_SDK_DISABLED="true"))
    assert run.returncode == 0, run.stderr
    time.sleep(1.0)
    assert otlp_sink.requests == []


def test_configure_in_code_exports_over_otlp_by_default(otlp_sink: OtlpSink) -> None:
    """No OTEL_TRACES_EXPORTER: configure() applies opentelemetry-distro's default (otlp), like zero-code."""
    run = run_plain("configured_in_code", OTEL_EXPORTER_OTLP_ENDPOINT=otlp_sink.grpc_endpoint,
                    OTEL_RESOURCE_ATTRIBUTES="team=env")
    assert run.returncode == 0, run.stderr
    resources = [span.resource for span in otlp_sink.wait_for_spans(4)]
    assert {(r["service.name"], r["team"]) for r in resources} == {("from-code", "code")}, "code wins, as the spec says"


@pytest.mark.parametrize(("protocol", "used"), [("http/json", "http/protobuf"), ("foo", "grpc"), ("GRPC", "grpc")])
def test_unsupported_protocol_falls_back_to_the_closest(otlp_sink: OtlpSink, protocol: str, used: str) -> None:
    endpoint = otlp_sink.http_endpoint if used == "http/protobuf" else otlp_sink.grpc_endpoint
    run = run_scenario("short_lived", "return",
                       **otlp_variables(endpoint, "grpc", OTEL_EXPORTER_OTLP_PROTOCOL=protocol))
    assert run.returncode == 0, run.stderr
    warning = f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is invalid: expected one of grpc, http/protobuf; using {used}"
    assert (warning in run.stderr) is (protocol.lower() != used)
    assert len(otlp_sink.wait_for_spans(4)) == 4
    assert {received.transport for received in otlp_sink.requests} == {"http" if used == "http/protobuf" else "grpc"}


def test_unknown_exporter_is_skipped_and_the_others_still_export(otlp_sink: OtlpSink) -> None:
    run = run_scenario("short_lived", "return",
                       **otlp_variables(otlp_sink.grpc_endpoint, "grpc", OTEL_TRACES_EXPORTER="garbage,otlp"))
    assert run.returncode == 0, run.stderr
    assert "OTEL_TRACES_EXPORTER: 'garbage' is not an installed exporter" in run.stderr
    assert "setup failed" not in run.stderr
    assert len(otlp_sink.wait_for_spans(4)) == 4


def test_unusable_spans_file_falls_back_to_standard_output() -> None:
    run = run_scenario("short_lived", "return", OTEL_TRACES_EXPORTER="otlp_json_file",
                       OTEL_EXT_SPANS_FILE="/nonexistent/dir/spans.jsonl")
    assert run.returncode == 0, run.stderr
    assert "folder '/nonexistent/dir' does not exist" in run.stderr and "writing to standard output" in run.stderr
    exported = [json.loads(line) for line in run.stdout.splitlines() if line.startswith('{"resourceSpans"')]
    names = {span["name"] for line in exported for rs in line["resourceSpans"] for ss in rs["scopeSpans"]
             for span in ss["spans"]}
    assert names == {"job.root", "job.step0", "job.step1", "job.step2"}
