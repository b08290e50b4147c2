"""The two-way link between OpenTelemetry spans and Sentry.

Span → Sentry: an exception recorded on a span becomes one Sentry event that
carries the span's trace id and span id as its trace context, tags for the
operation, and a link to the trace UI. Sentry → span: the span carries
``sentry.event_id``. Events are built and handed to sentry-sdk on otel-ext's
worker thread (reading source lines for stack frames is file I/O), never on
the request path; sentry-sdk's own transport sends them on its thread.

Exactly once: the event id is stamped on the exception object. Events the
app or a sentry-sdk integration captures pass through :func:`_link_foreign_event`,
which gives them the OTel trace context of the current span and drops or
adopts duplicates of exceptions otel-ext already stamped.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import SpanContext, StatusCode, format_span_id, format_trace_id

from otel_ext._internal.config import Settings
from otel_ext._internal.errors import EVENT_ID_ATTRIBUTE, SENTRY_DSN
from processors._internal.errors import report_once
from processors._internal.exceptions import (
    ExceptionStamp,
    LinkState,
    RecordedException,
    set_stamp,
    stamp_of,
)
from processors._internal.names import operation_name

try:
    import sentry_sdk
    from sentry_sdk.scope import add_global_event_processor
    from sentry_sdk.utils import BadDsn, Dsn, event_from_exception
except ImportError as error:  # the one place the optional dependency is imported
    raise ImportError("sentry-sdk is not installed; install the extra: pip install 'otel-ext[sentry]'") from error

__all__ = [
    "DeliveryCounts",
    "SentryLink",
    "build_event",
    "dsn_problem",
    "pseudonymous_user_id",
    "start_sentry_link",
    "trace_url",
]

_logger = logging.getLogger("otel_ext.sentry")

_OURS = "otel_ext_report"  # hint key marking events otel-ext built
_MAX_TAG_LENGTH = 200
_MAX_DESCRIPTION_LENGTH = 1024  # the exception's own text travels in full in exception.value
_PII_ATTRIBUTES = {"email": "user.email", "ip_address": "client.address"}


@dataclass
class DeliveryCounts:
    """What happened to the exceptions otel-ext linked, for ``/monitoring/errors``."""

    sent: int = 0  # events handed to sentry-sdk, which accepted them
    refused: int = 0  # sentry-sdk dropped them (before_send, sample_rate, client closed)
    app_events_linked: int = 0  # events the app or a sentry-sdk integration captured, given the span's trace
    duplicates_dropped: int = 0  # further events for an exception already sent (by otel-ext or the app)
    unsent_at_shutdown: int = 0  # still queued when the shutdown timeout ran out
    failed: int = 0  # building or handing over the event raised (logged)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def dsn_problem(raw: str) -> str | None:
    """Why a ``SENTRY_DSN`` value is unusable, without repeating it (it holds the project's key)."""
    try:
        Dsn(raw.strip())
    except (BadDsn, ValueError) as error:  # ValueError: a bad port or bracket, from urllib
        return f"{error} (expected https://<key>@<host>/<project id>)"
    return None


def trace_url(template: str | None, context: SpanContext) -> str | None:
    if template is None:
        return None
    return template.replace("{trace_id}", format_trace_id(context.trace_id)).replace(
        "{span_id}", format_span_id(context.span_id)
    )


def pseudonymous_user_id(raw: str, secret: str) -> str:
    """A keyed hash: stable for one secret, not reversible by hashing guessed ids without it."""
    return hmac.new(secret.encode(), raw.encode(), hashlib.sha256).hexdigest()[:32]


def _user(attributes: Mapping[str, Any], settings: Settings) -> dict[str, str] | None:
    raw = next((attributes[name] for name in settings.user_id_attributes if name in attributes), None)
    if raw is None:
        return None
    if settings.sentry_send_pii:
        user = {"id": str(raw)}
        user.update({field: str(attributes[name]) for field, name in _PII_ATTRIBUTES.items() if name in attributes})
        return user
    if settings.user_id_secret is None:
        return None
    return {"id": pseudonymous_user_id(str(raw), settings.user_id_secret)}


def _first_user(spans: Sequence[ReadableSpan], settings: Settings) -> dict[str, str] | None:
    return next(filter(None, (_user(span.attributes or {}, settings) for span in spans)), None)


def _link_context(context: SpanContext, settings: Settings) -> dict[str, Any]:
    """Whether the trace was exported, and the link to it (only then: an unsampled trace has nothing to open)."""
    found: dict[str, Any] = {"sampled": context.trace_flags.sampled}
    url = trace_url(settings.trace_url_template, context) if context.trace_flags.sampled else None
    if url:
        found["trace_url"] = url
    return found


def _otel_context(span: ReadableSpan, settings: Settings) -> dict[str, Any]:
    """``contexts.otel`` of an event: the operation, its first error description, the trace link."""
    operation = operation_name(span.name, settings.fold_name_ids)
    found: dict[str, Any] = {"operation": operation, **_link_context(span.context, settings)}
    if operation != span.name:
        found["span_name"] = span.name
    if span.status.description:
        found["status_description"] = span.status.description[:_MAX_DESCRIPTION_LENGTH]
    return found


def _tags(span: ReadableSpan, settings: Settings) -> dict[str, str]:
    """Searchable tags; ``otel.operation`` is the operation as the monitor groups it (ids folded)."""
    scope = span.instrumentation_scope
    tags = {
        "otel.operation": operation_name(span.name, settings.fold_name_ids),
        "otel.service": str(span.resource.attributes.get("service.name", "")),
        "otel.span_kind": span.kind.name.lower(),
        "otel.component": scope.name if scope is not None else "",
    }
    return {key: value[:_MAX_TAG_LENGTH] for key, value in tags.items() if value}


def _trace_context(context: SpanContext, parent: SpanContext | None) -> dict[str, str]:
    found = {"trace_id": format_trace_id(context.trace_id), "span_id": format_span_id(context.span_id)}
    if parent is not None and parent.is_valid:
        found["parent_span_id"] = format_span_id(parent.span_id)
    return found


def build_event(
    items: Sequence[RecordedException], settings: Settings, client_options: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Sentry event and hint for one exception and the ended spans it was recorded on.

    The first span (where the exception was first recorded, the innermost) gives
    the trace context and tags; the user id may come from any of them, as apps
    usually set it on the server span.
    """
    item = items[0]
    span = item.span
    exception = item.exception
    errored = span.status.status_code is StatusCode.ERROR
    sentry_event, hint = event_from_exception(
        exception,
        client_options=dict(client_options) if client_options else None,
        mechanism={"type": "otel_ext", "handled": not errored},
    )
    event: dict[str, Any] = dict(sentry_event)
    hint[_OURS] = True
    event["event_id"] = item.stamp.event_id
    if span.end_time is not None:
        event["timestamp"] = datetime.fromtimestamp(span.end_time / 1e9, tz=timezone.utc)
    event["tags"] = _tags(span, settings)
    otel = _otel_context(span, settings)
    otel["operations_crossed"] = [crossed.span.name for crossed in items]
    otel["status_code"] = span.status.status_code.name
    if item.stamp.suppressed_before:
        otel["identical_errors_suppressed_before"] = item.stamp.suppressed_before
    event["contexts"] = {"trace": _trace_context(span.context, span.parent), "otel": otel}
    user = _first_user([crossed.span for crossed in items], settings)
    if user is not None:
        event["user"] = user
    return event, hint


class SentryLink:
    """Sends exceptions recorded on spans to Sentry and links the events both ways.

    Threading contract: ``is_active`` runs on app threads (the first time an
    exception is recorded), ``deliver`` on otel-ext's error worker, and
    ``_link_foreign_event`` wherever the app captures a Sentry event. None of
    them raises.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.counts = DeliveryCounts()
        # Set by the error pipeline: sends what its queue holds, waiting at most the seconds given.
        self.flush_queue: Callable[[float], object] | None = None
        self.own_client: object = None  # the client otel-ext initialised, if it did
        self._client: object = None
        self._client_lock = threading.Lock()
        self._user_warning_logged = False
        self._handed_since_drain = 0
        self._deadline: float | None = None  # set once shutting down: nothing is handed over after it

    def is_active(self) -> bool:
        """Sentry has a client now; its exit hook is kept after ours, so the queue reaches it first."""
        client = sentry_sdk.get_client()
        if not client.is_active():
            return False
        if client is not self._client:
            with self._client_lock:
                self._client = client
                atexit.unregister(self.at_exit)
                atexit.register(self.at_exit)  # atexit runs last-registered first
        return True

    def deliver(self, items: Sequence[RecordedException]) -> None:
        """Send the event for one exception (recorded on ``items``' spans) if otel-ext still owes it."""
        stamp = items[0].stamp
        if stamp.state is LinkState.DEFERRED:  # recorded on a 4xx server span that ended as an error after all
            stamp.event_id, stamp.state = uuid.uuid4().hex, LinkState.PENDING
        if stamp.state is not LinkState.PENDING:  # sent already, rate-limited, or not linked
            return
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self.counts.unsent_at_shutdown += 1
            return
        stamp.state = LinkState.SENT
        try:
            client = sentry_sdk.get_client()
            event, hint = build_event(items, self.settings, client.options)
            self._warn_about_user(items, event)
            with sentry_sdk.isolation_scope() as scope:
                scope.clear()
                event_id = scope.capture_event(cast(Any, event), hint=hint)
        except Exception as error:  # noqa: BLE001 - never let one event stop the worker
            self.counts.failed += 1
            report_once(_logger, "sending an event to Sentry", error)
            return
        if event_id is None:
            self.counts.refused += 1
        else:
            self.counts.sent += 1
        self._pace(client)

    def _pace(self, client: Any) -> None:
        """Let sentry-sdk's transport drain after every half queue of events handed to it.

        Its queue (``transport_queue_size``, 100 by default) drops what does not
        fit; handing over a burst at once would lose most of it. Waiting happens
        on otel-ext's worker, never on the app's threads, and within the
        shutdown deadline when exiting.
        """
        self._handed_since_drain += 1
        if self._handed_since_drain < max(1, int(client.options.get("transport_queue_size") or 100) // 2):
            return
        self._handed_since_drain = 0
        budget = self.settings.sentry_shutdown_timeout_ms / 1000
        if self._deadline is not None:
            budget = max(0.0, self._deadline - time.monotonic())
        client.flush(timeout=budget)

    def _warn_about_user(self, items: Sequence[RecordedException], event: Mapping[str, Any]) -> None:
        if self._user_warning_logged or "user" in event:
            return
        found = [
            name for item in items for name in self.settings.user_id_attributes if name in (item.span.attributes or {})
        ]
        if found:
            self._user_warning_logged = True
            _logger.warning(
                "otel-ext: spans carry %s but OTEL_EXT_USER_ID_SECRET is unset: Sentry events get no user "
                "(set a secret for a pseudonymous id, or OTEL_EXT_SENTRY_SEND_PII=true for the raw one)",
                found[0],
            )

    def link_foreign_event(self, event: dict[str, Any], hint: dict[str, Any] | None) -> dict[str, Any] | None:
        """Give an event the app captured the current span's trace, and keep one event per exception."""
        try:
            return self._link_foreign_event(event, hint or {})
        except Exception as error:  # noqa: BLE001 - the app's event goes out unchanged
            report_once(_logger, "linking a Sentry event to its span", error)
            return event

    def _link_foreign_event(self, event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        if hint.get(_OURS) or event.get("type") == "transaction":
            return event
        exc_info = hint.get("exc_info")
        exception = exc_info[1] if exc_info else None
        current = trace.get_current_span()
        stamp = stamp_of(exception) if isinstance(exception, BaseException) else None
        if isinstance(exception, BaseException):
            if stamp is None:
                origin = current if isinstance(current, SdkSpan) else None
                set_stamp(exception, ExceptionStamp(event.get("event_id"), LinkState.SENT, origin=origin))
            elif stamp.state is LinkState.SENT and stamp.event_id != event.get("event_id"):
                self.counts.duplicates_dropped += 1
                return None
            elif stamp.state is LinkState.PENDING:
                event["event_id"] = stamp.event_id  # the id already set on the span
                stamp.state = LinkState.SENT
            elif stamp.state in (LinkState.UNLINKED, LinkState.DEFERRED):
                stamp.event_id, stamp.state = event.get("event_id"), LinkState.SENT
        # An exception belongs to the span that recorded it, even when the app captures it later, elsewhere.
        span: trace.Span = stamp.origin if stamp is not None and stamp.origin is not None else current
        context = span.get_span_context()
        if not context.is_valid:
            return event
        self.counts.app_events_linked += 1
        contexts = event.setdefault("contexts", {})
        contexts["trace"] = _trace_context(context, getattr(span, "parent", None))
        if isinstance(span, ReadableSpan):
            contexts.setdefault("otel", {}).update(_otel_context(span, self.settings))
            event.setdefault("tags", {}).update(_tags(span, self.settings))
        else:
            contexts.setdefault("otel", {}).update(_link_context(context, self.settings))
        if not (event.get("user") or {}).get("id"):
            # The user id is usually on the server span, current while the app captures.
            user = _first_user([candidate for candidate in (span, current) if isinstance(candidate, ReadableSpan)],
                               self.settings)
            if user is not None:
                event["user"] = {**(event.get("user") or {}), **user}
        if span.is_recording() and event.get("event_id"):
            span.set_attribute(EVENT_ID_ATTRIBUTE, event["event_id"])
        return event

    def at_exit(self) -> None:
        """Hand queued errors to sentry-sdk, then let it send them, all within the shutdown timeout.

        A client otel-ext initialised is closed here, so sentry-sdk's own exit
        hook (which runs next) has nothing left to wait for; the app's own
        client is left to that hook and the app's ``shutdown_timeout``.
        """
        self.close(at_exit=True)

    def close(self, at_exit: bool = False) -> None:
        """Hand queued errors to sentry-sdk and wait for its transport, within the shutdown timeout."""
        self._deadline = time.monotonic() + self.settings.sentry_shutdown_timeout_ms / 1000
        try:
            if self.flush_queue is not None:
                self.flush_queue(self.settings.sentry_shutdown_timeout_ms / 1000)
            client = sentry_sdk.get_client()
            remaining = max(0.0, self._deadline - time.monotonic())
            if at_exit and client is self.own_client:
                client.close(timeout=remaining)
            elif not at_exit and client.is_active():
                client.flush(timeout=remaining)
        except Exception as error:  # noqa: BLE001 - exit must go on
            report_once(_logger, "flushing Sentry at shutdown", error)
        # The deadline stays: the worker may still be in a batch, and must not start a new wait.


_active_link: SentryLink | None = None
_processor_installed = False


def _route_event(event: dict[str, Any], hint: dict[str, Any] | None) -> dict[str, Any] | None:
    link = _active_link
    return event if link is None else link.link_foreign_event(event, hint)


def start_sentry_link(settings: Settings) -> SentryLink:
    """Join the app's sentry-sdk, or initialise it from a valid ``SENTRY_DSN``.

    Otherwise the link waits: it is active whenever sentry-sdk has a client, so
    an app that calls ``sentry_sdk.init()`` later (even after otel-ext
    initialised it) is linked with its own options.
    """
    global _active_link, _processor_installed
    link = SentryLink(settings)
    if sentry_sdk.get_client().is_active():
        _logger.info("otel-ext: linking spans to the app's sentry-sdk client")
    elif os.environ.get(SENTRY_DSN, "").strip():
        sentry_sdk.init(
            send_default_pii=settings.sentry_send_pii,
            shutdown_timeout=settings.sentry_shutdown_timeout_ms / 1000,
        )
        link.own_client = sentry_sdk.get_client()
        _logger.info("otel-ext: sentry-sdk initialised from %s", SENTRY_DSN)
    else:
        _logger.info("otel-ext: the Sentry link starts when the app calls sentry_sdk.init()")
    _active_link = link
    if not _processor_installed:
        add_global_event_processor(cast(Any, _route_event))
        _processor_installed = True
    link.is_active()  # registers the exit flush after sentry-sdk's own exit hook
    return link
