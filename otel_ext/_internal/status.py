"""Keep the first error description on a span.

The SDK replaces a span's ERROR status wholesale on every later ``set_status``:
an app's ``set_status(ERROR, "db timeout on primary")`` is overwritten by the
generic ``"ValueError: ..."`` that ``start_as_current_span`` sets when the
exception escapes (open-telemetry/opentelemetry-python#5661). The first error
description names the cause, so it is kept. OK stays final and UNSET never
downgrades an error, as in the SDK.
"""

from __future__ import annotations

import functools

from opentelemetry.sdk.trace import Span
from opentelemetry.trace import Status, StatusCode

__all__ = ["keep_first_error_description"]

_MARK = "_otel_ext_keeps_first_error"


def keep_first_error_description() -> None:
    """Install once per process; later calls do nothing."""
    original = Span.set_status
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def set_status(self: Span, status: Status | StatusCode, description: str | None = None) -> None:
        current = self.status
        if current.status_code is StatusCode.ERROR and current.description:
            code = status.status_code if isinstance(status, Status) else status
            if code is StatusCode.ERROR:
                return
        original(self, status, description)

    setattr(set_status, _MARK, True)
    Span.set_status = set_status  # type: ignore[method-assign]

