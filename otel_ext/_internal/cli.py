"""otel-ext command line: run the demo, or check the environment."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from otel_ext._internal.config import check_standard_variables, read_settings
from otel_ext._internal.errors import sentry_problem


def check() -> int:
    """Validate the current environment; list every problem, exit 1 if any."""
    problems = read_settings(os.environ)[1] + check_standard_variables(os.environ)
    sentry = sentry_problem(os.environ)
    if sentry is not None:
        problems.append(sentry)
    for problem in problems:
        print(f"problem: {problem}")
    if problems:
        print(f"{len(problems)} problem(s) found; the app would start on the defaults named above.")
        return 1
    print("otel-ext configuration OK")
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="otel-ext", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo", help="run the example shop under opentelemetry-instrument, drive traffic, print per-operation stats"
    )
    demo_parser.add_argument("--requests", type=_positive, default=300, help="how many HTTP requests to send (default 300)")
    demo_parser.add_argument("--output", default="otel-ext-demo", help="folder for the spans file and app log")
    commands.add_parser("check", help="validate OTEL_* and OTEL_EXT_* variables; exit 1 listing every problem")
    arguments = parser.parse_args(argv)
    if arguments.command == "check":
        return check()
    from otel_ext._internal.demo import run_demo  # noqa: PLC0415 - the demo needs the [demo] extra

    return run_demo(requests_total=arguments.requests, output=arguments.output)


if __name__ == "__main__":
    sys.exit(main())
