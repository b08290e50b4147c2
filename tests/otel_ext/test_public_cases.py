"""Real-world failure scenarios from ../shared/cases/public-reports.md, end to end through OTLP.

Each test runs the scenario app in a subprocess (zero-code unless noted) and
asserts on what a real receiver on 127.0.0.1 decoded. The Sentry parts of B02,
B06, B19, B21, B22 and B25 are in ``tests/otel_ext/integrations/test_sentry.py``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.otlp_sink import OtlpSink, decode_attributes
from tests.support.processes import free_port, otlp_variables, run_plain, run_scenario

PROTOCOLS = ["grpc", "http/protobuf"]
STATUS_OK, STATUS_ERROR = 1, 2


def _endpoint(sink: OtlpSink, protocol: str) -> str:
    return sink.grpc_endpoint if protocol == "grpc" else sink.http_endpoint


def _operation_points(sink: OtlpSink, metric_name: str) -> dict[int, list[tuple[dict[str, Any], Any]]]:
    """otel-ext's ``metric_name`` points per process.pid, from each process's last export: (attributes, point)."""
    latest: dict[int, list[tuple[dict[str, Any], Any]]] = {}
    for received in sink.requests:
        if received.signal != "metrics":
            continue
        for resource_metrics in received.request.resource_metrics:
            pid = decode_attributes(resource_metrics.resource.attributes)["process.pid"]
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if scope_metrics.scope.name == "otel_ext" and metric.name == metric_name:
                        points = getattr(metric, metric.WhichOneof("data")).data_points
                        latest[pid] = [(decode_attributes(point.attributes), point) for point in points]
    return latest


def _calls_by_pid(sink: OtlpSink) -> dict[int, dict[tuple[object, object], int]]:
    """Non-zero exported call counts per process.pid, keyed (span.name, status.code).

    (The UNSET and ERROR series exist at zero from an operation's first call; tests/otel_ext/test_metrics_export.py
    checks those.)
    """
    return {
        pid: {
            (attributes["span.name"], attributes["status.code"]): point.as_int
            for attributes, point in points
            if point.as_int
        }
        for pid, points in _operation_points(sink, "otel_ext.operation.calls").items()
    }


def test_b02_failing_processor_does_not_replace_app_exception() -> None:
    run = run_scenario("failing_processor", OTEL_TRACES_EXPORTER="none", OTEL_EXT_MONITOR_PORT=str(free_port()))
    assert run.returncode == 0, run.stderr
    outcome = run.result
    assert outcome["seen"] == ["ValueError: app"]
    assert outcome["later_received"] == 20, "processors after the broken one still get every span"
    (op,) = outcome["stats"]
    assert (op["name"], op["count"], op["error_count"]) == ("op", 20, 20)
    assert run.stderr.count("Broken.on_end failed") == 1, "logged once per cause, not once per span"
    assert run.stderr.count("exception tracking failed") == 1, "otel-ext's own failing hook too"


@pytest.mark.parametrize("mode", ["return", "exit", "raise"])
def test_b06_short_lived_process_keeps_root_span(otlp_sink: OtlpSink, mode: str) -> None:
    run = run_scenario("short_lived", mode, **otlp_variables(otlp_sink.grpc_endpoint, "grpc"))
    assert run.returncode == {"return": 0, "exit": 1, "raise": 1}[mode], run.stderr
    spans = {span.name: span for span in otlp_sink.wait_for_spans(4)}
    assert set(spans) == {"job.root", "job.step0", "job.step1", "job.step2"}
    root = spans["job.root"]
    assert all(spans[f"job.step{index}"].parent_span_id == root.span_id for index in range(3))
    assert root.status_code == (STATUS_ERROR if mode == "raise" else 0)


@pytest.mark.parametrize("mode", ["return", "exit", "raise"])
def test_b06_short_lived_process_exports_root_operation_metrics(otlp_sink: OtlpSink, mode: str) -> None:
    """A job that exits at once, with the default 60 s export interval, still gets its calls and duration
    into the final collection at exit, also after sys.exit(1) or an unhandled exception."""
    run = run_scenario("short_lived", mode,
                       **otlp_variables(otlp_sink.grpc_endpoint, "grpc", OTEL_METRICS_EXPORTER="otlp"))
    assert run.returncode == {"return": 0, "exit": 1, "raise": 1}[mode], run.stderr
    root = next(span for span in otlp_sink.wait_for_spans(4) if span.name == "job.root")
    pid = root.resource["process.pid"]
    status = "STATUS_CODE_ERROR" if mode == "raise" else "STATUS_CODE_UNSET"
    assert _calls_by_pid(otlp_sink) == {pid: {
        ("job.root", status): 1,
        **{(f"job.step{index}", "STATUS_CODE_UNSET"): 1 for index in range(3)},
    }}
    durations = {attributes["span.name"]: point for attributes, point in
                 _operation_points(otlp_sink, "otel_ext.operation.duration")[pid]}
    assert durations["job.root"].count == 1
    assert durations["job.root"].sum == pytest.approx((root.end_ns - root.start_ns) / 1e9, rel=1e-12)


def test_b07_http_signal_paths(otlp_sink: OtlpSink) -> None:
    base = otlp_sink.http_endpoint
    cases = [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": base}, "/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": base + "/"}, "/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": base + "/base"}, "/base/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": base, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": base + "/custom"}, "/custom"),
    ]
    for variables, path in cases:
        before = len(otlp_sink.requests)
        run = run_scenario("short_lived", "return", OTEL_TRACES_EXPORTER="otlp",
                           OTEL_METRICS_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", **variables)
        assert run.returncode == 0, run.stderr
        received = otlp_sink.requests[before:]
        assert {r.path for r in received if r.signal == "traces"} == {path}, variables
        metric_paths = {r.path for r in received if r.signal == "metrics"}
        assert metric_paths <= {path.replace("traces", "metrics") if "v1" in path else "/v1/metrics"}, metric_paths


def test_b07_generic_endpoint_with_signal_path_follows_spec_and_warns(otlp_sink: OtlpSink) -> None:
    run = run_scenario("short_lived", "return", OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                       OTEL_EXPORTER_OTLP_ENDPOINT=otlp_sink.http_endpoint + "/v1/traces")
    assert run.returncode == 0
    otlp_sink.wait_for_spans(4)
    assert {r.path for r in otlp_sink.requests} == {"/v1/traces/v1/traces"}
    assert run.stderr.count("ends in a signal path") == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_b09_headers_with_spaces_encoded_commas_and_junk(otlp_sink: OtlpSink, protocol: str) -> None:
    run = run_scenario(
        "short_lived", "return",
        **otlp_variables(_endpoint(otlp_sink, protocol), protocol,
                         OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer tok123, X-Tenant=team%2Cwest,broken,x-empty="),
    )
    assert run.returncode == 0, run.stderr
    otlp_sink.wait_for_spans(4)
    headers = otlp_sink.requests[0].headers
    assert headers["authorization"] == "Bearer tok123"
    assert headers["x-tenant"] == "team,west"
    assert "broken" not in headers
    assert "OTEL_EXPORTER_OTLP_HEADERS: an entry of 6 characters has no key=value form" in run.stderr
    assert "tok123" not in run.stderr and "tok123" not in run.stdout


def test_b09_signal_headers_override_generic(otlp_sink: OtlpSink) -> None:
    run = run_scenario("short_lived", "return",
                       **otlp_variables(otlp_sink.grpc_endpoint, "grpc", OTEL_EXPORTER_OTLP_HEADERS="x-team=generic",
                                        OTEL_EXPORTER_OTLP_TRACES_HEADERS="x-team=traces"))
    assert run.returncode == 0
    otlp_sink.wait_for_spans(4)
    assert otlp_sink.requests[0].headers["x-team"] == "traces"


def test_b10_resource_attributes_with_malformed_entries(otlp_sink: OtlpSink) -> None:
    run = run_scenario(
        "slow_tags",
        **otlp_variables(otlp_sink.grpc_endpoint, "grpc", OTEL_RESOURCE_ATTRIBUTES=(
            "deployment.environment=prod,bogus,,team=a=b,region=eu%2Cwest, spaced.key = v ")),
    )
    assert run.returncode == 0, run.stderr
    resource = otlp_sink.wait_for_spans(5)[0].resource
    assert resource["deployment.environment"] == "prod"
    assert resource["team"] == "a=b"
    assert resource["region"] == "eu,west"
    assert resource["spaced.key"] == "v"
    assert "bogus" not in resource
    assert run.stderr.count("entry 'bogus' has no key=value form") == 1


def test_b11_service_name_precedence_under_zero_code(otlp_sink: OtlpSink) -> None:
    run = run_scenario("slow_tags", **otlp_variables(otlp_sink.grpc_endpoint, "grpc", OTEL_SERVICE_NAME="checkout",
                                                     OTEL_RESOURCE_ATTRIBUTES="service.name=legacy,team=pay"))
    assert run.returncode == 0
    resources = [span.resource for span in otlp_sink.wait_for_spans(5)]
    assert {(r["service.name"], r["team"]) for r in resources} == {("checkout", "pay")}
    assert {op["service"] for op in run.result} == {"checkout"}


def test_b11_unset_service_name_is_never_empty(otlp_sink: OtlpSink) -> None:
    run = run_scenario("slow_tags", **otlp_variables(otlp_sink.grpc_endpoint, "grpc"))
    assert run.returncode == 0
    names = {span.resource["service.name"] for span in otlp_sink.wait_for_spans(5)}
    assert len(names) == 1 and names.pop().startswith("unknown_service:python")


def test_b12_configure_after_zero_code_exports_each_span_once(otlp_sink: OtlpSink) -> None:
    run = run_scenario("configure_twice", **otlp_variables(otlp_sink.grpc_endpoint, "grpc"))
    assert run.returncode == 0, run.stderr
    outcome = run.result
    assert outcome["same"] is True
    (op,) = outcome["stats"]
    assert op["count"] == 10
    otlp_sink.wait_for_spans(10)
    time.sleep(0.5)
    assert len(otlp_sink.spans()) == 10 and len({span.span_id for span in otlp_sink.spans()}) == 10
    assert run.stderr.count("already configured in this process; reusing that setup") == 1


@pytest.mark.parametrize("argument", ["5", "-0.1", "abc", ""])
def test_b13_bad_sampler_argument_is_named_and_everything_sampled(otlp_sink: OtlpSink, argument: str) -> None:
    run = run_scenario("sampled", "20", **otlp_variables(otlp_sink.grpc_endpoint, "grpc",
                                                         OTEL_TRACES_SAMPLER="traceidratio",
                                                         OTEL_TRACES_SAMPLER_ARG=argument))
    assert run.returncode == 0, run.stderr
    assert f"OTEL_TRACES_SAMPLER_ARG={argument!r} is invalid" in run.stderr
    assert len(otlp_sink.wait_for_spans(20)) == 20


def test_b13_counts_are_exact_under_sampling(otlp_sink: OtlpSink) -> None:
    run = run_scenario("sampled", "4000", **otlp_variables(otlp_sink.grpc_endpoint, "grpc",
                                                           OTEL_TRACES_SAMPLER="traceidratio",
                                                           OTEL_TRACES_SAMPLER_ARG="0.25"))
    assert run.returncode == 0, run.stderr
    (op,) = run.result
    assert op["count"] == 4000, "unsampled spans are measured, not lost"
    time.sleep(1.0)
    spans = otlp_sink.spans()
    accepted = sum(int(span.trace_id, 16) & (2**64 - 1) < round(0.25 * 2**64) for span in spans)
    assert accepted == len(spans), "only spans the ratio sampler accepts are exported"
    assert 880 <= len(spans) <= 1120, len(spans)


def test_b19_first_error_description_kept_and_ok_final(otlp_sink: OtlpSink) -> None:
    run = run_scenario("status_precedence", **otlp_variables(otlp_sink.grpc_endpoint, "grpc"))
    assert run.returncode == 0, run.stderr
    spans = {span.name: span for span in otlp_sink.wait_for_spans(3)}
    assert (spans["status.error"].status_code, spans["status.error"].status_message) == (
        STATUS_ERROR, "db timeout on primary")
    assert [name for name, _ in spans["status.error"].events] == ["exception"]
    assert spans["status.ok"].status_code == STATUS_OK
    assert (spans["status.unset"].status_code, spans["status.unset"].status_message) == (STATUS_ERROR, "first")


def test_b25_context_reaches_pool_threads_and_tasks(otlp_sink: OtlpSink) -> None:
    run = run_scenario("context_fan_out", **otlp_variables(otlp_sink.grpc_endpoint, "grpc"))
    assert run.returncode == 0, run.stderr
    spans = otlp_sink.wait_for_spans(12)
    for parent_name, child_name in (("batch", "item"), ("gather", "task")):
        (parent,) = [span for span in spans if span.name == parent_name]
        children = [span for span in spans if span.name == child_name]
        assert sorted(child.attributes["index"] for child in children) == [0, 1, 2, 3, 4]
        assert {(child.trace_id, child.parent_span_id) for child in children} == {(parent.trace_id, parent.span_id)}
    counts = {op["name"]: op["count"] for op in run.result}
    assert counts["item"] == 5 and counts["task"] == 5


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_b05_unreachable_collector_never_blocks_and_exit_is_bounded(protocol: str) -> None:
    started = time.monotonic()
    run = run_scenario("many_spans_and_a_metric", OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="otlp",
                       OTEL_EXPORTER_OTLP_PROTOCOL=protocol, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1",
                       OTEL_EXPORTER_OTLP_TIMEOUT="1")
    wall = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    # Generous bounds: the failure mode is a hang of a minute or more, not a few ms of noise.
    assert run.result["end_1000_spans_s"] < 0.5
    assert wall <= 10, wall
    assert "Traceback" not in run.stderr
    assert "Failed to export" in run.stderr or "Transient error" in run.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_b05_failing_periodic_metric_exports_never_slow_spans_down(protocol: str) -> None:
    """Operation metrics collected and exported every 50 ms to a dead collector while the app ends spans:
    ending spans stays fast, and the process still exits promptly."""
    started = time.monotonic()
    run = run_scenario("spans_while_exports_fail", "1.5", OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="otlp",
                       OTEL_EXPORTER_OTLP_PROTOCOL=protocol, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1",
                       OTEL_EXPORTER_OTLP_TIMEOUT="1", OTEL_METRIC_EXPORT_INTERVAL="50")
    wall = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    outcome = run.result
    assert outcome["chunks"] >= 3, outcome
    # Generous bound: the failure mode is a span end waiting on an export (1 s timeout, retries), not noise.
    assert outcome["slowest_chunk_s"] < 0.5, outcome
    assert wall <= 10, wall
    assert "Traceback" not in run.stderr
    assert "exporting metrics" in run.stderr or "export metrics" in run.stderr, "the exports were tried and failed"


def test_b05_non_numeric_timeout_is_reported_and_spans_still_leave(otlp_sink: OtlpSink) -> None:
    run = run_scenario("short_lived", "return", **otlp_variables(otlp_sink.grpc_endpoint, "grpc",
                                                                 OTEL_EXPORTER_OTLP_TIMEOUT="soon"))
    assert run.returncode == 0, run.stderr
    assert "OTEL_EXPORTER_OTLP_TIMEOUT='soon' is invalid" in run.stderr
    assert len(otlp_sink.wait_for_spans(4)) == 4


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_b03_forked_children_export_their_spans_without_hanging(otlp_sink: OtlpSink, protocol: str) -> None:
    run = run_plain("fork_child_spans",
                       **otlp_variables(_endpoint(otlp_sink, protocol), protocol))
    assert run.returncode == 0, run.stderr
    outcome = run.result
    assert outcome["child_status"] == 0
    spans = otlp_sink.wait_for_spans(11)  # 1 + 5 child + 4 pool + 1
    child = [span for span in spans if span.name == "child.op"]
    assert sorted(span.attributes["index"] for span in child) == [0, 1, 2, 3, 4]
    assert {span.resource["process.pid"] for span in child} == {outcome["child_pid"]}
    pool = [span for span in spans if span.name == "pool.op"]
    assert sorted(span.attributes["index"] for span in pool) == [0, 1, 2, 3]
    assert outcome["parent_pid"] not in {span.resource["process.pid"] for span in pool}
    parent = [span for span in spans if span.name.startswith("parent.")]
    assert sorted(span.name for span in parent) == ["parent.after", "parent.before"]
    assert {span.resource["process.pid"] for span in parent} == {outcome["parent_pid"]}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_b03_forked_child_exports_only_its_own_operation_metrics(otlp_sink: OtlpSink, protocol: str) -> None:
    """A forked worker's metrics carry its own process.pid and only its own calls (it starts from empty
    statistics), so its cumulative series never overwrite or double the parent's; the parent exports on."""
    run = run_plain("fork_child_spans",
                    **otlp_variables(_endpoint(otlp_sink, protocol), protocol, OTEL_METRICS_EXPORTER="otlp"))
    assert run.returncode == 0, run.stderr
    outcome = run.result
    assert outcome["child_status"] == 0
    child_pid, parent_pid = outcome["child_pid"], outcome["parent_pid"]
    calls = _calls_by_pid(otlp_sink)
    assert calls[child_pid] == {("child.op", "STATUS_CODE_UNSET"): 5}
    assert calls[parent_pid] == {("parent.before", "STATUS_CODE_UNSET"): 1, ("parent.after", "STATUS_CODE_UNSET"): 1}
    for pid in set(calls) - {child_pid, parent_pid}:  # pool workers are terminated, so usually export nothing
        assert {name for name, _ in calls[pid]} == {"pool.op"}, (pid, calls[pid])
    starts = {pid: {point.start_time_unix_nano for _, point in points}
              for pid, points in _operation_points(otlp_sink, "otel_ext.operation.calls").items()}
    (child_start,), (parent_start,) = starts[child_pid], starts[parent_pid]
    assert child_start > parent_start, "the child's cumulative series start at the fork, not at the parent's start"


def test_b03_forked_child_does_not_re_export_the_parents_app_counts(otlp_sink: OtlpSink) -> None:
    """The app's own counter (3 jobs before the fork, 1 in the child): summed over processes a dashboard must
    read 4 jobs. otel-ext gives the child's export the child's pid, so it must carry the child's count only
    (the SDK keeps instrument totals across fork; otel-ext resets them in the child)."""
    run = run_plain("fork_with_app_counter",
                    **otlp_variables(otlp_sink.grpc_endpoint, "grpc", OTEL_METRICS_EXPORTER="otlp"))
    assert run.returncode == 0, run.stderr
    outcome = run.result
    assert outcome["child_status"] == 0
    jobs: dict[int, int] = {}
    for metric in otlp_sink.metrics():
        if metric.name == "scenario.jobs":
            (point,) = metric.points
            jobs[metric.resource["process.pid"]] = int(point.value or 0)
    assert _calls_by_pid(otlp_sink)[outcome["child_pid"]] == {("child.job", "STATUS_CODE_UNSET"): 1}
    assert jobs[outcome["parent_pid"]] == 3
    assert jobs == {outcome["parent_pid"]: 3, outcome["child_pid"]: 1}, jobs


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_b03_spawned_pool_workers_without_spans_take_no_ports(method: str) -> None:
    """Workers of a spawn/forkserver pool set otel-ext up afresh; one that records no span must not bind the
    monitor or Prometheus port (each would log that the port is taken, and the parent keeps serving)."""
    run = run_scenario(
        "pool_without_spans", method,
        OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1", OTEL_EXPORTER_PROMETHEUS_PORT=str(free_port()),
        OTEL_EXT_MONITOR_PORT=str(free_port()),
    )
    assert run.returncode == 0, run.stderr
    assert run.result == {"outcome": [0, 1, 2, 3, 4, 5], "monitor": ["parent.op"]}
    assert "in use" not in run.stderr and "cannot serve" not in run.stderr, run.stderr
