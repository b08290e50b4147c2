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

OTEL_EXT_METRICS_FILE = "OTEL_EXT_METRICS_FILE"
"""
.. envvar:: OTEL_EXT_METRICS_FILE

File the ``otlp_json_file`` metric exporter writes to (OTLP JSON lines);
unset means standard output.
"""

OTEL_EXT_SENTRY_ENABLED = "OTEL_EXT_SENTRY_ENABLED"
"""
.. envvar:: OTEL_EXT_SENTRY_ENABLED

``true`` (default): when sentry-sdk is installed (``pip install 'otel-ext[sentry]'``)
and ``SENTRY_DSN`` is set or the app initialised sentry-sdk, exceptions recorded
on spans are sent to Sentry and linked both ways. ``false``: no Sentry link;
``/monitoring/errors`` still counts errors.
"""

OTEL_EXT_TRACE_URL_TEMPLATE = "OTEL_EXT_TRACE_URL_TEMPLATE"
"""
.. envvar:: OTEL_EXT_TRACE_URL_TEMPLATE

Link from a Sentry event to the trace in your trace UI; ``{trace_id}`` (and
optionally ``{span_id}``) are replaced, e.g. ``http://jaeger:16686/trace/{trace_id}``.
Unset: events carry the trace id but no link.
"""

OTEL_EXT_SENTRY_RATE_LIMIT = "OTEL_EXT_SENTRY_RATE_LIMIT"
"""
.. envvar:: OTEL_EXT_SENTRY_RATE_LIMIT

At most this many Sentry events per error fingerprint (exception type,
operation, raising line) per interval, as ``count/duration``; default ``10/1m``;
``off`` sends every error. Suppressed errors are counted in ``/monitoring/errors``
and in the next event of their fingerprint, and their spans link to that
fingerprint's latest event.
"""

OTEL_EXT_ERROR_QUEUE_SIZE = "OTEL_EXT_ERROR_QUEUE_SIZE"
"""
.. envvar:: OTEL_EXT_ERROR_QUEUE_SIZE

How many recorded exceptions may wait for the background worker (default
``1000``); beyond that they are dropped and counted.
"""

OTEL_EXT_ERROR_FLUSH_INTERVAL_MS = "OTEL_EXT_ERROR_FLUSH_INTERVAL_MS"
"""
.. envvar:: OTEL_EXT_ERROR_FLUSH_INTERVAL_MS

How often the background worker sends recorded exceptions (default ``1000``).
"""

OTEL_EXT_SENTRY_SHUTDOWN_TIMEOUT_MS = "OTEL_EXT_SENTRY_SHUTDOWN_TIMEOUT_MS"
"""
.. envvar:: OTEL_EXT_SENTRY_SHUTDOWN_TIMEOUT_MS

Longest time shutdown and process exit wait for queued errors to reach Sentry
(default ``2000``).
"""

OTEL_EXT_USER_ID_ATTRIBUTES = "OTEL_EXT_USER_ID_ATTRIBUTES"
"""
.. envvar:: OTEL_EXT_USER_ID_ATTRIBUTES

Span attributes holding a user id, first found wins; default ``enduser.id,user.id``.
"""

OTEL_EXT_USER_ID_SECRET = "OTEL_EXT_USER_ID_SECRET"
"""
.. envvar:: OTEL_EXT_USER_ID_SECRET

Key for the pseudonymous user id sent to Sentry (HMAC-SHA256 of the raw id).
Unset: no user is sent. Its value is never logged.
"""

OTEL_EXT_SENTRY_SEND_PII = "OTEL_EXT_SENTRY_SEND_PII"
"""
.. envvar:: OTEL_EXT_SENTRY_SEND_PII

``true``: send the raw user id, ``user.email`` and ``client.address`` to
Sentry, and initialise sentry-sdk with ``send_default_pii``. Default ``false``.
"""

OTEL_EXT_METRICS_HISTOGRAM = "OTEL_EXT_METRICS_HISTOGRAM"
"""
.. envvar:: OTEL_EXT_METRICS_HISTOGRAM

How OTLP exporters receive the ``otel_ext.operation.duration`` histogram:
``exponential`` (base-2 exponential buckets, merge exactly across processes)
or ``explicit`` (the bounds of :envvar:`OTEL_EXT_METRICS_EXPLICIT_BOUNDS`).
Unset: follows ``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``
when that is set, else ``exponential``. The Prometheus exporter always gets
explicit buckets.
"""

OTEL_EXT_METRICS_EXPLICIT_BOUNDS = "OTEL_EXT_METRICS_EXPLICIT_BOUNDS"
"""
.. envvar:: OTEL_EXT_METRICS_EXPLICIT_BOUNDS

Bucket bounds in seconds for explicit duration histograms, increasing and
separated by commas. Default: the HTTP semantic conventions' advice,
``0.005,0.01,0.025,0.05,0.075,0.1,0.25,0.5,0.75,1,2.5,5,7.5,10``.
"""

OTEL_EXT_METRICS_EXPONENTIAL_MAX_SIZE = "OTEL_EXT_METRICS_EXPONENTIAL_MAX_SIZE"
"""
.. envvar:: OTEL_EXT_METRICS_EXPONENTIAL_MAX_SIZE

Most buckets an exported exponential histogram point has (default ``160``, as
the SDK's); wider distributions are exported at a lower scale.
"""

OTEL_EXT_FOLD_NAME_IDS = "OTEL_EXT_FOLD_NAME_IDS"
"""
.. envvar:: OTEL_EXT_FOLD_NAME_IDS

``true`` (default): span names with id-like path segments (numbers, UUIDs,
hex ids, long tokens), such as ``GET /users/8a7f…``, count under one
operation, ``GET /users/{id}``, in the monitor and the metrics. ``false``:
every name is its own operation, up to :envvar:`OTEL_EXT_MAX_OPERATIONS`.
"""
