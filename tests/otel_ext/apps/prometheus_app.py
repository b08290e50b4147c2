"""A long-running app whose operation metrics a real Prometheus scrapes (``OTEL_METRICS_EXPORTER=prometheus``).

``python prometheus_app.py SPEC.json``: the test writes the spans to create,
``{"operations": [{"name": ..., "kind": "SERVER", "durations_ns": [...],
"errors": [indices], "oks": [indices]}]}``, so it knows every raw duration and
status. Each span gets an exact duration (explicit start and end times, all
ending now). The app then prints ``READY <count>`` and serves (the Prometheus
scrape endpoint, the monitor) until a line arrives on standard input or it is
closed. It uses only the OpenTelemetry API; otel-ext is set up from outside
(``opentelemetry-instrument``).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode


def emit(spec: dict[str, Any]) -> int:
    tracer = trace.get_tracer("prometheus_app")
    created = 0
    for operation in spec["operations"]:
        name = str(operation["name"])
        kind = SpanKind[str(operation.get("kind", "INTERNAL"))]
        errors = set(operation.get("errors", ()))
        oks = set(operation.get("oks", ()))
        for index, duration_ns in enumerate(operation["durations_ns"]):
            end = time.time_ns()
            span = tracer.start_span(name, kind=kind, start_time=end - int(duration_ns))
            if index in errors:
                span.set_status(Status(StatusCode.ERROR, "failed on purpose"))
            elif index in oks:
                span.set_status(Status(StatusCode.OK))
            span.end(end_time=end)
            created += 1
    return created


def main(arguments: list[str]) -> None:
    with open(arguments[0], encoding="utf-8") as spec_file:
        spec = json.load(spec_file)
    print(f"READY {emit(spec)}", flush=True)
    sys.stdin.readline()  # serve until the test writes a line or closes the pipe


if __name__ == "__main__":
    main(sys.argv[1:])
