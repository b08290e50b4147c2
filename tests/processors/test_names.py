"""replace_ids: span names with ids in their path count as one operation; other names stay as they are."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.trace import SpanKind

from processors import OperationStatsProcessor, OperationStatsStore
from processors._internal.names import replace_ids
from tests.processors._support import NS_PER_MS, T0_NS, emit, provider_with


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("GET /users/8a7f3c2e-1b4d-4c5e-9f00-123456789abc", "GET /users/{id}"),  # UUID
        ("GET /users/8a7f3c2e1b4d4c5e9f00123456789abc/orders", "GET /users/{id}/orders"),  # UUID without dashes
        ("GET /users/42/orders/7", "GET /users/{id}/orders/{id}"),  # numbers
        ("GET /blobs/deadbeef12", "GET /blobs/{id}"),  # hex with a digit
        ("GET /share/AbCdEfGh12345678xyz", "GET /share/{id}"),  # opaque token, letters and digits
        ("GET /users/42?expand=orders", "GET /users/{id}"),  # the query string goes too
        ("/orders/2024", "/orders/{id}"),  # no method: still a path
    ],
)
def test_id_segments_become_a_placeholder(name: str, expected: str) -> None:
    """Guards one operation per user id: each folds out of the monitor into otel_ext.overflow."""
    assert replace_ids(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "SELECT orders",  # no path at all
        "GET /api/v2/items",  # short version segments are words, not ids
        "GET /files/report.pdf",
        "GET /users/{id}",  # already a template
        "GET /books/<int:book_id>",  # Flask's route template
        "GET /cafe",  # hex letters but no digit: a word
        "GET /",
        "HTTP GET",
        "GET /products/summer-sale",
    ],
)
def test_names_without_ids_are_unchanged(name: str) -> None:
    """Guards folding real operation names together (two routes reported as one)."""
    assert replace_ids(name) == name


def test_store_counts_uuid_paths_under_one_operation_and_keeps_aliases_bounded() -> None:
    """Guards 10 000 raw URL names costing 10 000 operations (or unbounded memory for their aliases)."""
    store = OperationStatsStore(max_operations=10, clock=lambda: T0_NS)
    provider = provider_with(OperationStatsProcessor(store))
    tracer = provider.get_tracer("tests.names")
    for number in range(1_000):
        emit(tracer, f"GET /users/{uuid.UUID(int=number)}", T0_NS, NS_PER_MS, kind=SpanKind.SERVER)
    emit(tracer, "GET /health", T0_NS, NS_PER_MS, kind=SpanKind.SERVER)
    provider.shutdown()
    counts = {stats.name: stats.count for stats in store.snapshot(60)}
    assert counts == {"GET /users/{id}": 1_000, "GET /health": 1}
    assert len(store._aliases) == 10 * 10  # noqa: SLF001 - remembered raw names stop at their bound


def test_folding_can_be_turned_off() -> None:
    """Guards OTEL_EXT_FOLD_NAME_IDS=false being ignored for apps whose numeric segments are real names."""
    store = OperationStatsStore(fold_ids=False, clock=lambda: T0_NS)
    provider = provider_with(OperationStatsProcessor(store))
    tracer = provider.get_tracer("tests.names")
    for year in (2023, 2024):
        emit(tracer, f"GET /reports/{year}", T0_NS, NS_PER_MS)
    provider.shutdown()
    assert sorted(stats.name for stats in store.snapshot(60)) == ["GET /reports/2023", "GET /reports/2024"]
