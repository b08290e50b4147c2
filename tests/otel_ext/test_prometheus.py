"""End to end with a real Prometheus: an app under ``opentelemetry-instrument`` with
``OTEL_METRICS_EXPORTER=prometheus`` serves otel-ext's operation metrics, a real
Prometheus server scrapes them every second, and PromQL answers what the raw
durations and statuses say.

Every expected value is computed here from the spans the test asked the app to
create (seeded random durations, a few exactly on bucket bounds, known error
and OK indices), never from what otel-ext reports.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import INSTRUMENT, clean_environment, free_port
from tests.support.prometheus_server import PrometheusServer, require_prometheus

APP = Path(__file__).resolve().parent / "apps" / "prometheus_app.py"
SERVICE = "shop"
MS = 1_000_000
# The documented default explicit bounds, in nanoseconds so that the expected counts are exact integers.
BOUNDS_NS = [5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000]
BOUNDS_NS = [bound * MS for bound in BOUNDS_NS]
SLOW_THRESHOLD_NS = 1000 * MS  # OTEL_EXT_SLOW_THRESHOLD_MS's default; slow means duration >= threshold
SKETCH_RELATIVE_ERROR = 0.0055  # the monitor's percentiles: 0.54 % at the store's scale

DURATION = "otel_ext_operation_duration_seconds"
CALLS = "otel_ext_operation_calls_total"
SLOW_CALLS = "otel_ext_operation_slow_calls_total"
SUCCESS_RATE = "otel_ext_operation_success_rate"


@dataclass(frozen=True)
class Operation:
    name: str
    kind: str
    durations_ns: list[int]
    errors: list[int]
    oks: list[int]

    @property
    def selector(self) -> str:
        return f'span_name="{self.name}"'

    def spec(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "durations_ns": self.durations_ns,
                "errors": self.errors, "oks": self.oks}

    # -- what the raw spans say -----------------------------------------------

    @property
    def count(self) -> int:
        return len(self.durations_ns)

    def cumulative(self, bound_ns: int) -> int:
        """Spans with duration <= bound: the ``le`` bucket's count."""
        return sum(1 for duration in self.durations_ns if duration <= bound_ns)

    def p95_rank(self) -> int:
        return -(-95 * self.count // 100)  # nearest rank: ceil(0.95 n), in integers

    def exact_p95_ns(self) -> int:
        return sorted(self.durations_ns)[self.p95_rank() - 1]

    def p95_bucket_s(self) -> tuple[float, float]:
        """(lo, hi] of the explicit bucket holding the exact p95, in seconds."""
        p95 = self.exact_p95_ns()
        upper = next(position for position, bound in enumerate(BOUNDS_NS) if p95 <= bound)
        lower_ns = BOUNDS_NS[upper - 1] if upper else 0
        return lower_ns / 1e9, BOUNDS_NS[upper] / 1e9

    def interpolated_p95_s(self) -> float:
        """What histogram_quantile(0.95, ...) computes from the exact buckets: linear within (lo, hi]."""
        lo, hi = self.p95_bucket_s()
        below = self.cumulative(round(lo * 1e9))
        inside = self.cumulative(round(hi * 1e9)) - below
        return lo + (hi - lo) * (0.95 * self.count - below) / inside

    def success_ratio(self) -> float:
        return (self.count - len(self.errors)) / self.count

    def status_counts(self) -> dict[str, int]:
        unset = self.count - len(self.errors) - len(self.oks)
        counts = {"STATUS_CODE_UNSET": unset, "STATUS_CODE_OK": len(self.oks), "STATUS_CODE_ERROR": len(self.errors)}
        # UNSET and ERROR exist from the first call, at zero too: a query or alert over them never misses
        # an operation that only ever failed, nor the first error of one that never had.
        return {status: count for status, count in counts.items() if count or status != "STATUS_CODE_OK"}

    def slow_count(self) -> int:
        return sum(1 for duration in self.durations_ns if duration >= SLOW_THRESHOLD_NS)


def _operations() -> list[Operation]:
    rng = random.Random(20240611)
    # Log-uniform 2 ms .. 1.6 s plus values exactly on bounds (le is inclusive) and at the slow threshold.
    checkout = [round(math.exp(rng.uniform(math.log(2 * MS), math.log(1600 * MS)))) for _ in range(190)]
    checkout += [5 * MS, 100 * MS, 100 * MS, 250 * MS, 750 * MS, 1000 * MS, 1000 * MS + 1, 75 * MS - 1, 2 * MS, 9 * MS]
    rng.shuffle(checkout)
    query = [round(rng.gauss(30 * MS, 8 * MS)) for _ in range(119)] + [50 * MS]
    query = [max(duration, MS) for duration in query]
    payments = [max(round(rng.gauss(40 * MS, 10 * MS)), MS) for _ in range(15)]
    checkout_marked = rng.sample(range(len(checkout)), 31)
    query_marked = rng.sample(range(len(query)), 12)
    return [
        Operation("GET /checkout", "SERVER", checkout, errors=sorted(checkout_marked[:17]),
                  oks=sorted(checkout_marked[17:])),
        Operation("db.query", "CLIENT", query, errors=sorted(query_marked[:5]), oks=sorted(query_marked[5:])),
        # Fails every time: the success-rate query must give 0 for it, not leave it out.
        Operation("POST /pay", "SERVER", payments, errors=list(range(len(payments))), oks=[]),
    ]


OPERATIONS = _operations()


@dataclass
class Deployment:
    app: subprocess.Popen[str]
    metrics_url: str
    monitor_url: str
    prometheus: PrometheusServer
    stderr_path: Path


def _wait_for_ready(app: subprocess.Popen[str], stdout_path: Path, stderr_path: Path, timeout_s: float = 20) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in stdout_path.read_text(encoding="utf-8").splitlines():
            if line.startswith("READY "):
                return int(line.split()[1])
        if app.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"app not ready (exit {app.poll()}); stderr:\n{stderr_path.read_text()[-3000:]}")


def _stop(app: subprocess.Popen[str]) -> None:
    if app.poll() is None:
        try:
            assert app.stdin is not None
            app.stdin.close()  # the app's cue to exit
            app.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            app.kill()
            app.wait(timeout=10)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    binary = require_prometheus()
    directory = tmp_path_factory.mktemp("prometheus_app")
    spec_path = directory / "spec.json"
    spec_path.write_text(json.dumps({"operations": [operation.spec() for operation in OPERATIONS]}), encoding="utf-8")
    metrics_port, monitor_port = free_port(), free_port()
    environment = clean_environment(
        OTEL_SERVICE_NAME=SERVICE,
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port),
        OTEL_TRACES_EXPORTER="none",
        OTEL_EXT_MONITOR_PORT=str(monitor_port),
    )
    stdout_path, stderr_path = directory / "stdout.txt", directory / "stderr.txt"
    with open(stdout_path, "w", encoding="utf-8") as stdout, open(stderr_path, "w", encoding="utf-8") as stderr:
        app = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [str(INSTRUMENT), sys.executable, str(APP), str(spec_path)],
            env=environment, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, text=True,
        )
    try:
        created = _wait_for_ready(app, stdout_path, stderr_path)
        assert created == sum(operation.count for operation in OPERATIONS)
        with PrometheusServer(f"127.0.0.1:{metrics_port}", job="otel-ext-app", binary=binary) as prometheus:
            prometheus.wait_until_scraped()
            yield Deployment(app, f"http://127.0.0.1:{metrics_port}/metrics",
                             f"http://127.0.0.1:{monitor_port}", prometheus, stderr_path)
    finally:
        _stop(app)


def test_target_is_scraped_by_a_real_prometheus(deployment: Deployment) -> None:
    prometheus = deployment.prometheus
    [target] = [target for target in prometheus.targets() if target["labels"]["job"] == "otel-ext-app"]
    assert target["health"] == "up" and target["lastError"] == ""
    assert target["scrapeUrl"] == deployment.metrics_url
    names = {sample["metric"]["__name__"] for sample in prometheus.query('{job="otel-ext-app", __name__=~"otel_ext_.*"}')}
    assert {f"{DURATION}_bucket", f"{DURATION}_count", f"{DURATION}_sum", CALLS, SLOW_CALLS, SUCCESS_RATE} <= names


def test_calls_total_equals_the_spans_created(deployment: Deployment) -> None:
    prometheus = deployment.prometheus
    assert prometheus.value(f"sum({CALLS})") == sum(operation.count for operation in OPERATIONS)
    for operation in OPERATIONS:
        by_status = prometheus.values(f"sum by (status_code) ({CALLS}{{{operation.selector}}})", by="status_code")
        assert by_status == operation.status_counts(), operation.name
        assert prometheus.value(f"sum({DURATION}_count{{{operation.selector}}})") == operation.count
        assert prometheus.value(f"sum({SLOW_CALLS}{{{operation.selector}}})") == operation.slow_count()
        labels = prometheus.query(f"{DURATION}_count{{{operation.selector}}}")[0]["metric"]
        assert (labels["service_name"], labels["span_kind"]) == (SERVICE, f"SPAN_KIND_{operation.kind}")
        seconds = prometheus.value(f"sum({DURATION}_sum{{{operation.selector}}})")
        assert math.isclose(seconds, sum(operation.durations_ns) / 1e9, rel_tol=1e-9)


def test_bucket_counts_equal_counts_of_the_raw_durations(deployment: Deployment) -> None:
    for operation in OPERATIONS:
        buckets = deployment.prometheus.values(f"sum by (le) ({DURATION}_bucket{{{operation.selector}}})", by="le")
        observed = {float(le): count for le, count in buckets.items()}
        expected = {bound / 1e9: float(operation.cumulative(bound)) for bound in BOUNDS_NS}
        expected[math.inf] = float(operation.count)
        assert observed == expected, operation.name


def test_histogram_quantile_p95_lands_in_the_exact_p95_bucket(deployment: Deployment) -> None:
    for operation in OPERATIONS:
        exact = operation.exact_p95_ns() / 1e9
        lo, hi = operation.p95_bucket_s()
        assert hi <= BOUNDS_NS[-1] / 1e9, "the data must keep p95 out of the +Inf bucket"
        promql = deployment.prometheus.value(
            f"histogram_quantile(0.95, sum by (le) ({DURATION}_bucket{{{operation.selector}}}))"
        )
        assert lo <= promql <= hi, (operation.name, promql, exact, (lo, hi))
        assert abs(promql - exact) <= hi - lo, (operation.name, promql, exact)
        assert math.isclose(promql, operation.interpolated_p95_s(), rel_tol=1e-9), (operation.name, promql)


def test_success_rate_promql_and_gauge_equal_the_exact_ratio(deployment: Deployment) -> None:
    prometheus = deployment.prometheus
    ratios = prometheus.values(
        f'sum by (span_name) ({CALLS}{{status_code!="STATUS_CODE_ERROR"}}) / sum by (span_name) ({CALLS})',
        by="span_name",
    )
    gauge = prometheus.values(f"{SUCCESS_RATE}", by="span_name")
    for operation in OPERATIONS:
        assert ratios[operation.name] == operation.success_ratio(), operation.name
        assert gauge[operation.name] == operation.success_ratio(), operation.name
    assert set(ratios) == set(gauge) == {operation.name for operation in OPERATIONS}


def test_scrape_endpoint_directly_has_explicit_histograms_only(deployment: Deployment) -> None:
    with urllib.request.urlopen(deployment.metrics_url, timeout=5) as response:
        assert response.status == 200
        body = response.read().decode()
    assert f'# TYPE {DURATION} histogram' in body
    assert f'{DURATION}_bucket{{le="0.005"' in body and f'{DURATION}_bucket{{le="+Inf"' in body
    assert "exponential" not in body.lower()
    stderr = deployment.stderr_path.read_text(encoding="utf-8")
    assert "Unsupported metric data" not in stderr and "Traceback" not in stderr, stderr


def test_monitor_p95_agrees_with_the_exact_p95(deployment: Deployment) -> None:
    with urllib.request.urlopen(f"{deployment.monitor_url}/monitoring/performance", timeout=5) as response:
        operations = {operation["name"]: operation for operation in json.load(response)["operations"]}
    assert set(operations) == {operation.name for operation in OPERATIONS}
    for operation in OPERATIONS:
        shown = operations[operation.name]
        exact_ms = operation.exact_p95_ns() / MS
        assert abs(shown["p95_ms"] - exact_ms) <= SKETCH_RELATIVE_ERROR * exact_ms, (operation.name, shown, exact_ms)
        assert (shown["count"], shown["error_count"]) == (operation.count, len(operation.errors))
        assert abs(shown["success_rate"] - operation.success_ratio()) <= 5e-7  # the monitor shows 6 decimals
