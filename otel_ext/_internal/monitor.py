"""The local monitor endpoint: per-operation statistics as JSON.

``GET /monitoring/performance?window=5m&operation=GET%20/books*&kind=server``

Served by a stdlib HTTP server on a daemon thread, bound to 127.0.0.1 unless
told otherwise. Bad query parameters get a 400 with a message, never a stack
trace.

Pre-fork servers: statistics are per process, and a process serves them once
it has recorded a span. At fork, a parent that has recorded none yet (a
gunicorn master, or an app creating its process pool at start-up) frees its
port; it and each child bind (the first free port of the configured range) when
they record their first span. So the processes that do the work serve the
monitor, and an idle master never holds the port.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from opentelemetry.trace import SpanKind

from otel_ext._internal.config import parse_window, window_label
from otel_ext._internal.errors import ErrorPipeline
from processors import OperationStatsStore
from processors._internal.errors import report_once

__all__ = ["ERRORS_PATH", "PERFORMANCE_PATH", "MonitorServer", "QueryError", "errors_report", "performance_report"]

_logger = logging.getLogger("otel_ext.monitor")

PERFORMANCE_PATH = "/monitoring/performance"
ERRORS_PATH = "/monitoring/errors"
_KINDS = {kind.name.lower(): kind for kind in SpanKind}
_PARAMETERS = ("window", "operation", "kind")
_ERROR_PARAMETERS = ("window", "operation")
_MAX_OPERATION_LENGTH = 512
_BIND_ATTEMPTS_AFTER_FORK = 10
_BIND_RETRY_S = 0.1
_IDLE_CONNECTION_TIMEOUT_S = 10
_POLL_INTERVAL_S = 0.05  # how long stop() may wait for the serving loop


class QueryError(ValueError):
    """A query parameter the endpoint cannot answer; its text goes to the client."""


def _query_values(query: str, accepted: Sequence[str]) -> dict[str, str]:
    parameters = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(parameters) - set(accepted))
    if unknown:
        raise QueryError(f"unknown parameter(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(accepted)}")
    repeated = sorted(name for name, values in parameters.items() if len(values) > 1)
    if repeated:
        raise QueryError(f"parameter(s) given more than once: {', '.join(repeated)}")
    return {name: found[0] for name, found in parameters.items()}


def _window(values: Mapping[str, str], windows_s: Sequence[int]) -> int:
    accepted_windows = ", ".join(window_label(window) for window in windows_s)
    if "window" not in values:
        return windows_s[0]
    try:
        window_s = parse_window(values["window"])
    except ValueError as error:
        raise QueryError(f"window: {error}; accepted: {accepted_windows}") from None
    if window_s not in windows_s:
        raise QueryError(f"window {values['window']!r} is not kept; accepted: {accepted_windows}")
    return window_s


def _operation(values: Mapping[str, str]) -> str | None:
    operation = values.get("operation")
    if operation is not None and not operation.strip():
        raise QueryError("operation is empty; give a span name or a glob such as 'GET /books*'")
    if operation is not None and len(operation) > _MAX_OPERATION_LENGTH:
        raise QueryError(f"operation is {len(operation)} characters long; at most {_MAX_OPERATION_LENGTH} are accepted")
    return operation


def performance_report(store: OperationStatsStore, query: str) -> dict[str, object]:
    """The JSON document for ``/monitoring/performance?<query>``; raises QueryError."""
    values = _query_values(query, _PARAMETERS)
    window_s = _window(values, store.windows_s)
    operation = _operation(values)
    kind = None
    if "kind" in values:
        kind = _KINDS.get(values["kind"].strip().lower())
        if kind is None:
            raise QueryError(f"kind {values['kind']!r} is unknown; accepted: {', '.join(_KINDS)}")

    operations = store.snapshot(window_s, operation, kind)
    return {
        "window": window_label(window_s),
        "window_seconds": window_s,
        "pid": os.getpid(),
        "operations": [_rounded(stats.as_dict()) for stats in operations],
    }


def errors_report(errors: ErrorPipeline, query: str) -> dict[str, object]:
    """The JSON document for ``/monitoring/errors?<query>``; raises QueryError.

    Per operation and exception type: counts, first and last seen, the latest
    trace and Sentry event; plus what happened to the events sent to Sentry.
    """
    values = _query_values(query, _ERROR_PARAMETERS)
    window_s = _window(values, errors.store.windows_s)
    operation = _operation(values)
    errors.refresh()
    groups = [_with_times(stats.as_dict()) for stats in errors.store.snapshot(window_s, operation)]
    return {
        "window": window_label(window_s),
        "window_seconds": window_s,
        "pid": os.getpid(),
        "errors": groups,
        "sentry": errors.delivery(),
    }


def _with_times(group: dict[str, Any]) -> dict[str, Any]:
    """Readable UTC times beside the nanosecond ones."""
    for name in ("first_seen", "last_seen"):
        nanos = group[f"{name}_unix_nano"]
        group[name] = datetime.fromtimestamp(nanos / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds")
    return group


def _rounded(value: Any) -> Any:
    """Floats to 6 significant digits: sub-microsecond digits are noise at 0.5 % accuracy."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    return value


class _Handler(BaseHTTPRequestHandler):
    server: _MonitorHTTPServer
    server_version = "otel-ext-monitor"
    timeout = _IDLE_CONNECTION_TIMEOUT_S  # idle or half-open connections must not pin a thread forever

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        try:
            url = urlsplit(self.path)
            path = url.path.rstrip("/")
            if path == PERFORMANCE_PATH:
                self._send(HTTPStatus.OK, performance_report(self.server.store, url.query))
            elif path == ERRORS_PATH and self.server.errors is not None:
                self._send(HTTPStatus.OK, errors_report(self.server.errors, url.query))
            else:
                pages = " or ".join(f"{page}?window=5m" for page in self.server.pages())
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no such page; try {pages}"})
        except QueryError as error:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(error)})
        except Exception as error:  # noqa: BLE001 - never a stack trace to the client
            report_once(_logger, "monitor request", error)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; see the app's log"})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (other methods, malformed requests) as JSON too."""
        self.close_connection = True
        status = HTTPStatus(code)
        pages = " and ".join(self.server.pages())
        self._send(status, {"error": f"{code} {message or status.phrase}; the monitor answers GET {pages}"})

    def _send(self, status: HTTPStatus, document: dict[str, object]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Requests to the monitor stay out of the app's logs."""


class _MonitorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], store: OperationStatsStore, errors: ErrorPipeline | None = None
    ) -> None:
        self.store = store
        self.errors = errors
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def pages(self) -> list[str]:
        return [PERFORMANCE_PATH] + ([ERRORS_PATH] if self.errors is not None else [])


class MonitorServer:
    """Serves one store's statistics on the first free port of a range.

    Threading contract: ``start`` and ``stop`` from any thread; requests are
    served on daemon threads, so the monitor never delays interpreter exit.
    """

    def __init__(
        self, store: OperationStatsStore, host: str, ports: tuple[int, int], errors: ErrorPipeline | None = None
    ) -> None:
        self.store = store
        self.errors = errors
        self.host = host
        self.ports = ports
        self._server: _MonitorHTTPServer | None = None
        self._wanted = False  # start() was called: forked children serve too
        self._start_lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            in_parent = weakref.WeakMethod(self._after_fork_in_parent)
            in_child = weakref.WeakMethod(self._after_fork_in_child)
            os.register_at_fork(
                after_in_parent=lambda: (method := in_parent()) is not None and method(),
                after_in_child=lambda: (method := in_child()) is not None and method(),
            )

    @property
    def url(self) -> str | None:
        if self._server is None:
            return None
        return f"http://{self.host}:{self._server.server_port}{PERFORMANCE_PATH}"

    def start_on_first_span(self) -> None:
        """Serve once this process records a span: for worker processes that may never do any work."""
        self._wanted = True
        self._start_on_first_span()

    def start(self, attempts: int = 1) -> bool:
        """Bind and serve; logs and returns False when every port stays taken."""
        self._wanted = True
        first, last = self.ports
        for attempt in range(attempts):
            if attempt:
                time.sleep(_BIND_RETRY_S)
            for port in range(first, last + 1):
                try:
                    self._server = _MonitorHTTPServer((self.host, port), self.store, self.errors)
                except OSError:
                    continue
                threading.Thread(
                    target=self._server.serve_forever, args=(_POLL_INTERVAL_S,), name="otel-ext-monitor", daemon=True
                ).start()
                _logger.info("otel-ext: monitor at %s (pid %d)", self.url, os.getpid())
                return True
        if first == last:
            taken = f"port {first} on {self.host} is in use"
            advice = "give OTEL_EXT_MONITOR_PORT a range, e.g. 9470-9479, to serve every worker of a pre-fork server"
        else:
            taken = f"ports {first}-{last} on {self.host} are all in use"
            advice = "widen the range in OTEL_EXT_MONITOR_PORT"
        _logger.warning(
            "otel-ext: monitor %s; this process's (pid %d) statistics are not served (%s)", taken, os.getpid(), advice
        )
        return False

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _start_on_first_span(self) -> None:
        """Bind when this process records its next span, on a thread of our own (no I/O on the span path)."""

        def start_once() -> None:
            with self._start_lock:
                if self._server is None:
                    self.start(attempts=_BIND_ATTEMPTS_AFTER_FORK)

        self.store.call_on_next_record(
            lambda: threading.Thread(target=start_once, name="otel-ext-monitor-start", daemon=True).start()
        )

    def _after_fork_in_parent(self) -> None:
        """A parent that has recorded no span frees the port now (before the next fork) and waits for one."""
        if self._server is not None and self.store.is_empty():
            _logger.info("otel-ext: monitor port freed for forked workers (pid %d has recorded no span)", os.getpid())
            self.stop()
            self._start_on_first_span()

    def _after_fork_in_child(self) -> None:
        """Close the inherited copy of the parent's socket; serve once this child records a span."""
        if not self._wanted:
            return
        if self._server is not None:
            self._server.socket.close()
            self._server = None
        self._start_on_first_span()
