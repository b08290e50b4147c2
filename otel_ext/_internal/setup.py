"""Build the SDK pipeline with otel-ext's processors in it, once per process.

Both entry points end here: the ``opentelemetry-instrument`` configurator and
``otel_ext.configure()`` in app code. Standard ``OTEL_*`` variables are honoured
exactly as the SDK's own configurator does (resource, sampler, id generator,
exporters by name); otel-ext adds its processors, isolates processor failures
and tags slow spans on their way to the exporters.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry import metrics, trace
from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.sdk._configuration import (
    _get_id_generator,
    _import_id_generator,
    _import_sampler,
    _init_logging,
)
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_METRIC_EXPORT_INTERVAL,
    OTEL_METRIC_EXPORT_TIMEOUT,
    OTEL_SDK_DISABLED,
    OTEL_TRACES_SAMPLER,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.util.types import AttributeValue

from otel_ext._internal.config import (
    EXPORTER_GROUPS,
    FILE_EXPORTER,
    RATIO_SAMPLERS,
    Settings,
    check_standard_variables,
    installed,
    metric_reader_problems,
    otlp_protocol,
    read_settings,
    sampler_ratio,
    timeout_problems,
)
from otel_ext._internal.errors import ErrorPipeline, start_error_pipeline
from otel_ext._internal.monitor import MonitorServer
from otel_ext._internal.status import keep_first_error_description
from processors import (
    HistogramAggregation,
    IsolatingSpanProcessor,
    OperationMetrics,
    OperationMetricsReader,
    OperationStatsProcessor,
    OperationStatsStore,
    RecordUnsampledSampler,
    SpanPipelineExporter,
    refresh_process_pid,
    tag_slow_spans,
)

__all__ = ["OtelExt", "configure"]

_logger = logging.getLogger("otel_ext")

Signal = Literal["traces", "metrics", "logs"]
_EXPORTER_VARIABLES: dict[Signal, str] = {
    "traces": OTEL_TRACES_EXPORTER,
    "metrics": OTEL_METRICS_EXPORTER,
    "logs": OTEL_LOGS_EXPORTER,
}
_DEFAULT_EXPORTERS: dict[Signal, list[str]] = {"traces": ["otlp"], "metrics": ["otlp"], "logs": []}
_OTLP = "otlp"
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
_PROTOCOL_VARIABLES: dict[Signal, str] = {
    "traces": OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    "metrics": OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    "logs": OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
}
_PROMETHEUS = "prometheus"
_DEFAULT_OTLP_TIMEOUT_S = 10.0


@dataclass
class OtelExt:
    """What ``configure()`` set up: the statistics store, the monitor, the providers.

    ``shutdown()`` and ``force_flush()`` act on the providers otel-ext created;
    the SDK also shuts them down at interpreter exit.
    """

    settings: Settings
    store: OperationStatsStore | None = None
    tracer_provider: TracerProvider | None = None
    monitor: MonitorServer | None = None
    owns_provider: bool = False
    errors: ErrorPipeline | None = None
    meter_provider: MeterProvider | None = None
    _reuse_logged: bool = field(default=False, repr=False)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        flushed = True
        if self.tracer_provider is not None:
            flushed = self.tracer_provider.force_flush(timeout_millis)
        if self.meter_provider is not None:
            flushed = self.meter_provider.force_flush(timeout_millis) and flushed
        return flushed

    def shutdown(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        if self.errors is not None:
            self.errors.shutdown()
        if self.owns_provider and self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()  # after the spans: its final collection counts the last ones


_configure_lock = threading.Lock()
_active: OtelExt | None = None


def configure(resource_attributes: Mapping[str, AttributeValue] | None = None) -> OtelExt:
    """Set up tracing with otel-ext from the environment; later calls reuse it.

    ``resource_attributes`` are merged over the resource detected from
    ``OTEL_RESOURCE_ATTRIBUTES`` (the specification gives code precedence).

    Idempotent on purpose: under ``opentelemetry-instrument`` the configurator
    has already run, and a second pipeline would export every span twice.
    Never raises: a failure is logged and tracing stays as it was.
    """
    global _active
    with _configure_lock:
        if _active is not None:
            if not _active._reuse_logged:
                _active._reuse_logged = True
                _logger.info("otel-ext: already configured in this process; reusing that setup")
            return _active
        settings, problems = read_settings(os.environ)
        for problem in problems + check_standard_variables(os.environ):
            _logger.warning("otel-ext: %s", problem)
        try:
            _active = _build(settings, dict(resource_attributes or {}))
        except Exception:  # noqa: BLE001 - a broken setup must not stop the app
            _logger.exception("otel-ext: setup failed; the app runs without otel-ext")
            _active = OtelExt(settings)
        return _active


def _build(settings: Settings, resource_attributes: dict[str, AttributeValue]) -> OtelExt:
    if os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true":
        _logger.info("otel-ext: %s=true; nothing is set up", OTEL_SDK_DISABLED)
        return OtelExt(settings)
    span_exporters, metric_exporters, log_exporters = (_exporter_classes(signal) for signal in _EXPORTER_VARIABLES)
    explicit = settings.metrics_histogram is HistogramAggregation.EXPLICIT or _PROMETHEUS in metric_exporters
    store = OperationStatsStore(
        settings.threshold_rules(),
        settings.windows_s,
        settings.max_operations,
        explicit_bounds_s=settings.metrics_explicit_bounds_s if explicit else None,
    )
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        existing.add_span_processor(OperationStatsProcessor(store))
        keep_first_error_description()
        _logger.warning(
            "otel-ext: a TracerProvider was already set up by other code; otel-ext adds its statistics to it, "
            "but spans exported through that provider's own exporters carry no otel_ext.slow tags "
            "(see README: 'When another distro is installed')"
        )
        errors = start_error_pipeline(settings)
        return OtelExt(settings, store, existing, _start_monitor(settings, store, errors), errors=errors)

    resource = _resource(resource_attributes)
    provider = TracerProvider(
        sampler=_sampler(settings),
        resource=resource,
        id_generator=_import_id_generator(_get_id_generator()),
        active_span_processor=IsolatingSpanProcessor(),
    )
    provider.add_span_processor(OperationStatsProcessor(store))
    steps = (tag_slow_spans(store.rules), refresh_process_pid())
    bad_timeout = bool(timeout_problems(os.environ))
    for name, exporter_class in span_exporters.items():
        try:
            exporter = exporter_class(**_exporter_args(name, bad_timeout, settings.spans_file))
        except Exception as error:  # noqa: BLE001 - one broken exporter must not cost the others
            _logger.warning("otel-ext: trace exporter %r could not be created (%s); it is skipped", name, error)
            continue
        provider.add_span_processor(BatchSpanProcessor(SpanPipelineExporter(exporter, steps)))
    trace.set_tracer_provider(provider)
    keep_first_error_description()
    meter_provider = _start_metrics(metric_exporters, resource, store, settings, bad_timeout)
    try:
        if log_exporters:
            _init_logging(log_exporters, resource, setup_logging_handler=False)
    except Exception as error:  # noqa: BLE001 - tracing and the monitor work without them
        _logger.warning("otel-ext: logs export could not be set up (%s); traces are unaffected", error)
    errors = start_error_pipeline(settings)
    return OtelExt(
        settings,
        store,
        provider,
        _start_monitor(settings, store, errors),
        owns_provider=True,
        errors=errors,
        meter_provider=meter_provider,
    )


def _start_metrics(
    exporters: dict[str, type], resource: Resource, store: OperationStatsStore, settings: Settings, bad_timeout: bool
) -> MeterProvider | None:
    """The global MeterProvider, each reader adding otel-ext's operation metrics to the app's own.

    Replaces the SDK's ``_init_metrics``, whose readers would not carry them.
    Each reader is created on its own: one that fails is reported and skipped.
    """
    readers: list[MetricReader] = []
    for name, exporter_class in exporters.items():
        try:
            readers.append(_metric_reader(name, exporter_class, store, settings, bad_timeout))
        except Exception as error:  # noqa: BLE001 - one broken exporter must not cost the others
            _logger.warning("otel-ext: metric exporter %r could not be set up (%s); it is skipped", name, error)
    try:
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        metrics.set_meter_provider(meter_provider)
    except Exception as error:  # noqa: BLE001 - tracing and the monitor work without metrics
        _logger.warning("otel-ext: metrics could not be set up (%s); traces are unaffected", error)
        return None
    if hasattr(os, "register_at_fork"):
        provider_ref = weakref.ref(meter_provider)

        def after_in_child() -> None:
            provider = provider_ref()
            if provider is not None:
                _forget_parent_measurements(provider)

        os.register_at_fork(after_in_child=after_in_child)
    return meter_provider


def _forget_parent_measurements(meter_provider: MeterProvider) -> None:
    """In a forked child, start the app's instruments from zero, as otel-ext's own statistics do.

    The SDK keeps every instrument's running totals across fork, and the
    child exports under its own ``process.pid``: without this, a counter the
    parent had reached 3 on would be exported as 3 + the child's own counts
    by every worker, and a dashboard summing processes would count the
    parent's share once per worker. The locks are replaced too: a thread of
    the parent may have held one at the moment of the fork.
    """
    try:
        for storage in meter_provider._measurement_consumer._reader_storages.values():  # noqa: SLF001
            for matches in storage._instrument_view_instrument_matches.values():  # noqa: SLF001
                for match in matches:
                    match._lock = threading.Lock()  # noqa: SLF001
                    match._attributes_aggregation = {}  # noqa: SLF001
    except Exception as error:  # noqa: BLE001 - an SDK that keeps its state elsewhere: keep it as it is
        _logger.warning("otel-ext: the app's metric totals could not be reset in a forked process (%s)", error)


def _metric_reader(
    name: str, exporter_class: type[Any], store: OperationStatsStore, settings: Settings, bad_timeout: bool
) -> MetricReader:
    if name == _PROMETHEUS:
        from otel_ext._internal.integrations.prometheus import start_prometheus_reader

        # Always explicit buckets, whatever OTLP gets.
        return start_prometheus_reader(store, os.environ, on_first_span=started_by_multiprocessing())
    exporter_or_reader = exporter_class(**_exporter_args(name, bad_timeout, settings.metrics_file))
    if isinstance(exporter_or_reader, MetricReader):  # a reader of another package: the app's metrics only
        return exporter_or_reader
    operation_metrics = OperationMetrics(store, settings.metrics_histogram, settings.metrics_exponential_max_size)
    replaced = metric_reader_problems(os.environ)  # reported with the other standard variables
    return OperationMetricsReader(
        exporter_or_reader,
        operation_metrics,
        export_interval_millis=replaced.get(OTEL_METRIC_EXPORT_INTERVAL, (None,))[0],
        export_timeout_millis=replaced.get(OTEL_METRIC_EXPORT_TIMEOUT, (None,))[0],
    )


def _exporter_classes(signal: Signal) -> dict[str, type]:
    """Exporter classes named by ``OTEL_{SIGNAL}_EXPORTER``, each resolved on its own.

    Unset means the same defaults as ``opentelemetry-distro`` (OTLP for traces
    and metrics), in code as under ``opentelemetry-instrument``. Names and the
    OTLP protocol are read case-insensitively; an unknown name is skipped and
    an unsupported protocol replaced (both reported by ``check_standard_variables``),
    where the SDK would abort the whole setup.
    """
    variable = _EXPORTER_VARIABLES[signal]
    raw = os.environ.get(variable)
    names = _DEFAULT_EXPORTERS[signal] if raw is None else [part.strip().lower() for part in raw.split(",")]
    available = installed(EXPORTER_GROUPS[variable])
    classes: dict[str, type] = {}
    for name in names:
        if name == _OTLP:
            protocol = os.environ.get(_PROTOCOL_VARIABLES[signal]) or os.environ.get(OTEL_EXPORTER_OTLP_PROTOCOL)
            entry_point = available.get(_OTLP_BY_PROTOCOL[otlp_protocol(protocol)])
        else:
            entry_point = available.get(name)
        if entry_point is None:
            continue  # "none", empty, or not installed: already reported
        try:
            classes[name] = entry_point.load()
        except Exception as error:  # noqa: BLE001 - a broken package must not stop the app
            _logger.warning("otel-ext: %s: exporter %r failed to load (%s); it is skipped", variable, name, error)
    return classes


def _exporter_args(name: str, bad_timeout: bool, file: str | None) -> dict[str, object]:
    """Constructor arguments the environment alone cannot give.

    A non-numeric OTEL_EXPORTER_OTLP_TIMEOUT makes the SDK's gRPC exporter
    raise in its constructor; the problem is reported and the SDK's default
    timeout passed instead, so spans still leave.
    """
    if name == FILE_EXPORTER:
        return {"path": file} if file else {}
    if bad_timeout and name.startswith("otlp"):
        return {"timeout": _DEFAULT_OTLP_TIMEOUT_S}
    return {}


def _resource(attributes: dict[str, AttributeValue]) -> Resource:
    """The SDK's resource from the ``OTEL_*`` variables, ``attributes`` merged over it, plus ``process.pid``.

    ``process.pid`` lets a forked worker's spans be told from its parent's.
    """
    return Resource.create({"process.pid": os.getpid(), **attributes})


def _sampler(settings: Settings) -> Sampler:
    """The standard sampler from the environment, never crashing on a bad argument."""
    name = os.environ.get(OTEL_TRACES_SAMPLER, "").strip().lower()
    sampler: Sampler | None
    if name in RATIO_SAMPLERS:
        ratio = sampler_ratio(os.environ)[0]
        ratio = 1.0 if ratio is None else ratio
        sampler = TraceIdRatioBased(ratio) if name == "traceidratio" else ParentBasedTraceIdRatio(ratio)
    else:
        sampler = _import_sampler(name) if name else None
    sampler = sampler or DEFAULT_ON
    return RecordUnsampledSampler(sampler) if settings.record_unsampled else sampler


def started_by_multiprocessing() -> bool:
    """A process ``multiprocessing`` started (a ``spawn``/``forkserver`` pool worker, the fork server, the
    resource tracker): each sets up otel-ext afresh at start-up and may never record a span.

    Binding ports at start-up would only make each of them report the port
    as taken. (Forked workers are handled at fork.) ``multiprocessing``
    starts them with ``python -c "from multiprocessing… import …"``.
    """
    command = getattr(sys, "orig_argv", sys.argv)
    return any(part.startswith("from multiprocessing") for part in command)


def _start_monitor(settings: Settings, store: OperationStatsStore, errors: ErrorPipeline) -> MonitorServer | None:
    if settings.monitor_ports is None:
        return None
    monitor = MonitorServer(store, settings.monitor_host, settings.monitor_ports, errors)
    if started_by_multiprocessing():
        monitor.start_on_first_span()
    else:
        monitor.start()
    return monitor

