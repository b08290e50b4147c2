"""The sink is only trustworthy if the real sentry-sdk HTTP transport round-trips through it.

Each test uses its own `sentry_sdk.Client`, bound to a forked scope with
`new_scope()`, instead of `sentry_sdk.init()`: no global client, integration or
excepthook survives the test.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sentry_sdk

from tests.support.sentry_sink import (
    SentrySink,
    closed_port_dsn,
    parse_envelope,
)


class CheckoutError(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_global_sentry_client() -> Iterator[None]:
    """Fail loudly if a test leaves its Sentry client behind for other tests.

    Compares with the client seen before the test, so a leak elsewhere is not
    blamed on these tests.
    """
    before = sentry_sdk.get_client()
    yield
    after = sentry_sdk.get_client()
    assert after is before or not (after.is_active() or before.is_active())


@pytest.fixture
def sink() -> Iterator[SentrySink]:
    with SentrySink() as running:
        yield running


@contextmanager
def sentry_client(dsn: str, **options: Any) -> Iterator[sentry_sdk.Client]:
    """A real client with the real HTTP transport, active only inside the block."""
    client = sentry_sdk.Client(
        dsn=dsn,
        default_integrations=False,
        auto_enabling_integrations=False,
        # An ambient HTTP(S)_PROXY must not divert 127.0.0.1 traffic.
        http_proxy="",
        https_proxy="",
        **options,
    )
    try:
        with sentry_sdk.new_scope() as scope:
            scope.set_client(client)
            yield client
    finally:
        client.close(timeout=0)


def _capture_checkout_error() -> str | None:
    try:
        raise CheckoutError("card declined")
    except CheckoutError as exc:
        return sentry_sdk.capture_exception(exc)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_exception_arrives_with_type_value_and_event_id(sink: SentrySink) -> None:
    with sentry_client(sink.dsn) as client:
        event_id = _capture_checkout_error()
        client.flush(timeout=5)
    assert event_id is not None

    events = sink.wait_for_events(1)
    assert len(events) == 1
    event = events[0]
    assert event["event_id"] == event_id
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "CheckoutError"
    assert exception["value"] == "card declined"

    (envelope,) = [e for e in sink.envelopes() if e.headers.get("event_id") == event_id]
    assert [h["type"] for h, _ in envelope.items] == ["event"]

    raw = sink.raw_requests()[0]
    assert raw.path == "/api/1/envelope/"
    assert raw.status == 200
    assert raw.headers["content-type"] == "application/x-sentry-envelope"
    assert raw.headers["x-sentry-auth"].startswith("Sentry sentry_key=public,")
    assert sink.requests == len(sink.raw_requests()) >= 1


def test_gzip_body_is_decoded(sink: SentrySink) -> None:
    # Without brotli installed the SDK picks gzip; force it so the test is stable.
    with sentry_client(sink.dsn, _experiments={"transport_compression_algo": "gzip"}) as client:
        event_id = _capture_checkout_error()
        client.flush(timeout=5)

    assert [e["event_id"] for e in sink.wait_for_events(1)] == [event_id]
    raw = sink.raw_requests()[0]
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.body.startswith(b"{")  # stored decompressed


def test_uncompressed_body_is_accepted(sink: SentrySink) -> None:
    with sentry_client(sink.dsn, _experiments={"transport_compression_level": 0}) as client:
        event_id = _capture_checkout_error()
        client.flush(timeout=5)

    assert [e["event_id"] for e in sink.wait_for_events(1)] == [event_id]
    assert "content-encoding" not in sink.raw_requests()[0].headers


def test_brotli_body_is_decoded(sink: SentrySink) -> None:
    pytest.importorskip("brotli")
    with sentry_client(sink.dsn, _experiments={"transport_compression_algo": "br"}) as client:
        event_id = _capture_checkout_error()
        client.flush(timeout=5)

    assert [e["event_id"] for e in sink.wait_for_events(1)] == [event_id]
    assert sink.raw_requests()[0].headers["content-encoding"] == "br"


def test_answers_like_sentry_and_filters_non_error_items(sink: SentrySink) -> None:
    event_id = "a" * 32
    event = json.dumps({"event_id": event_id, "message": "hi"}).encode()
    body = b"\n".join(
        [
            json.dumps({"event_id": event_id}).encode(),
            json.dumps({"type": "event", "length": len(event)}).encode(),
            event,
            # No length: ends at the newline.
            json.dumps({"type": "transaction"}).encode(),
            json.dumps({"type": "transaction", "event_id": "b" * 32}).encode(),
            json.dumps({"type": "attachment", "length": 3}).encode(),
            b"\x00\n\x01",
            json.dumps({"type": "client_report"}).encode(),
            b'{"discarded_events": []}',
        ]
    )
    status, reply = _post(
        f"http://127.0.0.1:{sink.port}/api/1/envelope/",
        gzip.compress(body),
        {"Content-Encoding": "gzip", "Content-Type": "application/x-sentry-envelope"},
    )

    assert (status, reply) == (200, {"id": event_id})
    (envelope,) = sink.envelopes()
    assert [h["type"] for h, _ in envelope.items] == [
        "event",
        "transaction",
        "attachment",
        "client_report",
    ]
    assert envelope.items[2][1] == b"\x00\n\x01"
    assert envelope.items[3][1] == {"discarded_events": []}
    assert sink.events() == [{"event_id": event_id, "message": "hi"}]


def test_rejects_wrong_path_and_garbage(sink: SentrySink) -> None:
    base = f"http://127.0.0.1:{sink.port}"
    assert _post(f"{base}/api/1/store/", b"{}\n", {})[0] == 404
    assert _post(f"{base}/api/1/envelope/", b"not json", {})[0] == 400
    assert _post(f"{base}/api/1/envelope/", b"{}", {"Content-Encoding": "zstd"})[0] == 400
    assert sink.requests == 3
    assert sink.envelopes() == []


def test_parse_envelope_rejects_truncated_item() -> None:
    with pytest.raises(ValueError):
        parse_envelope(b'{}\n{"type":"event","length":10}\n{}')


def test_wait_for_events_returns_what_arrived_on_timeout(sink: SentrySink) -> None:
    started = time.monotonic()
    assert sink.wait_for_events(1, timeout=0.2) == []
    assert 0.2 <= time.monotonic() - started < 2


def test_slow_mode_blocks_transport_not_capture() -> None:
    delay = 1.0
    with SentrySink(mode="slow", delay_s=delay) as sink, sentry_client(sink.dsn) as client:
        started = time.monotonic()
        event_id = _capture_checkout_error()
        assert time.monotonic() - started < delay / 2, "capture must not wait for HTTP"

        # Recorded on arrival, while the response is still held back.
        assert [e["event_id"] for e in sink.wait_for_events(1, timeout=5)] == [event_id]
        assert time.monotonic() - started < delay, "arrived before the answer"
        client.flush(timeout=delay * 5)
        assert time.monotonic() - started >= delay * 0.9, "flush waited for the held answer"


def test_stop_does_not_hang_in_slow_mode() -> None:
    sink = SentrySink(mode="slow", delay_s=60).start()
    url = f"http://127.0.0.1:{sink.port}/api/1/envelope/"
    outcome: list[object] = []

    def post() -> None:
        try:
            outcome.append(_post(url, b'{"event_id":"' + b"c" * 32 + b'"}\n', {}, timeout=30))
        except OSError as exc:
            outcome.append(exc)

    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    deadline = time.monotonic() + 5
    while sink.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.requests == 1

    started = time.monotonic()
    sink.stop()
    assert time.monotonic() - started < 2
    poster.join(timeout=5)
    assert not poster.is_alive()


def test_stopped_sink_refuses_kept_alive_connections(sink: SentrySink) -> None:
    with sentry_client(sink.dsn) as client:
        _capture_checkout_error()
        client.flush(timeout=5)
        assert len(sink.wait_for_events(1)) == 1
        sink.stop()
        _capture_checkout_error()  # same pooled connection, sink now "down"
        client.flush(timeout=5)
    assert sink.requests == 1


def test_closed_port_dsn_refuses_connections() -> None:
    dsn = closed_port_dsn()
    assert dsn.startswith("http://public@127.0.0.1:") and dsn.endswith("/1")
    port = int(dsn.rsplit(":", 1)[1].split("/", 1)[0])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    with sentry_client(dsn) as client:
        started = time.monotonic()
        assert _capture_checkout_error() is not None
        client.flush(timeout=5)
        assert time.monotonic() - started < 5
