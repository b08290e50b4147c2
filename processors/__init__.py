"""otel-ext span processors: usable on any OpenTelemetry SDK ``TracerProvider``.

Slow-operation tags, per-operation statistics with windowed percentiles,
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
    SlowSpan,
)
from processors._internal.thresholds import DEFAULT_SLOW_THRESHOLD_MS, ThresholdRules
from processors._internal.worker import PeriodicWorker

__all__ = [
    "DEFAULT_SLOW_THRESHOLD_MS",
    "DEFAULT_WINDOWS_S",
    "ErrorGroupStats",
    "ErrorStatsStore",
    "ExceptionStamp",
    "ExceptionTracker",
    "FingerprintRateLimiter",
    "IsolatingSpanProcessor",
    "LinkState",
    "LogHistogram",
    "OVERFLOW_OPERATION",
    "OperationStats",
    "OperationStatsProcessor",
    "OperationStatsStore",
    "PeriodicWorker",
    "RecordUnsampledSampler",
    "RecordedException",
    "SLOW_ATTRIBUTE",
    "SLOW_THRESHOLD_ATTRIBUTE",
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
