"""Prometheus scrape endpoint with otel-ext's operation metrics (``OTEL_METRICS_EXPORTER=prometheus``).

The one module that imports the optional Prometheus exporter. Its duration
histogram always has explicit buckets: classic Prometheus histograms are
``le`` buckets, and the SDK's Prometheus exporter cannot translate
exponential ones (every scrape of such a metric fails or drops it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from otel_ext._internal.config import prometheus_address
from processors import (
    HistogramAggregation,
    OperationMetrics,
    OperationMetricsMixin,
    OperationStatsStore,
)

try:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server
except ImportError as error:  # the one place the optional dependency is imported
    raise ImportError(
        "opentelemetry-exporter-prometheus is not installed; install the extra: pip install 'otel-ext[prometheus]'"
    ) from error

__all__ = ["PrometheusOperationMetricsReader", "start_prometheus_reader"]

_logger = logging.getLogger("otel_ext")


class PrometheusOperationMetricsReader(OperationMetricsMixin, PrometheusMetricReader):
    """The SDK's Prometheus reader, with otel-ext's operation metrics added to every scrape.

    Threading contract: collection runs on the scrape server's thread; the
    operation metrics take the statistics store's lock only while reading totals.
    """

    def __init__(self, operation_metrics: OperationMetrics) -> None:
        if operation_metrics.aggregation is not HistogramAggregation.EXPLICIT:
            raise ValueError("the Prometheus exporter needs explicit buckets")
        self._operation_metrics = operation_metrics
        super().__init__()


def start_prometheus_reader(store: OperationStatsStore, environ: Mapping[str, str]) -> PrometheusOperationMetricsReader:
    """Serve ``/metrics`` on the standard host and port; raises OSError when the port is taken.

    A bad port is reported with the other standard variables' problems.
    """
    host, port, _ = prometheus_address(environ)
    start_http_server(port, addr=host)
    if hasattr(os, "register_at_fork"):
        parent = os.getpid()
        os.register_at_fork(after_in_child=lambda: _warn_forked_child(host, port, parent))
    return PrometheusOperationMetricsReader(OperationMetrics(store, HistogramAggregation.EXPLICIT))


def _warn_forked_child(host: str, port: int, parent: int) -> None:
    """A forked worker's metrics are not on the scrape endpoint, which the parent serves: say so once."""
    _logger.warning(
        "otel-ext: the Prometheus endpoint %s:%d is served by the parent process (pid %d); this forked "
        "process's (pid %d) metrics are not scraped. Under pre-fork servers export metrics over OTLP instead "
        "(OTEL_METRICS_EXPORTER=otlp)",
        host,
        port,
        parent,
        os.getpid(),
    )
