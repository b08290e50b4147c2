"""Fixtures shared by the processors/ tests: a pinned clock, a statistics store on it, a tracer feeding it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.trace import Tracer

from processors import OperationStatsProcessor, OperationStatsStore
from tests.processors._support import Clock, provider_with


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> OperationStatsStore:
    return OperationStatsStore(clock=clock)


@pytest.fixture
def tracer(store: OperationStatsStore) -> Iterator[Tracer]:
    """Ends spans into ``store`` (test modules with other needs define their own ``tracer``)."""
    provider = provider_with(OperationStatsProcessor(store))
    yield provider.get_tracer("tests.processors")
    provider.shutdown()
