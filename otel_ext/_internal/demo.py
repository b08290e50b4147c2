"""``otel-ext demo``: the example shop, unmodified, under ``opentelemetry-instrument``.

Starts ``examples/flask_shop/app.py`` with otel-ext active, sends real HTTP
requests to it, then prints the monitor's per-operation table and says where
the spans went. Without an OTLP endpoint in the environment, spans and
metrics go to local OTLP-JSON files, so no server is needed; the p95 a backend
would compute from the exported histogram is then shown beside the monitor's.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
)

from otel_ext._internal.config import FILE_EXPORTER, read_settings, window_label
from otel_ext._internal.monitor import PERFORMANCE_PATH
from processors import DURATION_METRIC, nearest_rank

__all__ = ["run_demo"]

_APP = Path(__file__).resolve().parents[2] / "examples" / "flask_shop" / "app.py"
# (method, path template, weight): a shop's traffic, with the slow search and the failing checkout in it.
_TRAFFIC = (
    ("GET", "/books", 30),
    ("GET", "/books/{book_id}", 20),
    ("GET", "/search?q=python", 8),
    ("POST", "/checkout", 24),
    ("GET", "/reports/daily", 10),
    ("GET", "/health", 8),
)
_CONCURRENCY = 8
# What the comparison with the monitor reads: running totals in exponential buckets.
_DEMO_METRICS = {"OTEL_EXT_METRICS_HISTOGRAM": "exponential", "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "cumulative"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _schedule(total: int, seed: int = 7) -> list[tuple[str, str]]:
    """A shuffled, reproducible request list following the weights above."""
    rng = random.Random(seed)
    weights = [weight for _, _, weight in _TRAFFIC]
    picks = rng.choices(_TRAFFIC, weights=weights, k=total)
    return [(method, path.format(book_id=rng.randint(1, 60))) for method, path, _ in picks]


def _send(base: str, method: str, path: str) -> int:
    body = json.dumps({"book_id": 3, "quantity": 1}).encode() if method == "POST" else None
    request = urllib.request.Request(
        base + path, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _wait_until_up(url: str, app: subprocess.Popen[bytes], deadline_s: float = 30.0) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and app.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total
    live = sys.stdout.isatty()
    if live or done == total or done % max(1, total // 10) == 0:
        line = f"  requests [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        print("\r" + line if live else line, end="\n" if done == total or not live else "", flush=True)


def _table(operations: list[dict[str, object]]) -> Iterator[str]:
    header = f"{'operation':<34} {'kind':<8} {'calls':>6} {'success':>8} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'slow':>5}"
    yield header
    yield "-" * len(header)
    ordered = sorted(operations, key=lambda op: (op["kind"] != "SERVER", op["kind"], -float(op["p95_ms"])))  # type: ignore[arg-type]
    for op in ordered:
        yield (
            f"{str(op['name'])[:34]:<34} {str(op['kind']).lower():<8} {op['count']:>6} "
            f"{100 * float(op['success_rate']):>7.1f}% {float(op['p50_ms']):>9.1f} "  # type: ignore[arg-type]
            f"{float(op['p95_ms']):>9.1f} {float(op['p99_ms']):>9.1f} {op['slow_count']:>5}"  # type: ignore[arg-type]
        )


def _count_spans(path: Path) -> tuple[int, int]:
    """(spans, spans tagged slow) in an OTLP-JSON-lines file."""
    spans = slow = 0
    if not path.exists():
        return 0, 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        for resource_spans in json.loads(line).get("resourceSpans", []):
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    spans += 1
                    slow += any(a.get("key") == "otel_ext.slow" for a in span.get("attributes", []))
    return spans, slow


def _exponential_quantile(point: Mapping[str, object], quantile: float) -> float | None:
    """The ``quantile`` of an OTLP-JSON exponential histogram point, in its unit, as a backend computes it."""
    count = int(point.get("count", 0))  # type: ignore[call-overload]
    if not count:
        return None
    base = 2.0 ** (2.0 ** -int(point.get("scale", 0)))  # type: ignore[call-overload]
    rank = nearest_rank(count, quantile)
    seen = int(point.get("zeroCount", 0))  # type: ignore[call-overload]
    if rank <= seen:
        return 0.0
    positive: Mapping[str, Any] = point.get("positive", {})  # type: ignore[assignment]
    offset = int(positive.get("offset", 0))
    bucket_counts: list[str | int] = positive.get("bucketCounts", [])
    for position, bucket_count in enumerate(bucket_counts):
        seen += int(bucket_count)
        if seen >= rank:
            return 2.0 * base ** (offset + position + 1) / (base + 1.0)
    return math.nan


def _exported_p95_ms(path: Path) -> dict[tuple[str, str], tuple[int, float]]:
    """(calls, p95 ms) per (operation, kind) from the last duration points in an OTLP-JSON-lines file."""
    latest: dict[tuple[str, str], Mapping[str, object]] = {}
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        for resource_metrics in json.loads(line).get("resourceMetrics", []) if line.strip() else []:
            for scope_metrics in resource_metrics.get("scopeMetrics", []):
                for metric in scope_metrics.get("metrics", []):
                    if metric.get("name") != DURATION_METRIC:
                        continue
                    for point in metric.get("exponentialHistogram", {}).get("dataPoints", []):
                        attributes = {a["key"]: a["value"].get("stringValue") for a in point.get("attributes", [])}
                        kind = str(attributes.get("span.kind", "")).removeprefix("SPAN_KIND_")
                        latest[(str(attributes.get("span.name")), kind)] = point
    return {
        key: (int(point.get("count", 0)), (_exponential_quantile(point, 0.95) or 0.0) * 1000)  # type: ignore[call-overload]
        for key, point in latest.items()
    }


def _app_environment(
    output: Path, app_port: int, monitor_port: int, spans_file: Path, metrics_file: Path
) -> Mapping[str, str]:
    environment = dict(os.environ)
    environment.update(
        SHOP_PORT=str(app_port),
        SHOP_DB=str(output / "shop.sqlite3"),
        OTEL_PYTHON_DISTRO="otel_ext",
        OTEL_PYTHON_CONFIGURATOR="otel_ext",
        OTEL_EXT_MONITOR_PORT=str(monitor_port),
        PYTHONUNBUFFERED="1",
    )
    environment.setdefault("OTEL_SERVICE_NAME", "flask-shop")
    if not (environment.get(OTEL_EXPORTER_OTLP_ENDPOINT) or environment.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)):
        environment.update(
            OTEL_TRACES_EXPORTER=FILE_EXPORTER,
            OTEL_EXT_SPANS_FILE=str(spans_file),
            OTEL_METRICS_EXPORTER=FILE_EXPORTER,
            OTEL_EXT_METRICS_FILE=str(metrics_file),
            **_DEMO_METRICS,
            OTEL_LOGS_EXPORTER="none",
        )
    return environment


def _print_exported_metrics(metrics_file: Path, operations: list[dict[str, object]]) -> None:
    exported = _exported_p95_ms(metrics_file)
    print(f"Metrics: RED metrics for {len(exported)} operations written as OTLP JSON lines to {metrics_file} "
          f"({DURATION_METRIC} and friends). Server operations, p95 from the exported histogram beside the monitor's:")
    for op in operations:
        key = (str(op["name"]), str(op["kind"]))
        if op["kind"] == "SERVER" and key in exported:
            calls, p95_ms = exported[key]
            print(f"  {key[0][:34]:<34} calls {calls:>5}   p95 exported {p95_ms:>9.1f} ms   "
                  f"monitor {float(op['p95_ms']):>9.1f} ms")  # type: ignore[arg-type]


def run_demo(requests_total: int = 300, output: str = "otel-ext-demo") -> int:
    """Run the demo; returns the process exit code."""
    if not _APP.exists():
        print(f"otel-ext demo: the example app is not at {_APP}; run the demo from a checkout of otel-ext "
              "installed with `pip install -e '.[demo]'`", file=sys.stderr)
        return 2
    instrument = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent)) or shutil.which(
        "opentelemetry-instrument"
    )
    if instrument is None:
        print("otel-ext demo: opentelemetry-instrument not found; install otel-ext with its dependencies",
              file=sys.stderr)
        return 2
    output_dir = Path(output).resolve()
    spans_file, metrics_file = output_dir / "spans.jsonl", output_dir / "metrics.jsonl"
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        spans_file.unlink(missing_ok=True)
        metrics_file.unlink(missing_ok=True)
        (output_dir / "shop.sqlite3").unlink(missing_ok=True)
    except OSError as error:
        print(f"otel-ext demo: cannot use {output_dir} for the demo's files ({error.strerror}); "
              "choose another folder with --output", file=sys.stderr)
        return 2
    app_port, monitor_port = _free_port(), _free_port()
    environment = _app_environment(output_dir, app_port, monitor_port, spans_file, metrics_file)
    base = f"http://127.0.0.1:{app_port}"
    log_path = output_dir / "app.log"
    print(f"Starting the example shop under opentelemetry-instrument (otel-ext active) on {base} ...")
    started = time.monotonic()
    with log_path.open("wb") as log:
        app = subprocess.Popen(  # noqa: S603 - our own interpreter and example
            [instrument, sys.executable, str(_APP)], env=environment, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            if not _wait_until_up(base + "/health", app):
                print(f"otel-ext demo: the app did not start; its log is {log_path}:", file=sys.stderr)
                print(log_path.read_text()[-3000:], file=sys.stderr)
                return 1
            schedule = _schedule(requests_total)
            print(f"Sending {len(schedule)} requests ({_CONCURRENCY} at a time) ...")
            statuses: list[int] = []
            with ThreadPoolExecutor(_CONCURRENCY) as pool:
                for status in pool.map(lambda item: _send(base, *item), schedule):
                    statuses.append(status)
                    _progress(len(statuses), len(schedule))
            window = window_label(max(read_settings(environment)[0].windows_s))
            with urllib.request.urlopen(
                f"http://127.0.0.1:{monitor_port}{PERFORMANCE_PATH}?window={window}", timeout=10
            ) as response:
                report = json.load(response)
        finally:
            app.send_signal(signal.SIGTERM)
            try:
                app.wait(timeout=15)
            except subprocess.TimeoutExpired:
                app.kill()
    failures = sum(status >= 500 for status in statuses)
    print(f"\nPer-operation statistics from the monitor ({PERFORMANCE_PATH}?window={report['window']}), "
          f"{failures} of {len(statuses)} requests answered 5xx:\n")
    for line in _table(report["operations"]):
        print("  " + line)
    threshold = environment.get("OTEL_EXT_SLOW_THRESHOLD_MS", "1000")
    print(f"\n'slow' counts spans lasting >= their threshold (default {threshold} ms); 'success' is the share of "
          "spans whose status is not ERROR (a 404 is a success, a 500 is not).")
    if environment.get("OTEL_TRACES_EXPORTER") == FILE_EXPORTER:
        spans, slow = _count_spans(spans_file)
        print(f"Traces: {spans} spans written as OTLP JSON lines to {spans_file} ({slow} tagged otel_ext.slow=true).")
        _print_exported_metrics(metrics_file, report["operations"])
        overridden = [
            f"{name}={os.environ[name]}"
            for name, used in _DEMO_METRICS.items()
            if os.environ.get(name, used).strip().lower() != used
        ]
        if overridden:
            print(f"(The demo writes {', '.join(f'{name}={used}' for name, used in _DEMO_METRICS.items())} for this "
                  f"comparison; your {', '.join(overridden)} applies to your own runs.)")
        print("To send them to Jaeger or Tempo instead, set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://localhost:4317).")
    else:
        endpoint = environment.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or environment.get(OTEL_EXPORTER_OTLP_ENDPOINT)
        protocol = environment.get(OTEL_EXPORTER_OTLP_PROTOCOL, "grpc")
        failures = sum(
            "Failed to export" in line or "Transient error" in line
            for line in log_path.read_text(errors="replace").splitlines()
        )
        if failures:
            print(f"Traces: export over OTLP ({protocol}) to {endpoint} FAILED {failures} time(s); is the collector "
                  f"running? See {log_path}.")
        else:
            print(f"Traces: exported over OTLP ({protocol}) to {endpoint}; slow spans carry otel_ext.slow=true.")
    print(f"App log: {log_path}. Done in {time.monotonic() - started:.1f} s.")
    return 0
