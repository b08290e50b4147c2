"""What linking recorded exceptions to Sentry costs an app that raises errors inside spans.

Each process under test ("child") runs ``otel_ext.configure()`` from environment
variables (``OTEL_{TRACES,METRICS,LOGS}_EXPORTER=none``, no monitor) and then
``--errors`` times::

    try:
        with tracer.start_as_current_span(name):   # 20 operation names, in turn
            raise RuntimeError(...)                 # one raising line
    except RuntimeError:
        pass

so ``Span.record_exception`` runs once per span and goes through otel-ext's
record hook. Conditions, each in its own subprocess (sentry-sdk's client and the
tracer provider are process-global):

1. ``baseline``: otel-ext without the Sentry link (``OTEL_EXT_SENTRY_ENABLED=false``).
2. ``ok``: linked, a local receiver (``tests/support/sentry_sink.py``) answering 200 at once.
3. ``down``: linked, ``SENTRY_DSN`` to a closed 127.0.0.1 port (connections refused at once).
4. ``slow``: linked, the receiver holding every request ``--slow-delay`` seconds.

Every linked condition runs with ``OTEL_EXT_SENTRY_RATE_LIMIT=off`` (every error
becomes an event) and with the default ``10/1m``: 20 operations x one raising
line = 20 fingerprints, so the default admits 10 events each (200 of 2000).
Every other setting keeps its default (error queue 1000, flush interval 1000 ms,
shutdown timeout 2000 ms; sentry-sdk's transport queue 100); ``--env KEY=VALUE``
overrides them in every child.

Figures per child: the per-error-span cost (loop time / errors, background
threads competing for the GIL included), the exit time (loop end -> process
gone: otel-ext's exit hook hands queued errors to sentry-sdk and closes the
client it initialised, within the shutdown timeout) and the total wall time
(spawn -> gone). The child reports ``time.monotonic()`` instants, which on Linux
is the system-wide CLOCK_MONOTONIC, so the parent compares them with its own.
Conditions run interleaved, rotated by one each round; ratios to the baseline
are medians of per-round ratios, which cancels slow drifts of a shared machine.

Exactness: the receiver counts the error events it parsed off the wire; the
child reports otel-ext's delivery counts at exit and the error events
sentry-sdk's transport recorded as lost. With the rate limit off every error
should reach the ``ok`` receiver, and 200 with the default limit. The second
table puts every error in one place: not queued (otel-ext's queue full),
rate-limited, not handed to sentry-sdk by the exit deadline, or handed over;
and what was handed over in: lost by sentry-sdk's transport, left in its queue
or in flight at exit, or received. Nothing is asserted.

Run: ``python benchmarks/bench_sentry_link.py [--rounds 5] [--errors 2000] [--slow-delay 5]
[--env OTEL_EXT_ERROR_QUEUE_SIZE=5000 ...]`` (about a minute with the defaults)
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

# The test receiver is not part of the installed package; it lives in this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.sentry_sink import SentrySink, closed_port_dsn  # noqa: E402

NAMES = tuple(f"GET /api/v1/resource{i}" for i in range(20))
DEFAULT_LIMIT_PER_FINGERPRINT = 10  # OTEL_EXT_SENTRY_RATE_LIMIT's default, 10/1m
BASE_ENV = {
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_SERVICE_NAME": "bench-sentry-link",
}


# --------------------------------------------------------------------------- child


def count_sdk_losses(lost: dict[str, int]) -> None:
    """Count the error events sentry-sdk's transport drops, by reason (queue_overflow, network_error).

    sentry-sdk only reports these in client reports, which are themselves sent
    through the full queue or to a Sentry that is down, so they rarely arrive.
    Wrapping the transport's ``record_lost_event`` on this instance is the one
    place that sees every loss.
    """
    import sentry_sdk

    transport = sentry_sdk.get_client().transport
    if transport is None:
        return
    original = transport.record_lost_event

    def record_lost_event(reason: str, data_category: Any = None, item: Any = None, *, quantity: int = 1) -> None:
        if item is not None:
            data_category, quantity = item.data_category, 1
        if data_category == "error":
            lost[reason] = lost.get(reason, 0) + quantity
        original(reason, data_category, item, quantity=quantity)

    transport.record_lost_event = record_lost_event  # type: ignore[method-assign]


def child(errors: int) -> None:
    """The app under test; prints one JSON line at exit."""
    from opentelemetry import trace

    import otel_ext

    report: dict[str, Any] = {"sdk_lost": {}}
    pipeline: Any = None

    def report_at_exit() -> None:
        report["delivery"] = pipeline.delivery() if pipeline is not None else {}
        print(json.dumps(report), flush=True)

    # Registered before configure(), so it runs after otel-ext's and sentry-sdk's exit hooks (atexit is LIFO).
    atexit.register(report_at_exit)
    pipeline = otel_ext.configure().errors
    if os.environ["OTEL_EXT_SENTRY_ENABLED"] == "true":
        count_sdk_losses(report["sdk_lost"])
    tracer = trace.get_tracer("bench")

    report["loop_start"] = time.monotonic()
    for i in range(errors):
        try:
            with tracer.start_as_current_span(NAMES[i % len(NAMES)]):
                raise RuntimeError(f"request {i} failed")
        except RuntimeError:
            pass
    report["loop_done"] = time.monotonic()


# --------------------------------------------------------------------------- parent


@dataclass(frozen=True)
class Condition:
    label: str
    receiver: str  # "none" (baseline, not linked), "ok", "down" or "slow"
    rate_limit: str | None  # None: otel-ext's default (10/1m)


CONDITIONS = (
    Condition("1 baseline (no link)", "none", None),
    Condition("2 ok, limit off", "ok", "off"),
    Condition("2 ok, limit 10/1m", "ok", None),
    Condition("3 down, limit off", "down", "off"),
    Condition("3 down, limit 10/1m", "down", None),
    Condition("4 slow, limit off", "slow", "off"),
    Condition("4 slow, limit 10/1m", "slow", None),
)


@dataclass(frozen=True)
class Run:
    """What one child did."""

    per_error_s: float
    exit_s: float
    total_s: float
    received: int  # error events the receiver parsed (0 without a receiver)
    delivery: dict[str, Any]  # otel-ext's ErrorPipeline.delivery() at exit
    sdk_lost: dict[str, int]  # error events sentry-sdk's transport dropped, by reason


@contextmanager
def receiver(kind: str, slow_delay_s: float) -> Iterator[tuple[str | None, SentrySink | None]]:
    """(SENTRY_DSN, receiver) for one child; a receiver is stopped (held requests released) afterwards."""
    if kind == "none":
        yield None, None
    elif kind == "down":
        yield closed_port_dsn(), None
    else:
        with SentrySink(mode="slow" if kind == "slow" else "ok", delay_s=slow_delay_s) as sink:
            yield sink.dsn, sink


def child_env(condition: Condition, dsn: str | None, overrides: dict[str, str]) -> dict[str, str]:
    """The parent's environment without OTEL_* / SENTRY_* variables, plus the condition's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "SENTRY_"))}
    env.update(BASE_ENV)
    env.update(overrides)
    env["OTEL_EXT_SENTRY_ENABLED"] = "false" if dsn is None else "true"
    if dsn is not None:
        env["SENTRY_DSN"] = dsn
    if condition.rate_limit is not None:
        env["OTEL_EXT_SENTRY_RATE_LIMIT"] = condition.rate_limit
    return env


def run_child(condition: Condition, errors: int, slow_delay_s: float, overrides: dict[str, str]) -> Run:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--errors", str(errors)]
    with receiver(condition.receiver, slow_delay_s) as (dsn, sink):
        spawned = time.monotonic()
        done = subprocess.run(command, env=child_env(condition, dsn, overrides), capture_output=True, text=True)
        ended = time.monotonic()
        received = len(sink.events()) if sink is not None else 0
    try:
        report = json.loads(done.stdout.splitlines()[-1])
    except (IndexError, ValueError):
        report = None
    if done.returncode != 0 or report is None:
        raise RuntimeError(f"{condition.label}: child failed (exit {done.returncode})\n{done.stdout}\n{done.stderr}")
    return Run(
        per_error_s=(report["loop_done"] - report["loop_start"]) / errors,
        exit_s=ended - report["loop_done"],
        total_s=ended - spawned,
        received=received,
        delivery=report["delivery"],
        sdk_lost=report["sdk_lost"],
    )


def expected_events(condition: Condition, errors: int) -> int:
    """Events the ok receiver should get: every error, or what the default limit admits (a run < 1 min)."""
    if condition.rate_limit == "off":
        return errors
    per_name = [len(range(i, errors, len(NAMES))) for i in range(len(NAMES))]
    return sum(min(n, DEFAULT_LIMIT_PER_FINGERPRINT) for n in per_name)


def spread(values: Sequence[int]) -> str:
    """min-max over rounds, or the one value."""
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def paired_ratio(runs: Sequence[Run], baseline: Sequence[Run], metric: str) -> float:
    """Median over rounds of run / baseline run of the same round."""
    return statistics.median(getattr(r, metric) / getattr(b, metric) for r, b in zip(runs, baseline, strict=True))


def print_costs(runs: dict[Condition, list[Run]]) -> None:
    baseline = runs[CONDITIONS[0]]
    print("medians over rounds; x: median of per-round ratios to (1) baseline")
    print(f"{'condition':<22}{'us/error':>9}{'x':>7}{'exit s':>9}{'x':>7}{'total s':>9}{'x':>7}")
    for condition, rs in runs.items():
        row = f"{condition.label:<22}"
        for metric, scale, form in (("per_error_s", 1e6, "9.1f"), ("exit_s", 1, "9.3f"), ("total_s", 1, "9.3f")):
            value = statistics.median(getattr(r, metric) for r in rs) * scale
            row += f"{value:{form}}{paired_ratio(rs, baseline, metric):7.2f}"
        print(row)


FATES = ("q-full", "limited", "unsent", "to sdk", "sdk lost", "vanished", "received")


def fates(run: Run, errors: int) -> dict[str, int]:
    """Where one linked child's errors went (see the legend under the table)."""
    d = run.delivery
    lost = sum(run.sdk_lost.values())
    handed = d["sent"] + d["refused"] + d["failed"]
    return {
        "q-full": d["dropped_queue_full"],
        "limited": d["rate_limited"],
        "unsent": errors - d["dropped_queue_full"] - d["rate_limited"] - handed,
        "to sdk": d["sent"],
        "sdk lost": lost,
        "vanished": d["sent"] - lost - run.received,
        "received": run.received,
    }


def print_deliveries(runs: dict[Condition, list[Run]], errors: int) -> None:
    print(f"where the {errors} errors per process went (min-max over rounds)")
    print(f"{'condition':<22}" + "".join(f"{name:>10}" for name in FATES) + f"{'expected':>9}")
    for condition, rs in runs.items():
        if condition.receiver == "none":
            continue
        per_run = [fates(r, errors) for r in rs]
        row = f"{condition.label:<22}" + "".join(f"{spread([f[name] for f in per_run]):>10}" for name in FATES)
        if condition.receiver == "ok":
            expected = expected_events(condition, errors)
            row += f"{expected:>9}  " + ("EXACT" if all(r.received == expected for r in rs) else "NOT EXACT")
        else:
            row += f"{'-':>9}"
        reasons = sorted({why for r in rs for why in r.sdk_lost})
        extra = {f"sdk {why}": [r.sdk_lost.get(why, 0) for r in rs] for why in reasons}
        extra.update({why: [r.delivery[why] for r in rs] for why in ("refused", "failed")})
        row += "".join(f"  {why} {spread(counts)}" for why, counts in extra.items() if any(counts))
        print(row)
    print(
        "q-full: not queued, otel-ext's error queue was full; limited: queued, but suppressed by\n"
        "OTEL_EXT_SENTRY_RATE_LIMIT; unsent: still in otel-ext's queue or its worker's hands when the exit deadline\n"
        "passed; to sdk: handed to sentry-sdk (q-full + limited + unsent + to sdk = errors, plus refused/failed if\n"
        "any); sdk lost: dropped by sentry-sdk's transport (reason at the end of the row); vanished: to sdk -\n"
        "sdk lost - received (still in sentry-sdk's queue or in flight at exit)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--errors", type=int, default=2000, help="error spans per process (default 2000)")
    parser.add_argument("--slow-delay", type=float, default=5.0, help="seconds the slow receiver holds (default 5)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment for every child (repeatable)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.errors)
        return
    if any("=" not in pair for pair in args.env):
        parser.error("--env expects KEY=VALUE")
    overrides = dict(pair.split("=", 1) for pair in args.env)

    print(
        f"Python {platform.python_version()}, opentelemetry-sdk {version('opentelemetry-sdk')}, "
        f"sentry-sdk {version('sentry-sdk')}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.rounds} rounds x {len(CONDITIONS)} processes x {args.errors} error spans; "
        f"slow receiver holds {args.slow_delay:g} s" + (f"; extra env {overrides}" if overrides else "")
    )
    runs: dict[Condition, list[Run]] = {c: [] for c in CONDITIONS}
    started = time.monotonic()
    for round_number in range(args.rounds):
        shift = round_number % len(CONDITIONS)
        for condition in CONDITIONS[shift:] + CONDITIONS[:shift]:
            runs[condition].append(run_child(condition, args.errors, args.slow_delay, overrides))
    elapsed = time.monotonic() - started

    print()
    print_costs(runs)
    print()
    print_deliveries(runs, args.errors)
    print()
    print(f"whole benchmark: {elapsed:.1f} s")


if __name__ == "__main__":
    main()
