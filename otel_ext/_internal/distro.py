"""Entry points read by ``opentelemetry-instrument``: zero-code activation."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.environment_variables import OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]  # module is "type: ignore" upstream
from opentelemetry.sdk._configuration import _BaseConfigurator
from opentelemetry.sdk.resources import TELEMETRY_AUTO_VERSION

from otel_ext._internal.setup import configure


class OtelExtDistro(BaseDistro):
    """Sets the same defaults as ``opentelemetry-distro``: export over OTLP.

    Only defaults: a variable the user set is never changed.
    """

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault(OTEL_TRACES_EXPORTER, "otlp")
        os.environ.setdefault(OTEL_METRICS_EXPORTER, "otlp")


class OtelExtConfigurator(_BaseConfigurator):
    """Builds the SDK from ``OTEL_*`` variables with otel-ext's processors added."""

    def _configure(self, **kwargs: Any) -> None:
        version = kwargs.get("auto_instrumentation_version")
        configure({TELEMETRY_AUTO_VERSION: version} if version else None)
