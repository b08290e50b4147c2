"""A real Prometheus server (the Debian package's ``/usr/bin/prometheus``) scraping one target, for end-to-end tests.

``with PrometheusServer("127.0.0.1:9464") as prometheus:`` starts Prometheus on
a free loopback port with a temporary configuration (the target scraped every
second) and a temporary TSDB, waits until it is ready, and always stops it and
removes its files. ``query`` runs an instant PromQL query through the HTTP API.
Tests call ``require_prometheus()`` first: it skips them when the package is
not installed.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import free_port
from tests.support.serving import Served

DEBIAN_BINARY = "/usr/bin/prometheus"
NOT_INSTALLED = "Debian package prometheus not installed: apt-get install -y prometheus"
SCRAPE_INTERVAL_S = 1
_START_ATTEMPTS = 3  # a free port can be taken by someone else before Prometheus binds it


def prometheus_binary() -> str | None:
    """The Prometheus server binary: the Debian package's, else one on PATH."""
    if os.access(DEBIAN_BINARY, os.X_OK):
        return DEBIAN_BINARY
    return shutil.which("prometheus")


def require_prometheus() -> str:
    """The binary, or skip the calling test with how to install it."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip(NOT_INSTALLED)
    return binary


class PrometheusError(AssertionError):
    """Prometheus did not start, or a query failed."""


class PrometheusServer(Served):
    """Prometheus on ``127.0.0.1:<free port>`` scraping ``target`` (``host:port``) every second."""

    def __init__(self, target: str, job: str = "app", metrics_path: str = "/metrics", binary: str | None = None) -> None:
        self.target = target
        self.job = job
        self.metrics_path = metrics_path
        self.binary = binary or require_prometheus()
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: Path | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> PrometheusServer:
        self._directory = Path(tempfile.mkdtemp(prefix="otel-ext-prometheus-"))
        atexit.register(self.stop)  # a safety net; the ``with`` block stops it first
        config = self._directory / "prometheus.yml"
        config.write_text(self._config(), encoding="utf-8")
        try:
            for attempt in range(1, _START_ATTEMPTS + 1):
                if self._launch(config, timeout_s=30):
                    return self
                if attempt == _START_ATTEMPTS or "address already in use" not in self.log_tail():
                    raise PrometheusError(f"Prometheus did not start; its log:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        atexit.unregister(self.stop)
        self._terminate()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def _config(self) -> str:
        # JSON is valid YAML: no quoting surprises in the target or the path.
        scrape = {
            "job_name": self.job,
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
            "metrics_path": self.metrics_path,
            "static_configs": [{"targets": [self.target]}],
        }
        return json.dumps(
            {
                "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
                "scrape_configs": [scrape],
            },
            indent=2,
        )

    def _launch(self, config: Path, timeout_s: float) -> bool:
        """Start the process on a fresh port; True once ``/-/ready`` answers, False if it exited."""
        assert self._directory is not None
        self._terminate()
        self.port = free_port()
        storage = self._directory / f"data-{self.port}"
        self._log = open(self._directory / "prometheus.log", "wb")  # noqa: SIM115 - closed in _terminate
        self._process = subprocess.Popen(  # noqa: S603 - the installed Prometheus binary, fixed arguments
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=info",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self._directory,
            start_new_session=True,  # its own process group: killed as one, never by name
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise PrometheusError(f"Prometheus not ready after {timeout_s} s; its log:\n{self.log_tail()}")

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, characters: int = 4000) -> str:
        if self._directory is None:
            return ""
        path = self._directory / "prometheus.log"
        return path.read_text(encoding="utf-8", errors="replace")[-characters:] if path.exists() else ""

    # -- HTTP API -------------------------------------------------------------

    def _api(self, path: str, parameters: dict[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(parameters)}" if parameters else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as response:
                document = json.load(response)
        except urllib.error.HTTPError as error:  # a bad query answers 400 with a JSON error
            document = json.loads(error.read() or b"{}")
        if document.get("status") != "success":
            raise PrometheusError(f"{path} {parameters}: {document.get('errorType')}: {document.get('error')}")
        return document["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query at the current time: the result vector (a scalar becomes one unlabelled sample)."""
        data = self._api("/api/v1/query", {"query": promql})
        if data["resultType"] == "vector":
            return list(data["result"])
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        raise PrometheusError(f"{promql}: unexpected result type {data['resultType']}")

    def values(self, promql: str, by: str | None = None) -> dict[str, float]:
        """``{label value of by: sample}`` of an instant query (key "" without ``by``)."""
        values: dict[str, float] = {}
        for sample in self.query(promql):
            key = sample["metric"].get(by, "") if by else ""
            if key in values:
                raise PrometheusError(f"{promql}: more than one sample for {by}={key!r}: {self.query(promql)}")
            values[key] = float(sample["value"][1])  # "NaN", "+Inf" parse too
        return values

    def value(self, promql: str) -> float:
        """The one sample of an instant query."""
        values = self.values(promql)
        if len(values) != 1:
            raise PrometheusError(f"{promql}: expected one sample, got {self.query(promql)}")
        return values[""]

    def targets(self) -> list[dict[str, Any]]:
        return list(self._api("/api/v1/targets", {"state": "active"})["activeTargets"])

    def wait_until_scraped(self, timeout_s: float = 20) -> dict[str, Any]:
        """Wait until the target's last scrape succeeded and its samples are queryable; returns the target."""
        deadline = time.monotonic() + timeout_s
        last: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            last = [target for target in self.targets() if target["labels"].get("job") == self.job]
            if last and last[0]["health"] == "up" and self.values(f'up{{job="{self.job}"}} == 1'):
                return last[0]
            time.sleep(0.2)
        raise PrometheusError(f"target {self.target} not scraped up within {timeout_s} s: {last}")

    def wait_for(
        self, promql: str, ready: Callable[[list[dict[str, Any]]], bool] = bool, timeout_s: float = 15
    ) -> list[dict[str, Any]]:
        """Poll an instant query until ``ready(result)``; the result."""
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if ready(result):
                return result
            time.sleep(0.2)
        raise PrometheusError(f"{promql}: not ready within {timeout_s} s; last result {result}")
