"""replace_ids: span names with ids in their path count as one operation; other names stay as they are."""

from __future__ import annotations

import time
import uuid

import pytest
from opentelemetry.trace import SpanKind

from processors import OperationStatsProcessor, OperationStatsStore, ThresholdRules
from processors._internal.names import replace_ids
from tests.processors._support import NS_PER_MS, T0_NS, emit, provider_with

_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

FOLDED = [
    ("GET /users/8a7f3c2e-1b4d-4c5e-9f00-123456789abc", "GET /users/{id}"),  # UUID
    ("GET /users/8a7f3c2e1b4d4c5e9f00123456789abc/orders", "GET /users/{id}/orders"),  # UUID without dashes
    ("GET /users/42/orders/7", "GET /users/{id}/orders/{id}"),  # numbers
    ("GET /blobs/deadbeef12", "GET /blobs/{id}"),  # hex with a digit
    ("GET /share/AbCdEfGh12345678xyz", "GET /share/{id}"),  # opaque token, both cases and digits
    ("GET /customers/cus_NffrFeUfNV2Hib", "GET /customers/{id}"),  # prefixed opaque token
    ("GET /keys/k3j4h5g6f7d8s9a0q1w2", "GET /keys/{id}"),  # lower-case token, 4+ digits
    ("GET /events/01ARZ3NDEKTSV4RRFFQ69G5FAV", "GET /events/{id}"),  # ULID
    (f"GET /verify/{_JWT}", "GET /verify/{id}"),  # JWT
    ("GET /orders/ORD-1234", "GET /orders/{id}"),  # business key: prefix, dash, digits
    ("GET /invoices/INV20240001", "GET /invoices/{id}"),  # business key: capitals, digits
    ("GET /peers/2001:db8::1", "GET /peers/{id}"),  # IPv6
    ("GET /peers/fe80::1ff:fe23:4567:890a", "GET /peers/{id}"),  # IPv6
    ("GET /v1/accounts/ACCT_0001234", "GET /v1/accounts/{id}"),  # business key: prefix, underscore, digits
    ("GET /invoices/INV20240001", "GET /invoices/{id}"),  # business key without separator
    ("GET /reports/2024-01-15", "GET /reports/{id}"),  # date
    ("GET /reports/2024-01-15T10:00:00Z", "GET /reports/{id}"),  # ISO 8601 timestamp
    ("GET /reports/2024-01-15T10:00:00.000+02:00", "GET /reports/{id}"),
    ("GET /slots/12:30:00", "GET /slots/{id}"),  # time
    ("GET /ipv4/192.168.0.1", "GET /ipv4/{id}"),  # IP address
    ("GET /files/12345678.csv", "GET /files/{id}.csv"),  # id with an extension keeps the extension
    ("GET /maps/tiles/12/2048/1361.png", "GET /maps/tiles/{id}/{id}/{id}.png"),  # map tiles
    ("GET /exports/2024-01-15.json", "GET /exports/{id}.json"),
    ("GET /videos/8a7f3c2e-1b4d-4c5e-9f00-123456789abc.mp4", "GET /videos/{id}.mp4"),
    ("GET /static/main.3f2a9b1c.js", "GET /static/main.{id}.js"),  # content-hashed asset name
    ("GET /users/42?expand=orders", "GET /users/{id}"),  # the query string goes too
    ("GET /users/42#frag", "GET /users/{id}"),  # and the fragment
    ("GET /users/42#frag?x=1", "GET /users/{id}"),
    ("GET /users/42/", "GET /users/{id}/"),  # trailing slash kept
    ("/orders/2024", "/orders/{id}"),  # no method: still a path
]

PERSONAL = [
    ("GET /users/alice@example.com", "GET /users/{id}"),  # email, extension and all
    ("GET /users/alice%40example.com/orders", "GET /users/{id}/orders"),  # percent-encoded email
    ("GET /@alice/posts", "GET /{id}/posts"),  # user handle
    ("GET /lookup/+1-415-555-2671", "GET /lookup/{id}"),  # phone number
    ("GET /lookup/%2B14155552671", "GET /lookup/{id}"),  # percent-encoded phone number
]

UNCHANGED = [
    "SELECT orders",  # no path at all
    "HTTP GET",
    "GET /",
    "GET /api/v2/items",  # short version segments are words, not ids
    "GET /files/report.pdf",
    "GET /users/{id}",  # already a template
    "GET /books/<int:book_id>",  # Flask's route template
    "GET /users/:id",  # Express's route template
    "GET /files/{id}.csv",  # already folded
    "GET /static/main.{id}.js",
    "GET /cafe",  # hex letters but no digit: a word
    "GET /products/summer-sale",  # slug
    "GET /collections/summer2024",  # a word ending in a year
    "GET /drivers/windows2000",
    "GET /users/:id",  # an Express-style route template
    "GET /healthcheck_v1_internal",  # slug with a version in it
    "GET /docs/getting-started-v2",
    "GET /docs/Getting-Started-V2",  # title-case slug: no piece mixes cases and digits
    "GET /wiki/2024_Summer_Olympics",
    "GET /files/report-2024-final-v2.pdf",  # slug with an extension
    "GET /icons/icon-192x192.png",
    "GET /thumbs/192x192/cat.jpg",
    "GET /packages/requests/1.2.3",  # a version with fewer than 4 digits (2.31.0 folds, like a date)
    "GET /static/jquery-3.7.1.min.js",  # versioned asset names are names
    "GET /static/lib-v1.2.js",  # short inner part: not a content hash
    "GET /static/bootstrap.5.css",
    "GET /.well-known/openid-configuration",
    "GET /a/.png",  # an extension without a stem
    "GET /v2",
    "GET /codecs/h264",
    "GET /formats/mp3",
    "GET /login/oauth2",
    "GET /api",
    "GET /settings/2fa",
    "GET /i18n/en-US",
]


@pytest.mark.parametrize(("name", "expected"), FOLDED)
def test_id_segments_become_a_placeholder(name: str, expected: str) -> None:
    """Guards one operation per user id: each folds out of the monitor into otel_ext.overflow."""
    assert replace_ids(name) == expected


@pytest.mark.parametrize(("name", "expected"), PERSONAL)
def test_personal_identifiers_become_a_placeholder(name: str, expected: str) -> None:
    """Guards emails, handles and phone numbers ending up in metric labels (privacy, not only cardinality)."""
    assert replace_ids(name) == expected


@pytest.mark.parametrize("name", UNCHANGED)
def test_names_without_ids_are_unchanged(name: str) -> None:
    """Guards folding real operation names together (two routes, or two documents, reported as one)."""
    assert replace_ids(name) == name


@pytest.mark.parametrize("name", [name for name, _ in FOLDED + PERSONAL])
def test_folding_a_folded_name_changes_nothing(name: str) -> None:
    """Guards a folded name and its raw names landing on different operations when folded twice."""
    once = replace_ids(name)
    assert replace_ids(once) == once


@pytest.mark.parametrize(
    "segment",
    ["a-" * 50_000, "aB-" * 50_000, "1" * 100_000 + "x", "1." * 50_000 + "a", "1-" * 50_000 + "x", "eyJ" + "a." * 50_000],
)
def test_long_segments_take_linear_time(segment: str) -> None:
    """Guards a crafted URL path making the span processor backtrack for seconds (regex blow-up)."""
    start = time.perf_counter()
    replace_ids(f"GET /{segment}/x")
    assert time.perf_counter() - start < 1.0  # ~20 ms; quadratic backtracking would take minutes


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
    assert len(store._aliases) == 10 * 10  # private: remembered raw names stop at their bound


def test_folding_can_be_turned_off() -> None:
    """Guards OTEL_EXT_FOLD_NAME_IDS=false being ignored for apps whose numeric segments are real names."""
    store = OperationStatsStore(ThresholdRules(fold_ids=False), clock=lambda: T0_NS)
    provider = provider_with(OperationStatsProcessor(store))
    tracer = provider.get_tracer("tests.names")
    for year in (2023, 2024):
        emit(tracer, f"GET /reports/{year}", T0_NS, NS_PER_MS)
    provider.shutdown()
    assert sorted(stats.name for stats in store.snapshot(60)) == ["GET /reports/2023", "GET /reports/2024"]


def test_a_raw_name_copied_from_a_trace_finds_its_operation_in_the_monitor() -> None:
    """Guards ?operation=GET /users/42 (the span name Jaeger shows) answering nothing once names are folded."""
    store = OperationStatsStore(clock=lambda: T0_NS)
    provider = provider_with(OperationStatsProcessor(store))
    emit(provider.get_tracer("tests.names"), "GET /users/42", T0_NS, NS_PER_MS)
    provider.shutdown()
    assert [stats.name for stats in store.snapshot(60, operation="GET /users/42")] == ["GET /users/{id}"]
    assert [stats.name for stats in store.snapshot(60, operation="GET /users/{id}")] == ["GET /users/{id}"]
    assert store.snapshot(60, operation="GET /users/43/orders") == []
