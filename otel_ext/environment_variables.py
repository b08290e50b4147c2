"""Every environment variable otel-ext reads of its own, declared once.

Standard ``OTEL_*`` variables (service name, resource, sampler, exporters,
endpoints, headers, protocol, ``OTEL_SDK_DISABLED``) keep the meaning the
OpenTelemetry specification gives them and are read by the SDK.
"""

OTEL_EXT_SLOW_THRESHOLD_MS = "OTEL_EXT_SLOW_THRESHOLD_MS"
"""
.. envvar:: OTEL_EXT_SLOW_THRESHOLD_MS

Spans lasting at least this many milliseconds are tagged ``otel_ext.slow``.
A number >= 0, default ``1000``.
"""

OTEL_EXT_SLOW_THRESHOLDS = "OTEL_EXT_SLOW_THRESHOLDS"
"""
.. envvar:: OTEL_EXT_SLOW_THRESHOLDS

Per-operation thresholds as ``pattern=ms`` pairs separated by commas, e.g.
``GET /search*=300,db.*=50``. Patterns are globs on the span name; the first
match wins; unmatched spans use :envvar:`OTEL_EXT_SLOW_THRESHOLD_MS`.
"""

OTEL_EXT_STATS_WINDOWS = "OTEL_EXT_STATS_WINDOWS"
"""
.. envvar:: OTEL_EXT_STATS_WINDOWS

Sliding windows for per-operation statistics, e.g. ``1m,5m,15m,1h`` (the
default). Units ``s``, ``m``, ``h``; each between 6 s and 24 h.
"""

OTEL_EXT_MAX_OPERATIONS = "OTEL_EXT_MAX_OPERATIONS"
"""
.. envvar:: OTEL_EXT_MAX_OPERATIONS

How many distinct operations get their own statistics (default ``500``);
further ones are counted together under ``otel_ext.overflow``.
"""

OTEL_EXT_MONITOR_PORT = "OTEL_EXT_MONITOR_PORT"
"""
.. envvar:: OTEL_EXT_MONITOR_PORT

Port of the local monitor endpoint (``/monitoring/performance``); unset means
off. A range such as ``9470-9479`` lets each process of a pre-fork server take
the first free port.
"""

OTEL_EXT_MONITOR_HOST = "OTEL_EXT_MONITOR_HOST"
"""
.. envvar:: OTEL_EXT_MONITOR_HOST

Address the monitor binds to, default ``127.0.0.1``.
"""

OTEL_EXT_RECORD_UNSAMPLED = "OTEL_EXT_RECORD_UNSAMPLED"
"""
.. envvar:: OTEL_EXT_RECORD_UNSAMPLED

``true`` (default): spans the sampler drops are still measured (recorded, not
exported), so statistics cover every operation. ``false``: only sampled spans
are measured.
"""

OTEL_EXT_SPANS_FILE = "OTEL_EXT_SPANS_FILE"
"""
.. envvar:: OTEL_EXT_SPANS_FILE

File the ``otlp_json_file`` trace exporter writes to (OTLP JSON lines), for
runs without a collector; unset means standard output.
"""
