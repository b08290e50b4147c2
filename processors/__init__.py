"""otel-ext span processors and metric views: usable on any OpenTelemetry SDK provider.

Slow-operation tags, per-operation statistics with windowed percentiles,
RED metrics per operation for any metric reader or exporter,
failure isolation between processors, measurement of unsampled spans, and
exceptions recorded on spans kept for error statistics and an error tracker.
Depends only on the OpenTelemetry SDK.
"""

from processors._internal.error_stats import ErrorGroupStats, ErrorStatsStore
from processors._internal.exceptions import (
    ExceptionStamp,
    ExceptionTracker,
    FingerprintRateLimiter,
    LinkState,
    RecordedException,
    handled_client_error,
    install_record_hook,
)
from processors._internal.isolation import IsolatingSpanProcessor
from processors._internal.metrics import (
    CALLS_METRIC,
    DEFAULT_EXPLICIT_BOUNDS_S,
    DEFAULT_EXPONENTIAL_MAX_SIZE,
    DURATION_METRIC,
    SLOW_CALLS_METRIC,
    SUCCESS_RATE_METRIC,
    HistogramAggregation,
    OperationMetrics,
    OperationMetricsMixin,
    OperationMetricsReader,
)
from processors._internal.pipeline import (
    SLOW_ATTRIBUTE,
    SLOW_THRESHOLD_ATTRIBUTE,
    SpanPipelineExporter,
    SpanStep,
    refresh_process_pid,
    tag_slow_spans,
    with_attributes,
)
from processors._internal.sampling import RecordUnsampledSampler
from processors._internal.sketch import LogHistogram, nearest_rank
from processors._internal.stats import (
    DEFAULT_WINDOWS_S,
    OVERFLOW_OPERATION,
    OperationStats,
    OperationStatsProcessor,
    OperationStatsStore,
    OperationTotals,
    SlowSpan,
)
from processors._internal.thresholds import DEFAULT_SLOW_THRESHOLD_MS, ThresholdRules
from processors._internal.worker import PeriodicWorker

__all__ = [
    "CALLS_METRIC",
    "DEFAULT_EXPLICIT_BOUNDS_S",
    "DEFAULT_EXPONENTIAL_MAX_SIZE",
    "DEFAULT_SLOW_THRESHOLD_MS",
    "DEFAULT_WINDOWS_S",
    "DURATION_METRIC",
    "OVERFLOW_OPERATION",
    "SLOW_ATTRIBUTE",
    "SLOW_CALLS_METRIC",
    "SLOW_THRESHOLD_ATTRIBUTE",
    "SUCCESS_RATE_METRIC",
    "ErrorGroupStats",
    "ErrorStatsStore",
    "ExceptionStamp",
    "ExceptionTracker",
    "FingerprintRateLimiter",
    "HistogramAggregation",
    "IsolatingSpanProcessor",
    "LinkState",
    "LogHistogram",
    "OperationMetrics",
    "OperationMetricsMixin",
    "OperationMetricsReader",
    "OperationStats",
    "OperationStatsProcessor",
    "OperationStatsStore",
    "OperationTotals",
    "PeriodicWorker",
    "RecordUnsampledSampler",
    "RecordedException",
    "SlowSpan",
    "SpanPipelineExporter",
    "SpanStep",
    "ThresholdRules",
    "handled_client_error",
    "install_record_hook",
    "nearest_rank",
    "refresh_process_pid",
    "tag_slow_spans",
    "with_attributes",
]
