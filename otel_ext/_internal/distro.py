"""Entry points read by ``opentelemetry-instrument``: zero-code activation."""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]  # module is "type: ignore" upstream
from opentelemetry.sdk._configuration import _BaseConfigurator
from opentelemetry.sdk.resources import TELEMETRY_AUTO_VERSION

from otel_ext._internal.setup import configure


class OtelExtDistro(BaseDistro):
    """Selects otel-ext under ``opentelemetry-instrument``.

    It changes no variable: the exporter defaults of ``opentelemetry-distro``
    (OTLP for traces and metrics) are applied by ``configure()``, so code and
    zero-code setups behave the same.
    """

    def _configure(self, **kwargs: Any) -> None:
        """Nothing to prepare before the configurator runs."""


class OtelExtConfigurator(_BaseConfigurator):
    """Builds the SDK from ``OTEL_*`` variables with otel-ext's processors added."""

    def _configure(self, **kwargs: Any) -> None:
        version = kwargs.get("auto_instrumentation_version")
        configure({TELEMETRY_AUTO_VERSION: version} if version else None)
