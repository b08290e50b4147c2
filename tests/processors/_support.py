"""Shared helpers for the processors/ tests (independent of the code under test)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Span, SpanKind, Tracer

# A fixed "now", divisible by every default slot width (10 s, 50 s, 150 s, 600 s).
T0_NS = 1_750_000_200 * 1_000_000_000
assert all(T0_NS % (w * 1_000_000_000 // 6) == 0 for w in (60, 300, 900, 3600))

NS_PER_MS = 1_000_000


def exact_quantile(samples: Sequence[float], quantile: float) -> float:
    """Nearest-rank quantile computed exactly: sorted[max(1, ceil(q*n)) - 1].

    ``q`` is converted through its decimal text so 0.95 means exactly 95/100.
    """
    ordered = sorted(samples)
    rank = max(1, math.ceil(Fraction(str(quantile)) * len(ordered)))
    return ordered[rank - 1]


def relative_error(estimate: float, exact: float) -> float:
    if exact == 0:
        return 0.0 if estimate == 0 else math.inf
    return abs(estimate - exact) / abs(exact)


class SeededIdGenerator(IdGenerator):
    """Deterministic trace/span ids so sampling expectations are reproducible."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_trace_id(self) -> int:
        while True:
            value = self._random.getrandbits(128)
            if value:
                return value

    def generate_span_id(self) -> int:
        while True:
            value = self._random.getrandbits(64)
            if value:
                return value


class CollectingProcessor(SpanProcessor):
    """Keeps every ended span it is handed (the exact object)."""

    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


def provider_with(
    *processors: SpanProcessor, service: str = "checkout", resource: Resource | None = None, **kwargs: Any
) -> TracerProvider:
    provider = TracerProvider(resource=resource or Resource.create({"service.name": service}), **kwargs)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def emit(
    tracer: Tracer,
    name: str,
    end_ns: int,
    duration_ns: int,
    kind: SpanKind = SpanKind.INTERNAL,
    configure: Callable[[Span], None] | None = None,
    **start_kwargs: Any,
) -> Span:
    """Start and end one span with an exact duration ending at ``end_ns``."""
    span = tracer.start_span(name, kind=kind, start_time=end_ns - duration_ns, **start_kwargs)
    if configure is not None:
        configure(span)
    span.end(end_time=end_ns)
    return span


class Clock:
    """Injected clock: the store's idea of 'now'."""

    def __init__(self, now_ns: int = T0_NS) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


BOUNDARY_SLACK = Fraction(1, 10**12)  # a value this close (relative) to a bound may sit in either neighbour
NS_PER_S = 10**9


def floor_log2(value: Fraction) -> int:
    """The largest k with 2**k <= value (value > 0), exactly."""
    k = value.numerator.bit_length() - value.denominator.bit_length()
    return k - 1 if Fraction(2) ** k > value else k


def exact_index(value: Fraction, scale: int) -> int:
    """The i with base**i < value <= base**(i+1), base = 2**(2**-scale), in exact arithmetic.

    For scale >= 0, base**i < value  <=>  2**i < value**(2**scale) (both sides positive), so the index
    is read off the binary exponent of the exact rational value**(2**scale). A negative scale merges
    2**-scale whole powers of two, i.e. the scale-0 index shifted right.
    """
    if scale < 0:
        return exact_index(value, 0) >> -scale
    powered = value ** (2**scale)
    k = floor_log2(powered)
    return k - 1 if powered == Fraction(2) ** k else k


def allowed_indices(value: Fraction, scale: int) -> set[int]:
    """The exact index, plus the neighbour when ``value`` is within 1e-12 (relative) of a bound."""
    return {exact_index(value * factor, scale) for factor in (1 - BOUNDARY_SLACK, 1, 1 + BOUNDARY_SLACK)}
