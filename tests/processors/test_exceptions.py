"""ExceptionTracker / FingerprintRateLimiter / install_record_hook, fed by real SDK spans."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, Span, TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from processors._internal import errors as errors_module
from processors._internal.exceptions import (
    ExceptionStamp,
    ExceptionTracker,
    FingerprintRateLimiter,
    LinkState,
    RecordedException,
    exception_fingerprint,
    exception_type_name,
    handled_client_error,
    install_record_hook,
    set_stamp,
    stamp_of,
)
from tests.processors._support import NS_PER_MS, T0_NS
from tests.support.forking import run_in_child

LINK = "sentry.event_id"
EXCEPTIONS_LOGGER = "processors._internal.exceptions"
HEX = frozenset("0123456789abcdef")


class FakeClock:
    """Injected monotonic clock for the rate limiter, in seconds."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CheckoutFailed(Exception):
    pass


class Outer:
    class InnerError(LookupError):
        pass


class TrackerBroke(Exception):
    pass


class AfterRecordBroke(Exception):
    pass


class Frozen(Exception):
    """An exception object that refuses new attributes."""

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(name)


class Harness:
    """A tracker installed as the process-wide record hook, with its clock and counters."""

    def __init__(self, link: bool, limit: int | None, max_pending: int) -> None:
        self.link = link
        self.after_record_calls = 0
        self.clock = FakeClock()
        self.limiter = FingerprintRateLimiter(limit=limit, interval_s=60.0, clock=self.clock)
        self.counted: list[RecordedException] = []
        self.tracker = ExceptionTracker(
            self.limiter, LINK, should_link=lambda: self.link, max_pending=max_pending, after_record=self._after,
            on_error=self.counted.append,
        )

    def _after(self) -> None:
        self.after_record_calls += 1


MakeHarness = Callable[..., Harness]


@pytest.fixture
def tracer() -> Iterator[Tracer]:
    provider = TracerProvider()
    yield provider.get_tracer("tests.exceptions")
    provider.shutdown()


@pytest.fixture
def hooked() -> Iterator[MakeHarness]:
    """Installs trackers as the record hook; always routes nowhere again afterwards."""

    def make(link: bool = True, limit: int | None = 10, max_pending: int = 1000) -> Harness:
        harness = Harness(link, limit, max_pending)
        install_record_hook(harness.tracker)
        return harness

    try:
        yield make
    finally:
        install_record_hook(None)


@pytest.fixture
def fresh_report_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """report_once remembers causes process-wide; give each test a clean memory."""
    monkeypatch.setattr(errors_module, "_seen", set())


def _readable(span: object) -> ReadableSpan:
    assert isinstance(span, ReadableSpan)
    return span


def _attributes(span: object) -> dict[str, Any]:
    return dict(_readable(span).attributes or {})


def _exception_events(span: object) -> list[dict[str, Any]]:
    return [dict(event.attributes or {}) for event in _readable(span).events if event.name == "exception"]


def _is_event_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == 32 and set(value) <= HEX


def _stamp(error: BaseException) -> ExceptionStamp:
    stamp = stamp_of(error)
    assert stamp is not None
    return stamp


def _raise_at(which: int) -> None:
    if which == 0:
        raise ValueError("first line")
    raise ValueError("second line")


FIRST_RAISE_LINE = _raise_at.__code__.co_firstlineno + 2
SECOND_RAISE_LINE = _raise_at.__code__.co_firstlineno + 3


def _caught(which: int) -> ValueError:
    try:
        _raise_at(which)
    except ValueError as error:
        return error
    raise AssertionError("unreachable")


# --- exactly once -----------------------------------------------------------------------------------------------


def test_exception_escaping_nested_spans_gets_one_event_id(tracer: Tracer, hooked: MakeHarness) -> None:
    """Guards one failure crossing three spans turning into three events (or three different ids)."""
    harness = hooked()
    error = CheckoutFailed("card declined")
    spans = []
    with pytest.raises(CheckoutFailed) as raised:
        with tracer.start_as_current_span("outer") as outer:
            spans.append(outer)
            with tracer.start_as_current_span("middle") as middle:
                spans.append(middle)
                with tracer.start_as_current_span("inner") as inner:
                    spans.append(inner)
                    raise error
    assert raised.value is error
    stamp = stamp_of(error)
    assert stamp is not None
    assert stamp.state is LinkState.PENDING
    assert stamp.suppressed_before == 0
    assert _is_event_id(stamp.event_id)
    assert stamp.origin is spans[2]  # the first span to record it: the innermost
    for span in spans:
        assert _attributes(span)[LINK] == stamp.event_id
        (event,) = _exception_events(span)  # the SDK's own recording still happened, once per span
        assert event["exception.type"] == "tests.processors.test_exceptions.CheckoutFailed"
    assert harness.after_record_calls == 3
    assert harness.tracker.pending == 3

    items = harness.tracker.collect()
    assert [item.span.name for item in items] == ["inner", "middle", "outer"]
    assert [item.span for item in items] == spans[::-1]
    assert all(item.exception is error and item.stamp is stamp for item in items)
    assert harness.tracker.pending == 0
    assert harness.tracker.collect() == []
    assert harness.tracker.dropped == 0
    assert harness.limiter.suppressed_total == 0


def test_record_then_reraise_on_one_span_is_collected_once(tracer: Tracer, hooked: MakeHarness) -> None:
    """Guards an explicitly recorded, then re-raised exception counting twice for its span."""
    harness = hooked()
    error = KeyError("sku")
    with pytest.raises(KeyError):
        with tracer.start_as_current_span("lookup") as span:
            try:
                raise error
            except KeyError as caught:
                span.record_exception(caught)
                raise
    assert len(_exception_events(span)) == 2  # the SDK records both
    assert harness.tracker.pending == 2
    (item,) = harness.tracker.collect()
    assert item.span is span and item.exception is error and item.stamp is stamp_of(error)
    assert _attributes(span)[LINK] == item.stamp.event_id
    assert harness.tracker.pending == 0


def test_items_wait_for_their_span_to_end(tracer: Tracer, hooked: MakeHarness) -> None:
    """Guards an exception being handed on while its span can still change (or being lost meanwhile)."""
    harness = hooked()
    still_open = tracer.start_span("long", start_time=T0_NS)
    early_error = ValueError("early")
    still_open.record_exception(early_error)
    assert harness.tracker.collect() == []
    assert harness.tracker.pending == 1

    short = tracer.start_span("short", start_time=T0_NS)
    late_error = TypeError("late")
    short.record_exception(late_error)
    short.end(end_time=T0_NS + NS_PER_MS)
    (item,) = harness.tracker.collect()
    assert (item.span, item.exception) == (short, late_error)
    assert harness.tracker.pending == 1

    another = RuntimeError("another")
    still_open.record_exception(another)
    still_open.end(end_time=T0_NS + 2 * NS_PER_MS)
    items = harness.tracker.collect()
    assert [(item.span, item.exception) for item in items] == [(still_open, early_error), (still_open, another)]
    assert harness.tracker.pending == 0


def test_exception_recorded_on_ended_span_is_ignored(tracer: Tracer, hooked: MakeHarness) -> None:
    """Guards a frozen span being counted (or stamped) although the SDK ignored the event."""
    harness = hooked()
    span = tracer.start_span("done")
    span.end()
    error = ValueError("too late")
    span.record_exception(error)
    assert harness.tracker.pending == 0
    assert stamp_of(error) is None
    assert _exception_events(span) == []


def test_no_linking_gives_unlinked_stamps_and_no_attribute(tracer: Tracer, hooked: MakeHarness) -> None:
    """Guards spans pointing at an event id that nobody will ever send."""
    harness = hooked(link=False)
    error = CheckoutFailed("no tracker")
    with pytest.raises(CheckoutFailed):
        with tracer.start_as_current_span("outer") as outer, tracer.start_as_current_span("inner") as inner:
            raise error
    stamp = _stamp(error)
    assert (stamp.event_id, stamp.state, stamp.suppressed_before) == (None, LinkState.UNLINKED, 0)
    assert stamp.origin is inner
    for span in (outer, inner):
        assert LINK not in _attributes(span)
    assert harness.tracker.collect() == [], "nothing owed an event: counted, not queued"
    assert [item.span for item in harness.counted] == [inner, outer]
    assert all(item.stamp is stamp for item in harness.counted)

    harness.link = True  # the exception keeps the decision made the first time it was seen
    later = tracer.start_span("later")
    later.record_exception(error)
    later.end()
    assert stamp_of(error) is stamp and stamp.state is LinkState.UNLINKED and stamp.origin is inner
    assert LINK not in _attributes(later)
    assert harness.limiter.suppressed_total == 0


@pytest.mark.parametrize("exception", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
def test_process_exits_are_not_tracked(tracer: Tracer, hooked: MakeHarness, exception: BaseException) -> None:
    """Guards Ctrl-C or sys.exit being reported to the error tracker as a failure."""
    harness = hooked()
    span = tracer.start_span("main")
    span.record_exception(exception)
    span.end()
    assert stamp_of(exception) is None
    assert LINK not in _attributes(span)
    assert [event["exception.type"] for event in _exception_events(span)] == [type(exception).__name__]
    assert harness.tracker.pending == 0
    assert harness.tracker.collect() == []
    assert harness.after_record_calls == 0


def test_max_pending_drops_and_counts_exactly(tracer: Tracer, hooked: MakeHarness) -> None:
    """Guards unbounded memory when many spans with exceptions stay open, and an inexact drop count."""
    harness = hooked(max_pending=3)
    span = tracer.start_span("batch")
    recorded = [ValueError(f"row {i}") for i in range(5)]
    for error in recorded:
        span.record_exception(error)
    assert harness.tracker.pending == 3
    assert harness.tracker.dropped == 2
    assert harness.after_record_calls == 3
    assert [_stamp(error).state for error in recorded] == [LinkState.PENDING] * 3 + [LinkState.UNLINKED] * 2
    assert [_stamp(error).event_id is None for error in recorded] == [False] * 3 + [True] * 2, "no event, no id"
    assert _attributes(span)[LINK] == _stamp(recorded[2]).event_id
    assert [item.exception for item in harness.counted] == recorded, "every error counted, queued or not"
    span.end()
    assert [item.exception for item in harness.tracker.collect()] == recorded[:3]

    other = tracer.start_span("next")
    for i in range(4):
        other.record_exception(ValueError(f"next {i}"))
    assert harness.tracker.pending == 3
    assert harness.tracker.dropped == 3


def test_rate_limited_exception_links_to_latest_admitted_event(tracer: Tracer, hooked: MakeHarness) -> None:
    """Guards a suppressed duplicate carrying no id (or a fresh id no event will have)."""
    harness = hooked(limit=1)
    first, second = _caught(0), _caught(0)
    spans = []
    for error in (first, second):
        with pytest.raises(ValueError):
            with tracer.start_as_current_span("GET /cart") as span:
                spans.append(span)
                raise error
    first_stamp, second_stamp = stamp_of(first), stamp_of(second)
    assert first_stamp is not None and second_stamp is not None
    assert first_stamp.state is LinkState.PENDING
    assert (second_stamp.event_id, second_stamp.state, second_stamp.suppressed_before) == (
        first_stamp.event_id, LinkState.SUPPRESSED, 0
    )
    assert (first_stamp.origin, second_stamp.origin) == (spans[0], spans[1])
    assert [_attributes(span)[LINK] for span in spans] == [first_stamp.event_id] * 2
    assert harness.limiter.suppressed_total == 1
    assert [item.stamp.state for item in harness.tracker.collect()] == [LinkState.PENDING], "only owed events wait"
    assert [item.exception for item in harness.counted] == [first, second]


def test_fingerprints_separate_lines_and_operations_through_tracker(tracer: Tracer, hooked: MakeHarness) -> None:
    """Guards distinct failures sharing one rate-limit budget."""
    hooked(limit=1)
    cases = [("GET /a", _caught(0)), ("GET /a", _caught(1)), ("GET /b", _caught(0)), ("GET /a", _caught(0))]
    for name, error in cases:
        span = tracer.start_span(name)
        span.record_exception(error)
        span.end()
    states = [_stamp(error).state for _, error in cases]
    assert states == [LinkState.PENDING, LinkState.PENDING, LinkState.PENDING, LinkState.SUPPRESSED]


def test_fingerprints_use_the_operation_name_with_ids_folded(tracer: Tracer, hooked: MakeHarness) -> None:
    """Guards an error storm spread over user ids (GET /users/1, /2, …) escaping the per-fingerprint rate limit."""
    hooked(limit=2)
    errors = [_caught(0) for _ in range(6)]
    for number, error in enumerate(errors):
        span = tracer.start_span(f"GET /users/{1000 + number}")
        span.record_exception(error)
        span.end()
    states = [_stamp(error).state for error in errors]
    assert states == [LinkState.PENDING] * 2 + [LinkState.SUPPRESSED] * 4


# --- handled client errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "attributes", "status", "expected"),
    [
        (SpanKind.SERVER, {"http.response.status_code": 404}, StatusCode.UNSET, True),
        (SpanKind.SERVER, {"http.response.status_code": 400}, StatusCode.UNSET, True),
        (SpanKind.SERVER, {"http.response.status_code": 499}, StatusCode.UNSET, True),
        (SpanKind.SERVER, {"http.response.status_code": 404}, StatusCode.OK, True),
        (SpanKind.SERVER, {"http.status_code": 404}, StatusCode.UNSET, True),
        (SpanKind.SERVER, {"http.response.status_code": 404}, StatusCode.ERROR, False),
        (SpanKind.SERVER, {"http.response.status_code": 500}, StatusCode.UNSET, False),
        (SpanKind.SERVER, {"http.response.status_code": 399}, StatusCode.UNSET, False),
        (SpanKind.SERVER, {"http.response.status_code": 500, "http.status_code": 404}, StatusCode.UNSET, False),
        (SpanKind.SERVER, {"http.response.status_code": "404"}, StatusCode.UNSET, False),
        (SpanKind.SERVER, {"http.response.status_code": True}, StatusCode.UNSET, False),
        (SpanKind.SERVER, {}, StatusCode.UNSET, False),
        (SpanKind.CLIENT, {"http.response.status_code": 404}, StatusCode.UNSET, False),
        (SpanKind.INTERNAL, {"http.response.status_code": 404}, StatusCode.UNSET, False),
    ],
)
def test_handled_client_error(
    tracer: Tracer, kind: SpanKind, attributes: dict[str, Any], status: StatusCode, expected: bool
) -> None:
    """Guards 404s being reported as failures, or real server errors being hidden as 'handled'."""
    span = tracer.start_span("GET /items/{id}", kind=kind, attributes=attributes)
    if status is not StatusCode.UNSET:
        span.set_status(Status(status))
    span.end()
    assert handled_client_error(_readable(span)) is expected


@pytest.mark.parametrize(
    ("status_code", "status", "linked"),
    [(404, StatusCode.UNSET, False), (404, StatusCode.ERROR, True), (500, StatusCode.UNSET, True)],
)
def test_handled_client_error_is_not_linked(
    tracer: Tracer, hooked: MakeHarness, status_code: int, status: StatusCode, linked: bool
) -> None:
    """Guards a handled 404 producing an error-tracker event (and a 500 not producing one)."""
    harness = hooked()
    span = tracer.start_span("GET /items/{id}", kind=SpanKind.SERVER)
    span.set_attribute("http.response.status_code", status_code)
    if status is not StatusCode.UNSET:
        span.set_status(Status(status))
    assert handled_client_error(_readable(span)) is not linked
    error = LookupError("no such item")
    span.record_exception(error)
    span.end()
    stamp = stamp_of(error)
    assert stamp is not None
    if linked:
        assert stamp.state is LinkState.PENDING and _is_event_id(stamp.event_id)
        assert _attributes(span)[LINK] == stamp.event_id
    else:
        assert (stamp.event_id, stamp.state) == (None, LinkState.DEFERRED), "an event only if it ends as an error"
        assert LINK not in _attributes(span)
    (item,) = harness.tracker.collect()  # counted either way
    assert item.stamp is stamp


# --- the record hook --------------------------------------------------------------------------------------------


def test_raising_tracker_never_reaches_the_app(
    tracer: Tracer, caplog: pytest.LogCaptureFixture, fresh_report_once: None
) -> None:
    """Guards otel-ext's own failure replacing the app's exception (or flooding the logs)."""
    caplog.set_level(logging.ERROR, logger=EXCEPTIONS_LOGGER)

    class BrokenTracker(ExceptionTracker):
        def on_record(self, span: Span, exception: BaseException) -> None:
            raise TrackerBroke("tracker bug")

    install_record_hook(BrokenTracker(FingerprintRateLimiter(), LINK, should_link=lambda: True))
    try:
        errors = [ValueError(f"app {i}") for i in range(3)]
        for error in errors:
            with pytest.raises(ValueError) as raised:
                with tracer.start_as_current_span("op") as span:
                    raise error
            assert raised.value is error
            assert [event["exception.message"] for event in _exception_events(span)] == [str(error)]
        direct = tracer.start_span("direct")
        direct.record_exception(KeyError("k"))  # returns normally
        direct.end()
    finally:
        install_record_hook(None)
    records = [r for r in caplog.records if r.name == EXCEPTIONS_LOGGER and r.levelno == logging.ERROR]
    assert len(records) == 1
    assert records[0].exc_info is not None and isinstance(records[0].exc_info[1], TrackerBroke)


def test_raising_after_record_keeps_item_and_app_exception(
    tracer: Tracer, caplog: pytest.LogCaptureFixture, fresh_report_once: None
) -> None:
    """Guards a failing wake-up callback losing the exception or leaking into the app."""
    caplog.set_level(logging.ERROR, logger=EXCEPTIONS_LOGGER)

    def after_record() -> None:
        raise AfterRecordBroke("worker gone")

    tracker = ExceptionTracker(FingerprintRateLimiter(), LINK, should_link=lambda: True, after_record=after_record)
    install_record_hook(tracker)
    try:
        error = ValueError("app")
        with pytest.raises(ValueError) as raised:
            with tracer.start_as_current_span("op"):
                raise error
        assert raised.value is error
    finally:
        install_record_hook(None)
    (item,) = tracker.collect()
    assert item.exception is error
    records = [r for r in caplog.records if r.name == EXCEPTIONS_LOGGER and r.levelno == logging.ERROR]
    assert len(records) == 1


def test_uninstalled_hook_stops_routing(tracer: Tracer, hooked: MakeHarness) -> None:
    """Guards exceptions still being stamped and queued after otel-ext was turned off."""
    harness = hooked()
    install_record_hook(None)
    error = ValueError("after uninstall")
    with pytest.raises(ValueError):
        with tracer.start_as_current_span("op") as span:
            raise error
    assert stamp_of(error) is None
    assert LINK not in _attributes(span)
    assert len(_exception_events(span)) == 1
    assert harness.tracker.pending == 0


def test_hook_is_installed_once_and_routes_to_latest_tracker(tracer: Tracer, hooked: MakeHarness) -> None:
    """Guards reinstalling wrapping the SDK method again (recording twice) or feeding a stale tracker."""
    first = hooked()
    wrapped = Span.record_exception
    second = hooked()
    assert Span.record_exception is wrapped
    assert wrapped.__name__ == "record_exception"
    span = tracer.start_span("op")
    span.record_exception(ValueError("once"), attributes={"app.key": "v"}, timestamp=T0_NS, escaped=True)
    span.end()
    (event,) = _readable(span).events
    assert event.timestamp == T0_NS
    assert event.attributes is not None
    assert (event.attributes["app.key"], event.attributes["exception.escaped"]) == ("v", "True")
    assert (first.tracker.pending, second.tracker.pending) == (0, 1)


def test_forked_child_starts_with_no_pending(tracer: Tracer, hooked: MakeHarness) -> None:
    """Guards a child process sending the parent's exceptions again."""
    harness = hooked()
    span = tracer.start_span("open in parent")
    span.record_exception(ValueError("parent"))

    def child() -> dict[str, Any]:
        return {"pending": harness.tracker.pending}

    assert run_in_child(child) == {"pending": 0}
    assert harness.tracker.pending == 1
    span.end()
    assert len(harness.tracker.collect()) == 1


# --- stamps -----------------------------------------------------------------------------------------------------


def test_stamp_round_trip() -> None:
    """Guards the shared stamp being copied (so SENT set by one reporter is not seen by others)."""
    error = ValueError("x")
    assert stamp_of(error) is None
    stamp = ExceptionStamp("a" * 32, LinkState.PENDING)
    assert set_stamp(error, stamp) is True
    assert stamp_of(error) is stamp
    stamp.state = LinkState.SENT
    assert _stamp(error).state is LinkState.SENT


def test_stamp_on_exception_refusing_attributes() -> None:
    """Guards an exotic exception class making the tracker raise."""
    error = Frozen("no attributes")
    assert set_stamp(error, ExceptionStamp(None, LinkState.UNLINKED)) is False
    assert stamp_of(error) is None


def test_foreign_value_under_stamp_name_is_not_a_stamp() -> None:
    """Guards a non-stamp value being used as a stamp."""
    error = ValueError("x")
    error.__otel_ext_stamp__ = "not a stamp"  # type: ignore[attr-defined]
    assert stamp_of(error) is None


def test_recorded_exception_is_frozen(tracer: Tracer) -> None:
    span = tracer.start_span("op")
    span.end()
    item = RecordedException(_readable(span), ValueError("x"), ExceptionStamp(None, LinkState.UNLINKED))
    with pytest.raises(AttributeError):
        item.span = _readable(span)  # type: ignore[misc]


# --- rate limiter -----------------------------------------------------------------------------------------------


def test_rate_limiter_admits_limit_then_suppresses() -> None:
    """Guards an error storm producing more than `limit` events, or losing the count of the rest."""
    clock = FakeClock()
    limiter = FingerprintRateLimiter(limit=10, interval_s=60.0, clock=clock)
    stamps = [limiter.stamp(("ValueError", "GET /", "app.py", 7)) for _ in range(1000)]
    admitted, suppressed = stamps[:10], stamps[10:]
    assert all(s.state is LinkState.PENDING and s.suppressed_before == 0 for s in admitted)
    ids = [s.event_id for s in admitted]
    assert len(set(ids)) == 10 and all(_is_event_id(i) for i in ids)
    assert suppressed == [ExceptionStamp(ids[-1], LinkState.SUPPRESSED, 0)] * 990
    assert limiter.suppressed_total == 990

    clock.now += 59.5
    assert limiter.stamp(("ValueError", "GET /", "app.py", 7)).state is LinkState.SUPPRESSED
    clock.now += 0.5  # exactly one interval after the window opened
    reopened = limiter.stamp(("ValueError", "GET /", "app.py", 7))
    assert reopened.state is LinkState.PENDING
    assert reopened.suppressed_before == 991
    assert reopened.event_id not in ids
    following = [limiter.stamp(("ValueError", "GET /", "app.py", 7)) for _ in range(14)]
    assert [s.state for s in following] == [LinkState.PENDING] * 9 + [LinkState.SUPPRESSED] * 5
    assert [s.suppressed_before for s in following[:9]] == [0] * 9
    assert {s.event_id for s in following[9:]} == {following[8].event_id}
    assert limiter.suppressed_total == 996

    clock.now += 60.0
    assert limiter.stamp(("ValueError", "GET /", "app.py", 7)).suppressed_before == 5


def test_rate_limiter_window_opens_at_first_error_after_interval() -> None:
    """Guards the window being anchored to the first error ever instead of the current window's first."""
    clock = FakeClock(0.0)
    limiter = FingerprintRateLimiter(limit=1, interval_s=60.0, clock=clock)
    assert limiter.stamp("f").state is LinkState.PENDING
    clock.now = 100.0
    assert limiter.stamp("f").state is LinkState.PENDING  # new window [100, 160)
    clock.now = 150.0
    assert limiter.stamp("f").state is LinkState.SUPPRESSED
    clock.now = 160.0
    reopened = limiter.stamp("f")
    assert (reopened.state, reopened.suppressed_before) == (LinkState.PENDING, 1)


def test_rate_limiter_fingerprints_have_separate_budgets() -> None:
    """Guards one noisy error silencing an unrelated one."""
    limiter = FingerprintRateLimiter(limit=2, interval_s=60.0, clock=FakeClock())
    states = [limiter.stamp(key).state for key in ["a", "a", "a", "b", "b", "b", "a"]]
    assert states == [LinkState.PENDING, LinkState.PENDING, LinkState.SUPPRESSED] * 2 + [LinkState.SUPPRESSED]
    assert limiter.suppressed_total == 3


def test_unlimited_rate_limiter_admits_everything() -> None:
    """Guards limit=None meaning 'suppress everything' or sharing ids."""
    limiter = FingerprintRateLimiter(limit=None, clock=FakeClock())
    stamps = [limiter.stamp("same") for _ in range(1000)]
    assert all(s.state is LinkState.PENDING and s.suppressed_before == 0 for s in stamps)
    assert len({s.event_id for s in stamps}) == 1000
    assert limiter.suppressed_total == 0


def test_rate_limiter_forgets_oldest_fingerprint() -> None:
    """Guards a storm of distinct errors growing memory without bound."""
    limiter = FingerprintRateLimiter(limit=1, max_fingerprints=2, clock=FakeClock())
    sequence = ["a", "a", "b", "c", "b", "a", "c", "b"]
    states = [limiter.stamp(key).state for key in sequence]
    pending, suppressed = LinkState.PENDING, LinkState.SUPPRESSED
    # c evicts a; b is still known; a comes back fresh and evicts b; c known; b fresh.
    assert states == [pending, suppressed, pending, pending, suppressed, pending, suppressed, pending]
    assert len(limiter._entries) == 2
    for i in range(100):
        limiter.stamp(f"distinct {i}")
    assert len(limiter._entries) == 2


def test_rate_limiter_is_exact_under_threads() -> None:
    """Guards concurrent requests admitting more than `limit` events."""
    limiter = FingerprintRateLimiter(limit=10, clock=FakeClock())
    results: list[list[ExceptionStamp]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def hammer(out: list[ExceptionStamp]) -> None:
        barrier.wait()
        out.extend(limiter.stamp("hot") for _ in range(500))

    threads = [threading.Thread(target=hammer, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5.0)
    stamps = [stamp for out in results for stamp in out]
    assert len(stamps) == 4000
    assert sum(s.state is LinkState.PENDING for s in stamps) == 10
    assert limiter.suppressed_total == 3990


# --- fingerprints and type names --------------------------------------------------------------------------------


def test_fingerprint_is_type_operation_and_raising_line() -> None:
    """Guards the fingerprint using the catching frame instead of the innermost (raising) one."""
    assert exception_fingerprint("GET /a", _caught(0)) == ("ValueError", "GET /a", __file__, FIRST_RAISE_LINE)
    assert exception_fingerprint("GET /a", _caught(1)) == ("ValueError", "GET /a", __file__, SECOND_RAISE_LINE)


def test_fingerprints_differ_by_line_and_span_name_only() -> None:
    """Guards distinct failures merging, or identical ones splitting."""
    same_line = [exception_fingerprint("GET /a", _caught(0)) for _ in range(3)]
    assert same_line[0] == same_line[1] == same_line[2]
    assert exception_fingerprint("GET /a", _caught(1)) != same_line[0]
    assert exception_fingerprint("GET /b", _caught(0)) != same_line[0]
    assert exception_fingerprint("GET /a", _caught(0)) == same_line[0]


def test_fingerprint_of_never_raised_exception() -> None:
    assert exception_fingerprint("op", KeyError("k")) == ("KeyError", "op", "", 0)


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (ValueError("x"), "ValueError"),
        (CheckoutFailed("x"), "tests.processors.test_exceptions.CheckoutFailed"),
        (Outer.InnerError("x"), "tests.processors.test_exceptions.Outer.InnerError"),
        (OSError(2, "missing"), "FileNotFoundError"),
    ],
)
def test_exception_type_name(tracer: Tracer, exception: BaseException, expected: str) -> None:
    """Guards the stats' exception type differing from the SDK's exception.type for the same error."""
    assert exception_type_name(exception) == expected
    span = tracer.start_span("op")
    span.record_exception(exception)
    span.end()
    assert [event["exception.type"] for event in _exception_events(span)] == [expected]
