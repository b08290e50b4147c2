"""Per-operation, per-exception-type error counts over sliding windows."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from opentelemetry.trace import format_span_id, format_trace_id

from processors._internal.exceptions import RecordedException, exception_type_name
from processors._internal.names import operation_name
from processors._internal.stats import (
    DEFAULT_WINDOWS_S,
    OVERFLOW_OPERATION,
    SLOTS_PER_WINDOW,
    operation_filter,
)

__all__ = ["ErrorGroupStats", "ErrorStatsStore"]

_MAX_MESSAGE = 200
_SERVICE_ATTRIBUTE = "service.name"


@dataclass(frozen=True)
class ErrorGroupStats:
    """One operation's errors of one exception type over a window."""

    service: str
    operation: str
    exception_type: str
    count: int
    first_seen_unix_nano: int
    last_seen_unix_nano: int
    latest_message: str
    latest_trace_id: str
    latest_span_id: str
    latest_event_id: str | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(slots=True)
class _Group:
    slots: deque[list[int]] = field(default_factory=deque)  # [slot index, count, first ns, last ns]
    latest: tuple[str, str, str, str | None] = ("", "", "", None)  # message, trace id, span id, event id
    latest_end_ns: int = -1


class ErrorStatsStore:
    """Counts each (span, exception) once, by the span's end time.

    Slots are 1/6 of the greatest common divisor of the windows wide (10 s for
    the default windows), like the operation statistics; slots older than the
    longest window are dropped, and at most ``max_groups`` groups are kept
    (further ones are counted under ``otel_ext.overflow``), so memory is bounded.

    Threading contract: ``record`` and ``snapshot`` from any thread; one lock,
    taken off the request path (the worker thread and monitor requests).
    """

    def __init__(
        self, windows_s: Sequence[int] = DEFAULT_WINDOWS_S, max_groups: int = 500, fold_ids: bool = True
    ) -> None:
        self.windows_s = tuple(sorted(windows_s))
        self.fold_ids = fold_ids  # group by the operation name, ids folded, as the statistics do
        self.max_groups = max_groups
        self._slot_ns = math.gcd(*self.windows_s) * 1_000_000_000 // SLOTS_PER_WINDOW
        self._kept_slots = max(self.windows_s) * 1_000_000_000 // self._slot_ns
        self._groups: dict[tuple[str, str, str], _Group] = {}
        self._lock = threading.Lock()

    def record(self, item: RecordedException) -> None:
        span = item.span
        end_ns = span.end_time or time.time_ns()
        service = str(span.resource.attributes.get(_SERVICE_ATTRIBUTE, ""))
        key = (service, operation_name(span.name, self.fold_ids), exception_type_name(item.exception))
        index = end_ns // self._slot_ns
        latest = (
            _message(item.exception),
            format_trace_id(span.context.trace_id),
            format_span_id(span.context.span_id),
            item.stamp.event_id,
        )
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                if len(self._groups) >= self.max_groups:
                    key = (service, OVERFLOW_OPERATION, OVERFLOW_OPERATION)
                group = self._groups.setdefault(key, _Group())
            slots = group.slots
            slot = next((slot for slot in reversed(slots) if slot[0] == index), None)
            if slot is None:
                slot = [index, 0, end_ns, end_ns]
                slots.append(slot)
                if len(slots) > 1 and slots[-2][0] > index:  # out of order (a late span): keep slots sorted
                    slots = group.slots = deque(sorted(slots))
            slot[1] += 1
            slot[2] = min(slot[2], end_ns)
            slot[3] = max(slot[3], end_ns)
            if end_ns >= group.latest_end_ns:
                group.latest, group.latest_end_ns = latest, end_ns
            while slots and slots[0][0] <= index - self._kept_slots:
                slots.popleft()

    def snapshot(
        self, window_s: int, operation: str | None = None, now_ns: int | None = None
    ) -> list[ErrorGroupStats]:
        """Groups with errors in the last ``window_s`` (to the slot), most frequent first.

        ``operation`` is an exact span name or a glob.
        """
        matches = operation_filter(operation)
        newest = (time.time_ns() if now_ns is None else now_ns) // self._slot_ns
        oldest = newest - window_s * 1_000_000_000 // self._slot_ns + 1
        found = []
        with self._lock:
            for (service, name, exception_type), group in self._groups.items():
                slots = [slot for slot in group.slots if oldest <= slot[0] <= newest]
                if not slots or not matches(name):
                    continue
                message, trace_id, span_id, event_id = group.latest
                found.append(
                    ErrorGroupStats(
                        service=service,
                        operation=name,
                        exception_type=exception_type,
                        count=sum(slot[1] for slot in slots),
                        first_seen_unix_nano=min(slot[2] for slot in slots),
                        last_seen_unix_nano=max(slot[3] for slot in slots),
                        latest_message=message,
                        latest_trace_id=trace_id,
                        latest_span_id=span_id,
                        latest_event_id=event_id,
                    )
                )
        found.sort(key=lambda stats: (-stats.count, stats.operation, stats.exception_type))
        return found


def _message(exception: BaseException) -> str:
    """The exception's text, as the SDK records it; an exception whose ``__str__`` fails still counts."""
    try:
        return str(exception)[:_MAX_MESSAGE]
    except Exception:  # noqa: BLE001 - app code in __str__
        return f"<{type(exception).__name__}: str() failed>"
