"""The unmodified example shop under ``opentelemetry-instrument``: monitor JSON and exported spans agree."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.otlp_sink import OtlpSink
from tests.support.processes import (
    INSTRUMENT,
    clean_environment,
    free_port,
    otlp_variables,
)
from tests.support.sentry_sink import SentrySink

STATUS_ERROR = 2
SPAN_KIND_SERVER = 2
SHOP = Path(__file__).resolve().parents[2] / "examples" / "flask_shop" / "app.py"


def _call(base: str, method: str, path: str) -> int:
    """One request to the shop; the HTTP status, also for 4xx and 5xx answers."""
    request = urllib.request.Request(base + path, data=b"{}" if method == "POST" else None, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _wait_until_serving(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _call(base, "GET", "/health")
            return
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, "the shop did not start"
            time.sleep(0.2)


def _start_gunicorn(tmp_path: Path, workers: int, variables: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """The unmodified shop under ``opentelemetry-instrument gunicorn``, serving; and its base URL."""
    app_port = free_port()
    gunicorn = Path(sys.executable).parent / "gunicorn"
    process = subprocess.Popen(
        [str(INSTRUMENT), str(gunicorn), "-w", str(workers), "-b", f"127.0.0.1:{app_port}",
         f"app:create_app({str(tmp_path / 'shop.db')!r})"],
        cwd=SHOP.parent, env=clean_environment(**variables), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{app_port}"
    _wait_until_serving(base, process)
    return process, base


def test_example_shop_end_to_end(otlp_sink: OtlpSink, sentry_sink: SentrySink) -> None:
    """The unmodified Flask example: slow search tagged, failing checkout ERROR and in Sentry, 404 a success."""
    port = free_port()
    variables = otlp_variables(otlp_sink.grpc_endpoint, "grpc", OTEL_SERVICE_NAME="flask-shop",
                               SHOP_PORT=str(port), OTEL_BSP_SCHEDULE_DELAY="200", SENTRY_DSN=sentry_sink.dsn,
                               OTEL_EXT_TRACE_URL_TEMPLATE="http://127.0.0.1:16686/trace/{trace_id}")
    monitor_port = variables["OTEL_EXT_MONITOR_PORT"]
    process = subprocess.Popen([str(INSTRUMENT), sys.executable, str(SHOP)], env=clean_environment(**variables),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base, process)
        statuses = [_call(base, "POST", "/checkout") for _ in range(8)]
        statuses += [_call(base, "GET", "/books/999"), _call(base, "GET", "/search?q=a")]
        assert statuses == [201, 201, 201, 500] * 2 + [404, 200]
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/monitoring/performance?window=5m&kind=server",
                                    timeout=5) as response:
            stats = {op["name"]: op for op in json.load(response)["operations"]}
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert stats["POST /checkout"]["count"] == 8 and stats["POST /checkout"]["error_count"] == 2
    assert stats["POST /checkout"]["success_rate"] == 0.75
    assert stats["GET /books/<int:book_id>"]["error_count"] == 0, "a 404 is a success"
    assert stats["GET /search"]["slow_count"] == 1

    spans = otlp_sink.wait_for_spans(1)
    deadline = time.monotonic() + 10
    while not any(span.name == "GET /search" for span in spans) and time.monotonic() < deadline:
        time.sleep(0.2)
        spans = otlp_sink.spans()
    servers = [span for span in spans if span.kind == SPAN_KIND_SERVER]
    search = [span for span in servers if span.name == "GET /search"]
    assert len(search) == 1 and search[0].attributes["otel_ext.slow"] is True
    assert [span.attributes.get("otel_ext.slow") for span in servers if span.name != "GET /search"] == [None] * (
        len(servers) - 1
    )
    checkouts = [span for span in servers if span.name == "POST /checkout"]
    assert sorted(span.status_code for span in checkouts) == [0] * 6 + [STATUS_ERROR] * 2
    assert {span.resource["service.name"] for span in spans} == {"flask-shop"}

    failed = sorted((span for span in checkouts if span.status_code == STATUS_ERROR), key=lambda span: span.span_id)
    events = sorted(sentry_sink.wait_for_events(2), key=lambda event: event["contexts"]["trace"]["span_id"])
    assert len(sentry_sink.events()) == 2, "one event per failed checkout, not one per span or integration"
    for span, event in zip(failed, events, strict=True):
        assert (event["contexts"]["trace"]["trace_id"], event["contexts"]["trace"]["span_id"]) == (
            span.trace_id, span.span_id)
        assert span.attributes["sentry.event_id"] == event["event_id"]
        assert (event["exception"]["values"][-1]["type"], event["exception"]["values"][-1]["value"]) == (
            "RuntimeError", "payment declined")
        assert event["tags"]["otel.operation"] == "POST /checkout"
        assert event["contexts"]["otel"]["trace_url"] == f"http://127.0.0.1:16686/trace/{span.trace_id}"


def test_shop_under_gunicorn_prefork_serves_each_workers_stats(tmp_path: Path) -> None:
    """gunicorn pre-fork: the idle master frees its port; each worker that served requests shows its own."""
    workers, requests = 3, 30
    first_port = free_port()
    while any(_port_taken(port) for port in range(first_port, first_port + workers + 1)):
        first_port = free_port()
    variables = {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXT_MONITOR_PORT": f"{first_port}-{first_port + workers}"}
    process, base = _start_gunicorn(tmp_path, workers, variables)
    try:
        with ThreadPoolExecutor(workers) as pool:  # concurrent, so the kernel spreads them over the workers
            list(pool.map(lambda _: _call(base, "GET", "/books"), range(requests - 1)))
        time.sleep(1.0)  # a worker binds its port on its first span, on a thread of its own
        served: dict[int, int] = {}
        for port in range(first_port, first_port + workers + 1):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/monitoring/performance?kind=server", timeout=5
                ) as response:
                    served[port] = sum(op["count"] for op in json.load(response)["operations"])
            except OSError:
                continue
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    assert 1 <= len(served) <= workers, (served, output)
    assert sum(served.values()) == requests, "every request counted once, by the worker that served it"
    assert all(count > 0 for count in served.values()), "only processes that did work hold a port (not the master)"
    assert "Traceback" not in output


def test_shop_under_gunicorn_links_each_workers_errors(tmp_path: Path, sentry_sink: SentrySink,
                                                      otlp_sink: OtlpSink) -> None:
    """Sentry set up in the gunicorn master (zero-code), errors raised in forked workers: each linked once."""
    variables = otlp_variables(otlp_sink.grpc_endpoint, "grpc", SENTRY_DSN=sentry_sink.dsn,
                               OTEL_BSP_SCHEDULE_DELAY="200")
    process, base = _start_gunicorn(tmp_path, 2, variables)
    statuses: list[int] = []
    try:
        while statuses.count(500) < 2 and len(statuses) < 40:  # each worker declines its own every 4th checkout
            statuses.append(_call(base, "POST", "/checkout"))
        events = sentry_sink.wait_for_events(2)
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    assert statuses.count(500) == 2, statuses
    assert len(events) == 2, output
    failed = {span.span_id: span for span in otlp_sink.wait_for_spans(1) if span.status_code == STATUS_ERROR
              and span.kind == SPAN_KIND_SERVER}
    deadline = time.monotonic() + 10
    while len(failed) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        failed = {span.span_id: span for span in otlp_sink.spans() if span.status_code == STATUS_ERROR
                  and span.kind == SPAN_KIND_SERVER}
    for event in events:
        span = failed[event["contexts"]["trace"]["span_id"]]
        assert span.attributes["sentry.event_id"] == event["event_id"]


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
