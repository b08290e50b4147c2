"""An app whose otel-ext operation metrics the metric-export tests decode from a real OTLP receiver.

``python metrics_app.py SPEC.json``: the test writes every span to create, so it
knows every raw duration, name and status::

    {"configure": false,                   # true: the app calls otel_ext.configure() itself
     "batches": [[OPERATION, ...], ...],   # between two batches: otel_ext.configure().force_flush()
     "monitor": "window=1h",               # optional: the monitor's JSON, read after the last batch
     "concurrent": false}                  # true: a batch's operations each end their spans on a thread of their own

    OPERATION = {"name": "GET /items" | "names": [one per span], "kind": "SERVER",
                 "durations_ns": [...], "errors": [indices], "oks": [indices],
                 "ended_ago_s": 0,                  # optional: the spans ended that long ago
                 "pause_every": 0, "pause_s": 0}    # optional: sleep pause_s after every pause_every spans

Each span is a root span with an exact duration (explicit start and end times,
all ending now, or ``ended_ago_s`` before now). The app prints one ``RESULT``
JSON line (pid, spans ended per batch, seconds spent ending them, the
monitor's answer) and exits normally, so the metrics arrive in the final
collection at shutdown unless the test asked for periodic exports. It uses only the OpenTelemetry API (plus
``otel_ext.configure()`` for flushing); otel-ext is set up from outside with
``opentelemetry-instrument`` unless ``configure`` is true.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode


def emit(tracer: trace.Tracer, operations: list[dict[str, Any]], concurrent: bool = False) -> int:
    if concurrent:
        with ThreadPoolExecutor(len(operations)) as pool:
            return sum(pool.map(lambda operation: emit(tracer, [operation]), operations))
    created = 0
    for operation in operations:
        durations = list(operation["durations_ns"])
        names = operation.get("names") or [operation["name"]] * len(durations)
        kind = SpanKind[str(operation.get("kind", "INTERNAL"))]
        errors = set(operation.get("errors", ()))
        oks = set(operation.get("oks", ()))
        ago_ns = int(float(operation.get("ended_ago_s", 0)) * 1e9)
        pause_every, pause_s = int(operation.get("pause_every", 0)), float(operation.get("pause_s", 0))
        for index, (name, duration_ns) in enumerate(zip(names, durations, strict=True)):
            end = time.time_ns() - ago_ns
            span = tracer.start_span(str(name), kind=kind, start_time=end - int(duration_ns))
            if index in errors:
                span.set_status(Status(StatusCode.ERROR, "failed on purpose"))
            elif index in oks:
                span.set_status(Status(StatusCode.OK))
            span.end(end_time=end)
            created += 1
            if pause_every and created % pause_every == 0:
                time.sleep(pause_s)
    return created


def monitor(query: str) -> dict[str, Any]:
    port = os.environ["OTEL_EXT_MONITOR_PORT"].split("-")[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/monitoring/performance?{query}", timeout=5) as response:
        return json.load(response)  # type: ignore[no-any-return]


def main(spec_path: str) -> None:
    import otel_ext

    with open(spec_path, encoding="utf-8") as spec_file:
        spec = json.load(spec_file)
    handle = otel_ext.configure() if spec.get("configure") else None
    tracer = trace.get_tracer("metrics_app")
    created, ending_s = [], 0.0
    for position, batch in enumerate(spec["batches"]):
        if position:
            (handle or otel_ext.configure()).force_flush()
        started = time.perf_counter()
        created.append(emit(tracer, batch, bool(spec.get("concurrent"))))
        ending_s += time.perf_counter() - started
    outcome: dict[str, object] = {"pid": os.getpid(), "created": created, "ending_s": ending_s}
    if spec.get("monitor"):
        outcome["monitor"] = monitor(spec["monitor"])
    print("RESULT " + json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
