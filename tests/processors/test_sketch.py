"""LogHistogram: percentile accuracy, zeros, merging and bounded memory."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from processors import LogHistogram
from processors._internal.sketch import DEFAULT_SCALE, relative_accuracy
from tests.processors._support import exact_quantile, relative_error

QUANTILES = (0.0, 0.5, 0.95, 0.99, 0.999, 1.0)
PROMISED_ERROR = relative_accuracy(DEFAULT_SCALE)  # 0.54 %, stated in README
# Float rounding in log()/pow() may push a value a hair past the bucket edge.
SLACK = 1e-9


def _lognormal(rng: random.Random, n: int) -> list[int]:
    return [max(1, int(rng.lognormvariate(math.log(40e6), 1.2))) for _ in range(n)]


def _bimodal(rng: random.Random, n: int) -> list[int]:
    return [
        max(1, int(rng.gauss(2e6, 2e5))) if rng.random() < 0.9 else max(1, int(rng.gauss(800e6, 50e6)))
        for _ in range(n)
    ]


def _all_equal(rng: random.Random, n: int) -> list[int]:
    return [1_234_567] * n


def _uniform(rng: random.Random, n: int) -> list[int]:
    return [rng.randint(1, 1_000_000_000) for _ in range(n)]


DISTRIBUTIONS: dict[str, Callable[[random.Random, int], list[int]]] = {
    "lognormal": _lognormal,
    "bimodal": _bimodal,
    "all_equal": _all_equal,
    "uniform": _uniform,
}


def _histogram_of(values: list[float], **kwargs: int) -> LogHistogram:
    histogram = LogHistogram(**kwargs)
    for value in values:
        histogram.add(value)
    return histogram


@pytest.mark.parametrize("n", [1, 2, 10, 1000, 100_000])
@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_quantiles_within_promised_error_of_exact_nearest_rank(distribution: str, n: int) -> None:
    """Guards dashboards showing a p99 that is off by more than the promised 0.54 %."""
    rng = random.Random(f"{distribution}-{n}")
    samples = DISTRIBUTIONS[distribution](rng, n)
    histogram = _histogram_of(samples)
    assert histogram.count == n
    for quantile in QUANTILES:
        exact = exact_quantile(samples, quantile)
        estimate = histogram.quantile(quantile)
        assert estimate is not None
        assert relative_error(estimate, exact) <= PROMISED_ERROR + SLACK, (quantile, estimate, exact)


def test_single_sample_every_quantile_is_that_sample() -> None:
    """Guards a lone request's latency being reported as a bucket edge far from it."""
    histogram = _histogram_of([987_654_321])
    for quantile in QUANTILES:
        assert histogram.quantile(quantile) == 987_654_321  # clamped to [min, max] -> exact


def test_empty_histogram_has_no_quantile() -> None:
    """Guards reporting 0 ms latency for an operation with no calls."""
    assert LogHistogram().quantile(0.5) is None


def test_zeros_are_exact_and_ranked_below_positive_values() -> None:
    """Guards zero-duration spans (coarse clocks) skewing or crashing percentiles."""
    samples = [0] * 30 + [5_000_000] * 70
    histogram = _histogram_of(samples)
    assert histogram.zero_count == 30
    assert histogram.count == 100
    assert histogram.quantile(0.30) == 0.0  # rank 30 is the last zero
    assert histogram.quantile(0.31) == pytest.approx(5_000_000, rel=PROMISED_ERROR)  # rank 31 is positive
    assert histogram.quantile(1.0) == 5_000_000
    all_zero = _histogram_of([0] * 5)
    assert [all_zero.quantile(q) for q in QUANTILES] == [0.0] * len(QUANTILES)


@pytest.mark.parametrize("split", ["interleaved", "low_then_high", "high_then_low"])
def test_merge_equals_histogram_of_union(split: str) -> None:
    """Guards windowed percentiles (merged slots) differing from one histogram of all spans."""
    rng = random.Random(f"merge-{split}")
    samples = _lognormal(rng, 20_000) + [0] * 17
    rng.shuffle(samples)
    if split == "interleaved":
        first, second = samples[::2], samples[1::2]
    else:
        ordered = sorted(samples)
        first, second = ordered[:7_000], ordered[7_000:]
        if split == "high_then_low":
            first, second = second, first
    merged = _histogram_of(first)
    merged.merge(_histogram_of(second))
    union = _histogram_of(samples)
    assert (merged.count, merged.zero_count, merged.min, merged.max) == (
        union.count, union.zero_count, union.min, union.max
    ) == (len(samples), 17, 0, max(samples))
    for quantile in (*QUANTILES, 0.01, 0.25, 0.75, 0.9):
        assert merged.quantile(quantile) == union.quantile(quantile), quantile
        assert relative_error(merged.quantile(quantile), exact_quantile(samples, quantile)) <= PROMISED_ERROR + SLACK


def test_merge_with_empty_is_identity_both_ways() -> None:
    """Guards an empty slot corrupting min/max (inf/0) of a merged window."""
    full = _histogram_of([3_000_000, 7_000_000])
    full.merge(LogHistogram())
    assert (full.count, full.min, full.max) == (2, 3_000_000, 7_000_000)
    empty = LogHistogram()
    empty.merge(full)
    assert (empty.count, empty.min, empty.max) == (2, 3_000_000, 7_000_000)
    assert empty.quantile(0.5) == pytest.approx(3_000_000, rel=PROMISED_ERROR)


def test_memory_bounded_for_values_from_1ns_to_1e6_seconds() -> None:
    """Guards unbounded memory when durations span 15 orders of magnitude."""
    histogram = LogHistogram()
    rng = random.Random(7)
    exponents = [rng.uniform(0, 15) for _ in range(20_000)] + [0.0, 15.0]
    rng.shuffle(exponents)
    for exponent in exponents:
        histogram.add(10**exponent)
        assert len(histogram._counts) <= histogram._max_buckets  # noqa: SLF001
    assert histogram.count == len(exponents)
    assert histogram.max == 1e15
    # Default budget covers that whole range, so every percentile stays accurate.
    for quantile in QUANTILES:
        exact = exact_quantile([10**e for e in exponents], quantile)
        assert relative_error(histogram.quantile(quantile), exact) <= PROMISED_ERROR + SLACK, quantile


@pytest.mark.parametrize("max_buckets", [16, 64, 256])
def test_memory_bounded_with_small_budget(max_buckets: int) -> None:
    """Guards the folding path letting the bucket array grow past max_buckets."""
    histogram = LogHistogram(max_buckets=max_buckets)
    rng = random.Random(max_buckets)
    values = [10 ** rng.uniform(0, 15) for _ in range(5_000)]
    for value in values:
        histogram.add(value)
        assert len(histogram._counts) <= max_buckets  # noqa: SLF001
    assert sum(histogram._counts) + histogram.zero_count == histogram.count == len(values)  # noqa: SLF001
    # Percentiles whose value lies inside the kept range stay accurate: only the lowest buckets fold.
    kept_floor = max(values) / histogram._gamma ** (max_buckets - 2)  # noqa: SLF001
    checked = 0
    for quantile in (0.5, 0.9, 0.99, 0.999, 1.0):
        exact = exact_quantile(values, quantile)
        if exact >= kept_floor:
            checked += 1
            assert relative_error(histogram.quantile(quantile), exact) <= PROMISED_ERROR + SLACK, quantile
    assert checked >= 2


def test_folding_keeps_high_percentiles_independent_of_insertion_order() -> None:
    """Guards folded low outliers being counted *above* later mid-range values (wrong p75)."""
    histogram = LogHistogram(max_buckets=100)
    gamma = histogram._gamma  # noqa: SLF001
    high, mid, low = gamma**500, gamma**450, gamma**10  # mid is within budget of high, low is not
    for value in [high] + [low] * 1000 + [mid] * 999:
        histogram.add(value)
    samples = [high] + [low] * 1000 + [mid] * 999
    exact_p75 = exact_quantile(samples, 0.75)  # rank 1500 -> mid
    assert exact_p75 == mid
    assert relative_error(histogram.quantile(0.75), exact_p75) <= PROMISED_ERROR + SLACK
