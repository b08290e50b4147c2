"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.otlp_sink import OtlpSink


@pytest.fixture
def otlp_sink() -> Iterator[OtlpSink]:
    """A running OTLP capture server (gRPC + HTTP), stopped after the test."""
    with OtlpSink() as sink:
        yield sink
