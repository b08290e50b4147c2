"""Relative error of otel-ext's percentiles against exact nearest-rank percentiles.

For each distribution and sample count, values (integer nanoseconds, like span
durations) go into a ``LogHistogram``; p50, p95, p99, p99.9 and max are compared
with the exact nearest-rank value ``sorted[ceil(q * n) - 1]``, computed here with
exact fractions, independently of ``processors.nearest_rank``. The same is then
done end to end: real ``ReadableSpan``s with explicit start/end times are fed
through ``OperationStatsStore.record`` under an injected clock and the
``snapshot`` figures (milliseconds) are compared. It only prints figures.

Run: ``python benchmarks/bench_percentiles.py [--max-n 1000000] [--store-max-n 100000]``
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable, Sequence
from fractions import Fraction

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind

from processors import LogHistogram, OperationStatsStore

NS_PER_MS = 1_000_000
SEED = 20_240_601
SIZES: tuple[int, ...] = (1, 10, 1_000, 100_000, 1_000_000)
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("p99.9", 0.999))
STORE_QUANTILES: tuple[tuple[str, str, float], ...] = (("p50", "p50_ms", 0.50), ("p95", "p95_ms", 0.95),
                                                       ("p99", "p99_ms", 0.99))
SINGLE_VALUES: tuple[int, ...] = (1, 999, 2 * NS_PER_MS, 900 * NS_PER_MS, 3_600_000 * NS_PER_MS)
STORE_WINDOW_S = 60
STORE_SPREAD_NS = 50 * 1_000_000_000

Sampler = Callable[[random.Random], float]


def _bimodal(rng: random.Random) -> float:
    """90 % around 2 ms, 10 % around 900 ms, each mode lognormal with a 10 % spread."""
    mode = 2 * NS_PER_MS if rng.random() < 0.9 else 900 * NS_PER_MS
    return mode * rng.lognormvariate(0.0, 0.1)


DISTRIBUTIONS: dict[str, Sampler] = {
    "lognormal (median 20 ms, sigma 1)": lambda rng: 20 * NS_PER_MS * rng.lognormvariate(0.0, 1.0),
    "bimodal (2 ms & 900 ms)": _bimodal,
    "all-equal (5 ms)": lambda rng: 5 * NS_PER_MS,
    "uniform (1 ms .. 1 s)": lambda rng: rng.uniform(NS_PER_MS, 1_000 * NS_PER_MS),
    "Pareto (alpha 1.16, from 1 ms)": lambda rng: NS_PER_MS * rng.paretovariate(1.16),
}
SINGLE = "single sample (1 ns .. 1 h)"


def samples(sampler: Sampler, n: int, seed: int) -> list[int]:
    """``n`` integer-nanosecond durations, at least 1 ns."""
    rng = random.Random(seed)
    return [max(1, round(sampler(rng))) for _ in range(n)]


def exact(ordered: Sequence[int], quantile: float) -> int:
    """Exact nearest-rank value: ``sorted[ceil(q * n) - 1]`` with exact arithmetic."""
    rank = math.ceil(Fraction(str(quantile)) * len(ordered))
    return ordered[max(1, rank) - 1]


def relative_error(estimate: float, true_value: float) -> float:
    return abs(estimate - true_value) / true_value


def histogram_errors(values: Sequence[int]) -> tuple[dict[str, float], LogHistogram]:
    """Relative error per quantile (and max) of a ``LogHistogram`` fed ``values``."""
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    ordered = sorted(values)
    errors = {label: relative_error(histogram.quantile(q) or 0.0, exact(ordered, q)) for label, q in QUANTILES}
    errors["max"] = relative_error(histogram.max, ordered[-1])
    return errors, histogram


def store_errors(values: Sequence[int], seed: int) -> dict[str, float]:
    """Relative error per quantile (and max) of an ``OperationStatsStore`` snapshot.

    One span per value, ends spread over the last 50 s so several slots of the
    60 s window are merged; the store's clock is pinned to "now".
    """
    now = 1_700_000_000 * 1_000_000_000
    store = OperationStatsStore(windows_s=(STORE_WINDOW_S,), clock=lambda: now)
    resource = Resource.create({"service.name": "bench"})
    rng = random.Random(seed)
    for i, duration in enumerate(values):
        end = now - rng.randrange(STORE_SPREAD_NS)
        store.record(
            ReadableSpan(
                name="GET /bench",
                context=SpanContext(trace_id=i + 1, span_id=i + 1, is_remote=False),
                resource=resource,
                kind=SpanKind.SERVER,
                start_time=end - duration,
                end_time=end,
            )
        )
    (stats,) = store.snapshot(STORE_WINDOW_S)
    if stats.count != len(values):
        raise RuntimeError(f"store counted {stats.count} spans, fed {len(values)}")
    ordered = sorted(values)
    errors = {label: relative_error(getattr(stats, field), exact(ordered, q) / NS_PER_MS)
              for label, field, q in STORE_QUANTILES}
    errors["max"] = relative_error(stats.max_ms, ordered[-1] / NS_PER_MS)
    return errors


def cases(max_n: int) -> list[tuple[str, int, list[list[int]]]]:
    """``(distribution, n, [value lists])``: one list per distribution and n, several for the single sample."""
    result = [(SINGLE, 1, [[value] for value in SINGLE_VALUES])]
    for index, (name, sampler) in enumerate(DISTRIBUTIONS.items()):
        for n in SIZES:
            if n <= max_n:
                result.append((name, n, [samples(sampler, n, SEED + 1_000 * index + n)]))
    return result


def worst(errors: dict[str, float]) -> tuple[str, float]:
    label = max(errors, key=errors.__getitem__)
    return label, errors[label]


def print_table(title: str, rows: list[tuple[str, int, dict[str, float], str]]) -> float:
    """Print one row per case with the worst error; return the overall worst."""
    labels = list(rows[0][2])
    print(title)
    print(f"  {'distribution':<36}{'n':>10}" + "".join(f"{label:>9}" for label in labels) + f"{'worst':>15}  extra")
    overall = 0.0
    for name, n, errors, extra in rows:
        label, value = worst(errors)
        overall = max(overall, value)
        cells = "".join(f"{errors[label_] * 100:>8.3f}%" for label_ in labels)
        print(f"  {name:<36}{n:>10}{cells}{value * 100:>8.3f}% {label if value else '-':<6} {extra}")
    print(f"  overall worst relative error: {overall * 100:.4f} %")
    return overall


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=int, default=SIZES[-1], help="largest sample count for LogHistogram")
    parser.add_argument("--store-max-n", type=int, default=100_000, help="largest sample count through the store")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    all_cases = cases(max(args.max_n, args.store_max_n))

    rows = []
    for name, n, value_lists in all_cases:
        if n > args.max_n:
            continue
        combined: dict[str, float] = {}
        sizes = []
        for values in value_lists:
            errors, histogram = histogram_errors(values)
            for label, error in errors.items():
                combined[label] = max(combined.get(label, 0.0), error)
            counts = histogram._counts  # noqa: SLF001 - reporting the sketch's memory
            sizes.append(f"{len(counts)} buckets, {len(counts) * counts.itemsize} B")
        rows.append((name, n, combined, sizes[0] if len(set(sizes)) == 1 else "; ".join(sizes[:2]) + " ..."))
    histogram_worst = print_table("LogHistogram (scale 6, relative accuracy 0.54 %) vs exact nearest rank:", rows)

    print()
    store_rows = []
    for index, (name, n, value_lists) in enumerate(all_cases):
        if n > args.store_max_n:
            continue
        combined = {}
        for values in value_lists:
            for label, error in store_errors(values, SEED + index).items():
                combined[label] = max(combined.get(label, 0.0), error)
        store_rows.append((name, n, combined, ""))
    store_worst = print_table(
        f"OperationStatsStore.snapshot({STORE_WINDOW_S}) (spans over 50 s, merged slots) vs exact nearest rank:",
        store_rows,
    )
    print()
    print(f"worst: LogHistogram {histogram_worst * 100:.4f} %, store end to end {store_worst * 100:.4f} % "
          f"(target <= 1 %); {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
