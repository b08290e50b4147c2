"""A log-bucketed latency histogram with a guaranteed relative error.

Percentiles over sliding windows must be within 1 % of the exact value for any
distribution while memory stays independent of the number of samples. Buckets
whose bounds grow geometrically (the DDSketch idea) give exactly that. The
bounds are OpenTelemetry's base-2 exponential buckets: at scale ``s`` bucket
``i`` holds values in ``(base**i, base**(i+1)]`` with ``base = 2**(2**-s)``,
so the monitor's percentiles and the exported exponential histogram are read
from the very same counts, and histograms from many processes merge exactly.
"""

from __future__ import annotations

import math
from array import array

__all__ = ["DEFAULT_SCALE", "LogHistogram", "nearest_rank", "relative_accuracy"]

DEFAULT_SCALE = 6
DEFAULT_MAX_BUCKETS = 4096


def _zeros(length: int) -> array:
    return array("I", [0]) * length


def relative_accuracy(scale: int) -> float:
    """Worst relative error of a value read back from a bucket at ``scale`` (0.54 % at scale 6)."""
    base = 2.0 ** (2.0**-scale)
    return (base - 1.0) / (base + 1.0)


def nearest_rank(count: int, quantile: float) -> int:
    """1-based rank of the ``quantile`` sample among ``count`` sorted samples.

    The nearest-rank definition always answers with a value that was really
    observed, which is what "p99 latency" means to an operator.
    """
    return min(count, max(1, math.ceil(quantile * count - 1e-9)))


class LogHistogram:
    """Counts of non-negative values in base-2 exponential buckets; not thread-safe.

    Callers serialise access (the stats store holds its lock while adding).
    ``unit`` converts a value to the unit the bucket bounds are expressed in
    (the stats store adds nanoseconds with ``unit=1e-9`` so that bounds are
    powers of ``base`` in seconds, as exported). Buckets live in a dense
    ``array`` offset by the lowest index seen, so a histogram costs 4 bytes per
    bucket between its smallest and largest value. When more than
    ``max_buckets`` would be needed, the lowest buckets are folded together:
    only the low percentiles of extremely wide distributions lose accuracy, and
    memory stays bounded.
    """

    __slots__ = (
        "_counts",
        "_gamma",
        "_inv_log_gamma",
        "_max_buckets",
        "_offset",
        "count",
        "max",
        "min",
        "scale",
        "sum",
        "unit",
        "zero_count",
    )

    def __init__(self, scale: int = DEFAULT_SCALE, unit: float = 1.0, max_buckets: int = DEFAULT_MAX_BUCKETS) -> None:
        if not -10 <= scale <= 20:
            raise ValueError(f"scale must be in -10..20 (OpenTelemetry's range), got {scale!r}")
        self.scale = scale
        self.unit = unit
        self._gamma = 2.0 ** (2.0**-scale)
        self._inv_log_gamma = 2.0**scale / math.log(2.0)
        self._max_buckets = max_buckets
        self._offset = 0
        self._counts = array("I")
        self.zero_count = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = 0.0

    @property
    def relative_accuracy(self) -> float:
        return relative_accuracy(self.scale)

    def add(self, value: float) -> None:
        """Record one value; values <= 0 count as exact zeros."""
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value <= 0:
            self.zero_count += 1
            return
        index = math.ceil(math.log(value * self.unit) * self._inv_log_gamma) - 1
        position = index - self._offset
        if 0 <= position < len(self._counts):
            self._counts[position] += 1  # the common case, inlined: the stats store adds every span
        else:
            self._increment(index, 1)

    def buckets(self) -> tuple[int, tuple[int, ...]]:
        """(index of the first bucket, counts from there on): OpenTelemetry's positive buckets."""
        return self._offset, tuple(self._counts)

    def copy(self) -> LogHistogram:
        clone = LogHistogram(self.scale, self.unit, self._max_buckets)
        clone._offset, clone._counts = self._offset, array("I", self._counts)
        clone.zero_count, clone.count, clone.sum, clone.min, clone.max = (
            self.zero_count, self.count, self.sum, self.min, self.max
        )
        return clone

    def merge(self, other: LogHistogram) -> None:
        """Add ``other``'s counts into this histogram (same scale and unit assumed)."""
        if other.count == 0:
            return
        self.count += other.count
        self.sum += other.sum
        self.zero_count += other.zero_count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if not other._counts:
            return
        # Widen once to other's range (folding low buckets if the budget requires), then add in place.
        self._increment(other._offset, 0)
        self._increment(other._offset + len(other._counts) - 1, 0)
        offset, counts = self._offset, self._counts
        for position, bucket_count in enumerate(other._counts, other._offset - offset):
            if bucket_count:
                counts[max(position, 0)] += bucket_count  # below the kept range: the lowest bucket, as in add

    def quantile(self, quantile: float) -> float | None:
        """The nearest-rank ``quantile`` (0..1), or None when empty."""
        if self.count == 0:
            return None
        rank = nearest_rank(self.count, quantile)
        if rank <= self.zero_count:
            return 0.0
        seen = self.zero_count
        for position, bucket_count in enumerate(self._counts):
            seen += bucket_count
            if seen >= rank:
                upper_bound = self._gamma ** (self._offset + position + 1) / self.unit
                estimate = 2.0 * upper_bound / (self._gamma + 1.0)
                # The true value lies within [min, max]; clamping only ever moves towards it.
                return min(max(estimate, self.min), self.max)
        return self.max

    def _increment(self, index: int, amount: int) -> None:
        counts = self._counts
        if not counts:
            self._offset = index
            counts.append(amount)
            return
        # Too wide a range: a value below the lowest bucket the budget allows is counted in that bucket.
        index = max(index, self._offset + len(counts) - self._max_buckets)
        position = index - self._offset
        if position < 0:
            self._counts = counts = _zeros(-position) + counts
            self._offset = index
            position = 0
        elif position >= len(counts):
            counts.extend(_zeros(position + 1 - len(counts)))
            if len(counts) > self._max_buckets:
                self._collapse_low(len(counts) - self._max_buckets)
                position = index - self._offset
        counts[position] += amount

    def _collapse_low(self, excess: int) -> None:
        """Fold the ``excess`` lowest buckets into the first bucket kept."""
        counts = self._counts
        folded = sum(counts[: excess + 1])
        del counts[:excess]
        counts[0] = folded
        self._offset += excess
