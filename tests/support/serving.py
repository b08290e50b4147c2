"""What every test receiver shares: started and stopped by a ``with`` block."""

from __future__ import annotations

import threading
from http.server import HTTPServer
from types import TracebackType
from typing import TypeVar

_Server = TypeVar("_Server", bound="Served")


class Served:
    """``with Receiver() as receiver:`` starts it and always stops it."""

    def start(self: _Server) -> _Server:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Server) -> _Server:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_in_background(server: HTTPServer, name: str) -> threading.Thread:
    """Serve on a daemon thread; the short poll interval keeps ``shutdown()`` fast (it waits for one poll)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    return thread
