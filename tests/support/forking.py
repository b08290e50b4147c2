"""Run a test body in a forked child and get its JSON result back, with no way to hang."""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any


def run_in_child(body: Callable[[], dict[str, Any]], timeout_s: float = 20.0) -> dict[str, Any]:
    """Fork, run ``body`` in the child, return its JSON-able result to the parent.

    The child always leaves through ``os._exit``; a hung child is killed by pid.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(read_fd)
            try:
                payload = {"ok": True, "result": body()}
            except BaseException as error:  # noqa: BLE001 - report everything to the parent
                payload = {"ok": False, "error": repr(error)}
            os.write(write_fd, json.dumps(payload).encode())
            os.close(write_fd)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("forked child did not answer in time")
            ready, _, _ = select.select([read_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child exited with status {status}"
    payload = json.loads(b"".join(chunks).decode())
    assert payload["ok"], f"child failed: {payload.get('error')}"
    return payload["result"]
