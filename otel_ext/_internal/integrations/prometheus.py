"""Prometheus scrape endpoint with otel-ext's operation metrics (``OTEL_METRICS_EXPORTER=prometheus``).

The one module that imports the optional Prometheus exporter. Its duration
histogram always has explicit buckets: classic Prometheus histograms are
``le`` buckets, and the SDK's Prometheus exporter cannot translate
exponential ones (every scrape of such a metric fails or drops it).
"""

from __future__ import annotations

import logging
import os
import threading
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
        super().__init__(operation_metrics=operation_metrics)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Nothing to flush: Prometheus pulls. (The SDK's reader would queue a collection that the next
        scrape serves beside its own, every series twice.)"""
        return True


def start_prometheus_reader(
    store: OperationStatsStore, environ: Mapping[str, str], on_first_span: bool = False
) -> PrometheusOperationMetricsReader:
    """Serve ``/metrics`` on the standard host and port; raises OSError naming them when that fails.

    ``on_first_span`` defers binding until this process records a span (a
    pool worker that may never do any), and then logs a failure instead.
    A bad port is reported with the other standard variables' problems.
    """
    host, port, _ = prometheus_address(environ)
    if on_first_span:
        store.call_on_next_record(
            lambda: threading.Thread(target=_serve_logging_failure, args=(host, port), daemon=True).start()
        )
    else:
        _serve(host, port)
    if hasattr(os, "register_at_fork"):
        parent = os.getpid()
        os.register_at_fork(
            after_in_child=lambda: store.call_on_next_record(lambda: _warn_forked_child(host, port, parent))
        )
    return PrometheusOperationMetricsReader(OperationMetrics(store, HistogramAggregation.EXPLICIT))


def _serve(host: str, port: int) -> None:
    try:
        start_http_server(port, addr=host)
    except OSError as error:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise OSError(
            f"cannot serve {shown} ({error.strerror or error}); set OTEL_EXPORTER_PROMETHEUS_HOST / "
            "OTEL_EXPORTER_PROMETHEUS_PORT"
        ) from error


def _serve_logging_failure(host: str, port: int) -> None:
    try:
        _serve(host, port)
    except OSError as error:
        _logger.warning("otel-ext: the Prometheus exporter of this process (pid %d) is off: %s", os.getpid(), error)


def _warn_forked_child(host: str, port: int, parent: int) -> None:
    """A forked worker that records spans is not on the scrape endpoint, which the parent serves: say so."""
    _logger.warning(
        "otel-ext: the Prometheus endpoint %s:%d is served by the parent process (pid %d); this forked "
        "process's (pid %d) metrics are not scraped. Under pre-fork servers export metrics over OTLP instead "
        "(OTEL_METRICS_EXPORTER=otlp)",
        host,
        port,
        parent,
        os.getpid(),
    )
