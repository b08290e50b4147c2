"""Run the scenario app in a subprocess, under ``opentelemetry-instrument`` or plain Python."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCENARIO = Path(__file__).resolve().parents[1] / "otel_ext" / "apps" / "scenario.py"
INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def result(self) -> Any:
        lines = [line for line in self.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, f"no RESULT line; stderr:\n{self.stderr[-3000:]}"
        return json.loads(lines[-1][len("RESULT "):])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_environment(**variables: str) -> dict[str, str]:
    """The test process's environment without any OTEL_* setting, plus ``variables``."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    environment.update(
        OTEL_PYTHON_DISTRO="otel_ext",
        OTEL_PYTHON_CONFIGURATOR="otel_ext",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        PYTHONUNBUFFERED="1",
    )
    environment.update(variables)
    return environment


def run_scenario(*arguments: str, **variables: str) -> Run:
    """The scenario under ``opentelemetry-instrument`` (zero-code), with ``variables`` set."""
    return _run([str(INSTRUMENT), sys.executable, str(SCENARIO), *arguments], variables)


def run_plain(*arguments: str, **variables: str) -> Run:
    """The scenario as plain ``python``: the app calls ``otel_ext.configure()`` itself."""
    return _run([sys.executable, str(SCENARIO), *arguments], variables)


def _run(command: list[str], variables: dict[str, str]) -> Run:
    completed = subprocess.run(  # noqa: S603 - our own interpreter and script
        command, env=clean_environment(**variables), capture_output=True, text=True, timeout=60
    )
    return Run(completed.returncode, completed.stdout, completed.stderr)


def otlp_variables(sink_endpoint: str, protocol: str, **extra: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink_endpoint,
        "OTEL_EXT_MONITOR_PORT": str(free_port()),
        **extra,
    }
