"""Read otel-ext's settings from the environment without ever failing.

Every bad value becomes one readable problem (variable, value, accepted form,
what is used instead); the app always starts, on defaults where needed.
``otel-ext check`` prints the same problems and exits non-zero.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_HEADERS,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
    OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    OTEL_EXPORTER_PROMETHEUS_HOST,
    OTEL_EXPORTER_PROMETHEUS_PORT,
    OTEL_METRIC_EXPORT_INTERVAL,
    OTEL_METRIC_EXPORT_TIMEOUT,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG,
)

from otel_ext.environment_variables import (
    OTEL_EXT_ERROR_FLUSH_INTERVAL_MS,
    OTEL_EXT_ERROR_QUEUE_SIZE,
    OTEL_EXT_FOLD_NAME_IDS,
    OTEL_EXT_MAX_OPERATIONS,
    OTEL_EXT_METRICS_EXPLICIT_BOUNDS,
    OTEL_EXT_METRICS_EXPONENTIAL_MAX_SIZE,
    OTEL_EXT_METRICS_FILE,
    OTEL_EXT_METRICS_HISTOGRAM,
    OTEL_EXT_MONITOR_HOST,
    OTEL_EXT_MONITOR_PORT,
    OTEL_EXT_RECORD_UNSAMPLED,
    OTEL_EXT_SENTRY_ENABLED,
    OTEL_EXT_SENTRY_RATE_LIMIT,
    OTEL_EXT_SENTRY_SEND_PII,
    OTEL_EXT_SENTRY_SHUTDOWN_TIMEOUT_MS,
    OTEL_EXT_SLOW_THRESHOLD_MS,
    OTEL_EXT_SLOW_THRESHOLDS,
    OTEL_EXT_SPANS_FILE,
    OTEL_EXT_STATS_WINDOWS,
    OTEL_EXT_TRACE_URL_TEMPLATE,
    OTEL_EXT_USER_ID_ATTRIBUTES,
    OTEL_EXT_USER_ID_SECRET,
)
from processors import (
    DEFAULT_EXPLICIT_BOUNDS_S,
    DEFAULT_EXPONENTIAL_MAX_SIZE,
    DEFAULT_SLOW_THRESHOLD_MS,
    DEFAULT_WINDOWS_S,
    HistogramAggregation,
    ThresholdRules,
)

__all__ = [
    "EXPORTER_GROUPS",
    "FILE_EXPORTER",
    "RATIO_SAMPLERS",
    "Settings",
    "check_standard_variables",
    "installed",
    "metric_reader_problems",
    "otlp_protocol",
    "parse_window",
    "prometheus_address",
    "read_settings",
    "sampler_ratio",
    "timeout_problems",
    "window_label",
]

RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
_PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "grpc"  # what the Python SDK uses for the otlp exporter name
SAMPLER_GROUP = "opentelemetry_traces_sampler"
EXPORTER_GROUPS = {
    OTEL_TRACES_EXPORTER: "opentelemetry_traces_exporter",
    OTEL_METRICS_EXPORTER: "opentelemetry_metrics_exporter",
    OTEL_LOGS_EXPORTER: "opentelemetry_logs_exporter",
}
_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600}
_MIN_WINDOW_S, _MAX_WINDOW_S = 6, 24 * 3600
_MIN_SECRET_LENGTH = 16
_MAX_QUEUE_SIZE = 100_000  # each waiting exception keeps its traceback's frames alive
_PROMETHEUS_HOST, _PROMETHEUS_PORT = "localhost", 9464  # the specification's defaults
_TEMPORALITIES = ("cumulative", "delta", "lowmemory")
FILE_EXPORTER = "otlp_json_file"  # writes OTLP JSON lines to OTEL_EXT_SPANS_FILE / OTEL_EXT_METRICS_FILE
_HOST_NAME = r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
_MAX_EXPONENTIAL_SIZE = 4096
_MAX_EXPLICIT_BOUNDS = 200  # each bound is a series per operation in Prometheus  # the statistics histogram's own bucket budget
# OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION values, as the specification names them
_STANDARD_AGGREGATIONS = {
    "base2_exponential_bucket_histogram": HistogramAggregation.EXPONENTIAL,
    "explicit_bucket_histogram": HistogramAggregation.EXPLICIT,
}


@dataclass(frozen=True)
class Settings:
    """otel-ext's own settings, after validation."""

    slow_threshold_ms: float = DEFAULT_SLOW_THRESHOLD_MS
    slow_thresholds: tuple[tuple[str, float], ...] = ()
    windows_s: tuple[int, ...] = DEFAULT_WINDOWS_S
    max_operations: int = 500
    fold_name_ids: bool = True
    monitor_ports: tuple[int, int] | None = None
    monitor_host: str = "127.0.0.1"
    record_unsampled: bool = True
    spans_file: str | None = None
    metrics_file: str | None = None
    sentry_enabled: bool = True
    trace_url_template: str | None = None
    sentry_rate_limit: tuple[int, int] | None = (10, 60)  # events per fingerprint, per seconds
    error_queue_size: int = 1000
    error_flush_interval_ms: float = 1000.0
    sentry_shutdown_timeout_ms: float = 2000.0
    user_id_attributes: tuple[str, ...] = ("enduser.id", "user.id")
    user_id_secret: str | None = field(default=None, repr=False)
    sentry_send_pii: bool = False
    metrics_histogram: HistogramAggregation = HistogramAggregation.EXPONENTIAL
    metrics_explicit_bounds_s: tuple[float, ...] = DEFAULT_EXPLICIT_BOUNDS_S
    metrics_exponential_max_size: int = DEFAULT_EXPONENTIAL_MAX_SIZE

    def threshold_rules(self) -> ThresholdRules:
        return ThresholdRules(self.slow_threshold_ms, self.slow_thresholds, self.fold_name_ids)


def parse_milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError from None  # the accepted form says it better than float() does
    if not (math.isfinite(value) and value >= 0):
        raise ValueError
    return value


class PartlyInvalid(ValueError):
    """Some entries of a list are bad: the good ones are still used."""

    def __init__(self, message: str, usable: object) -> None:
        super().__init__(message)
        self.usable = usable


def parse_thresholds(text: str) -> tuple[tuple[str, float], ...]:
    rules, bad = [], []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        pattern, separator, milliseconds = entry.rpartition("=")
        try:
            if not separator or not pattern.strip():
                raise ValueError
            rules.append((pattern.strip(), parse_milliseconds(milliseconds.strip())))
        except ValueError:
            bad.append(entry)
    if bad:
        message = f"entries {', '.join(map(repr, bad))} are not pattern=ms with ms >= 0"
        if rules:
            raise PartlyInvalid(message, tuple(rules))
        raise ValueError(message)
    return tuple(rules)


def parse_window(text: str) -> int:
    """``"90s"``, ``"5m"``, ``"1h"`` → seconds; raises ValueError otherwise."""
    match = re.fullmatch(r"\s*([0-9]{1,6})\s*([smh])\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h")
    seconds = int(match[1]) * _WINDOW_UNITS[match[2]]
    if not _MIN_WINDOW_S <= seconds <= _MAX_WINDOW_S:
        raise ValueError(f"{text!r} is outside 6s..24h")
    return seconds


def window_label(seconds: int) -> str:
    """Shortest exact label: 3600 → ``"1h"``, 90 → ``"90s"``."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_windows(text: str) -> tuple[int, ...]:
    windows = tuple(sorted({parse_window(part) for part in text.split(",") if part.strip()}))
    if not windows:
        raise ValueError("no window given")
    return windows


def parse_positive_int(text: str) -> int:
    if not re.fullmatch(r"\s*[0-9]{1,9}\s*", text) or int(text) < 1:
        raise ValueError
    return int(text)


def parse_ports(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*([0-9]{1,5})\s*(?:-\s*([0-9]{1,5})\s*)?", text)
    if not match:
        raise ValueError
    first, last = int(match[1]), int(match[2] or match[1])
    if not 1 <= first <= last <= 65535:
        raise ValueError
    return first, last


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError
    return lowered == "true"


def parse_host(text: str) -> str:
    host = text.strip()
    if host.lower() == "localhost":
        return "localhost"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError from None
    return host


def parse_file_path(text: str) -> str:
    path = Path(text.strip()).expanduser()
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a directory")
    if not path.parent.is_dir():
        raise ValueError(f"folder {str(path.parent)!r} does not exist")
    return str(path)


def parse_interval_ms(text: str) -> float:
    value = parse_milliseconds(text)
    if not 1 <= value <= 3_600_000:
        raise ValueError("outside 1..3600000")
    return value


def parse_trace_url_template(text: str) -> str:
    template = text.strip()
    if not re.match(r"https?://[^/]", template, re.IGNORECASE):
        raise ValueError("not an http:// or https:// URL")
    if "{trace_id}" not in template:
        raise ValueError("no {trace_id} placeholder")
    return template


def parse_rate_limit(text: str) -> tuple[int, int] | None:
    if text.strip().lower() == "off":
        return None
    count, separator, window = text.partition("/")
    if not separator:
        raise ValueError
    return parse_positive_int(count), parse_window(window)


def parse_queue_size(text: str) -> int:
    size = parse_positive_int(text)
    if size > _MAX_QUEUE_SIZE:
        raise ValueError
    return size


def parse_names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError
    return names


def parse_secret(text: str) -> str:
    if len(text.strip()) < _MIN_SECRET_LENGTH:
        raise ValueError(f"shorter than {_MIN_SECRET_LENGTH} characters")
    return text.strip()


def parse_histogram_aggregation(text: str) -> HistogramAggregation:
    try:
        return HistogramAggregation(text.strip().lower())
    except ValueError:
        raise ValueError from None  # the accepted form says it better than the enum does


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError
    return value


def parse_bounds(text: str) -> tuple[float, ...]:
    """Increasing bounds in seconds; bad entries are named and the others kept."""
    bounds, bad = [], []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        try:
            bounds.append(_positive_seconds(entry))
        except ValueError:
            bad.append(entry)
    if len(bounds) > _MAX_EXPLICIT_BOUNDS:
        raise ValueError(f"{len(bounds)} bounds, more than {_MAX_EXPLICIT_BOUNDS}")
    for before, after in zip(bounds, bounds[1:]):
        if after <= before:
            raise ValueError(f"not strictly increasing: {after:g} after {before:g}")
    if bad:
        message = f"entries {', '.join(map(repr, bad))} are not numbers of seconds > 0"
        if bounds:
            raise PartlyInvalid(message, tuple(bounds))
        raise ValueError(message)
    if not bounds:
        raise ValueError
    return tuple(bounds)


def parse_exponential_size(text: str) -> int:
    size = parse_positive_int(text)
    if not 2 <= size <= _MAX_EXPONENTIAL_SIZE:
        raise ValueError
    return size


# (variable, Settings field, parser, accepted form, what a bad value falls back to)
_SETTINGS: tuple[tuple[str, str, Callable[[str], object], str, str], ...] = (
    (OTEL_EXT_SLOW_THRESHOLD_MS, "slow_threshold_ms", parse_milliseconds, "a number of ms >= 0, e.g. 1000", "using 1000"),
    (OTEL_EXT_SLOW_THRESHOLDS, "slow_thresholds", parse_thresholds,
     "pattern=ms pairs, e.g. 'GET /search*=300,db.*=50'", "no per-operation thresholds"),
    (OTEL_EXT_STATS_WINDOWS, "windows_s", parse_windows, "durations 6s..24h, e.g. '1m,5m,15m,1h'", "using 1m,5m,15m,1h"),
    (OTEL_EXT_MAX_OPERATIONS, "max_operations", parse_positive_int, "a whole number >= 1, e.g. 500", "using 500"),
    (OTEL_EXT_FOLD_NAME_IDS, "fold_name_ids", parse_bool, "true or false", "using true"),
    (OTEL_EXT_MONITOR_PORT, "monitor_ports", parse_ports, "a port 1-65535 or a range, e.g. 9470 or 9470-9479",
     "the monitor stays off"),
    (OTEL_EXT_MONITOR_HOST, "monitor_host", parse_host, "an IP address or localhost, e.g. 127.0.0.1", "using 127.0.0.1"),
    (OTEL_EXT_RECORD_UNSAMPLED, "record_unsampled", parse_bool, "true or false", "using true"),
    (OTEL_EXT_SPANS_FILE, "spans_file", parse_file_path, "a file path in an existing folder",
     "writing to standard output"),
    (OTEL_EXT_METRICS_FILE, "metrics_file", parse_file_path, "a file path in an existing folder",
     "writing to standard output"),
    (OTEL_EXT_SENTRY_ENABLED, "sentry_enabled", parse_bool, "true or false", "using true"),
    (OTEL_EXT_TRACE_URL_TEMPLATE, "trace_url_template", parse_trace_url_template,
     "a URL with {trace_id}, e.g. 'http://localhost:16686/trace/{trace_id}'", "Sentry events carry no trace link"),
    (OTEL_EXT_SENTRY_RATE_LIMIT, "sentry_rate_limit", parse_rate_limit,
     "count/duration with a whole count >= 1 and a duration 6s..24h, e.g. 10/1m, or off", "using 10/1m"),
    (OTEL_EXT_ERROR_QUEUE_SIZE, "error_queue_size", parse_queue_size, "a whole number 1..100000, e.g. 1000",
     "using 1000"),
    (OTEL_EXT_ERROR_FLUSH_INTERVAL_MS, "error_flush_interval_ms", parse_interval_ms, "ms between 1 and 3600000",
     "using 1000"),
    (OTEL_EXT_SENTRY_SHUTDOWN_TIMEOUT_MS, "sentry_shutdown_timeout_ms", parse_interval_ms,
     "ms between 1 and 3600000", "using 2000"),
    (OTEL_EXT_USER_ID_ATTRIBUTES, "user_id_attributes", parse_names, "attribute names, e.g. 'enduser.id,user.id'",
     "using enduser.id,user.id"),
    (OTEL_EXT_USER_ID_SECRET, "user_id_secret", parse_secret, f"a secret of at least {_MIN_SECRET_LENGTH} characters",
     "no user is sent to Sentry"),
    (OTEL_EXT_SENTRY_SEND_PII, "sentry_send_pii", parse_bool, "true or false", "using false"),
    (OTEL_EXT_METRICS_HISTOGRAM, "metrics_histogram", parse_histogram_aggregation, "exponential or explicit",
     f"using {OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION}'s choice if set, else exponential"),
    (OTEL_EXT_METRICS_EXPLICIT_BOUNDS, "metrics_explicit_bounds_s", parse_bounds,
     f"at most {_MAX_EXPLICIT_BOUNDS} increasing numbers of seconds (not ms) > 0, e.g. '0.01,0.1,1,10'",
     "using the HTTP semantic conventions' bounds"),
    (OTEL_EXT_METRICS_EXPONENTIAL_MAX_SIZE, "metrics_exponential_max_size", parse_exponential_size,
     f"a whole number 2..{_MAX_EXPONENTIAL_SIZE}, e.g. 160", "using 160"),
)
_SECRETS = {OTEL_EXT_USER_ID_SECRET}


def read_settings(environ: Mapping[str, str]) -> tuple[Settings, list[str]]:
    """Settings from ``environ`` plus one message per bad value, naming what is used instead."""
    problems: list[str] = []
    values: dict[str, object] = {}
    for name, field_name, parse, accepted, fallback in _SETTINGS:
        raw = environ.get(name)
        if raw is None or raw.strip() == "":
            continue
        shown = f"<hidden, {len(raw)} characters>" if name in _SECRETS else repr(raw)
        try:
            values[field_name] = parse(raw)
        except PartlyInvalid as error:
            values[field_name] = error.usable
            problems.append(f"{name}={shown} is partly invalid ({error}): expected {accepted}; using the other entries")
        except (ValueError, TypeError) as error:
            detail = f" ({error})" if str(error) else ""
            problems.append(f"{name}={shown} is invalid{detail}: expected {accepted}; {fallback}")
    if "metrics_histogram" not in values:  # unset (empty counts as unset, as the specification says) or invalid
        standard = environ.get(OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION, "").strip().lower()
        if standard in _STANDARD_AGGREGATIONS:
            values["metrics_histogram"] = _STANDARD_AGGREGATIONS[standard]
    return Settings(**values), problems  # type: ignore[arg-type]


def _is_host(text: str) -> bool:
    """An IP address or a syntactically valid host name (RFC 1123); ``256.1.1.1`` is neither."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        pass
    return not re.fullmatch(r"[0-9.]+", text) and re.fullmatch(_HOST_NAME, text) is not None


def prometheus_address(environ: Mapping[str, str]) -> tuple[str, int, str | None]:
    """(host, port, problem) for the Prometheus exporter; bad values fall back to the specification's defaults."""
    problems = []
    host = environ.get(OTEL_EXPORTER_PROMETHEUS_HOST, "").strip() or _PROMETHEUS_HOST
    if not _is_host(host):
        problems.append(
            f"{OTEL_EXPORTER_PROMETHEUS_HOST}={host!r} is invalid: expected an IP address or a host name, "
            f"e.g. 127.0.0.1; using {_PROMETHEUS_HOST}"
        )
        host = _PROMETHEUS_HOST
    port = _PROMETHEUS_PORT
    raw = environ.get(OTEL_EXPORTER_PROMETHEUS_PORT, "").strip()
    if raw.isdigit() and 1 <= int(raw) <= 65535:
        port = int(raw)
    elif raw:
        problems.append(
            f"{OTEL_EXPORTER_PROMETHEUS_PORT}={raw!r} is invalid: expected a port 1-65535; using {_PROMETHEUS_PORT}"
        )
    return host, port, "; ".join(problems) or None


def sampler_ratio(environ: Mapping[str, str]) -> tuple[float | None, str | None]:
    """The ratio for a ratio sampler, or ``(None, problem)`` if the argument is unusable.

    The SDK crashes provider construction on an out-of-range ratio and hides
    the bad value on a non-numeric one (open-telemetry/opentelemetry-python#5594).
    """
    raw = environ.get(OTEL_TRACES_SAMPLER_ARG)
    try:
        ratio = float(raw) if raw is not None else 1.0
    except ValueError:
        ratio = math.nan
    if 0.0 <= ratio <= 1.0:
        return ratio, None
    return None, (
        f"{OTEL_TRACES_SAMPLER_ARG}={raw!r} is invalid: expected a probability between 0 and 1, "
        "e.g. 0.25; sampling every trace (ratio 1.0)"
    )


def otlp_protocol(raw: str | None) -> str:
    """The OTLP protocol to use for a variable's value: case-insensitive, never failing.

    An unsupported value falls back to the closest supported one (an HTTP
    flavour to http/protobuf, anything else to gRPC), where the SDK would
    abort the whole setup.
    """
    if raw is None or not raw.strip():
        return DEFAULT_PROTOCOL
    protocol = raw.strip().lower()
    if protocol in _PROTOCOLS:
        return protocol
    return "http/protobuf" if protocol.startswith("http") else DEFAULT_PROTOCOL


def installed(group: str) -> dict[str, EntryPoint]:
    """Entry points of a group by name (exporters, samplers)."""
    return {entry_point.name: entry_point for entry_point in entry_points(group=group)}


def _is_positive_number(text: str) -> bool:
    try:
        return 0 < float(text) < math.inf
    except ValueError:
        return False


def timeout_problems(environ: Mapping[str, str]) -> list[str]:
    """Non-numeric OTLP timeouts: the SDK reads them as seconds and its gRPC exporter crashes on text."""
    problems = []
    for name in (OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OTEL_EXPORTER_OTLP_METRICS_TIMEOUT):
        raw = environ.get(name)
        if raw is not None and not _is_positive_number(raw):
            problems.append(f"{name}={raw!r} is invalid: expected a number of seconds > 0, e.g. 10; using 10")
    return problems


_METRIC_READER_DEFAULTS_MS = {OTEL_METRIC_EXPORT_INTERVAL: 60_000, OTEL_METRIC_EXPORT_TIMEOUT: 30_000}


def metric_reader_problems(environ: Mapping[str, str]) -> dict[str, tuple[int, str]]:
    """Unusable ``OTEL_METRIC_EXPORT_*`` values: the value to use instead and the problem, per variable.

    The SDK refuses to create a periodic reader for an interval of 0 or
    less, and every metric of that exporter is then lost.
    """
    found = {}
    for name, default in _METRIC_READER_DEFAULTS_MS.items():
        raw = environ.get(name, "").strip()
        if raw and not _is_positive_number(raw):
            found[name] = (default, f"{name}={raw!r} is invalid: expected a number of ms > 0, e.g. {default}; using {default}")
    return found


def _entries_without_value(raw: str) -> list[str]:
    return [entry.strip() for entry in raw.split(",") if entry.strip() and "=" not in entry]


def check_standard_variables(environ: Mapping[str, str]) -> list[str]:
    """Problems in standard OTEL_* variables that the SDK would only half-report.

    Header values are never repeated: they often hold credentials.
    """
    problems = []
    if environ.get(OTEL_TRACES_SAMPLER, "").strip().lower() in RATIO_SAMPLERS:
        problem = sampler_ratio(environ)[1]
        if problem:
            problems.append(problem)
    for entry in _entries_without_value(environ.get(OTEL_RESOURCE_ATTRIBUTES, "")):
        problems.append(f"{OTEL_RESOURCE_ATTRIBUTES}: entry {entry!r} has no key=value form; it is skipped")
    for name in (OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_EXPORTER_OTLP_METRICS_HEADERS):
        for entry in _entries_without_value(environ.get(name, "")):
            problems.append(f"{name}: an entry of {len(entry)} characters has no key=value form; it is skipped")
    for name in (OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL):
        raw = environ.get(name)
        if raw is not None and raw.strip().lower() not in _PROTOCOLS:
            problems.append(
                f"{name}={raw!r} is invalid: expected one of {', '.join(_PROTOCOLS)}; using {otlp_protocol(raw)}"
            )
    problems.extend(timeout_problems(environ))
    aggregation = environ.get(OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION, "").strip()
    if aggregation and aggregation.lower() not in _STANDARD_AGGREGATIONS:
        problems.append(
            f"{OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION}={aggregation!r} is invalid: expected "
            f"{' or '.join(_STANDARD_AGGREGATIONS)}; the SDK uses explicit buckets for the app's histograms, "
            f"otel-ext uses {OTEL_EXT_METRICS_HISTOGRAM} (default exponential) for its own"
        )
    for file_variable, exporter_variable in ((OTEL_EXT_SPANS_FILE, OTEL_TRACES_EXPORTER),
                                             (OTEL_EXT_METRICS_FILE, OTEL_METRICS_EXPORTER)):
        chosen = {part.strip().lower() for part in environ.get(exporter_variable, "").split(",")}
        if environ.get(file_variable, "").strip() and FILE_EXPORTER not in chosen:
            problems.append(
                f"{file_variable} is set but {exporter_variable} does not name {FILE_EXPORTER}; "
                "nothing is written to that file"
            )
    exporters = {part.strip().lower() for part in environ.get(OTEL_METRICS_EXPORTER, "").split(",")}
    prometheus_problem = prometheus_address(environ)[2]
    if prometheus_problem and "prometheus" in exporters:
        problems.append(prometheus_problem)
    temporality = environ.get(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, "").strip()
    if temporality and temporality.lower() not in _TEMPORALITIES:
        problems.append(
            f"{OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE}={temporality!r} is invalid: expected "
            f"{', '.join(_TEMPORALITIES)}; the SDK uses cumulative"
        )
    problems.extend(problem for _, problem in metric_reader_problems(environ).values())
    for variable, group in EXPORTER_GROUPS.items():
        names = set(installed(group)) | {"none"}
        for name in (part.strip() for part in environ.get(variable, "").split(",")):
            if name and name.lower() not in names:
                hint = " (pip install 'otel-ext[prometheus]')" if name.lower() == "prometheus" else ""
                problems.append(
                    f"{variable}: {name!r} is not an installed exporter{hint} "
                    f"(installed: {', '.join(sorted(names))}); it is skipped"
                )
    sampler = environ.get(OTEL_TRACES_SAMPLER, "").strip()
    samplers = installed(SAMPLER_GROUP)
    if sampler and sampler.lower() not in samplers:
        problems.append(
            f"{OTEL_TRACES_SAMPLER}={sampler!r} is not an installed sampler (installed: {', '.join(sorted(samplers))}); "
            "using parentbased_always_on"
        )
    for name in (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT):
        raw = environ.get(name, "").strip()
        if raw and not re.match(r"https?://[^/]", raw, re.IGNORECASE):
            problems.append(f"{name}={raw!r} is invalid: expected an http:// or https:// URL; export will fail")
    endpoint = environ.get(OTEL_EXPORTER_OTLP_ENDPOINT, "").rstrip("/")
    if re.search(r"/v1/(traces|metrics|logs)$", endpoint):
        problems.append(
            f"{OTEL_EXPORTER_OTLP_ENDPOINT}={endpoint!r} ends in a signal path; the SDK appends "
            "/v1/traces and /v1/metrics to it, so data goes to a doubled path: set the base URL "
            f"(e.g. {endpoint.rsplit('/v1/', 1)[0]!r}) or use OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
    return problems
