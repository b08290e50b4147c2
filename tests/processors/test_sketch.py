"""LogHistogram: percentile accuracy, bucket index semantics, zeros, copying, merging and bounded memory."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction

import pytest

from processors import LogHistogram
from processors._internal.sketch import DEFAULT_SCALE, relative_accuracy
from tests.processors._support import (
    NS_PER_S,
    allowed_indices,
    exact_index,
    exact_quantile,
    relative_error,
)

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


def _histogram_of(values: Sequence[float], **kwargs: int) -> LogHistogram:
    histogram = LogHistogram(**kwargs)
    for value in values:
        histogram.add(value)
    return histogram


def _quantile_of(histogram: LogHistogram, quantile: float) -> float:
    """``histogram.quantile(quantile)`` of a non-empty histogram (None only when empty)."""
    estimate = histogram.quantile(quantile)
    assert estimate is not None, quantile
    return estimate


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
        exact = exact_quantile(samples, quantile)
        assert relative_error(_quantile_of(merged, quantile), exact) <= PROMISED_ERROR + SLACK


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
        assert relative_error(_quantile_of(histogram, quantile), exact) <= PROMISED_ERROR + SLACK, quantile


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
            assert relative_error(_quantile_of(histogram, quantile), exact) <= PROMISED_ERROR + SLACK, quantile
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
    assert relative_error(_quantile_of(histogram, 0.75), exact_p75) <= PROMISED_ERROR + SLACK


# --- Bucket index semantics, checked against exact rational arithmetic ---------------------------------

def _values_for_index_checks(scale: int) -> list[float]:
    """Log-uniform random values plus values at, and a few ulps around, bucket bounds and powers of two."""
    rng = random.Random(f"index-{scale}")
    values = [2.0 ** rng.uniform(-30, 30) for _ in range(300)]
    values += [rng.uniform(0.5, 4.0) for _ in range(100)]
    for k in range(-12, 13):
        values.append(2.0**k)  # bounds of every scale
    for i in range(-70, 70, 7):
        bound = 2.0 ** (i / 2.0**scale)  # a float within an ulp or so of base**i
        value = bound
        for _ in range(3):
            value = math.nextafter(value, 0.0)
            values.append(value)
        value = bound
        for _ in range(3):
            value = math.nextafter(value, math.inf)
            values.append(value)
        values += [bound, bound * (1 + 1e-9), bound * (1 - 1e-9)]
    return values


@pytest.mark.parametrize("scale", [-3, -1, 0, 1, 3, DEFAULT_SCALE, 8])
def test_each_value_lands_in_the_bucket_exact_arithmetic_gives(scale: int) -> None:
    """Guards exported bucket (base**i, base**(i+1)] not holding the values counted in it (wrong percentiles)."""
    for value in _values_for_index_checks(scale):
        histogram = LogHistogram(scale=scale)
        histogram.add(value)
        offset, counts = histogram.buckets()
        assert counts == (1,), value
        assert offset in allowed_indices(Fraction(value), scale), (value, offset, exact_index(Fraction(value), scale))


def test_values_well_inside_buckets_are_never_off_by_one() -> None:
    """Guards a systematic off-by-one (lower-inclusive instead of upper-inclusive) hiding behind boundary slack."""
    # Midpoints (in log space) of buckets: nowhere near a bound, so exactly one index is right.
    for scale in (0, 3, DEFAULT_SCALE):
        for i in range(-200, 200, 13):
            value = 2.0 ** ((i + 0.5) / 2.0**scale)
            assert allowed_indices(Fraction(value), scale) == {i}
            histogram = LogHistogram(scale=scale)
            histogram.add(value)
            assert histogram.buckets() == (i, (1,)), (scale, i, value)


def test_dense_buckets_of_many_values_match_independent_counts() -> None:
    """Guards buckets() offset/counts shifting or dropping counts when the array grows in both directions."""
    rng = random.Random(99)
    values = [2.0 ** rng.uniform(-20, 20) for _ in range(5_000)]
    values = [value for value in values if len(allowed_indices(Fraction(value), DEFAULT_SCALE)) == 1]
    assert len(values) > 4_900
    expected = Counter(exact_index(Fraction(value), DEFAULT_SCALE) for value in values)
    histogram = _histogram_of(values)
    offset, counts = histogram.buckets()
    assert offset == min(expected)
    assert len(counts) == max(expected) - min(expected) + 1
    assert {offset + position: count for position, count in enumerate(counts) if count} == dict(expected)
    assert sum(counts) == histogram.count == len(values)


@pytest.mark.parametrize(
    "duration_ns",
    [1, 999, 1_000, 123_456, 1_000_000, 4_999_999, 5_000_000, 5_000_001, 250_000_000, 500_000_000,
     999_999_999, 1_000_000_000, 1_000_000_001, 1_500_000_000, 2_000_000_000, 86_400_000_000_000],
)
def test_unit_converts_nanoseconds_to_buckets_bounded_in_seconds(duration_ns: int) -> None:
    """Guards exported duration buckets being bounded in nanoseconds while the metric's unit says seconds."""
    histogram = LogHistogram(unit=1e-9)
    histogram.add(duration_ns)
    offset, counts = histogram.buckets()
    assert counts == (1,)
    seconds = Fraction(duration_ns, NS_PER_S)
    assert offset in allowed_indices(seconds, DEFAULT_SCALE), (offset, exact_index(seconds, DEFAULT_SCALE))
    # The same index a histogram fed seconds gives (the bounds do not depend on the unit fed in).
    in_seconds = LogHistogram()
    in_seconds.add(duration_ns / NS_PER_S)
    assert in_seconds.buckets()[0] in allowed_indices(seconds, DEFAULT_SCALE)
    # Statistics stay in the unit fed in.
    assert (histogram.sum, histogram.min, histogram.max) == (duration_ns, duration_ns, duration_ns)


def test_unit_conversion_many_random_durations() -> None:
    """Guards ns-to-seconds conversion drifting by a bucket for some magnitudes (µs spans, hour-long jobs)."""
    rng = random.Random(5)
    durations = [max(1, int(10 ** rng.uniform(0, 13))) for _ in range(1_000)]
    for duration in durations:
        histogram = LogHistogram(unit=1e-9)
        histogram.add(duration)
        assert histogram.buckets()[0] in allowed_indices(Fraction(duration, NS_PER_S), DEFAULT_SCALE), duration


def test_sum_count_min_max_and_zeros() -> None:
    """Guards the exported sum/count/min/max disagreeing with the raw durations (bad averages in dashboards)."""
    rng = random.Random(11)
    durations = [rng.randint(1, 5 * NS_PER_S) for _ in range(2_000)] + [0, 0, 0]
    rng.shuffle(durations)
    histogram = LogHistogram(unit=1e-9)
    for duration in durations:
        histogram.add(duration)
    assert histogram.sum == sum(durations)  # integers below 2**53: the float sum is exact
    assert histogram.count == len(durations)
    assert histogram.zero_count == 3
    assert sum(histogram.buckets()[1]) == len(durations) - 3
    assert (histogram.min, histogram.max) == (0, max(durations))
    floats = [rng.uniform(0.001, 3.0) for _ in range(1_000)]
    float_histogram = _histogram_of(floats)
    assert float_histogram.sum == pytest.approx(math.fsum(floats), rel=1e-12)


def test_copy_is_independent_of_the_original() -> None:
    """Guards exporting a total (a copy) and then recording spans corrupting the exported or the live counts."""
    original = LogHistogram(unit=1e-9)
    for duration in (3_000_000, 3_000_000, 40_000_000, 0):
        original.add(duration)
    state = (original.buckets(), original.count, original.zero_count, original.sum, original.min, original.max)
    clone = original.copy()
    assert (clone.scale, clone.unit) == (original.scale, original.unit)
    assert (clone.buckets(), clone.count, clone.zero_count, clone.sum, clone.min, clone.max) == state
    # In-place increment of an existing bucket, growth below and above, a zero: none may leak back.
    for duration in (3_000_000, 1_000, 9 * NS_PER_S, 0):
        clone.add(duration)
    assert (original.buckets(), original.count, original.zero_count, original.sum, original.min, original.max) == state
    clone_state = (clone.buckets(), clone.count, clone.zero_count, clone.sum, clone.min, clone.max)
    for duration in (40_000_000, 500, 7):
        original.add(duration)
    assert (clone.buckets(), clone.count, clone.zero_count, clone.sum, clone.min, clone.max) == clone_state
    # The clone keeps working like the original: same budget, same quantiles.
    assert relative_error(_quantile_of(clone, 1.0), 9 * NS_PER_S) <= PROMISED_ERROR + SLACK
    assert clone._max_buckets == original._max_buckets  # noqa: SLF001


@pytest.mark.parametrize(
    ("first_range", "second_range"),
    [((-10, -2), (3, 12)), ((3, 12), (-10, -2)), ((-5, 5), (-1, 1)), ((-1, 1), (-5, 5)), ((0, 4), (0, 4))],
)
def test_merge_adds_counts_bucket_by_bucket(first_range: tuple[int, int], second_range: tuple[int, int]) -> None:
    """Guards merged windows (and merged processes) misplacing counts when the two offsets differ."""
    rng = random.Random(f"{first_range}-{second_range}")

    def draw(bounds: tuple[int, int]) -> list[float]:
        values = [2.0 ** rng.uniform(*bounds) for _ in range(800)]
        return [value for value in values if len(allowed_indices(Fraction(value), DEFAULT_SCALE)) == 1]

    first, second = draw(first_range) + [0.0], draw(second_range)
    merged = _histogram_of(first)
    other = _histogram_of(second)
    other_before = other.buckets()
    merged.merge(other)
    expected = Counter(exact_index(Fraction(v), DEFAULT_SCALE) for v in first + second if v > 0)
    offset, counts = merged.buckets()
    assert {offset + position: count for position, count in enumerate(counts) if count} == dict(expected)
    assert merged.count == len(first) + len(second)
    assert merged.zero_count == 1
    assert merged.sum == pytest.approx(math.fsum(first + second), rel=1e-12)
    assert (merged.min, merged.max) == (0.0, max(first + second))
    assert other.buckets() == other_before, "merge must not modify its argument"
