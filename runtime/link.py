"""The runtime's end of the OSC protocol (docs/osc.md), over liblo on 127.0.0.1.

A liblo server thread listens on the runtime's port; every message goes through one dispatcher that
checks the sender is this machine, the address is known and the type tags and values are exactly what the
protocol says. Anything else is dropped and counted (`malformed`), never raised: a hostile or buggy sender
cannot stop the box. Sending goes out of the same socket, so Pd sees replies come from the runtime's port.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from runtime.artifact import Model

# The one place the liblo binding is chosen (runtime.doctor uses this one too): PyPI's pyliblo3 on the
# workstation and CI (x86_64 wheels), else Debian's python3-liblo (module `liblo`, 0.10, the same API) on
# the box, because PyPI has no aarch64 pyliblo3 (deploy/setup-pi.sh installs python3-liblo there).
try:
    import pyliblo3 as liblo
except ImportError:
    try:
        import liblo  # type: ignore[no-redef]
    except ImportError:
        raise ImportError(
            "no liblo binding for Python: install pyliblo3 (pip install pyliblo3, the workstation) or "
            "Debian's python3-liblo (apt-get install python3-liblo, the box; its venv needs "
            "--system-site-packages to see it)"
        ) from None

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # never "localhost": it may resolve to ::1 while Pd binds IPv4
NUM_KNOBS = 8
LOGGED_DROPS = 10  # log the first few drops in full, then one line per DROP_LOG_EVERY
DROP_LOG_EVERY = 1000
PD_SAYS = ("/hello", "/ack", "/pong")  # what only Pd sends: proof that Pd is alive
RECENT_SUMS = 64  # /acks lag the sends by a few grains while a knob sweeps


class LinkError(Exception):
    """The link cannot start (usually: the port is taken); the message says which port and why."""


class LinkHandlers(Protocol):
    """What the link calls for each valid incoming message (from liblo's thread; keep them quick)."""

    def on_hello(self) -> None: ...
    def on_ack(self, slot: int, checksum: float) -> None: ...
    def on_knob(self, index: int, value: float) -> None: ...
    def on_note(self, pitch: int, velocity: int) -> None: ...
    def on_pong(self, ping_id: int) -> None: ...
    def on_reload(self) -> None: ...


class Malformed(Exception):
    """Why a message was dropped."""


def _finite(*values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise Malformed("NaN or inf where a finite number is required")


def _in_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise Malformed(f"{name} {value} outside {low}..{high}")


class Link:
    """Sends /model, /grain, /param, /trigger, /ping to Pd and receives what docs/osc.md lists back."""

    def __init__(self, listen_port: int, pd_port: int, handlers: LinkHandlers) -> None:
        self.handlers = handlers
        self.pd = liblo.Address(HOST, pd_port, liblo.UDP)
        try:
            self.server = liblo.ServerThread(listen_port, liblo.UDP)
        except liblo.ServerError as e:
            raise LinkError(
                f"cannot listen for OSC on UDP port {listen_port}: {e}; is another runtime "
                f"running? (stop it, or use --osc-port)"
            ) from None
        self.port = self.server.port
        self.server.add_method(None, None, self._dispatch)
        self._send_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.received = 0
        self.malformed = 0
        self.grains_sent = 0
        self.send_errors = 0
        self.last_drop: str | None = None
        self.last_heard: float | None = None  # time.monotonic() of the last valid /hello, /ack or /pong
        # slot -> sums of the samples of the last few grains sent, newest last, to check Pd's /ack against
        self.sent_sums: dict[int, deque[float]] = defaultdict(lambda: deque(maxlen=RECENT_SUMS))
        self._routes: dict[str, tuple[str, Callable[..., None]]] = {
            "/hello": ("", self._hello),
            "/ack": ("if", self._ack),
            "/knob": ("if", self._knob),
            "/note": ("ii", self._note),
            "/ping": ("i", self._ping),
            "/pong": ("i", self._pong),
            "/reload": ("", self._reload),
        }

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        self.server.stop()
        self.server.free()

    # ------------------------------------------------------------------------------------------ sending

    def send_model(self, model: Model, slots: int) -> None:
        self._send(liblo.Message("/model", model.sample_rate, model.grain_size, model.latent_dim, slots))

    def send_grains(self, grains: np.ndarray, first_slot: int = 0) -> None:
        """One /grain per slot, from first_slot on: slot index, then its G samples as 32-bit floats."""
        for slot, samples in enumerate(grains, start=first_slot):
            self.sent_sums[slot].append(float(samples.sum(dtype=np.float64)))
            self._send(liblo.Message("/grain", slot, *samples.tolist()))
            self.grains_sent += 1

    def send_param(self, name: str, value: float) -> None:
        self._send(liblo.Message("/param", name, float(value)))

    def send_trigger(self) -> None:
        self._send(liblo.Message("/trigger"))

    def send_ping(self, ping_id: int) -> None:
        self._send(liblo.Message("/ping", int(ping_id)))

    def _send(self, message: liblo.Message, target: liblo.Address | None = None) -> None:
        try:
            with self._send_lock:
                self.server.send(target or self.pd, message)
        except OSError as e:  # UDP to a closed port can report ECONNREFUSED later; Pd may simply be down
            self.send_errors += 1
            log.debug("OSC send failed: %s", e)

    # ---------------------------------------------------------------------------------------- receiving

    def _dispatch(self, path: str, args: list[Any], types: str, src: liblo.Address) -> None:
        with self._count_lock:
            self.received += 1
        try:
            if src.hostname != HOST:
                raise Malformed(f"sender {src.hostname} is not {HOST}")
            route = self._routes.get(path)
            if route is None:
                raise Malformed("unknown address")
            expected, handle = route
            if types != expected:
                raise Malformed(f"type tags ',{types}', expected ',{expected}'")
            handle(src, *args)
            if path in PD_SAYS:
                self.last_heard = time.monotonic()
        except Malformed as why:
            self._drop(path, types, str(why))
        except Exception:  # a bug in a handler: log it, keep serving
            log.exception("handling %s failed", path)

    def _drop(self, path: str, types: str, why: str) -> None:
        with self._count_lock:
            self.malformed += 1
            count = self.malformed
        self.last_drop = f"{path[:64]} ,{types[:16]}: {why}"
        if count <= LOGGED_DROPS or count % DROP_LOG_EVERY == 0:
            log.warning("dropped OSC message %s (%d dropped so far)", self.last_drop, count)

    def _hello(self, src: liblo.Address) -> None:
        self.handlers.on_hello()

    def _ack(self, src: liblo.Address, slot: int, checksum: float) -> None:
        _finite(checksum)
        _in_range("slot", slot, 0, 1023)
        self.handlers.on_ack(slot, checksum)

    def _knob(self, src: liblo.Address, index: int, value: float) -> None:
        _finite(value)
        _in_range("knob index", index, 0, NUM_KNOBS - 1)
        self.handlers.on_knob(index, min(1.0, max(0.0, value)))

    def _note(self, src: liblo.Address, pitch: int, velocity: int) -> None:
        _in_range("pitch", pitch, 0, 127)
        _in_range("velocity", velocity, 0, 127)
        self.handlers.on_note(pitch, velocity)

    def _ping(self, src: liblo.Address, ping_id: int) -> None:
        self._send(liblo.Message("/pong", ping_id), liblo.Address(HOST, src.port, liblo.UDP))

    def _pong(self, src: liblo.Address, ping_id: int) -> None:
        self.handlers.on_pong(ping_id)

    def _reload(self, src: liblo.Address) -> None:
        self.handlers.on_reload()
