"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.otlp_sink import OtlpSink
from tests.support.sentry_sink import SentrySink


@pytest.fixture
def otlp_sink() -> Iterator[OtlpSink]:
    """A running OTLP capture server (gRPC + HTTP), stopped after the test."""
    with OtlpSink() as sink:
        yield sink


@pytest.fixture
def sentry_sink() -> Iterator[SentrySink]:
    """A running Sentry envelope receiver on 127.0.0.1, stopped after the test."""
    with SentrySink() as sink:
        yield sink
