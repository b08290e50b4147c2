"""ErrorStatsStore fed with exceptions recorded on real, ended SDK spans."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import Tracer

from processors._internal.error_stats import ErrorGroupStats, ErrorStatsStore
from processors._internal.exceptions import ExceptionStamp, LinkState, RecordedException
from tests.processors._support import NS_PER_MS, T0_NS, provider_with

SECOND = 1_000_000_000
OVERFLOW = "otel_ext.overflow"


class PaymentDeclined(Exception):
    pass


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


@pytest.fixture
def providers() -> Iterator[dict[str, TracerProvider]]:
    made = {service: provider_with(service=service) for service in ("checkout", "billing")}
    yield made
    for provider in made.values():
        provider.shutdown()


@pytest.fixture
def tracer(providers: dict[str, TracerProvider]) -> Tracer:
    return providers["checkout"].get_tracer("tests.error_stats")


def _ended(tracer: Tracer, name: str, end_ns: int) -> ReadableSpan:
    span = tracer.start_span(name, start_time=end_ns - NS_PER_MS)
    span.end(end_time=end_ns)
    assert isinstance(span, ReadableSpan)
    return span


def _item(span: ReadableSpan, exception: BaseException, event_id: str | None = None) -> RecordedException:
    state = LinkState.UNLINKED if event_id is None else LinkState.PENDING
    return RecordedException(span, exception, ExceptionStamp(event_id, state))


def _record(
    store: ErrorStatsStore, tracer: Tracer, name: str, end_ns: int, exception: BaseException,
    event_id: str | None = None,
) -> ReadableSpan:
    span = _ended(tracer, name, end_ns)
    store.record(_item(span, exception, event_id))
    return span


def _ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.context
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _counts(stats: list[ErrorGroupStats]) -> list[tuple[str, str, str, int]]:
    return [(s.service, s.operation, s.exception_type, s.count) for s in stats]


def test_counts_per_service_operation_and_type(providers: dict[str, TracerProvider], tracer: Tracer) -> None:
    """Guards different failures (or services) merging into one count, or the order not being by frequency."""
    store = ErrorStatsStore()
    billing = providers["billing"].get_tracer("tests.error_stats")
    for i in range(3):
        _record(store, tracer, "GET /a", T0_NS - i * SECOND, ValueError("bad"))
    for i in range(2):
        _record(store, tracer, "GET /a", T0_NS - i * SECOND, PaymentDeclined("no"))
    _record(store, tracer, "GET /b", T0_NS, ValueError("bad"))
    _record(store, billing, "GET /a", T0_NS, ValueError("bad"))
    assert _counts(store.snapshot(60, now_ns=T0_NS)) == [
        ("checkout", "GET /a", "ValueError", 3),
        ("checkout", "GET /a", "tests.processors.test_error_stats.PaymentDeclined", 2),
        ("billing", "GET /a", "ValueError", 1),
        ("checkout", "GET /b", "ValueError", 1),
    ]


def test_first_last_seen_and_latest_ids(tracer: Tracer) -> None:
    """Guards the group pointing at an old trace/event instead of the newest one."""
    store = ErrorStatsStore()
    _record(store, tracer, "POST /pay", T0_NS - 40 * SECOND, PaymentDeclined("card 1"), "1" * 32)
    _record(store, tracer, "POST /pay", T0_NS - 20 * SECOND, PaymentDeclined("card 2"), "2" * 32)
    newest = _record(store, tracer, "POST /pay", T0_NS - 5 * SECOND, PaymentDeclined("card 3"), None)
    (stats,) = store.snapshot(60, now_ns=T0_NS)
    trace_id, span_id = _ids(newest)
    assert stats == ErrorGroupStats(
        service="checkout",
        operation="POST /pay",
        exception_type="tests.processors.test_error_stats.PaymentDeclined",
        count=3,
        first_seen_unix_nano=T0_NS - 40 * SECOND,
        last_seen_unix_nano=T0_NS - 5 * SECOND,
        latest_message="card 3",
        latest_trace_id=trace_id,
        latest_span_id=span_id,
        latest_event_id=None,
    )
    assert stats.as_dict() == {
        "service": "checkout",
        "operation": "POST /pay",
        "exception_type": "tests.processors.test_error_stats.PaymentDeclined",
        "count": 3,
        "first_seen_unix_nano": T0_NS - 40 * SECOND,
        "last_seen_unix_nano": T0_NS - 5 * SECOND,
        "latest_message": "card 3",
        "latest_trace_id": trace_id,
        "latest_span_id": span_id,
        "latest_event_id": None,
    }


def test_latest_event_id_follows_newest_span(tracer: Tracer) -> None:
    store = ErrorStatsStore()
    _record(store, tracer, "op", T0_NS - 2 * SECOND, ValueError("a"), "a" * 32)
    _record(store, tracer, "op", T0_NS - SECOND, ValueError("b"), "b" * 32)
    (stats,) = store.snapshot(60, now_ns=T0_NS)
    assert (stats.latest_message, stats.latest_event_id) == ("b", "b" * 32)


def test_default_window_edges(tracer: Tracer) -> None:
    """Guards off-by-one slot errors at both ends of a window (10 s slots for the default windows)."""
    store = ErrorStatsStore()
    now = T0_NS + 9 * SECOND  # same 10 s slot as T0: the 60 s window is [T0 - 50 s, T0 + 10 s)
    _record(store, tracer, "op", T0_NS - 50 * SECOND, ValueError("oldest in"))
    _record(store, tracer, "op", T0_NS - 50 * SECOND - 1, ValueError("just out"))
    _record(store, tracer, "op", T0_NS + 10 * SECOND - 1, ValueError("newest in"))
    _record(store, tracer, "later", T0_NS + 10 * SECOND, ValueError("next slot"))
    (minute,) = store.snapshot(60, now_ns=now)
    assert (minute.operation, minute.count) == ("op", 2)
    assert (minute.first_seen_unix_nano, minute.last_seen_unix_nano) == (T0_NS - 50 * SECOND, T0_NS + 10 * SECOND - 1)
    (five,) = store.snapshot(300, now_ns=now)
    assert (five.count, five.first_seen_unix_nano) == (3, T0_NS - 50 * SECOND - 1)
    # the 300 s window is [T0 - 290 s, T0 + 10 s)
    _record(store, tracer, "op", T0_NS - 290 * SECOND, ValueError("in 300"))
    _record(store, tracer, "op", T0_NS - 290 * SECOND - 1, ValueError("out of 300"))
    assert _counts(store.snapshot(300, now_ns=now)) == [("checkout", "op", "ValueError", 4)]
    assert _counts(store.snapshot(3600, now_ns=now)) == [("checkout", "op", "ValueError", 5)]
    assert _counts(store.snapshot(60, now_ns=T0_NS + 10 * SECOND)) == [
        ("checkout", "later", "ValueError", 1),
        ("checkout", "op", "ValueError", 1),
    ]


def test_slot_width_is_gcd_of_windows_over_six(tracer: Tracer) -> None:
    """Guards slots sized from one window only (gcd(30, 45) = 15 s, so 2.5 s slots)."""
    store = ErrorStatsStore(windows_s=(45, 30))
    _record(store, tracer, "op", T0_NS - 27_500 * NS_PER_MS, ValueError("in 30"))
    _record(store, tracer, "op", T0_NS - 27_500 * NS_PER_MS - 1, ValueError("out of 30"))
    _record(store, tracer, "op", T0_NS - 42_500 * NS_PER_MS, ValueError("in 45"))
    _record(store, tracer, "op", T0_NS - 42_500 * NS_PER_MS - 1, ValueError("out of 45"))
    (thirty,) = store.snapshot(30, now_ns=T0_NS)
    assert (thirty.count, thirty.first_seen_unix_nano) == (1, T0_NS - 27_500 * NS_PER_MS)
    (forty_five,) = store.snapshot(45, now_ns=T0_NS)
    assert (forty_five.count, forty_five.first_seen_unix_nano) == (3, T0_NS - 42_500 * NS_PER_MS)


def test_overflow_group_beyond_max_groups(tracer: Tracer) -> None:
    """Guards unbounded memory from many distinct error groups, and existing groups freezing at the limit."""
    store = ErrorStatsStore(max_groups=2)
    _record(store, tracer, "GET /a", T0_NS - 3 * SECOND, ValueError("a"))
    _record(store, tracer, "GET /b", T0_NS - 3 * SECOND, KeyError("b"))
    _record(store, tracer, "GET /c", T0_NS - 2 * SECOND, TypeError("c"), "c" * 32)
    last = _record(store, tracer, "GET /a", T0_NS - SECOND, TypeError("a as type"), "d" * 32)
    _record(store, tracer, "GET /a", T0_NS - SECOND, ValueError("a again"))
    _record(store, tracer, "GET /b", T0_NS - SECOND, KeyError("b again"))
    stats = store.snapshot(60, now_ns=T0_NS)
    assert _counts(stats) == [
        ("checkout", "GET /a", "ValueError", 2),
        ("checkout", "GET /b", "KeyError", 2),
        ("checkout", OVERFLOW, OVERFLOW, 2),
    ]
    overflow = stats[2]
    assert (overflow.first_seen_unix_nano, overflow.last_seen_unix_nano) == (T0_NS - 2 * SECOND, T0_NS - SECOND)
    assert (overflow.latest_message, overflow.latest_event_id) == ("a as type", "d" * 32)
    assert (overflow.latest_trace_id, overflow.latest_span_id) == _ids(last)
    assert _counts(store.snapshot(60, operation=OVERFLOW, now_ns=T0_NS)) == [("checkout", OVERFLOW, OVERFLOW, 2)]


def test_late_spans_are_counted_in_their_own_slot(tracer: Tracer) -> None:
    """Guards out-of-order spans landing in the wrong slot or replacing the newest error's ids."""
    store = ErrorStatsStore()
    newest = _record(store, tracer, "op", T0_NS - 5 * SECOND, ValueError("newest"), "n" * 32)
    _record(store, tracer, "op", T0_NS - 35 * SECOND, ValueError("late, old slot"), "o" * 32)
    _record(store, tracer, "op", T0_NS - 25 * SECOND, ValueError("late, middle slot"), "m" * 32)
    _record(store, tracer, "op", T0_NS - 9 * SECOND, ValueError("late, same slot"), "s" * 32)
    (stats,) = store.snapshot(60, now_ns=T0_NS)
    assert stats.count == 4
    assert (stats.first_seen_unix_nano, stats.last_seen_unix_nano) == (T0_NS - 35 * SECOND, T0_NS - 5 * SECOND)
    assert (stats.latest_message, stats.latest_event_id) == ("newest", "n" * 32)
    assert (stats.latest_trace_id, stats.latest_span_id) == _ids(newest)
    # 20 s later the 60 s window is [T0 - 30 s, T0 + 30 s): the slot of the T0 - 35 s span fell out.
    (later,) = store.snapshot(60, now_ns=T0_NS + 20 * SECOND)
    assert (later.count, later.first_seen_unix_nano) == (3, T0_NS - 25 * SECOND)
    # At T0 + 40 s only the slot [T0 - 10 s, T0) is left: its first error arrived after its last.
    (last_slot,) = store.snapshot(60, now_ns=T0_NS + 40 * SECOND)
    assert (last_slot.count, last_slot.first_seen_unix_nano, last_slot.last_seen_unix_nano) == (
        2, T0_NS - 9 * SECOND, T0_NS - 5 * SECOND
    )
    _record(store, tracer, "op", T0_NS - SECOND, ValueError("in order again"), "i" * 32)
    (again,) = store.snapshot(60, now_ns=T0_NS)
    assert (again.count, again.last_seen_unix_nano, again.latest_event_id) == (5, T0_NS - SECOND, "i" * 32)


def test_old_slots_are_dropped(tracer: Tracer) -> None:
    """Guards memory growing with uptime: only the longest window's slots are kept."""
    store = ErrorStatsStore()
    for i in range(1000):
        _record(store, tracer, "op", T0_NS + i * 10 * SECOND, ValueError("tick"))
    now = T0_NS + 999 * 10 * SECOND
    assert _counts(store.snapshot(3600, now_ns=now)) == [("checkout", "op", "ValueError", 360)]
    assert _counts(store.snapshot(60, now_ns=now)) == [("checkout", "op", "ValueError", 6)]
    (group,) = store._groups.values()
    assert len(group.slots) == 360


def test_late_span_slot_is_dropped_when_it_ages_out(tracer: Tracer) -> None:
    """Guards a late span's slot, filed out of order, surviving forever (memory) because pruning stops early."""
    store = ErrorStatsStore()
    _record(store, tracer, "op", T0_NS, ValueError("now"))
    _record(store, tracer, "op", T0_NS - 3000 * SECOND, ValueError("late and old"))
    _record(store, tracer, "op", T0_NS + 700 * SECOND, ValueError("later"))  # keeps slots from T0 - 2890 s on
    (group,) = store._groups.values()
    assert [slot[1] for slot in group.slots] == [1, 1]
    (stats,) = store.snapshot(3600, now_ns=T0_NS + 700 * SECOND)
    assert (stats.count, stats.first_seen_unix_nano) == (2, T0_NS)


def test_exception_with_failing_str_still_counts(tracer: Tracer) -> None:
    """Guards an exception whose __str__ raises breaking statistics (or being dropped)."""
    store = ErrorStatsStore()
    _record(store, tracer, "op", T0_NS, UnprintableError())
    (stats,) = store.snapshot(60, now_ns=T0_NS)
    assert stats.count == 1
    assert stats.exception_type == "tests.processors.test_error_stats.UnprintableError"
    assert stats.latest_message == "<UnprintableError: str() failed>"


def test_long_message_is_truncated(tracer: Tracer) -> None:
    store = ErrorStatsStore()
    _record(store, tracer, "op", T0_NS, ValueError("x" * 300))
    (stats,) = store.snapshot(60, now_ns=T0_NS)
    assert stats.latest_message == "x" * 200


def test_operation_filter_exact_and_glob(tracer: Tracer) -> None:
    """Guards names with glob characters being unreachable, and globs not matching."""
    store = ErrorStatsStore()
    _record(store, tracer, "GET /items/[id]", T0_NS, ValueError("x"))
    _record(store, tracer, "GET /users", T0_NS, ValueError("x"))
    _record(store, tracer, "POST /users", T0_NS, ValueError("x"))
    assert [s.operation for s in store.snapshot(60, operation="GET /items/[id]", now_ns=T0_NS)] == ["GET /items/[id]"]
    assert [s.operation for s in store.snapshot(60, operation="GET *", now_ns=T0_NS)] == [
        "GET /items/[id]",
        "GET /users",
    ]
    assert store.snapshot(60, operation="DELETE *", now_ns=T0_NS) == []


def test_snapshot_defaults_to_wall_clock(tracer: Tracer) -> None:
    store = ErrorStatsStore()
    assert store.snapshot(60) == []
    _record(store, tracer, "op", time.time_ns(), ValueError("now"))
    assert _counts(store.snapshot(60)) == [("checkout", "op", "ValueError", 1)]


@pytest.mark.parametrize(("fold_ids", "groups"), [(True, 1), (False, 600)])
def test_errors_group_under_the_operation_name_with_ids_folded(tracer: Tracer, fold_ids: bool, groups: int) -> None:
    """Guards 600 user ids filling the group cap and hiding a real failure of another operation in overflow."""
    store = ErrorStatsStore(windows_s=(60,), max_groups=1000, fold_ids=fold_ids)
    for number in range(600):
        _record(store, tracer, f"GET /users/{1000 + number}", T0_NS, PaymentDeclined("declined"))
    _record(store, tracer, "POST /pay", T0_NS, ConnectionError("down"))
    found = store.snapshot(60, now_ns=T0_NS)
    assert len(found) == groups + 1
    assert {(group.operation, group.count) for group in found if group.operation != "POST /pay"} == (
        {("GET /users/{id}", 600)} if fold_ids else {(f"GET /users/{1000 + number}", 1) for number in range(600)}
    )
    (pay,) = [group for group in found if group.operation == "POST /pay"]
    assert (pay.exception_type, pay.count) == ("ConnectionError", 1)
    # A raw name copied from a trace finds its operation.
    assert [group.count for group in store.snapshot(60, operation="GET /users/1042", now_ns=T0_NS)] == (
        [600] if fold_ids else [1]
    )
