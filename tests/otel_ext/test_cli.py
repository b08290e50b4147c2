"""The ``otel-ext`` command: ``check`` lists every problem; ``demo`` runs the shop and prints the right table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.processes import clean_environment

CLI = Path(sys.executable).parent / "otel-ext"


def _run(*arguments: str, timeout: float = 120, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command
        [str(CLI), *arguments], env=clean_environment(**variables), capture_output=True, text=True, timeout=timeout
    )


def test_check_passes_on_a_clean_environment() -> None:
    completed = _run("check")
    assert completed.returncode == 0
    assert completed.stdout.strip() == "otel-ext configuration OK"


def test_check_lists_every_problem_and_exits_non_zero() -> None:
    completed = _run("check", OTEL_EXT_SLOW_THRESHOLD_MS="-1", OTEL_EXT_MONITOR_PORT="http",
                     OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="5")
    assert completed.returncode == 1
    problems = [line for line in completed.stdout.splitlines() if line.startswith("problem: ")]
    assert [line.removeprefix("problem: ").split("=")[0] for line in problems] == [
        "OTEL_EXT_SLOW_THRESHOLD_MS",
        "OTEL_EXT_MONITOR_PORT",
        "OTEL_TRACES_SAMPLER_ARG",
    ]
    assert "3 problem(s) found" in completed.stdout


def test_check_names_a_missing_sentry_sdk(tmp_path: Path) -> None:
    """A stand-in module that fails to import, as a missing package does (sentry-sdk is installed here)."""
    (tmp_path / "sentry_sdk.py").write_text("raise ImportError(\"No module named 'sentry_sdk'\")\n")
    completed = _run("check", SENTRY_DSN="https://key@sentry.example/1", PYTHONPATH=str(tmp_path))
    assert completed.returncode == 1
    assert completed.stdout.splitlines()[0] == (
        "problem: SENTRY_DSN is set but sentry-sdk is not installed; install the extra: "
        "pip install 'otel-ext[sentry]'; exceptions are counted, not sent"
    )
    assert _run("check", SENTRY_DSN="https://key@sentry.example/1").returncode == 0


def test_check_names_a_malformed_dsn_without_its_key() -> None:
    completed = _run("check", SENTRY_DSN="https://sentry.example/1")
    assert completed.returncode == 1
    assert completed.stdout.splitlines()[0] == (
        "problem: SENTRY_DSN is invalid: Missing public key (expected https://<key>@<host>/<project id>); "
        "the Sentry link is off, exceptions are counted"
    )
    for malformed in ("https://k3yk3y@sentry.example/project", "https://k3yk3y@sentry.example:99999/1",
                      "https://k3yk3y@[::1/1"):
        completed = _run("check", SENTRY_DSN=malformed)
        assert completed.returncode == 1 and "k3yk3y" not in completed.stdout + completed.stderr, malformed
        assert completed.stdout.startswith("problem: SENTRY_DSN is invalid: "), completed.stdout + completed.stderr


def test_demo_table_shows_slow_and_failing_endpoints(tmp_path: Path) -> None:
    completed = _run("demo", "--requests", "120", "--output", str(tmp_path / "demo"), timeout=90)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rows = {}
    for line in completed.stdout.splitlines():
        match = re.match(r"\s+(.+?)\s+(server|client|internal)\s+(\d+)\s+([\d.]+)%\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$", line)
        if match:
            rows[match[1]] = (int(match[3]), float(match[4]), float(match[5]), int(match[8]), float(match[6]))
    search_calls, search_success, search_p50, search_slow, _ = rows["GET /search"]
    assert search_slow == search_calls > 0 and search_success == 100.0 and search_p50 >= 1000
    checkout_calls, checkout_success, _, _, _ = rows["POST /checkout"]
    failed = checkout_calls // 4  # the shop declines exactly every 4th payment
    assert checkout_success == round(100 * (checkout_calls - failed) / checkout_calls, 1)
    assert rows["GET /books"][1] == 100.0 and rows["GET /books"][3] == 0
    spans_line = next(line for line in completed.stdout.splitlines() if line.startswith("Traces: "))
    counts = re.match(r"Traces: (\d+) spans .*\((\d+) tagged", spans_line)
    assert counts, spans_line
    spans, slow = int(counts[1]), int(counts[2])
    assert slow == search_calls and spans > 120
    assert (tmp_path / "demo" / "spans.jsonl").exists()
    # The metrics written beside the spans: same calls as the monitor, and the p95 a backend reads from the
    # exported histogram within that histogram's resolution (scale >= 3 for these latencies: 4.33 %) of it.
    exported = {}
    for line in completed.stdout.splitlines():
        match = re.match(r"\s+(.+?)\s+calls\s+(\d+)\s+p95 exported\s+([\d.]+) ms\s+monitor\s+([\d.]+) ms$", line)
        if match:
            exported[match[1]] = (int(match[2]), float(match[3]), float(match[4]))
    server_rows = {name for name, row in rows.items() if name.startswith(("GET ", "POST "))}
    assert set(exported) == server_rows, (exported, server_rows)
    for name, (calls, p95_exported, p95_monitor) in exported.items():
        assert calls == rows[name][0] and p95_monitor == rows[name][4], name
        assert abs(p95_exported - p95_monitor) <= max(0.05 * p95_monitor, 0.1), (name, p95_exported, p95_monitor)
    assert (tmp_path / "demo" / "metrics.jsonl").exists()
