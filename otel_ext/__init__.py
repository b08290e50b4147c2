"""otel-ext: slow-operation tags, per-operation statistics and a local monitor for OpenTelemetry.

Zero-code: ``opentelemetry-instrument python app.py`` activates it through the
``otel_ext`` distro and configurator. In code: ``otel_ext.configure()``.
"""

from otel_ext._internal.setup import OtelExt, configure

__all__ = ["OtelExt", "configure"]
