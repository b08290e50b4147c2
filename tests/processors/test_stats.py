"""OperationStatsStore / OperationStatsProcessor fed by real SDK spans."""

from __future__ import annotations

import gc
import logging
import math
import os
import random
import sys
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

import processors
from processors import (
    OVERFLOW_OPERATION,
    IsolatingSpanProcessor,
    OperationStats,
    OperationStatsProcessor,
    OperationStatsStore,
    ThresholdRules,
)
from processors._internal.sketch import DEFAULT_SCALE, relative_accuracy
from tests.processors._support import (
    NS_PER_MS,
    T0_NS,
    Clock,
    emit,
    exact_quantile,
    provider_with,
    relative_error,
)
from tests.support.forking import run_in_child

PROMISED_ERROR = relative_accuracy(DEFAULT_SCALE)  # the bound README states
SECOND = 1_000_000_000
STATS_LOGGER = "processors._internal.stats"


def _only(stats: list[OperationStats]) -> OperationStats:
    assert len(stats) == 1, stats
    return stats[0]


def _set_status(code: StatusCode) -> Callable[[Span], None]:
    def configure(span: Span) -> None:
        if code is not StatusCode.UNSET:
            span.set_status(Status(code))

    return configure


def test_counts_errors_and_success_rate(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards OK or UNSET spans being counted as failures (or ERROR as success)."""
    codes = [StatusCode.ERROR] * 3 + [StatusCode.OK] * 4 + [StatusCode.UNSET] * 5
    for offset, code in enumerate(codes):
        emit(tracer, "GET /books", T0_NS - offset * 1000, 5 * NS_PER_MS, configure=_set_status(code))
    stats = _only(store.snapshot(60))
    assert (stats.service, stats.name, stats.kind) == ("checkout", "GET /books", "INTERNAL")
    assert stats.count == 12
    assert stats.error_count == 3
    assert stats.success_rate == 9 / 12


def test_percentiles_match_exact_nearest_rank(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards p50/p95/p99 drifting beyond 0.5 % or max being a bucket estimate."""
    rng = random.Random(1234)
    durations = [max(1, int(rng.lognormvariate(math.log(30 * NS_PER_MS), 1.0))) for _ in range(3000)]
    for offset, duration in enumerate(durations):
        emit(tracer, "checkout", T0_NS - offset, duration)
    stats = _only(store.snapshot(60))
    assert stats.count == 3000
    for attribute, quantile in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        exact_ms = exact_quantile(durations, quantile) / NS_PER_MS
        assert relative_error(getattr(stats, attribute), exact_ms) <= PROMISED_ERROR + 1e-9, attribute
    assert stats.max_ms == max(durations) / NS_PER_MS


def test_slow_count_uses_inclusive_threshold(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards the 1000 ms boundary span being missed (or 999 ms being counted)."""
    for offset, duration_ms in enumerate((1200, 1000, 999)):
        emit(tracer, "pay", T0_NS - offset, duration_ms * NS_PER_MS)
    stats = _only(store.snapshot(60))
    assert stats.slow_count == 2
    assert stats.slow_threshold_ms == 1000
    assert stats.max_ms == 1200.0


def test_slow_count_uses_override_for_operation(clock: Clock) -> None:
    """Guards per-operation glob overrides being ignored by the store."""
    store = OperationStatsStore(rules=ThresholdRules(1000, [("db.*", 100)]), clock=clock)
    tracer = provider_with(OperationStatsProcessor(store)).get_tracer("t")
    for duration_ms in (100, 99, 500):
        emit(tracer, "db.query", T0_NS, duration_ms * NS_PER_MS)
        emit(tracer, "http", T0_NS, duration_ms * NS_PER_MS)
    by_name = {stats.name: stats for stats in store.snapshot(60)}
    assert (by_name["db.query"].slow_count, by_name["db.query"].slow_threshold_ms) == (2, 100)
    assert (by_name["http"].slow_count, by_name["http"].slow_threshold_ms) == (0, 1000)


def test_operation_glob_filter(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards the monitor's name filter returning unrelated or missing operations."""
    counts = {"GET /books": 2, "GET /books/{id}": 3, "POST /books": 4, "GET /authors": 5}
    for name, count in counts.items():
        for offset in range(count):
            emit(tracer, name, T0_NS - offset, NS_PER_MS)
    assert [(s.name, s.count) for s in store.snapshot(60, operation="GET /books*")] == [
        ("GET /books", 2),
        ("GET /books/{id}", 3),
    ]
    assert [(s.name, s.count) for s in store.snapshot(60, operation="POST /books")] == [("POST /books", 4)]
    assert store.snapshot(60, operation="DELETE *") == []
    assert sum(s.count for s in store.snapshot(60)) == 14


def test_kind_filter_separates_same_name(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards SERVER and CLIENT spans of one name being merged or mis-filtered."""
    for offset in range(3):
        emit(tracer, "GET /books", T0_NS - offset, NS_PER_MS, kind=SpanKind.SERVER)
    for offset in range(5):
        emit(tracer, "GET /books", T0_NS - offset, NS_PER_MS, kind=SpanKind.CLIENT)
    assert [(s.kind, s.count) for s in store.snapshot(60)] == [("CLIENT", 5), ("SERVER", 3)]
    assert [(s.kind, s.count) for s in store.snapshot(60, kind=SpanKind.CLIENT)] == [("CLIENT", 5)]
    assert [(s.kind, s.count) for s in store.snapshot(60, kind=SpanKind.SERVER)] == [("SERVER", 3)]
    assert store.snapshot(60, kind=SpanKind.PRODUCER) == []


def test_window_includes_recent_slots_and_excludes_older(clock: Clock) -> None:
    """Guards stale spans leaking into 'last minute' stats, or recent ones missing."""
    store = OperationStatsStore(windows_s=(60, 300), clock=clock)
    tracer = provider_with(OperationStatsProcessor(store)).get_tracer("t")
    minute_slot, five_min_slot = 10 * SECOND, 50 * SECOND  # window / 6
    # now == T0 (a slot boundary): the 60 s window covers slots [T0-50s, T0+10s).
    ends = {
        "now": T0_NS,
        "oldest_kept_60": T0_NS - 5 * minute_slot,
        "just_older_60": T0_NS - 5 * minute_slot - 1,
        "oldest_kept_300": T0_NS - 5 * five_min_slot,
        "just_older_300": T0_NS - 5 * five_min_slot - 1,
    }
    for name, end in ends.items():
        emit(tracer, name, end, NS_PER_MS)
    assert {s.name: s.count for s in store.snapshot(60)} == {"now": 1, "oldest_kept_60": 1}
    assert {s.name: s.count for s in store.snapshot(300)} == {
        "now": 1, "oldest_kept_60": 1, "just_older_60": 1, "oldest_kept_300": 1,
    }
    # One slot later the oldest kept slot of the 60 s window slides out.
    clock.now_ns = T0_NS + minute_slot
    assert {s.name: s.count for s in store.snapshot(60)} == {"now": 1}
    clock.now_ns = T0_NS + minute_slot - 1
    assert {s.name: s.count for s in store.snapshot(60)} == {"now": 1, "oldest_kept_60": 1}


def test_ring_slot_reuse_discards_old_slot(clock: Clock) -> None:
    """Guards a reused ring slot adding a stale slot's counts into the current one."""
    store = OperationStatsStore(windows_s=(60, 300), clock=clock)
    tracer = provider_with(OperationStatsProcessor(store)).get_tracer("t")
    minute_slot = 10 * SECOND
    emit(tracer, "op", T0_NS - 6 * minute_slot, 7 * NS_PER_MS, configure=_set_status(StatusCode.ERROR))
    emit(tracer, "op", T0_NS, 3 * NS_PER_MS)  # same ring position, 6 slots later
    minute = _only(store.snapshot(60))
    assert (minute.count, minute.error_count, minute.max_ms) == (1, 0, 3.0)
    five = _only(store.snapshot(300))
    assert (five.count, five.error_count, five.max_ms) == (2, 1, 7.0)
    # A late span for the replaced slot must not resurrect it in the 60 s ring.
    emit(tracer, "op", T0_NS - 6 * minute_slot + 1, 9 * NS_PER_MS)
    assert _only(store.snapshot(60)).count == 1
    assert _only(store.snapshot(300)).count == 3


def test_overflow_caps_operations_and_warns_once(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """Guards unbounded memory from high-cardinality span names, and log floods."""
    store = OperationStatsStore(max_operations=3, clock=clock)
    tracer = provider_with(OperationStatsProcessor(store)).get_tracer("t")
    caplog.set_level(logging.WARNING, logger=STATS_LOGGER)
    for number in range(10):
        for offset in range(number + 1):  # op-N gets N+1 spans
            emit(tracer, f"op-{number}", T0_NS - offset, NS_PER_MS)
    stats = {s.name: s for s in store.snapshot(60)}
    assert {name: s.count for name, s in stats.items()} == {
        "op-0": 1, "op-1": 2, "op-2": 3, OVERFLOW_OPERATION: sum(range(4, 11)),
    }
    assert stats[OVERFLOW_OPERATION].kind == "INTERNAL", "the overflow row keeps the spans' kind"
    warnings = [r for r in caplog.records if r.name == STATS_LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert OVERFLOW_OPERATION in warnings[0].getMessage()
    assert "3" in warnings[0].getMessage()


def test_overflowed_span_uses_its_own_threshold(clock: Clock) -> None:
    """Guards overflowed 'db.*' spans losing their 100 ms override in slow_count."""
    store = OperationStatsStore(rules=ThresholdRules(1000, [("db.*", 100)]), max_operations=1, clock=clock)
    tracer = provider_with(OperationStatsProcessor(store)).get_tracer("t")
    emit(tracer, "http", T0_NS, NS_PER_MS)
    emit(tracer, "db.query", T0_NS, 500 * NS_PER_MS)  # overflows; slow under its own 100 ms rule
    overflow = {s.name: s for s in store.snapshot(60)}[OVERFLOW_OPERATION]
    assert overflow.count == 1
    assert overflow.slow_count == 1
    assert overflow.slow_threshold_ms is None, "no single threshold applies to the overflow row"


def test_overflow_keeps_span_kind_so_kind_filters_stay_exact(clock: Clock) -> None:
    """Guards overflowed server calls vanishing from ?kind=server."""
    store = OperationStatsStore(max_operations=2, clock=clock)
    tracer = provider_with(OperationStatsProcessor(store)).get_tracer("t")
    for number in range(6):
        emit(tracer, f"GET /item-{number}", T0_NS, NS_PER_MS, kind=SpanKind.SERVER)
    emit(tracer, "SELECT", T0_NS, NS_PER_MS, kind=SpanKind.CLIENT)
    servers = store.snapshot(60, kind=SpanKind.SERVER)
    assert sum(s.count for s in servers) == 6
    assert {(s.name, s.count) for s in servers} == {("GET /item-0", 1), ("GET /item-1", 1), (OVERFLOW_OPERATION, 4)}
    assert [(s.name, s.kind, s.count) for s in store.snapshot(60, kind=SpanKind.CLIENT)] == [
        (OVERFLOW_OPERATION, "CLIENT", 1)
    ]


@pytest.mark.parametrize("windows", [(7, 60), (61, 300), (30, 45, 3600)])
def test_windows_that_do_not_divide_each_other_are_exact(clock: Clock, windows: tuple[int, ...]) -> None:
    """Guards slot arithmetic for windows whose sixths are not whole seconds or share no divisor."""
    store = OperationStatsStore(windows_s=windows, clock=clock)
    tracer = provider_with(OperationStatsProcessor(store)).get_tracer("t")
    # Exact slot of a window of W seconds: floor(end_s * 6 / W); kept: the current slot and the 5 before it.
    ends = [T0_NS - offset * SECOND // 10 for offset in range(0, 2 * 10 * max(windows), 7)]
    for end in ends:
        emit(tracer, "op", end, NS_PER_MS)
    for window in windows:
        current = T0_NS * 6 // (window * SECOND)
        expected = sum(1 for end in ends if end * 6 // (window * SECOND) >= current - 5)
        assert _only(store.snapshot(window)).count == expected, window


def test_slowest_spans_top5_with_trace_ids(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards 'jump to trace' links pointing at the wrong or unordered spans."""
    rng = random.Random(99)
    durations_ms = rng.sample(range(1, 10_000), 40)
    expected: list[tuple[float, str, str, int]] = []
    for index, duration_ms in enumerate(durations_ms):
        end = T0_NS - (index % 6) * 10 * SECOND  # spread over all six slots of the 60 s window
        span = emit(tracer, "search", end, duration_ms * NS_PER_MS)
        context = span.get_span_context()
        expected.append((float(duration_ms), f"{context.trace_id:032x}", f"{context.span_id:016x}", end))
    expected.sort(reverse=True)
    stats = _only(store.snapshot(60))
    got = [(s.duration_ms, s.trace_id, s.span_id, s.end_time_unix_nano) for s in stats.slowest]
    assert got == expected[:5]
    assert all(len(s.trace_id) == 32 and len(s.span_id) == 16 for s in stats.slowest)
    assert stats.max_ms == expected[0][0]


def test_concurrent_recording_loses_nothing(clock: Clock) -> None:
    """Guards lost or double-counted spans when many threads end spans at once."""
    store = OperationStatsStore(clock=clock)
    provider = provider_with(OperationStatsProcessor(store))
    tracer = provider.get_tracer("t")
    threads_n, per_thread = 8, 5000
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def work(thread_index: int) -> None:
        try:
            barrier.wait()
            for number in range(per_thread):
                emit(tracer, f"op-{(thread_index + number) % 4}", T0_NS - number, 1000 + number)
                if number % 997 == 0:
                    store.snapshot(3600)  # readers interleaved with writers
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        workers = [threading.Thread(target=work, args=(index,)) for index in range(threads_n)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
    finally:
        sys.setswitchinterval(old_interval)
    assert not errors
    assert not any(worker.is_alive() for worker in workers)
    stats = store.snapshot(3600)
    assert {s.name: s.count for s in stats} == {f"op-{k}": threads_n * per_thread // 4 for k in range(4)}
    assert sum(s.count for s in stats) == 40_000
    assert sum(s.count for s in store.snapshot(60)) == 40_000


def test_spans_that_never_end_leave_no_state(clock: Clock) -> None:
    """Guards per-span state kept from on_start leaking when spans are abandoned."""
    store = OperationStatsStore(clock=clock)
    isolating = IsolatingSpanProcessor()
    provider = TracerProvider(active_span_processor=isolating)
    provider.add_span_processor(OperationStatsProcessor(store))
    tracer = provider.get_tracer("t")
    package_dir = str(Path(processors.__file__).parent)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        spans = [tracer.start_span(f"op-{n % 50}", start_time=T0_NS) for n in range(50_000)]
        assert all(span.is_recording() for span in spans)
        del spans
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    only_package = [tracemalloc.Filter(True, os.path.join(package_dir, "*"))]
    growth = sum(
        stat.size_diff for stat in after.filter_traces(only_package).compare_to(before.filter_traces(only_package), "filename")
    )
    assert growth < 1_000_000
    assert len(store._pending) == 0  # noqa: SLF001
    assert store._operations == {}  # noqa: SLF001
    assert store.snapshot(3600) == []


def test_fifteen_minute_span_is_slow(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards very long spans (batch jobs) overflowing a bucket or window and vanishing."""
    emit(tracer, "nightly-export", T0_NS, 15 * 60 * SECOND)
    for window in (60, 300, 900, 3600):
        stats = _only(store.snapshot(window))
        assert (stats.count, stats.slow_count, stats.max_ms) == (1, 1, 900_000.0)
        assert stats.p99_ms == 900_000.0


def test_service_name_taken_from_resource(store: OperationStatsStore) -> None:
    """Guards two services' operations being merged under one name."""
    for service, count in (("orders", 2), ("billing", 3)):
        tracer = provider_with(OperationStatsProcessor(store), service=service).get_tracer("t")
        for offset in range(count):
            emit(tracer, "GET /x", T0_NS - offset, NS_PER_MS)
    assert [(s.service, s.count) for s in store.snapshot(60)] == [("billing", 3), ("orders", 2)]


def test_forked_child_store_starts_empty(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards pre-fork workers re-reporting the parent's spans as their own."""
    for offset in range(10):  # fewer than a drain batch: some still pending at fork time
        emit(tracer, "parent-op", T0_NS - offset, NS_PER_MS)

    def child() -> dict[str, object]:
        empty_at_start = store.snapshot(3600) == [] and len(store._pending) == 0  # noqa: SLF001
        emit(tracer, "child-op", T0_NS, 2 * NS_PER_MS)
        return {
            "empty_at_start": empty_at_start,
            "after": [(s.name, s.count) for s in store.snapshot(3600)],
        }

    result = run_in_child(child)
    assert result == {"empty_at_start": True, "after": [["child-op", 1]]}
    assert [(s.name, s.count) for s in store.snapshot(3600)] == [("parent-op", 10)]


def test_unknown_window_rejected(store: OperationStatsStore) -> None:
    """Guards a typo'd window silently returning another window's data."""
    with pytest.raises(ValueError):
        store.snapshot(120)
    with pytest.raises(ValueError):
        OperationStatsStore(windows_s=(5,))


def test_exact_name_with_glob_characters_is_found(tracer: Tracer, store: OperationStatsStore) -> None:
    """Guards names like 'GET /items/[id]' being unreachable because '[id]' reads as a glob class."""
    emit(tracer, "GET /items/[id]", T0_NS, NS_PER_MS)
    emit(tracer, "GET /items/i", T0_NS, NS_PER_MS)
    assert [s.name for s in store.snapshot(60, operation="GET /items/[id]")] == ["GET /items/[id]", "GET /items/i"]
    assert [s.name for s in store.snapshot(60, operation="GET /items/[[]id]")] == ["GET /items/[id]"]
