"""In-process Sentry envelope receiver for end-to-end tests.

The app under test runs the real sentry-sdk with its real HTTP transport and a
DSN pointing here, so the sink parses the bytes on the wire itself (it does not
reuse the SDK's deserializer) and answers like Sentry's ingest endpoint does.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from tests.support.serving import Served, serve_in_background

try:  # The SDK only sends "br" when brotli is importable, and so do we.
    import brotli  # type: ignore[import-not-found, import-untyped, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None

Mode = Literal["ok", "slow"]
Payload = dict[str, Any] | bytes

PROJECT_ID = "1"
PUBLIC_KEY = "public"
_ENVELOPE_PATH = re.compile(r"^/api/(?P<project>\d+)/envelope/?(?:\?.*)?$")
# Item types whose payload is not JSON even when it happens to parse as such.
_BINARY_ITEM_TYPES = frozenset({"attachment", "replay_recording", "replay_video", "statsd"})


class MalformedEnvelope(ValueError):
    """The body is not a valid envelope (answered with HTTP 400)."""


@dataclass(frozen=True)
class Envelope:
    """One parsed envelope: its header and (item headers, payload) pairs."""

    headers: dict[str, Any]
    items: list[tuple[dict[str, Any], Payload]]


@dataclass(frozen=True)
class RawRequest:
    """A request as received; `body` is already decompressed when that worked."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int


def _dsn(port: int) -> str:
    return f"http://{PUBLIC_KEY}@127.0.0.1:{port}/{PROJECT_ID}"


def closed_port_dsn() -> str:
    """DSN to a local port nobody listens on, for "Sentry is down" cases.

    Binding to port 0 and closing again yields a port the OS just proved free;
    without listen() no TIME_WAIT is left, so connects get refused at once.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return _dsn(port)


def _item_payload(headers: dict[str, Any], raw: bytes) -> Payload:
    """Decode JSON payloads to dicts; anything else stays bytes."""
    if headers.get("type") in _BINARY_ITEM_TYPES:
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, dict) else raw


def parse_envelope(body: bytes) -> Envelope:
    """Parse the envelope wire format; raises ValueError (JSON or MalformedEnvelope).

    Format: a JSON header line, then per item a JSON header line and a payload
    of `length` bytes (then an optional newline) or, without `length`, up to
    the next newline or the end of the body.
    """

    def read_line(start: int) -> tuple[bytes, int]:
        end = body.find(b"\n", start)
        if end == -1:
            return body[start:], len(body)
        return body[start:end], end + 1

    header_line, pos = read_line(0)
    headers = json.loads(header_line)
    if not isinstance(headers, dict):
        raise MalformedEnvelope("envelope header is not a JSON object")
    items: list[tuple[dict[str, Any], Payload]] = []
    while pos < len(body):
        item_line, pos = read_line(pos)
        if not item_line.strip():
            continue
        item_headers = json.loads(item_line)
        if not isinstance(item_headers, dict):
            raise MalformedEnvelope("item header is not a JSON object")
        length = item_headers.get("length")
        if length is None:
            raw, pos = read_line(pos)
        else:
            raw = body[pos : pos + int(length)]
            if len(raw) != int(length):
                raise MalformedEnvelope(f"item declares {length} bytes, only {len(raw)} left")
            pos += len(raw)
            if body[pos : pos + 1] == b"\n":
                pos += 1
        items.append((item_headers, _item_payload(item_headers, raw)))
    return Envelope(headers, items)


def _events_of(envelopes: list[Envelope]) -> list[dict[str, Any]]:
    return [
        payload
        for envelope in envelopes
        for headers, payload in envelope.items
        if headers.get("type") == "event" and isinstance(payload, dict)
    ]


def _decompress(encoding: str, body: bytes) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br" and brotli is not None:
        return bytes(brotli.decompress(body))
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sink: SentrySink) -> None:
        super().__init__(("127.0.0.1", 0), _HttpHandler)
        self.sink = sink

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client goes away (an app exiting resets its kept-alive connection)."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class _HttpHandler(BaseHTTPRequestHandler):
    server: _HttpServer
    # HTTP/1.1 so urllib3 keeps connections alive as it would against Sentry.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle's algorithm holds
    # the body ~40 ms on loopback, which makes the receiver look slow.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.sink._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.sink._track(self.connection, add=False)
        super().finish()

    def do_POST(self) -> None:
        sink = self.server.sink
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        envelope: Envelope | None = None
        if not _ENVELOPE_PATH.match(self.path):
            status, reply = 404, {"detail": "not an envelope endpoint"}
        else:
            try:
                body = _decompress(headers.get("content-encoding", "").strip().lower(), body)
                envelope = parse_envelope(body)
            except (OSError, ValueError, EOFError) as exc:  # gzip/brotli/json errors
                status, reply = 400, {"detail": str(exc)}
            else:
                event_id = envelope.headers.get("event_id")
                status, reply = 200, ({"id": event_id} if event_id else {})
        # Record on arrival, so a test can see a request that is still being held.
        sink._record(RawRequest(self.path, headers, body, status), envelope)
        if sink.mode == "slow":
            sink._stopping.wait(sink.delay_s)
        self._reply(status, json.dumps(reply).encode())

    def _reply(self, status: int, payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # stop() shut the socket while we were slow

    def log_message(self, format: str, *args: Any) -> None:
        """Keep per-request access logs out of test output."""


class SentrySink(Served):
    """Receives sentry-sdk envelopes over real HTTP on a free 127.0.0.1 port.

    mode "ok" answers 200 at once; "slow" holds every request `delay_s` seconds
    before answering 200, to show the SDK's transport thread being blocked.
    `mode` and `delay_s` are read per request, so tests may change them live.
    """

    def __init__(self, mode: Mode = "ok", delay_s: float = 5.0) -> None:
        if mode not in ("ok", "slow"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode: Mode = mode
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._raw: list[RawRequest] = []
        self._envelopes: list[Envelope] = []
        self._connections: set[socket.socket] = set()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SentrySink:
        if self._server is not None:
            raise RuntimeError("SentrySink is already started")
        self._stopping.clear()
        self._server = _HttpServer(self)
        self._thread = serve_in_background(self._server, "sentry-sink-http")
        return self

    def stop(self) -> None:
        """Stop listening, release held slow requests and cut kept-alive connections.

        Without cutting them, a pooled client connection would keep being served
        by its (daemon) handler thread after the sink is "down".
        """
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SentrySink is not started")
        return int(self._server.server_address[1])

    @property
    def dsn(self) -> str:
        return _dsn(self.port)

    @property
    def requests(self) -> int:
        """How many POSTs arrived (including rejected ones)."""
        with self._lock:
            return len(self._raw)

    def raw_requests(self) -> list[RawRequest]:
        """Snapshot of every request in arrival order, for path/header asserts."""
        with self._lock:
            return list(self._raw)

    def envelopes(self) -> list[Envelope]:
        """Snapshot of the envelopes that parsed, in arrival order."""
        with self._lock:
            return list(self._envelopes)

    def events(self) -> list[dict[str, Any]]:
        """Error events only: not transactions, sessions or client reports."""
        with self._lock:
            return _events_of(self._envelopes)

    def wait_for_events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least `count` events arrived or `timeout` passed; return them.

        Does not raise: "nothing arrived" is a valid outcome for some tests, so
        callers assert on the returned list themselves.
        """
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                events = _events_of(self._envelopes)
                remaining = deadline - time.monotonic()
                if len(events) >= count or remaining <= 0:
                    return events
                self._arrived.wait(remaining)

    def _record(self, raw: RawRequest, envelope: Envelope | None) -> None:
        with self._arrived:
            self._raw.append(raw)
            if envelope is not None:
                self._envelopes.append(envelope)
            self._arrived.notify_all()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
