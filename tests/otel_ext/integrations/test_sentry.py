"""The two-way Sentry link, end to end: real sentry-sdk, real HTTP transport, real OTLP.

Each scenario runs in a subprocess (zero-code unless noted) with ``SENTRY_DSN``
pointing at an envelope receiver on 127.0.0.1 and spans exported over OTLP to
another; the tests read what both receivers decoded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_ext._internal.config import Settings
from otel_ext._internal.integrations.sentry import build_event, pseudonymous_user_id, trace_url
from processors._internal.exceptions import ExceptionStamp, LinkState, RecordedException
from tests.support.otlp_sink import CapturedSpan, OtlpSink
from tests.support.processes import Run, otlp_variables, run_plain, run_scenario
from tests.support.sentry_sink import SentrySink, closed_port_dsn

SECRET = "a-secret-of-32-characters-------"
TEMPLATE = "http://jaeger.local:16686/trace/{trace_id}?uiFind={span_id}"
STATUS_OK, STATUS_ERROR = 1, 2


def _run(scenario: str, *arguments: str, sentry_dsn: str, otlp: OtlpSink, protocol: str = "grpc",
         plain: bool = False, **extra: str) -> Run:
    variables = {
        "SENTRY_DSN": sentry_dsn, "SENTRY_ENVIRONMENT": "staging", "SENTRY_RELEASE": "checkout@2.0.1",
        "OTEL_SERVICE_NAME": "checkout", "OTEL_EXT_TRACE_URL_TEMPLATE": TEMPLATE, "OTEL_EXT_USER_ID_SECRET": SECRET,
        "OTEL_EXT_ERROR_FLUSH_INTERVAL_MS": "100", "OTEL_BSP_SCHEDULE_DELAY": "100", **extra,
    }
    endpoint = otlp.grpc_endpoint if protocol == "grpc" else otlp.http_endpoint
    run = run_plain if plain else run_scenario
    return run(scenario, *arguments, **otlp_variables(endpoint, protocol, **variables))


def _spans(otlp: OtlpSink, count: int) -> dict[str, CapturedSpan]:
    return {span.name: span for span in otlp.wait_for_spans(count)}


def _exception(event: dict[str, Any]) -> dict[str, Any]:
    (value,) = event["exception"]["values"]
    return dict(value)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_exception_through_nested_spans_gives_one_event_linked_both_ways(
    sentry_sink: SentrySink, otlp_sink: OtlpSink, protocol: str
) -> None:
    run = _run("nested_failure", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink, protocol=protocol)
    assert run.returncode == 0, run.stderr
    (event,) = sentry_sink.wait_for_events(1)
    spans = _spans(otlp_sink, 3)
    inner, middle, outer = spans["card.authorize"], spans["charge"], spans["POST /pay"]

    exception = _exception(event)
    assert (exception["type"], exception["value"]) == ("ConnectionError", "card gateway refused")
    assert exception["mechanism"] == {"type": "otel_ext", "handled": False}
    assert exception["stacktrace"]["frames"][-1]["function"] == "nested_failure"
    assert event["contexts"]["trace"] == {
        "trace_id": inner.trace_id, "span_id": inner.span_id, "parent_span_id": middle.span_id,
    }
    assert event["tags"] == {
        "otel.operation": "card.authorize", "otel.service": "checkout", "otel.span_kind": "client",
        "otel.component": "scenario",
    }
    otel = event["contexts"]["otel"]
    assert otel["trace_url"] == f"http://jaeger.local:16686/trace/{inner.trace_id}?uiFind={inner.span_id}"
    assert otel["operations_crossed"] == ["card.authorize", "charge", "POST /pay"]
    assert (event["environment"], event["release"]) == ("staging", "checkout@2.0.1")
    expected_user = hmac.new(SECRET.encode(), b"alice@example.com", hashlib.sha256).hexdigest()[:32]
    assert event["user"] == {"id": expected_user}
    assert b"alice@example.com" not in b"".join(request.body for request in sentry_sink.raw_requests())

    assert {span.attributes["sentry.event_id"] for span in (inner, middle, outer)} == {event["event_id"]}
    report = run.result
    assert sorted((group["operation"], group["count"], group["latest_event_id"]) for group in report["errors"]) == [
        ("POST /pay", 1, event["event_id"]), ("card.authorize", 1, event["event_id"]), ("charge", 1, event["event_id"]),
    ]
    assert report["sentry"]["sent"] == 1


def test_unsampled_trace_still_reports_without_a_dead_link(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    """Sampled out (ratio 0): nothing exported, the error still reaches Sentry, with no trace URL to open."""
    run = _run("nested_failure", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink, OTEL_TRACES_SAMPLER="traceidratio",
               OTEL_TRACES_SAMPLER_ARG="0")
    assert run.returncode == 0, run.stderr
    (event,) = sentry_sink.wait_for_events(1)
    assert event["contexts"]["otel"]["sampled"] is False and "trace_url" not in event["contexts"]["otel"]
    assert len(event["contexts"]["trace"]["trace_id"]) == 32
    time.sleep(0.3)
    assert otlp_sink.spans() == []


def test_raw_user_only_when_opted_in(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    run = _run("nested_failure", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink, OTEL_EXT_SENTRY_SEND_PII="true")
    assert run.returncode == 0, run.stderr
    (event,) = sentry_sink.wait_for_events(1)
    assert event["user"] == {"id": "alice@example.com"}


def test_no_secret_sends_no_user_and_says_why(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    run = _run("nested_failure", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink, OTEL_EXT_USER_ID_SECRET="")
    assert run.returncode == 0, run.stderr
    (event,) = sentry_sink.wait_for_events(1)
    assert "user" not in event
    assert run.stderr.count("OTEL_EXT_USER_ID_SECRET is unset") == 1


def test_b21_record_then_reraise_is_one_error(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    run = _run("record_and_reraise", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink)
    assert run.returncode == 0, run.stderr
    (event,) = sentry_sink.wait_for_events(1)
    assert _exception(event)["type"] == "KeyError"
    span = _spans(otlp_sink, 1)["lookup"]
    assert [name for name, _ in span.events] == ["exception", "exception"], "the SDK may record it twice"
    assert span.attributes["sentry.event_id"] == event["event_id"]
    (group,) = run.result["errors"]["errors"]
    assert (group["operation"], group["count"]) == ("lookup", 1)
    (stats,) = run.result["stats"]
    assert (stats["count"], stats["error_count"]) == (1, 1)


def test_storm_of_identical_errors_is_rate_limited_and_counted(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    run = _run("storm", "1000", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink, OTEL_EXT_SENTRY_RATE_LIMIT="10/1m")
    assert run.returncode == 0, run.stderr
    report = run.result["errors"]
    (group,) = report["errors"]
    assert (group["operation"], group["exception_type"], group["count"]) == ("job.run", "TimeoutError", 1000)
    assert (report["sentry"]["sent"], report["sentry"]["rate_limited"]) == (10, 990)
    time.sleep(0.5)
    events = sentry_sink.events()
    assert len(events) == 10
    sent_ids = {event["event_id"] for event in events}
    spans = otlp_sink.wait_for_spans(1000)
    assert len(spans) == 1000
    assert {span.attributes["sentry.event_id"] for span in spans} == sent_ids, "suppressed spans link to a sent event"


def test_burst_without_rate_limit_reaches_sentry_whole(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    """600 errors in a burst: more than sentry-sdk's transport queue (100) holds, so hand-over must be paced."""
    run = _run("storm", "600", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink, OTEL_EXT_SENTRY_RATE_LIMIT="off",
               OTEL_EXT_ERROR_FLUSH_INTERVAL_MS="1000")
    assert run.returncode == 0, run.stderr
    events = sentry_sink.wait_for_events(600)
    assert len(events) == 600 and len({event["event_id"] for event in events}) == 600
    report = run.result["errors"]
    assert (report["sentry"]["rate_limited"], report["sentry"]["dropped_queue_full"]) == (0, 0)
    assert [group["count"] for group in report["errors"]] == [600]


def test_full_queue_costs_events_never_counts(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    """A queue of 4 against 300 errors: some get no event (counted as dropped), every one is counted."""
    run = _run("storm", "300", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink, OTEL_EXT_SENTRY_RATE_LIMIT="off",
               OTEL_EXT_ERROR_QUEUE_SIZE="4", OTEL_EXT_ERROR_FLUSH_INTERVAL_MS="60000")
    assert run.returncode == 0, run.stderr
    report = run.result["errors"]
    assert [group["count"] for group in report["errors"]] == [300]
    dropped = report["sentry"]["dropped_queue_full"]
    assert dropped > 0
    time.sleep(0.3)
    events = sentry_sink.events()
    assert len(events) == 300 - dropped, "every error either sent once or counted as dropped"
    spans = otlp_sink.wait_for_spans(300)
    linked = [span for span in spans if "sentry.event_id" in span.attributes]
    assert len(linked) == 300 - dropped and {span.attributes["sentry.event_id"] for span in linked} == {
        event["event_id"] for event in events}, "no span points at an event that was not sent"


def test_b22_log_and_raise_and_double_capture_give_one_event_each(
    sentry_sink: SentrySink, otlp_sink: OtlpSink
) -> None:
    run = _run("log_and_raise", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink)
    assert run.returncode == 0, run.stderr
    time.sleep(0.5)
    events = sentry_sink.events()
    assert sorted(_exception(event)["type"] for event in events) == ["LookupError", "RuntimeError"]
    spans = _spans(otlp_sink, 2)
    for event in events:
        span = spans["payment" if _exception(event)["type"] == "RuntimeError" else "refund"]
        assert (event["contexts"]["trace"]["trace_id"], event["contexts"]["trace"]["span_id"]) == (
            span.trace_id, span.span_id)
        assert span.attributes["sentry.event_id"] == event["event_id"]
    first, second = run.result["captured"]
    assert second is None, "the second capture of the same exception object is dropped"


def test_exception_the_app_sent_first_is_not_sent_again(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    run = _run("app_captures_first", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink)
    assert run.returncode == 0, run.stderr
    (event,) = sentry_sink.wait_for_events(1)
    time.sleep(0.3)
    assert len(sentry_sink.events()) == 1
    span = _spans(otlp_sink, 1)["import.batch"]
    assert event["event_id"] == run.result["captured"] == span.attributes["sentry.event_id"]
    delivery = run.result["errors"]["sentry"]
    assert (delivery["sent"], delivery["app_events_linked"]) == (0, 1)
    expected_user = hmac.new(SECRET.encode(), b"alice@example.com", hashlib.sha256).hexdigest()[:32]
    assert event["user"] == {"id": expected_user}, "the span's user, pseudonymised, on the app's event too"
    assert (event["contexts"]["otel"]["operation"], event["contexts"]["otel"]["sampled"]) == ("import.batch", True)
    assert event["contexts"]["trace"]["span_id"] == span.span_id
    assert event["contexts"]["otel"]["trace_url"].startswith(f"http://jaeger.local:16686/trace/{span.trace_id}")


def test_b19_original_error_description_reaches_sentry(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    run = _run("status_precedence", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink)
    assert run.returncode == 0, run.stderr
    events = {_exception(event)["type"]: event for event in sentry_sink.wait_for_events(2)}
    assert set(events) == {"TimeoutError", "KeyError"}
    spans = _spans(otlp_sink, 3)
    failed = spans["status.error"]
    assert (failed.status_code, failed.status_message) == (STATUS_ERROR, "db timeout on primary")
    assert events["TimeoutError"]["contexts"]["otel"]["status_description"] == "db timeout on primary"
    assert events["TimeoutError"]["contexts"]["trace"]["span_id"] == failed.span_id
    ok = events["KeyError"]  # recorded on a span the app marked OK: reported, as handled, and the span stays OK
    assert (ok["contexts"]["otel"]["status_code"], ok["exception"]["values"][0]["mechanism"]["handled"]) == ("OK", True)
    assert spans["status.ok"].status_code == STATUS_OK


def test_b25_failing_pool_item_links_to_its_own_span(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    run = _run("pool_item_fails", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink)
    assert run.returncode == 0, run.stderr
    assert run.result["failures"] == [False, False, False, True, False]
    (event,) = sentry_sink.wait_for_events(1)
    spans = otlp_sink.wait_for_spans(6)
    (batch,) = [span for span in spans if span.name == "batch"]
    items = [span for span in spans if span.name == "item"]
    assert len(items) == 5 and {span.parent_span_id for span in items} == {batch.span_id}
    (failed,) = [span for span in items if span.attributes["index"] == 3]
    assert event["contexts"]["trace"] == {
        "trace_id": batch.trace_id, "span_id": failed.span_id, "parent_span_id": batch.span_id,
    }
    assert [span.attributes.get("sentry.event_id") for span in sorted(items, key=lambda s: s.attributes["index"])] == [
        None, None, None, event["event_id"], None]


def test_no_exception_and_handled_4xx_send_nothing(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    run = _run("quiet_outcomes", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink)
    assert run.returncode == 0, run.stderr
    assert run.result["errors"] == []
    spans = _spans(otlp_sink, 3)
    assert [name for name, _ in spans["GET /books/{id}"].events] == ["exception"]
    assert all("sentry.event_id" not in span.attributes for span in spans.values())
    time.sleep(0.5)
    assert sentry_sink.events() == []


def test_4xx_server_span_that_ends_as_error_is_sent(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    run = _run("client_error_escapes", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink)
    assert run.returncode == 0, run.stderr
    (event,) = sentry_sink.wait_for_events(1)
    span = _spans(otlp_sink, 1)["GET /books/{id}"]
    assert span.status_code == STATUS_ERROR
    assert (event["contexts"]["trace"]["span_id"], _exception(event)["type"]) == (span.span_id, "LookupError")
    (group,) = run.result["errors"]
    assert (group["count"], group["latest_event_id"]) == (1, event["event_id"])


@pytest.mark.parametrize("mode", ["return", "exit", "raise"])
def test_b06_short_lived_process_sends_its_one_event(sentry_sink: SentrySink, otlp_sink: OtlpSink, mode: str) -> None:
    run = _run("short_lived", mode, sentry_dsn=sentry_sink.dsn, otlp=otlp_sink, OTEL_BSP_SCHEDULE_DELAY="5000",
               OTEL_EXT_ERROR_FLUSH_INTERVAL_MS="60000")
    assert run.returncode == (0 if mode == "return" else 1), run.stderr
    spans = _spans(otlp_sink, 4)
    events = sentry_sink.events()
    if mode != "raise":
        assert events == []
        return
    (event,) = events
    root = spans["job.root"]
    assert root.status_code == STATUS_ERROR
    assert (_exception(event)["type"], event["contexts"]["trace"]["span_id"]) == ("RuntimeError", root.span_id)
    assert root.attributes["sentry.event_id"] == event["event_id"]


def test_b02_failing_exception_hook_does_not_replace_app_exception(
    sentry_sink: SentrySink, otlp_sink: OtlpSink
) -> None:
    run = _run("failing_processor", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink)
    assert run.returncode == 0, run.stderr
    assert run.result["seen"] == ["ValueError: app"]
    assert run.result["later_received"] == 20
    (op,) = run.result["stats"]
    assert (op["name"], op["count"], op["error_count"]) == ("op", 20, 20)
    assert run.stderr.count("exception tracking failed") == 1, "logged once per cause"
    assert len(otlp_sink.wait_for_spans(20)) == 20


@pytest.mark.parametrize("mode", ["before", "after", "no_env"])
def test_app_initialised_sentry_keeps_its_options(sentry_sink: SentrySink, otlp_sink: OtlpSink, mode: str) -> None:
    """The app's own sentry_sdk.init: joined in code (before configure), taken over in zero-code (after), or
    found in zero-code without SENTRY_DSN (no_env)."""
    with SentrySink() as ignored:
        run = _run("app_initialised_sentry", mode, sentry_dsn="" if mode == "no_env" else ignored.dsn, otlp=otlp_sink,
                   plain=mode == "before", APP_SENTRY_DSN=sentry_sink.dsn)
        assert run.returncode == 0, run.stderr
        (event,) = sentry_sink.wait_for_events(1)
        assert ignored.events() == []
    assert (event["release"], event["tags"]["seen_by_app"]) == ("shop@1.2.3", "yes")
    span = _spans(otlp_sink, 1)["GET /cart"]
    assert (event["contexts"]["trace"]["trace_id"], span.attributes["sentry.event_id"]) == (
        span.trace_id, event["event_id"])


@pytest.mark.parametrize("receiver", ["down", "slow"])
def test_unreachable_or_slow_sentry_never_blocks_the_app(otlp_sink: OtlpSink, receiver: str) -> None:
    """50 errors then exit: the loop never waits for Sentry and exit is bounded by the shutdown timeouts.

    A synchronous sender would wait 5 s per event on the slow receiver (250 s).
    The figures side by side are printed by benchmarks/bench_sentry_link.py.
    """
    with SentrySink(mode="slow", delay_s=5.0) as slow:
        dsn = slow.dsn if receiver == "slow" else closed_port_dsn()
        run = _run("errors_until_exit", "50", sentry_dsn=dsn, otlp=otlp_sink,
                   OTEL_EXT_SENTRY_SHUTDOWN_TIMEOUT_MS="1000")
        exit_s = time.time() - float(run.stdout.split("EXIT_AT ")[1].split()[0])
    assert run.returncode == 0, run.stderr
    loop_s = float(run.stdout.split("LOOP_S ")[1].split()[0])
    assert loop_s < 2.0, f"50 error spans took {loop_s:.2f} s"
    assert exit_s < 6.0, f"exit took {exit_s:.2f} s (shutdown timeout 1 s for otel-ext and for sentry-sdk)"


def test_exit_with_the_apps_own_client_and_a_hanging_sentry_is_bounded(otlp_sink: OtlpSink) -> None:
    """otel-ext's 1 s, then sentry-sdk's exit hook with the app's shutdown_timeout of 1 s: about 2.1 s.

    The worker is still busy when otel-ext's deadline passes; had it started a new wait for the
    transport, sentry-sdk's exit hook would have waited for it too (3.2 s measured).
    """
    with SentrySink(mode="slow", delay_s=30.0) as hanging:
        run = _run("errors_until_exit", "1000", sentry_dsn="", otlp=otlp_sink, APP_SENTRY_DSN=hanging.dsn,
                   OTEL_EXT_SENTRY_RATE_LIMIT="off", OTEL_EXT_SENTRY_SHUTDOWN_TIMEOUT_MS="1000")
        exit_s = time.time() - float(run.stdout.split("EXIT_AT ")[1].split()[0])
    assert run.returncode == 0, run.stderr
    assert exit_s < 2.9, f"exit took {exit_s:.2f} s"


def test_shutdown_delivers_queued_errors(sentry_sink: SentrySink, otlp_sink: OtlpSink) -> None:
    run = _run("shutdown_then_hard_exit", sentry_dsn=sentry_sink.dsn, otlp=otlp_sink, plain=True,
               OTEL_EXT_ERROR_FLUSH_INTERVAL_MS="3600000")
    assert run.returncode == 0, run.stderr
    (event,) = sentry_sink.events()
    span = _spans(otlp_sink, 1)["nightly.import"]
    assert (event["contexts"]["trace"]["span_id"], span.attributes["sentry.event_id"]) == (
        span.span_id, event["event_id"])


@pytest.mark.parametrize(("dsn", "reason"), [("not a dsn", "Unsupported scheme ''"),
                                              ("http://127.0.0.1:9/1", "Missing public key"),
                                              ("http://k@127.0.0.1:99999/1", "Port out of range 0-65535")])
def test_malformed_dsn_turns_off_only_the_link(otlp_sink: OtlpSink, dsn: str, reason: str) -> None:
    run = _run("nested_failure", sentry_dsn=dsn, otlp=otlp_sink)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count(f"SENTRY_DSN is invalid: {reason} (expected https://<key>@<host>/<project id>)") == 1
    assert "setup failed" not in run.stderr
    assert run.result["sentry"]["linked"] is False
    assert sorted(group["count"] for group in run.result["errors"]) == [1, 1, 1], "errors still counted"
    assert len(otlp_sink.wait_for_spans(3)) == 3, "tracing still exports"


def test_sentry_sdk_missing_is_one_clear_message(otlp_sink: OtlpSink, tmp_path: Path) -> None:
    """A stand-in module that fails to import, as a missing package does: the one test double here."""
    (tmp_path / "sentry_sdk.py").write_text("raise ImportError(\"No module named 'sentry_sdk'\")\n")
    run = _run("nested_failure", sentry_dsn="http://public@127.0.0.1:9/1", otlp=otlp_sink, PYTHONPATH=str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("pip install 'otel-ext[sentry]'") == 1
    (group,) = [group for group in run.result["errors"] if group["operation"] == "card.authorize"]
    assert group["latest_event_id"] is None, "counted, not linked"
    assert run.result["sentry"]["linked"] is False


# --- the event built from a span, without a network -----------------------------------------------------------


def _ended_span(attributes: dict[str, Any], status: Status) -> tuple[ReadableSpan, ValueError]:
    """A real SDK span, child of "outer", that caught a ValueError and ended with ``status``."""
    provider = TracerProvider(resource=Resource.create({"service.name": "billing"}))
    tracer = provider.get_tracer("billing.jobs", "1.0")
    with tracer.start_as_current_span("outer"):
        span = tracer.start_span("charge", kind=SpanKind.CONSUMER, attributes=attributes)
    span.set_status(status)
    span.end()
    assert isinstance(span, ReadableSpan)
    return span, _caught_error()


def _caught_error() -> ValueError:
    """Raised and caught here, so its only stack frame holds no span attributes as local variables."""
    try:
        raise ValueError("amount must be positive")
    except ValueError as error:
        return error


def test_build_event_from_span() -> None:
    span, error = _ended_span({"user.id": "u-17", "user.email": "u17@example.com"}, Status(StatusCode.UNSET))
    stamp = ExceptionStamp("0" * 32, LinkState.PENDING, suppressed_before=4)
    settings = Settings(trace_url_template="https://grafana.local/explore?traceId={trace_id}", user_id_secret=SECRET)
    event, hint = build_event([RecordedException(span, error, stamp)], settings, None)
    context = span.context
    assert event["event_id"] == "0" * 32
    assert event["contexts"]["trace"] == {
        "trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}",  # type: ignore[union-attr]
    }
    assert event["tags"] == {"otel.operation": "charge", "otel.service": "billing", "otel.span_kind": "consumer",
                             "otel.component": "billing.jobs"}
    assert event["contexts"]["otel"]["trace_url"] == f"https://grafana.local/explore?traceId={context.trace_id:032x}"
    assert event["contexts"]["otel"]["identical_errors_suppressed_before"] == 4
    assert event["exception"]["values"][0]["mechanism"] == {"type": "otel_ext", "handled": True}
    assert event["user"] == {"id": hmac.new(SECRET.encode(), b"u-17", hashlib.sha256).hexdigest()[:32]}
    assert "u17@example.com" not in json.dumps(event, default=str)
    assert hint["exc_info"][1] is error
    assert event["timestamp"].timestamp() == pytest.approx(span.end_time / 1e9)  # type: ignore[operator]


@pytest.mark.parametrize("fold", [True, False])
def test_event_operation_tag_is_the_folded_operation_and_the_raw_name_stays_in_context(fold: bool) -> None:
    """Guards one Sentry tag value per user id (GET /users/1042, …) where the monitor shows GET /users/{id}."""
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    span = provider.get_tracer("shop").start_span("GET /users/1042", kind=SpanKind.SERVER)
    span.end()
    assert isinstance(span, ReadableSpan)
    stamp = ExceptionStamp("1" * 32, LinkState.PENDING)
    event, _ = build_event([RecordedException(span, _caught_error(), stamp)], Settings(fold_name_ids=fold), None)
    operation = "GET /users/{id}" if fold else "GET /users/1042"
    assert event["tags"]["otel.operation"] == event["contexts"]["otel"]["operation"] == operation
    assert event["contexts"]["otel"].get("span_name") == ("GET /users/1042" if fold else None)


def test_pseudonymous_id_is_keyed() -> None:
    assert pseudonymous_user_id("u-17", SECRET) != pseudonymous_user_id("u-17", SECRET + "x")
    assert pseudonymous_user_id("u-17", SECRET) != hashlib.sha256(b"u-17").hexdigest()[:32]
    assert len(pseudonymous_user_id("u-17", SECRET)) == 32


def test_trace_url_template_keeps_other_braces() -> None:
    span, _ = _ended_span({}, Status(StatusCode.ERROR))
    template = 'http://grafana/explore?left={"queries":[{"query":"{trace_id}"}]}'
    assert trace_url(template, span.context) == f'http://grafana/explore?left={{"queries":[{{"query":"{span.context.trace_id:032x}"}}]}}'
    assert trace_url(None, span.context) is None
