"""What every test receiver shares: started and stopped by a ``with`` block."""

from __future__ import annotations

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
