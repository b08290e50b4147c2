"""A long-running app whose operation metrics a real Prometheus scrapes (``OTEL_METRICS_EXPORTER=prometheus``).

``python prometheus_app.py SPEC.json``: the test writes the spans to create,
``{"operations": [{"name": ..., "kind": "SERVER", "durations_ns": [...],
"errors": [indices], "oks": [indices]}]}``, so it knows every raw duration and
status. Each span gets an exact duration (explicit start and end times, all
ending now), made as ``metrics_app.py`` makes them. The app then prints
``READY <count>`` and serves (the Prometheus scrape endpoint, the monitor)
until a line arrives on standard input or it is closed. It uses only the
OpenTelemetry API; otel-ext is set up from outside (``opentelemetry-instrument``).
"""

from __future__ import annotations

import json
import sys

from metrics_app import emit  # type: ignore[import-not-found]  # the OTLP tests' span maker: a script beside this one
from opentelemetry import trace


def main(arguments: list[str]) -> None:
    with open(arguments[0], encoding="utf-8") as spec_file:
        spec = json.load(spec_file)
    print(f"READY {emit(trace.get_tracer('prometheus_app'), spec['operations'])}", flush=True)
    sys.stdin.readline()  # serve until the test writes a line or closes the pipe


if __name__ == "__main__":
    main(sys.argv[1:])
