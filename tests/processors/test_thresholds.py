"""ThresholdRules: defaults, glob precedence, the >= boundary, validation, bounded cache."""

from __future__ import annotations

import math

import pytest

from processors import DEFAULT_SLOW_THRESHOLD_MS, ThresholdRules
from processors._internal import thresholds as thresholds_module


def test_default_is_one_second() -> None:
    """Guards a silently changed default flagging every request (or none) as slow."""
    assert DEFAULT_SLOW_THRESHOLD_MS == 1000.0
    rules = ThresholdRules()
    assert rules.for_name("GET /anything") == (1_000_000_000, 1000.0)


def test_first_matching_glob_wins() -> None:
    """Guards a broad later pattern overriding a specific earlier one."""
    rules = ThresholdRules(
        default_ms=800,
        overrides=[("db.query.*", 50), ("db.*", 300), ("db.query.users", 5), ("GET /books*", 250)],
    )
    assert rules.for_name("db.query.users") == (50_000_000, 50)  # first match, not the exact one listed later
    assert rules.for_name("db.connect") == (300_000_000, 300)
    assert rules.for_name("GET /books/42") == (250_000_000, 250)
    assert rules.for_name("get /books/42") == (800_000_000, 800)  # globs are case-sensitive
    assert rules.for_name("POST /books") == (800_000_000, 800)


@pytest.mark.parametrize("threshold_ms", [1000, 250, 0.5])
def test_boundary_is_inclusive(threshold_ms: float) -> None:
    """Guards an off-by-one (> vs >=) at exactly the threshold."""
    rules = ThresholdRules(default_ms=threshold_ms)
    threshold_ns = int(threshold_ms * 1_000_000)
    assert rules.is_slow("op", threshold_ns) is True
    assert rules.is_slow("op", threshold_ns - 1) is False
    assert rules.is_slow("op", threshold_ns + 1) is True


def test_zero_threshold_makes_everything_slow() -> None:
    """Guards 0 ms (tag every span) being rejected or treated as 'off'."""
    rules = ThresholdRules(default_ms=0)
    assert rules.is_slow("op", 0) is True


@pytest.mark.parametrize(
    ("default_ms", "overrides"),
    [(-1, ()), (1000, [("db.*", -0.001)]), (math.nan, ()), (1000, [("x", math.nan)])],
)
def test_negative_or_nan_threshold_rejected(default_ms: float, overrides: list[tuple[str, float]]) -> None:
    """Guards a misconfigured negative threshold silently tagging everything."""
    with pytest.raises(ValueError, match="must be >= 0 ms"):
        ThresholdRules(default_ms=default_ms, overrides=overrides)


def test_cache_is_bounded_and_answers_stay_correct() -> None:
    """Guards high-cardinality span names (ids in names) growing memory without limit."""
    limit = thresholds_module._CACHE_LIMIT  # noqa: SLF001
    assert limit < 6_000, "the test must exceed the cache limit to be meaningful"
    rules = ThresholdRules(default_ms=1000, overrides=[("GET /user/1*", 10)], fold_ids=False)  # raw names
    for number in range(6_000):
        expected_ms = 10 if str(number).startswith("1") else 1000
        assert rules.for_name(f"GET /user/{number}")[1] == expected_ms
    assert len(rules._cache) <= limit  # noqa: SLF001
    # Names beyond the cache (not cached) still resolve correctly, repeatedly.
    for _ in range(2):
        assert rules.for_name("GET /user/5999") == (1_000_000_000, 1000)
        assert rules.for_name("GET /user/1999") == (10_000_000, 10)


def test_patterns_match_the_operation_name_with_ids_folded() -> None:
    """Guards the otel_ext.slow tag (raw span name) and the operation's slow count (folded name) disagreeing."""
    rules = ThresholdRules(default_ms=1000, overrides=[("GET /users/{id}", 5)])
    assert rules.for_name("GET /users/42")[1] == 5  # what tag_slow_spans looks up, per exported span
    assert rules.for_name("GET /users/{id}")[1] == 5  # what the statistics store looks up, per operation
    assert ThresholdRules(default_ms=1000, overrides=[("GET /users/4*", 5)]).for_name("GET /users/42")[1] == 1000
