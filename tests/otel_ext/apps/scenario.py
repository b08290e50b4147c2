"""A small app run by the end-to-end tests, under ``opentelemetry-instrument`` or plain ``python``.

It uses only the OpenTelemetry API, as a library or an app with manual spans
would; otel-ext is activated from outside (zero-code) unless a scenario says
otherwise. ``python scenario.py NAME`` runs one scenario; results the test
needs are printed as one JSON line prefixed ``RESULT ``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

MS = 1_000_000
tracer = trace.get_tracer("scenario")


def result(value: object) -> None:
    print("RESULT " + json.dumps(value), flush=True)


def monitor(query: str = "window=1h") -> list[dict[str, object]]:
    port = os.environ["OTEL_EXT_MONITOR_PORT"].split("-")[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/monitoring/performance?{query}", timeout=5) as response:
        return json.load(response)["operations"]


def timed_span(name: str, duration_ms: float, **kwargs: object) -> trace.Span:
    end = time.time_ns()
    span = tracer.start_span(name, start_time=end - int(duration_ms * MS), **kwargs)  # type: ignore[arg-type]
    span.end(end_time=end)
    return span


def slow_tags() -> None:
    """Spans of exact durations around the threshold, statuses, and the monitor's view of them."""
    for name, duration in (("op.slow", 1200), ("op.boundary", 1000), ("op.fast", 999), ("db.query", 60)):
        timed_span(name, duration, kind=SpanKind.CLIENT)
    failing = tracer.start_span("op.failing", kind=SpanKind.SERVER)
    failing.set_status(Status(StatusCode.ERROR, "db timeout on primary"))
    failing.end()
    result(monitor())


def failing_processor() -> None:
    """B02: a processor raising in on_end, or otel-ext's own exception hook raising, must not replace the app's error."""
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

    from processors._internal.exceptions import ExceptionTracker

    def explode(self: object, span: object, exception: BaseException) -> None:
        raise RuntimeError("hook bug")

    ExceptionTracker.on_record = explode  # type: ignore[method-assign, assignment]

    received: list[str] = []

    class Broken(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            raise RuntimeError("processor bug")

    class Later(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            received.append(span.name)

    provider = trace.get_tracer_provider()
    provider.add_span_processor(Broken())  # type: ignore[attr-defined]
    provider.add_span_processor(Later())  # type: ignore[attr-defined]
    seen = []
    for _ in range(20):
        try:
            with tracer.start_as_current_span("op"):
                raise ValueError("app")
        except Exception as error:  # noqa: BLE001 - recording what the caller sees
            seen.append(f"{type(error).__name__}: {error}")
    result({"seen": sorted(set(seen)), "later_received": len(received), "stats": monitor()})


def short_lived(mode: str) -> None:
    """B06: root + 3 children, then exit at once without flushing."""
    with tracer.start_as_current_span("job.root", kind=SpanKind.SERVER):
        for index in range(3):
            with tracer.start_as_current_span(f"job.step{index}"):
                pass
        if mode == "exit":
            sys.exit(1)
        if mode == "raise":
            raise RuntimeError("job failed")


def configured_in_code() -> None:
    """An app that sets up tracing in code with otel_ext.configure(), then runs a short job."""
    import otel_ext

    otel_ext.configure({"team": "code", "service.name": "from-code"})
    short_lived("return")


def configure_twice() -> None:
    """B12: app code calls otel_ext.configure() although opentelemetry-instrument already did."""
    import otel_ext

    first = otel_ext.configure()
    second = otel_ext.configure()
    for _ in range(10):
        with tracer.start_as_current_span("GET /items", kind=SpanKind.SERVER):
            pass
    result({"same": first is second, "stats": monitor()})


def sampled(count: str) -> None:
    """B13: many root operations under the configured sampler."""
    for _ in range(int(count)):
        with tracer.start_as_current_span("root.op", kind=SpanKind.SERVER):
            pass
    result(monitor())


def status_precedence() -> None:
    """B19: an app's error description survives an escaping exception; OK stays OK."""
    try:
        with tracer.start_as_current_span("status.error") as span:
            span.set_status(Status(StatusCode.ERROR, "db timeout on primary"))
            raise TimeoutError("primary did not answer")
    except TimeoutError:
        pass
    try:
        with tracer.start_as_current_span("status.ok") as span:
            span.set_status(Status(StatusCode.OK))
            raise KeyError("ignored by status")
    except KeyError:
        pass
    with tracer.start_as_current_span("status.unset") as span:
        span.set_status(Status(StatusCode.ERROR, "first"))
        span.set_status(Status(StatusCode.UNSET))


def context_fan_out() -> None:
    """B25: spans in pool threads and asyncio tasks stay children of the caller."""

    def item(index: int) -> None:
        with tracer.start_as_current_span("item", attributes={"index": index}):
            pass

    with tracer.start_as_current_span("batch"):
        with ThreadPoolExecutor(5) as pool:
            list(pool.map(item, range(5)))

    async def task(index: int) -> None:
        with tracer.start_as_current_span("task", attributes={"index": index}):
            await asyncio.sleep(0.01)

    async def gather() -> None:
        with tracer.start_as_current_span("gather"):
            await asyncio.gather(*(task(index) for index in range(5)))

    asyncio.run(gather())
    result(monitor())


def many_spans_and_a_metric() -> None:
    """B05: with the collector unreachable, ending spans must not block and exit must be quick."""
    started = time.perf_counter()
    for index in range(1000):
        with tracer.start_as_current_span(f"op{index % 10}"):
            pass
    elapsed = time.perf_counter() - started
    metrics.get_meter("scenario").create_counter("scenario.calls").add(1)
    result({"end_1000_spans_s": elapsed})


def spans_while_exports_fail(seconds: str) -> None:
    """B05 with metrics: spans keep ending for a while, in chunks of 1000, while periodic exports fail."""
    deadline = time.perf_counter() + float(seconds)
    chunks: list[float] = []
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        for index in range(1000):
            with tracer.start_as_current_span(f"op{index % 10}"):
                pass
        chunks.append(time.perf_counter() - started)
    result({"chunks": len(chunks), "slowest_chunk_s": max(chunks)})


def fork_child_spans() -> None:
    """B03: spans from a forked child reach the collector, under the child's pid, with no hang."""
    import multiprocessing

    import otel_ext

    handle = otel_ext.configure()
    with tracer.start_as_current_span("parent.before"):
        pass
    child = os.fork()
    if child == 0:
        for index in range(5):
            with tracer.start_as_current_span("child.op", attributes={"index": index}):
                pass
        handle.force_flush(5000)
        handle.shutdown()
        os._exit(0)
    _, status = os.waitpid(child, 0)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_pool_work, range(4))
    with tracer.start_as_current_span("parent.after"):
        pass
    result({"child_pid": child, "child_status": status, "parent_pid": os.getpid()})


def fork_with_app_counter() -> None:
    """B03 with the app's own instrument: 3 jobs counted in the parent, then 1 in a forked child."""
    import otel_ext

    handle = otel_ext.configure()
    jobs = metrics.get_meter("scenario").create_counter("scenario.jobs")
    for _ in range(3):
        with tracer.start_as_current_span("parent.job"):
            jobs.add(1)
    child = os.fork()
    if child == 0:
        with tracer.start_as_current_span("child.job"):
            jobs.add(1)
        handle.shutdown()
        os._exit(0)
    _, status = os.waitpid(child, 0)
    result({"child_pid": child, "child_status": status, "parent_pid": os.getpid()})


def _pool_work(index: int) -> None:
    with tracer.start_as_current_span("pool.op", attributes={"index": index}):
        pass
    trace.get_tracer_provider().force_flush(5000)  # type: ignore[attr-defined]


def _idle(index: int) -> int:
    return index


def pool_without_spans(method: str) -> None:
    """A traced parent runs a spawn/forkserver pool whose workers record no span: they must not take ports."""
    import multiprocessing

    with tracer.start_as_current_span("parent.op"):
        pass
    with multiprocessing.get_context(method).Pool(3) as pool:
        outcome = pool.map(_idle, range(6))
    result({"outcome": outcome, "monitor": [row["name"] for row in monitor()]})


def errors_report(query: str = "window=1h") -> dict[str, object]:
    port = os.environ["OTEL_EXT_MONITOR_PORT"].split("-")[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/monitoring/errors?{query}", timeout=5) as response:
        return json.load(response)


def _leave_span(name: str, error: BaseException) -> None:
    with tracer.start_as_current_span(name):
        raise error


def _user_attributes() -> dict[str, str]:
    """Built here, not in the failing frame: source lines and local variables travel in stack frames."""
    return {"enduser.id": "@".join(("alice", "example.com"))}


def nested_failure() -> None:
    """B21: one exception escaping three nested spans; the server span carries a user id."""
    try:
        with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER, attributes=_user_attributes()):
            with tracer.start_as_current_span("charge"):
                with tracer.start_as_current_span("card.authorize", kind=SpanKind.CLIENT):
                    raise ConnectionError("card gateway refused")
    except ConnectionError:
        pass
    result(errors_report())


def record_and_reraise() -> None:
    """B21: record_exception, then re-raise: two SDK events on the span, one error."""
    try:
        with tracer.start_as_current_span("lookup") as span:
            shelves: dict[str, int] = {}
            try:
                shelves["missing"]
            except KeyError as error:
                span.record_exception(error)
                raise
    except KeyError:
        pass
    result({"errors": errors_report(), "stats": monitor()})


def storm(count: str) -> None:
    """The same error raised in a loop: rate-limited per fingerprint, every one counted."""
    started = time.perf_counter()
    for index in range(int(count)):
        try:
            with tracer.start_as_current_span("job.run", attributes={"index": index}):
                raise TimeoutError("upstream timed out")
        except TimeoutError:
            pass
    elapsed = time.perf_counter() - started
    result({"errors": errors_report(), "loop_s": elapsed})


def log_and_raise() -> None:
    """B22: logger.exception then re-raise, and capture_exception twice: one event each."""
    import sentry_sdk

    log = logging.getLogger("payments")
    try:
        with tracer.start_as_current_span("payment"):
            try:
                raise RuntimeError("payment failed")
            except RuntimeError:
                log.exception("payment failed")
                raise
    except RuntimeError:
        pass
    try:
        with tracer.start_as_current_span("refund"):
            raise LookupError("refund missing")
    except LookupError as error:
        first = sentry_sdk.capture_exception(error)
        second = sentry_sdk.capture_exception(error)
    result({"errors": errors_report(), "captured": [first, second]})


def app_captures_first() -> None:
    """The app sends the exception itself inside the server span (as Flask's integration does), then lets it escape."""
    import sentry_sdk

    captured = None
    try:
        with tracer.start_as_current_span("import.batch", kind=SpanKind.SERVER, attributes=_user_attributes()):
            try:
                raise ValueError("bad row 17")
            except ValueError as error:
                captured = sentry_sdk.capture_exception(error)
                raise
    except ValueError:
        pass
    result({"errors": errors_report(), "captured": captured})


def pool_item_fails() -> None:
    """B25: five items in a thread pool, item 3 fails: its event links to its own span."""

    def item(index: int) -> None:
        with tracer.start_as_current_span("item", attributes={"index": index}):
            if index == 3:
                raise ArithmeticError(f"item {index} failed")

    with tracer.start_as_current_span("batch"):
        with ThreadPoolExecutor(5) as pool:
            outcomes = [pool.submit(item, index) for index in range(5)]
            failures = [future.exception() is not None for future in outcomes]
    result({"failures": failures, "errors": errors_report()})


def quiet_outcomes() -> None:
    """No exception, a handled 404 recorded on a server span, and a client 404: nothing for Sentry."""
    with tracer.start_as_current_span("GET /books", kind=SpanKind.SERVER):
        pass
    with tracer.start_as_current_span("GET /books/{id}", kind=SpanKind.SERVER) as span:
        span.set_attribute("http.response.status_code", 404)
        span.record_exception(LookupError("no book 999"))
    with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as span:
        span.set_attribute("http.response.status_code", 404)
    result(errors_report())


def client_error_escapes() -> None:
    """A server span answering 404 whose exception escapes: the SDK marks it ERROR, so it is an error."""
    try:
        with tracer.start_as_current_span("GET /books/{id}", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.response.status_code", 404)
            raise LookupError("no book 999")
    except LookupError:
        pass
    result(errors_report())


def shutdown_then_hard_exit() -> None:
    """In code: OtelExt.shutdown() alone must deliver queued errors (os._exit skips every exit hook)."""
    import otel_ext

    handle = otel_ext.configure()
    try:
        with tracer.start_as_current_span("nightly.import"):
            raise ValueError("row 12 has no id")
    except ValueError:
        pass
    handle.shutdown()
    os._exit(0)


def errors_until_exit(count: str) -> None:
    """Errors recorded just before the process ends: timing of the loop and of the exit.

    With APP_SENTRY_DSN the app initialises sentry-sdk itself (shutdown_timeout 1 s).
    """
    if "APP_SENTRY_DSN" in os.environ:
        import sentry_sdk

        sentry_sdk.init(dsn=os.environ["APP_SENTRY_DSN"], shutdown_timeout=1)
    started = time.perf_counter()
    for index in range(int(count)):
        try:
            with tracer.start_as_current_span(f"task{index}"):
                raise RuntimeError(f"task {index} failed")
        except RuntimeError:
            pass
    print(f"LOOP_S {time.perf_counter() - started:.6f}", flush=True)
    print(f"EXIT_AT {time.time():.6f}", flush=True)


def app_initialised_sentry(mode: str) -> None:
    """The app runs sentry_sdk.init itself: before otel_ext.configure() ("before"), or after zero-code setup
    that had its own SENTRY_DSN ("after") or none ("no_env").

    Its options (release, before_send) must apply to otel-ext's events too.
    """
    import sentry_sdk

    def before_send(event: dict[str, object], hint: dict[str, object]) -> dict[str, object]:
        tags: dict[str, str] = event.setdefault("tags", {})  # type: ignore[assignment]
        tags["seen_by_app"] = "yes"
        return event

    sentry_sdk.init(dsn=os.environ["APP_SENTRY_DSN"], release="shop@1.2.3", before_send=before_send)  # type: ignore[arg-type]
    if mode == "before":
        import otel_ext

        otel_ext.configure()
    try:
        with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER):
            raise KeyError("cart 42")
    except KeyError:
        pass
    result(errors_report())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="LOG %(levelname)s %(name)s: %(message)s")
    scenario, *arguments = sys.argv[1:]
    globals()[scenario](*arguments)
