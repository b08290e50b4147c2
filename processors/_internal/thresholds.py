"""Which duration makes an operation "slow"."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from processors._internal.names import replace_ids

__all__ = ["DEFAULT_SLOW_THRESHOLD_MS", "ThresholdRules"]

DEFAULT_SLOW_THRESHOLD_MS = 1000.0
_CACHE_LIMIT = 4096


class ThresholdRules:
    """A default threshold plus ``(glob pattern, milliseconds)`` overrides.

    The first pattern matching a span name wins. With ``fold_ids`` (the
    statistics store's default) patterns match the name as the monitor shows
    it, ids replaced (``GET /users/{id}``), so the ``otel_ext.slow`` tag on a
    span and the slow count of its operation always agree. Lookups are cached per name
    because glob matching every span would cost more than the rest of the
    processing; the cache is bounded so unbounded span names cannot grow it.
    Safe to share between threads: the cache only ever gains equal values.
    """

    def __init__(
        self,
        default_ms: float = DEFAULT_SLOW_THRESHOLD_MS,
        overrides: Sequence[tuple[str, float]] = (),
        fold_ids: bool = True,
    ) -> None:
        for pattern, milliseconds in [("<default>", default_ms), *overrides]:
            if not milliseconds >= 0:
                raise ValueError(f"slow threshold for {pattern!r} must be >= 0 ms, got {milliseconds!r}")
        self.default_ms = default_ms
        self.overrides = tuple(overrides)
        self.fold_ids = fold_ids
        self._cache: dict[str, tuple[int, float]] = {}

    def for_name(self, name: str) -> tuple[int, float]:
        """``(threshold in ns, threshold in ms)`` for a span name."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        operation = replace_ids(name) if self.fold_ids and self.overrides else name
        milliseconds = next(
            (ms for pattern, ms in self.overrides if fnmatchcase(operation, pattern)),
            self.default_ms,
        )
        found = (round(milliseconds * 1_000_000), milliseconds)
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[name] = found
        return found

    def is_slow(self, name: str, duration_ns: int) -> bool:
        """At or above the threshold counts as slow (``>=``, documented)."""
        return duration_ns >= self.for_name(name)[0]

    def __repr__(self) -> str:
        return f"ThresholdRules(default_ms={self.default_ms!r}, overrides={self.overrides!r})"
