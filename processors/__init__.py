"""otel-ext span processors: usable on any OpenTelemetry SDK ``TracerProvider``.

Slow-operation tags, per-operation statistics with windowed percentiles,
failure isolation between processors, and measurement of unsampled spans.
Depends only on the OpenTelemetry SDK.
"""

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

__all__ = [
    "DEFAULT_SLOW_THRESHOLD_MS",
    "DEFAULT_WINDOWS_S",
    "IsolatingSpanProcessor",
    "LogHistogram",
    "OVERFLOW_OPERATION",
    "OperationStats",
    "OperationStatsProcessor",
    "OperationStatsStore",
    "RecordUnsampledSampler",
    "SLOW_ATTRIBUTE",
    "SLOW_THRESHOLD_ATTRIBUTE",
    "SlowSpan",
    "SpanPipelineExporter",
    "SpanStep",
    "ThresholdRules",
    "nearest_rank",
    "refresh_process_pid",
    "tag_slow_spans",
    "with_attributes",
]
