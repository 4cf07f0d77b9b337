"""The runtime's end of the OSC protocol (docs/osc.md), on one UDP socket bound to 127.0.0.1.

A receive thread reads each datagram from the socket (runtime.osc_socket: loopback only, no bundles, liblo
as the parser) and one dispatcher checks that the sender is this machine, the address is known and the
type tags and values are exactly what the protocol says. Anything else is dropped and counted by reason,
never raised: a hostile or buggy sender cannot stop the box. What would make the box do a lot of work for
a 20-byte datagram (/hello resends every slot) is coalesced to a few a second. Sending goes out of the
same socket, so Pd sees replies come from the runtime's port, and only to Pd's configured port.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from runtime.artifact import Model
from runtime.contract import GRAIN_SIZE, KNOB_COUNT, KNOB_OSC_FIRST_INDEX, MAX_NAME, PARAM_NAMES, pd_word
from runtime.liblo_binding import liblo
from runtime.osc_socket import Dropped, OscSocket, parse

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # never "localhost": it may resolve to ::1 while Pd binds IPv4
LOGGED_DROPS = 10  # log the first few drops in full, then one line per DROP_LOG_EVERY
DROP_LOG_EVERY = 1000
PD_SAYS = ("/hello", "/ack", "/pong", "/model_ok")  # what only Pd sends: proof that Pd is alive
RECENT_SUMS = 64  # /acks lag the sends by a few grains while a knob sweeps
MAX_STEPS = 1000  # an encoder-like step from the patch; more is a bug or an attack, not a gesture
MAX_INCOMING = 256  # bytes: the longest message Pd sends the runtime but /input is 20 (/ack slot checksum)
INPUT_BURST = 4  # /input: up to this many grains at once, and on average at most twice the grain rate
HELLO_EVERY_S = 0.5  # at most two full resends a second, however many /hello arrive
RECEIVE_POLL_S = 0.2  # how soon the receive thread notices close()


class LinkError(Exception):
    """The link cannot start (usually: the port is taken); the message says which port and why."""


class LinkHandlers(Protocol):
    """What the link calls for each valid incoming message (from liblo's thread; keep them quick)."""

    def on_hello(self) -> None: ...
    def on_model_accepted(self) -> None: ...
    def on_ack(self, slot: int, checksum: float) -> None: ...
    def on_knob(self, index: int, value: float) -> None: ...
    def on_note(self, pitch: int, velocity: int) -> None: ...
    def on_pong(self, ping_id: int) -> None: ...
    def on_reload(self) -> None: ...
    def on_input(self, grain: np.ndarray) -> None: ...
    def on_listen(self, mode: int) -> None: ...
    def on_param(self, name: str, value: float) -> None: ...
    def on_anchor_step(self, steps: int) -> None: ...
    def on_anchor_select(self, choice: int | str) -> None: ...
    def on_preset(self, verb: str, name: str, steps: int) -> None: ...
    def on_models(self, steps: int) -> None: ...
    def on_model_load(self, name: str) -> None: ...
    def on_midimap(self, channel: int, cc: int, control: str) -> None: ...
    def on_midimap_clear(self) -> None: ...


def input_bytes(grain_size: int) -> int:
    """The length of one /input datagram: address, type tags (i, then a float per sample), arguments."""
    tags = 1 + 1 + grain_size + 1  # ",i" + f * G + NUL
    return 8 + (tags + 3) // 4 * 4 + 4 + 4 * grain_size


class Malformed(Exception):
    """Why a well-formed message was dropped: a value out of its range."""


def _finite(*values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise Malformed("NaN or inf where a finite number is required")


def _name(text: str) -> None:
    if not 0 < len(text.encode()) <= MAX_NAME or not text.isprintable():
        raise Malformed(f"a name must be 1-{MAX_NAME} printable bytes")


def _in_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise Malformed(f"{name} {value} outside {low}..{high}")


class Coalescer:
    """Runs `action` at most once every `interval_s`: the first request at once, and every request
    inside the interval folded into one run when it ends. The requests all ask for the same thing (send
    Pd the whole state), so the last one wins and none is lost."""

    def __init__(self, interval_s: float, action: Callable[[], None]) -> None:
        self.interval_s = interval_s
        self.action = action
        self.requested = 0
        self.runs = 0
        self._lock = threading.Lock()
        self._next_run = 0.0
        self._timer: threading.Timer | None = None

    def __call__(self) -> None:
        with self._lock:
            self.requested += 1
            if self._timer is not None:
                return  # already folded into the run at the end of this interval
            wait = self._next_run - time.monotonic()
            if wait > 0:
                self._timer = threading.Timer(wait, self._deferred)
                self._timer.daemon = True
                self._timer.start()
                return
            self._next_run = time.monotonic() + self.interval_s
        self._run()

    def _deferred(self) -> None:
        with self._lock:
            self._timer = None
            self._next_run = time.monotonic() + self.interval_s
        self._run()

    def _run(self) -> None:
        self.runs += 1
        self.action()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class Link:
    """Sends /model, /grain, /param, /trigger, /ping to Pd and receives what docs/osc.md lists back."""

    def __init__(self, listen_port: int, pd_port: int, handlers: LinkHandlers) -> None:
        self.handlers = handlers
        self.pd_port = pd_port
        try:
            self.socket = OscSocket(HOST, listen_port, input_bytes(GRAIN_SIZE.high))
        except OSError as e:
            raise LinkError(
                f"cannot listen for OSC on {HOST}:{listen_port} (UDP): {e.strerror or e}; is another "
                f"runtime running? (stop it, or use --osc-port)"
            ) from None
        self.port = self.socket.port
        self.socket.max_datagram = MAX_INCOMING  # until a /model says how long an /input may be
        self._input_tokens = float(INPUT_BURST)
        self._input_refilled = time.monotonic()
        self._send_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="osc-receive", daemon=True)
        self.received = 0
        self.malformed = 0
        self.drops: Counter[str] = Counter()  # reason -> datagrams dropped for it
        self.grains_sent = 0
        self.send_errors = 0
        self.last_drop: str | None = None
        self.last_heard: float | None = None  # time.monotonic() of the last valid /hello, /ack or /pong
        # slot -> sums of the samples of the last few grains sent, newest last, to check Pd's /ack against
        self.sent_sums: dict[int, deque[float]] = defaultdict(lambda: deque(maxlen=RECENT_SUMS))
        self.model_sent: tuple[int, int, int, int] | None = None  # the last /model's values
        self.model_accepted: tuple[int, int, int, int] | None = None  # the last /model_ok's, from Pd
        self.hello = Coalescer(HELLO_EVERY_S, handlers.on_hello)
        self._routes: dict[str, tuple[str, Callable[..., None]]] = {
            "/hello": ("", self._hello),
            "/ack": ("if", self._ack),
            "/knob": ("if", self._knob),
            "/note": ("ii", self._note),
            "/ping": ("i", self._ping),
            "/pong": ("i", self._pong),
            "/reload": ("", self._reload),
            "/model_ok": ("ffff", self._model_ok),
            "/input": ("", self._input),  # types checked against the grain size in force
            "/listen": ("i", self._listen),
            # the play surface (docs/osc.md): what the box's encoder and button do, and the patch's state
            "/param": ("sf", self._param),
            "/anchor_step": ("i", self._anchor_step),
            "/anchor_select": ("i|s", self._anchor_select),
            "/preset_save": ("s", lambda name: self._preset("save", name, 0)),
            "/preset_recall": ("s", lambda name: self._preset("recall", name, 0)),
            "/preset_step": ("i", lambda steps: self._preset("step", "", steps)),
            "/models": ("i", self._models),
            "/model_load": ("s", self._model_load),
            "/midimap": ("iis", self._midimap),
            "/midimap_clear": ("", self.handlers.on_midimap_clear),
        }

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.hello.cancel()
        self.socket.close()

    # ------------------------------------------------------------------------------------------ sending

    def send_model(self, model: Model, slots: int) -> None:
        values = (model.sample_rate, model.grain_size, model.latent_dim, slots)
        self.model_sent = values
        self.socket.max_datagram = max(MAX_INCOMING, input_bytes(model.grain_size))
        self.model_accepted = None  # until Pd answers this one
        self._send(liblo.Message("/model", *values))

    @property
    def pd_plays_model(self) -> bool:
        """Pd answered the last /model sent with /model_ok and the same values: it accepted it."""
        return self.model_sent is not None and self.model_accepted == self.model_sent

    def send_grains(self, grains: np.ndarray, first_slot: int = 0) -> None:
        """One /grain per slot, from first_slot on: slot index, then its G samples as 32-bit floats."""
        for slot, samples in enumerate(grains, start=first_slot):
            self.sent_sums[slot].append(float(samples.sum(dtype=np.float64)))
            if self._send(liblo.Message("/grain", slot, *samples.tolist())):
                self.grains_sent += 1

    def send_param(self, name: str, value: float) -> None:
        self._send(liblo.Message("/param", name, float(value)))

    def send_knobs(self, knobs: list[float]) -> None:
        """Where knob1..knob8 are, so the patch's sliders show it and a drag starts from there."""
        self._send(liblo.Message("/knobs", *(float(v) for v in knobs)))

    def send_anchor(self, number: int, count: int, name: str) -> None:
        """The sound playing: number 1..count (the model's anchors, then the captured ones) and its name."""
        self._send(liblo.Message("/anchor", int(number), int(count), pd_word(name)))

    def send_playing(self, model_name: str, preset: str) -> None:
        """The model playing and the preset last saved or recalled ("-": none)."""
        self._send(liblo.Message("/playing", pd_word(model_name), pd_word(preset)))

    def send_model_choice(self, number: int, count: int, name: str) -> None:
        """The entry of the models on disk that the patch's browser points at (name "-": none)."""
        self._send(liblo.Message("/model_choice", int(number), int(count), pd_word(name)))

    def send_midimap(self, channel: int, cc: int, control: str, low: float, high: float, log_curve: bool,
                     integer: bool) -> None:
        """One learned MIDI mapping, with the range and curve of the control it moves."""
        self._send(liblo.Message("/midimap", int(channel), int(cc), control, float(low), float(high),
                                 int(log_curve), int(integer)))

    def send_midimap_clear(self) -> None:
        self._send(liblo.Message("/midimap_clear"))

    def send_report(self) -> None:
        """Ask Pd for every parameter's value (it answers with one /param each)."""
        self._send(liblo.Message("/report"))

    def send_trigger(self) -> None:
        self._send(liblo.Message("/trigger"))

    def send_ping(self, ping_id: int) -> None:
        self._send(liblo.Message("/ping", int(ping_id)))

    def _send(self, message: liblo.Message) -> bool:
        try:
            with self._send_lock:
                self.socket.send(self.pd_port, message)
            return True
        except OSError as e:  # UDP to a closed port can report ECONNREFUSED later; Pd may simply be down
            self.send_errors += 1
            log.debug("OSC send failed: %s", e)
            return False

    # ---------------------------------------------------------------------------------------- receiving

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                datagram = self.socket.receive(RECEIVE_POLL_S)
                if datagram is not None:
                    self._dispatch(*datagram)
            except Dropped as why:  # too long to read: counted like every other drop
                with self._count_lock:
                    self.received += 1
                self._drop(why.reason, "", "", str(why))
            except Exception:  # a bug in a handler: log it, keep serving
                log.exception("handling an OSC datagram failed")

    def _dispatch(self, data: bytes, sender: str) -> None:
        with self._count_lock:
            self.received += 1
        path = types = ""
        try:
            if sender != HOST:
                raise Dropped("sender", f"sender {sender} is not {HOST}")
            message = parse(data)
            path, types = message.path, message.types
            route = self._routes.get(path)
            if route is None:
                raise Dropped("unknown_address", "unknown address")
            expected, handle = route
            if path == "/input":
                expected = self._input_types()
            if types not in expected.split("|"):
                raise Dropped("type_tags", f"type tags ',{types}', expected ',{expected}'")
            try:
                handle(*message.args)
            except Malformed as why:
                raise Dropped("value", str(why)) from None
            if path in PD_SAYS:
                self.last_heard = time.monotonic()
        except Dropped as why:
            self._drop(why.reason, path, types, str(why))

    def _drop(self, reason: str, path: str, types: str, why: str) -> None:
        with self._count_lock:
            self.malformed += 1
            self.drops[reason] += 1
            count = self.malformed
        self.last_drop = f"{path[:64]} ,{types[:16]}: {why}" if path else why
        if count <= LOGGED_DROPS or count % DROP_LOG_EVERY == 0:
            log.warning("dropped OSC datagram: %s (%d dropped so far)", self.last_drop, count)

    def _hello(self) -> None:
        self.hello()

    def _ack(self, slot: int, checksum: float) -> None:
        _finite(checksum)
        _in_range("slot", slot, 0, 1023)
        self.handlers.on_ack(slot, checksum)

    def _knob(self, number: int, value: float) -> None:
        _finite(value)
        first = KNOB_OSC_FIRST_INDEX  # knob1 is /knob 1: one numbering in the patch, box.toml and here
        _in_range("knob", number, first, first + KNOB_COUNT - 1)
        self.handlers.on_knob(number - first, min(1.0, max(0.0, value)))

    def _param(self, name: str, value: float) -> None:
        """Pd reports a parameter's value after it changed (from its GUI, MIDI or a /param)."""
        _finite(value)
        if name not in PARAM_NAMES:
            raise Malformed(f"no parameter named {name[:MAX_NAME]!r}")
        self.handlers.on_param(name, value)

    def _anchor_step(self, steps: int) -> None:
        _in_range("steps", steps, -MAX_STEPS, MAX_STEPS)
        self.handlers.on_anchor_step(steps)

    def _anchor_select(self, choice: int | str) -> None:
        if isinstance(choice, str):
            _name(choice)
        else:
            _in_range("sound number", choice, 1, 1024)
        self.handlers.on_anchor_select(choice)

    def _preset(self, verb: str, name: str, steps: int) -> None:
        if verb == "step":
            _in_range("steps", steps, -MAX_STEPS, MAX_STEPS)
        elif name not in ("", "-"):  # "" or "-": save under the next free name
            _name(name)
        self.handlers.on_preset(verb, "" if name == "-" else name, steps)

    def _models(self, steps: int) -> None:
        _in_range("steps", steps, -MAX_STEPS, MAX_STEPS)
        self.handlers.on_models(steps)

    def _model_load(self, name: str) -> None:
        _name(name)
        self.handlers.on_model_load(name)

    def _midimap(self, channel: int, cc: int, control: str) -> None:
        _in_range("MIDI channel", channel, 1, 16 * 16)  # Pd numbers the channels of port p from 16p + 1
        _in_range("controller", cc, 0, 127)
        _name(control)
        self.handlers.on_midimap(channel, cc, control)

    def _note(self, pitch: int, velocity: int) -> None:
        _in_range("pitch", pitch, 0, 127)
        _in_range("velocity", velocity, 0, 127)
        self.handlers.on_note(pitch, velocity)

    def _ping(self, ping_id: int) -> None:
        self._send(liblo.Message("/pong", ping_id))  # to Pd's port only: never a reflector for others

    def _pong(self, ping_id: int) -> None:
        self.handlers.on_pong(ping_id)

    def _reload(self) -> None:
        self.handlers.on_reload()

    def _input_types(self) -> str:
        if self.model_sent is None:
            raise Dropped("value", "/input before any /model: the grain size is not known yet")
        return "i" + "f" * self.model_sent[1]

    def _input(self, seq: int, *samples: float) -> None:
        """One grain of the box's audio input, at the model's rate and size (the types said so)."""
        assert self.model_sent is not None
        sample_rate, grain_size = self.model_sent[0], self.model_sent[1]
        now = time.monotonic()
        # a token bucket at twice the grain rate: Pd sends one per grain; a flood is dropped, not queued
        rate = 2.0 * sample_rate / grain_size
        self._input_tokens = min(INPUT_BURST, self._input_tokens + (now - self._input_refilled) * rate)
        self._input_refilled = now
        if self._input_tokens < 1:
            raise Dropped("input_rate", f"/input faster than twice the grain rate ({rate:.0f}/s)")
        grain = np.asarray(samples, dtype=np.float32)
        if not np.isfinite(grain).all():
            raise Malformed("/input holds NaN or inf")
        self._input_tokens -= 1
        self.handlers.on_input(grain)

    def _listen(self, mode: int) -> None:
        _in_range("listen mode", mode, 0, 2)
        self.handlers.on_listen(mode)

    def _model_ok(self, sample_rate: float, grain_size: float, latent_dim: float, slots: float) -> None:
        _finite(sample_rate, grain_size, latent_dim, slots)
        already = self.pd_plays_model
        self.model_accepted = (int(sample_rate), int(grain_size), int(latent_dim), int(slots))
        if self.pd_plays_model and not already:
            self.handlers.on_model_accepted()
