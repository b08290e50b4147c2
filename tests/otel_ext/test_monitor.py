"""The monitor endpoint over real HTTP on 127.0.0.1: JSON values, 400s for bad queries, taken ports."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_ext._internal.config import Settings
from otel_ext._internal.errors import ErrorPipeline
from otel_ext._internal.monitor import MonitorServer
from processors import OperationStatsProcessor, OperationStatsStore, ThresholdRules
from processors._internal.exceptions import install_record_hook
from tests.support.forking import run_in_child

NOW = 1_800_000_000 * 1_000_000_000
MS = 1_000_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture
def store() -> OperationStatsStore:
    """Spans of known durations: 'GET /books' 1..100 ms (every 10th an error), one slow search."""
    store = OperationStatsStore(ThresholdRules(1000), clock=lambda: NOW)
    provider = TracerProvider()
    provider.add_span_processor(OperationStatsProcessor(store))
    tracer = provider.get_tracer("test")
    for duration_ms in range(1, 101):
        span = tracer.start_span("GET /books", kind=SpanKind.SERVER, start_time=NOW - 2000 * MS)
        if duration_ms % 10 == 0:
            span.set_status(Status(StatusCode.ERROR, "boom"))
        span.end(end_time=NOW - 2000 * MS + duration_ms * MS)
    search = tracer.start_span("GET /search", kind=SpanKind.SERVER, start_time=NOW - 3000 * MS)
    search.end(end_time=NOW - 1800 * MS)
    database = tracer.start_span("SELECT", kind=SpanKind.CLIENT, start_time=NOW - 1000 * MS)
    database.end(end_time=NOW - 999 * MS)
    return store


def _port_of(server: MonitorServer) -> int:
    assert server.url is not None
    return int(server.url.split(":")[2].split("/")[0])


@pytest.fixture
def monitor(store: OperationStatsStore) -> Iterator[MonitorServer]:
    port = _free_port()
    server = MonitorServer(store, "127.0.0.1", (port, port))
    assert server.start()
    yield server
    server.stop()


def test_performance_json_has_exact_values(monitor: MonitorServer) -> None:
    status, body = _get(f"{monitor.url}?window=5m&operation=GET%20/books*")
    assert status == 200
    assert body["window"] == "5m" and body["window_seconds"] == 300
    (books,) = body["operations"]
    assert books["name"] == "GET /books" and books["kind"] == "SERVER"
    assert books["count"] == 100 and books["error_count"] == 10
    assert books["success_rate"] == pytest.approx(0.9)
    # Durations are exactly 1..100 ms: nearest-rank p50=50, p95=95, p99=99, within the 1 % bound.
    for field, exact in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99)):
        assert math.isclose(books[field], exact, rel_tol=0.01), (field, books[field])
    assert books["max_ms"] == 100.0
    assert books["slow_count"] == 0
    assert [slow["duration_ms"] for slow in books["slowest"]] == [100.0, 99.0, 98.0, 97.0, 96.0]
    assert all(len(slow["trace_id"]) == 32 for slow in books["slowest"])


def test_kind_filter_and_slow_count(monitor: MonitorServer) -> None:
    _, body = _get(f"{monitor.url}?window=1m&kind=server")
    names = {op["name"]: op for op in body["operations"]}
    assert set(names) == {"GET /books", "GET /search"}
    assert names["GET /search"]["slow_count"] == 1 and names["GET /search"]["max_ms"] == 1200.0
    _, body = _get(f"{monitor.url}?kind=CLIENT")
    assert [op["name"] for op in body["operations"]] == ["SELECT"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("window=7m", "window '7m' is not kept; accepted: 1m, 5m, 15m, 1h"),
        ("window=soon", "window: 'soon' is not a duration like 30s, 5m or 1h; accepted: 1m, 5m, 15m, 1h"),
        ("kind=sideways", "kind 'sideways' is unknown; accepted: internal, server, client, producer, consumer"),
        ("operation=", "operation is empty; give a span name or a glob such as 'GET /books*'"),
        ("limit=5", "unknown parameter(s) 'limit'; accepted: window, operation, kind"),
        ("window=1m&window=5m", "parameter(s) given more than once: window"),
        ("=bar", "unknown parameter(s) ''; accepted: window, operation, kind"),
        ("window=" + "9" * 5000 + "m", "window: '" + "9" * 5000 + "m' is not a duration like 30s, 5m or 1h; accepted: 1m, 5m, 15m, 1h"),
        ("operation=" + "[a-y" * 15000, "operation is 60000 characters long; at most 512 are accepted"),
    ],
)
def test_bad_query_parameters_get_400_with_message(monitor: MonitorServer, query: str, message: str) -> None:
    status, body = _get(f"{monitor.url}?{query}")
    assert status == 400
    assert body == {"error": message}


def test_unknown_path_is_404_json(monitor: MonitorServer) -> None:
    status, body = _get(f"http://127.0.0.1:{_port_of(monitor)}/metrics")
    assert status == 404 and "monitoring/performance" in str(body["error"])


def test_taken_port_is_logged_not_raised(store: OperationStatsStore, monitor: MonitorServer,
                                         caplog: pytest.LogCaptureFixture) -> None:
    taken = _port_of(monitor)
    second = MonitorServer(store, "127.0.0.1", (taken, taken))
    with caplog.at_level(logging.WARNING, logger="otel_ext.monitor"):
        assert second.start() is False
    assert second.url is None
    assert f"monitor port {taken} on 127.0.0.1 is in use" in caplog.text


def test_port_range_takes_next_free_port(store: OperationStatsStore, monitor: MonitorServer) -> None:
    taken = _port_of(monitor)
    second = MonitorServer(store, "127.0.0.1", (taken, taken + 20))
    try:
        assert second.start()
        assert second.url != monitor.url
        assert _get(f"{second.url}")[0] == 200
    finally:
        second.stop()


def _record_and_query(store: OperationStatsStore, monitor: MonitorServer, name: str) -> dict[str, Any]:
    """In a forked child: note the monitor URL, record one span, wait for the monitor, query it."""
    before = monitor.url  # nothing is served until this process records a span
    provider = TracerProvider()
    provider.add_span_processor(OperationStatsProcessor(store))
    provider.get_tracer("child").start_span(name, start_time=NOW - MS).end(end_time=NOW)
    deadline = time.monotonic() + 5
    while monitor.url is None and time.monotonic() < deadline:
        time.sleep(0.05)
    status, body = _get(monitor.url) if monitor.url else (0, {})
    return {"before": before, "url": monitor.url, "status": status, "body": body, "pid": os.getpid()}


def test_forked_child_serves_its_own_stats_on_the_next_port(store: OperationStatsStore) -> None:
    """Pre-fork servers: the child must not crash on the parent's port; with a range it takes the next one."""
    port = _free_port()
    ranged = MonitorServer(store, "127.0.0.1", (port, port + 20))
    assert ranged.start()
    parent_url = ranged.url
    try:
        child = run_in_child(lambda: _record_and_query(store, ranged, "GET /child"))
        assert child["before"] is None
        assert child["url"] not in (None, parent_url)
        assert child["status"] == 200 and child["body"]["pid"] == child["pid"] != os.getpid()
        assert [op["name"] for op in child["body"]["operations"]] == ["GET /child"], "a worker counts its own spans"
        assert ranged.url == parent_url, "a parent with statistics keeps its port"
        parent_status, parent_body = _get(f"{ranged.url}")
        assert parent_status == 200
        assert {op["name"] for op in parent_body["operations"]} == {"GET /books", "GET /search", "SELECT"}
    finally:
        ranged.stop()


def test_other_methods_get_json_errors(monitor: MonitorServer) -> None:
    request = urllib.request.Request(f"{monitor.url}", data=b"{}", method="POST")
    try:
        urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as error:
        assert error.code == 501
        assert error.headers["Content-Type"] == "application/json"
        assert json.load(error) == {
            "error": "501 Unsupported method ('POST'); the monitor answers GET /monitoring/performance"
        }
    else:
        raise AssertionError("POST must be refused")


def test_exhausted_range_is_named_and_retries_are_bounded(store: OperationStatsStore,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    holders: list[socket.socket] = []
    try:
        while len(holders) < 2:  # two consecutive ports held by someone else
            holders = [socket.socket()]
            holders[0].bind(("127.0.0.1", 0))
            first = holders[0].getsockname()[1]
            try:
                holders.append(socket.socket())
                holders[1].bind(("127.0.0.1", first + 1))
            except OSError:
                for holder in holders:
                    holder.close()
                holders = []
        for holder in holders:
            holder.listen()
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="otel_ext.monitor"):
            assert MonitorServer(store, "127.0.0.1", (first, first + 1)).start(attempts=3) is False
        assert time.monotonic() - started < 2, "retries after fork are bounded"
        assert f"monitor ports {first}-{first + 1} on 127.0.0.1 are all in use" in caplog.text
        assert "widen the range in OTEL_EXT_MONITOR_PORT" in caplog.text
    finally:
        for holder in holders:
            holder.close()


def test_parent_without_spans_hands_its_port_to_the_forked_worker() -> None:
    """A pre-fork master records nothing: with one port, the worker doing the work must serve, not the master."""
    empty = OperationStatsStore(clock=lambda: NOW)
    port = _free_port()
    master = MonitorServer(empty, "127.0.0.1", (port, port))
    assert master.start()
    child = run_in_child(lambda: _record_and_query(empty, master, "GET /worker"))
    assert child["url"] == f"http://127.0.0.1:{port}/monitoring/performance", "the worker took over the single port"
    assert child["status"] == 200 and child["body"]["pid"] == child["pid"]
    assert [op["name"] for op in child["body"]["operations"]] == ["GET /worker"]
    assert master.url is None, "the span-less parent freed the port at fork"

    # An app that forked its pool before its first request serves again once it records a span.
    provider = TracerProvider()
    provider.add_span_processor(OperationStatsProcessor(empty))
    provider.get_tracer("parent").start_span("GET /parent", start_time=NOW - MS).end(end_time=NOW)
    deadline = time.monotonic() + 5
    while master.url is None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        status, body = _get(f"{master.url}")
        assert status == 200 and body["pid"] == os.getpid()
        assert [op["name"] for op in body["operations"]] == ["GET /parent"]
    finally:
        master.stop()


@pytest.fixture
def errors() -> Iterator[ErrorPipeline]:
    """An error pipeline (no Sentry) that saw 3 ValueErrors in 'GET /books', 1 KeyError in 'GET /books' and in 'SELECT'."""
    pipeline = ErrorPipeline(Settings(), link=None)
    tracer = TracerProvider().get_tracer("test")
    try:
        for name, error in [("GET /books", ValueError("bad id 1")), ("GET /books", ValueError("bad id 2")),
                            ("GET /books", KeyError("shelf")), ("GET /books", ValueError("bad id 3"))]:
            with pytest.raises(type(error)), tracer.start_as_current_span(name, kind=SpanKind.SERVER):
                raise error
        with tracer.start_as_current_span("SELECT") as span:
            span.record_exception(KeyError("row"))
        yield pipeline
    finally:
        install_record_hook(None)
        pipeline.shutdown()


@pytest.fixture
def monitor_with_errors(store: OperationStatsStore, errors: ErrorPipeline) -> Iterator[MonitorServer]:
    port = _free_port()
    server = MonitorServer(store, "127.0.0.1", (port, port), errors)
    assert server.start()
    yield server
    server.stop()


def _errors_url(server: MonitorServer, query: str) -> str:
    return f"http://127.0.0.1:{_port_of(server)}/monitoring/errors?{query}"


def test_errors_json_counts_per_operation_and_type(monitor_with_errors: MonitorServer) -> None:
    status, body = _get(_errors_url(monitor_with_errors, "window=5m"))
    assert status == 200
    assert (body["window"], body["window_seconds"], body["pid"]) == ("5m", 300, os.getpid())
    groups = [(group["operation"], group["exception_type"], group["count"], group["latest_message"])
              for group in body["errors"]]
    assert groups == [("GET /books", "ValueError", 3, "bad id 3"), ("GET /books", "KeyError", 1, "'shelf'"),
                      ("SELECT", "KeyError", 1, "'row'")]
    books = body["errors"][0]
    assert books["first_seen_unix_nano"] < books["last_seen_unix_nano"]
    assert books["first_seen"].endswith("+00:00") and len(books["latest_trace_id"]) == 32
    assert books["latest_event_id"] is None, "no Sentry: counted, not linked"
    assert body["sentry"] == {"linked": False, "waiting": 0, "dropped_queue_full": 0, "rate_limited": 0}


def test_errors_operation_filter(monitor_with_errors: MonitorServer) -> None:
    _, body = _get(_errors_url(monitor_with_errors, "operation=SEL*"))
    assert [group["operation"] for group in body["errors"]] == ["SELECT"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("window=2h", "window '2h' is not kept; accepted: 1m, 5m, 15m, 1h"),
        ("kind=server", "unknown parameter(s) 'kind'; accepted: window, operation"),
        ("operation=", "operation is empty; give a span name or a glob such as 'GET /books*'"),
    ],
)
def test_errors_bad_query_gets_400(monitor_with_errors: MonitorServer, query: str, message: str) -> None:
    assert _get(_errors_url(monitor_with_errors, query)) == (400, {"error": message})


def test_unknown_path_lists_both_pages(monitor_with_errors: MonitorServer) -> None:
    status, body = _get(f"http://127.0.0.1:{_port_of(monitor_with_errors)}/monitoring")
    assert status == 404
    assert body["error"] == "no such page; try /monitoring/performance?window=5m or /monitoring/errors?window=5m"
