"""An OSC peer for the runtime's tests: a real liblo server on 127.0.0.1 that records what it receives.

It plays Pd's side of docs/osc.md where a test is about the runtime alone (the end-to-end test uses the
real Pd patch): it can answer each /grain with /ack slot checksum, as the patch does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pyliblo3 as liblo

HOST = "127.0.0.1"


class OscPeer:
    """Records (path, args) of every message; `ack_grains` makes it answer /grain like Pd does."""

    def __init__(self, runtime_port: int | None = None, ack_grains: bool = False, port: int | None = None):
        """Listen on `port` (default: any free one); send() goes to 127.0.0.1:`runtime_port`, the peer
        under test (the runtime, or the Pd patch when a test plays the runtime's side)."""
        self.server = liblo.ServerThread(port, liblo.UDP)
        self.port = self.server.port
        self.runtime_port = runtime_port
        self.ack_grains = ack_grains
        self.messages: list[tuple[str, list[Any]]] = []
        self._cond = threading.Condition()
        self.server.add_method(None, None, self._record)
        self.server.start()

    def _record(self, path: str, args: list[Any]) -> None:
        with self._cond:
            self.messages.append((path, args))
            self._cond.notify_all()
        if self.ack_grains and path == "/grain" and self.runtime_port:
            self.send("/ack", args[0], float(sum(args[1:])))

    def send(self, path: str, *args: Any) -> None:
        assert self.runtime_port is not None
        self.server.send(liblo.Address(HOST, self.runtime_port, liblo.UDP), liblo.Message(path, *args))

    def of(self, path: str) -> list[list[Any]]:
        with self._cond:
            return [args for p, args in self.messages if p == path]

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def first(self, path: str, args: list[Any] | None = None) -> list[Any] | None:
        """The arguments of the first `path` message received (whose arguments start with `args`)."""
        with self._cond:
            matches = (a for p, a in self.messages if p == path and (args is None or a[: len(args)] == args))
            return next(matches, None)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until predicate() is truthy (re-checked on every message and every 50 ms) and return its
        value, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (found := predicate()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.05))
        return found

    def close(self) -> None:
        self.server.stop()
        self.server.free()
