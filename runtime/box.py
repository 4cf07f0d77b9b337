"""The box: the program systemd runs all day. It wires model, engine, link, controls and presets together,
reloads the model without stopping, and reports itself in status.json (docs/box.md).

Threads: liblo's OSC thread, the decode worker, the knob poller (knob box only), gpiozero's pin threads,
and this supervisor loop, which does the slow things: model reloads (validated off the audio path, the old
model playing until the new one has passed every check) and status writes.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.artifact import Model, ModelError, load_model
from runtime.atomic import write_json_atomic
from runtime.config import LISTEN_MODES, Config
from runtime.controls import Controls, make_controls
from runtime.engine import Engine, Layout
from runtime.host import PdHint, detect
from runtime.link import Link, LinkError
from runtime.listen import AnchorStore
from runtime.midimap import MidiMap
from runtime.model_choice import ChoiceError, is_link_layout, make_current
from runtime.performance import Performance
from runtime.presets import PresetStore
from runtime.surface import Surface
from runtime.threads import limit_torch_threads

log = logging.getLogger("grainbox")

STATUS_EVERY_S = 2.0
RELOAD_EVERY_S = 1.0  # a flood of /reload (or SIGHUP) is one reload a second, the last request winning
# The patch's view of the state follows this long after a change, every change inside folded in: 33 a second
# is smooth to the eye, and the view is sent by the supervisor, not by the thread that moved the knob (sent
# there it cost the knob -> grain path 0.2 ms at p50 and 0.6 ms at p99, bench/latency.py).
SURFACE_AFTER_S = 0.03
SWITCH_INTERVAL_S = 0.0005


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class FileIdentity:
    """What the watcher compares: where the path points, and that file's mtime and size."""

    target: str
    mtime_ns: int
    size: int


class ModelWatcher:
    """Notices when the model path's target changes: a swapped symlink, or a file rewritten in place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = self.identity()

    def identity(self) -> FileIdentity | None:
        try:
            target = os.path.realpath(self.path)
            st = os.stat(target)
        except OSError:
            return None  # mid-swap or deleted: wait for the next look
        return FileIdentity(target, st.st_mtime_ns, st.st_size)

    def changed(self) -> bool:
        now = self.identity()
        if now is None or now == self.seen:
            return False
        self.seen = now
        return True


class Box:
    """Everything the runtime runs, started by start(), driven by serve_forever(), ended by close()."""

    def __init__(self, config: Config, controls: Controls | None = None, pin_factory: object | None = None):
        limit_torch_threads()
        # The decode worker, liblo's thread and the knob poller share one GIL; Python's default 5 ms
        # switch interval would let one of them hold up a knob move by that much.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.config = config
        self.model_path = config.model_path
        self.watcher = ModelWatcher(self.model_path)
        self.fallback: dict[str, str] | None = None  # set while `previous` plays because `current` is refused
        model = self._load_at_start()
        self.loaded_at = _now()
        self.reloads = 0
        self.reload_failures = 0
        self.last_error: str | None = None if self.fallback is None else (
            f"{self.fallback['refused']}: {self.fallback['reason']}"
        )
        self.hellos = 0
        self.acks = 0
        self.ack_mismatches = 0
        self.confirmed: dict[int, float] = {}  # slot -> the sum Pd confirmed for the grain it holds
        self._pings = 0
        self.ack_listeners: list[Any] = []  # callables(slot, checksum), for benchmarks and tests
        self.pong_listeners: list[Any] = []  # callables(ping_id)
        self._chosen_model: Path | None = None  # a model the patch chose, loaded by the supervisor loop
        self._reload_requested = threading.Event()
        self._reload_reason = ""
        self._last_reload = -math.inf  # time.monotonic() of the last reload
        self.reload_requests = 0
        self._stop = threading.Event()
        self._wake = threading.Event()  # cuts the supervisor's sleep short: stop or reload
        self._status_dirty = threading.Event()
        self._surface_dirty = threading.Event()  # the state changed since the patch was last shown it
        self._surface_due = 0.0  # time.monotonic() by which the supervisor shows it
        self.link = Link(config.listen_port, config.pd_port, self)
        self.engine = Engine(
            model, self.link, config.slots, config.spray, config.seed, Layout.from_pots(config.knob_actions)
        )
        self.engine.listener.smoothing = config.listen_smoothing
        self.presets = PresetStore(config.presets_dir)
        self.anchors = AnchorStore(config.anchors_dir)
        self.performance = Performance(config, self.engine, self.link, self.presets, self.anchors)
        self.midi = MidiMap(config.state_dir / "midi.json")
        self.surface = Surface(self.performance, self.link, self.midi, self.model_path.parent)
        self.performance.changed = self._surface_changed
        self.controls = controls or make_controls(config, self.performance, pin_factory)
        self._log_model(model, "loaded")

    def _load_at_start(self) -> Model:
        """The model at the model path, or, when it is refused and the path is a box's `current` link,
        the `previous` one beside it: a box whose new model turns out broken keeps playing the old one
        instead of exiting (and being restarted by systemd) forever. Reloads still watch `current`."""
        try:
            return load_model(self.model_path)
        except ModelError as refused:
            reason = str(refused)
            previous = self.model_path.with_name("previous")
            if self.model_path.name != "current" or not previous.exists():
                raise
        # name the files the links point to, as a reload does
        reason = reason.replace(str(self.model_path), os.path.realpath(self.model_path))
        previous = Path(os.path.realpath(previous))
        try:
            model = load_model(previous)
        except ModelError as also:
            raise ModelError(
                f"{reason}; and the fallback {previous} is refused too: {also}; flash a good model"
            ) from None
        self.fallback = {
            "refused": os.path.realpath(self.model_path),
            "reason": reason,
            "playing": os.path.realpath(previous),
        }
        log.warning(
            "the model %s is refused (%s); playing the previous one, %s, instead: flash a good model or "
            "run flash.sh --rollback",
            self.fallback["refused"], reason, self.fallback["playing"],
        )
        return model

    @property
    def model(self) -> Model:
        return self.engine.model

    # --------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.link.start()
        self.engine.start()
        self.engine.request(self.performance.state)  # grains for the starting state; /model goes first
        self.performance.send_params()
        self.link.send_report()  # Pd may have played before this runtime: learn its parameters
        self.surface.resend()
        self.controls.start()
        self.write_status()
        self._pd_hint = PdHint(detect(), self.config.pd_port, self.link.port, time.monotonic())
        log.info(
            "listening on 127.0.0.1:%d, Pd at 127.0.0.1:%d, controls: %s, %d slots",
            self.link.port,
            self.config.pd_port,
            self.controls.kind,
            self.config.slots,
        )

    def serve_forever(self) -> None:
        """Reload when asked or when the model path's target changes; keep status.json fresh; until stop().

        Four clocks: the watcher every `model_poll_s`, status (and a /ping to Pd) every STATUS_EVERY_S, the
        patch's view SURFACE_AFTER_S after a change, and `_wake`, which a reload request, a change or stop()
        sets to cut the wait short.
        """
        next_status = next_watch = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            watch_due = now >= next_watch
            if watch_due:
                next_watch = now + self.config.model_poll_s
            reload_due = self._reload_requested.is_set() and now >= self._last_reload + RELOAD_EVERY_S
            chosen, self._chosen_model = self._chosen_model, None
            if chosen is not None:
                self.choose_model(chosen)
            elif reload_due or (watch_due and self.watcher.changed()):
                self._reload_requested.clear()
                self._last_reload = now
                log.info("reloading %s (%s)", self.model_path, self._reload_reason or "its target changed")
                self._reload_reason = ""
                self.reload()
            now = time.monotonic()
            if now >= next_status:
                self._pings += 1
                self.link.send_ping(self._pings)  # Pd's /pong keeps pd_last_heard_s fresh
                self._pd_hint.check(self.link.last_heard, now)  # says how to start Pd when it is silent
            if now >= next_status or self._status_dirty.is_set():
                self._status_dirty.clear()
                self.write_status()
                next_status = now + STATUS_EVERY_S if now >= next_status else next_status
            wake_at = min(next_watch, next_status)
            if self._surface_dirty.is_set():
                if now >= self._surface_due:
                    self._surface_dirty.clear()  # first: a change while it is sent is sent next time
                    self.surface.refresh()
                else:
                    wake_at = min(wake_at, self._surface_due)
            if self._reload_requested.is_set():  # a request inside the interval waits for its end
                wake_at = min(wake_at, self._last_reload + RELOAD_EVERY_S)
            self._wake.wait(max(0.0, wake_at - time.monotonic()))
            self._wake.clear()
        self.write_status()

    def _surface_changed(self) -> None:
        """The performance changed (any thread): have the supervisor show the patch, soon, not now."""
        if not self._surface_dirty.is_set():
            self._surface_due = time.monotonic() + SURFACE_AFTER_S
            self._surface_dirty.set()
            self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def close(self) -> None:
        self.controls.close()
        self.engine.close()
        self.link.close()

    # ------------------------------------------------------------------------------------------ reload

    def request_reload(self, reason: str) -> None:
        """Ask the supervisor loop to reload (SIGHUP, OSC /reload): safe from any thread or signal handler
        (it only sets flags; the loop logs and does the work)."""
        self._reload_reason = reason
        self.reload_requests += 1
        self._reload_requested.set()
        self._wake.set()

    def reload(self) -> bool:
        """Validate the file the model path names now; swap it in only if every check passes.

        The link is resolved once and the target loaded, so a second swap during the load cannot mix two
        files, and an error names the file that failed rather than the link."""
        self.watcher.seen = self.watcher.identity()
        target = Path(os.path.realpath(self.model_path))
        try:
            model = load_model(target)
        except ModelError as e:
            self.reload_failures += 1
            self.last_error = str(e) if str(target) in str(e) else f"{target}: {e}"
            log.error("reload refused, still playing %s: %s", self.model.name, e)
            self._status_dirty.set()
            return False
        self._play(model, "reloaded")
        return True

    def choose_model(self, chosen: Path) -> bool:
        """Play a model from the models on disk, chosen in the patch: checked as a flash's is, and refused
        (the old one playing on) if it fails; on the box it becomes `current`, the old one `previous`."""
        try:
            model = load_model(chosen)
            if is_link_layout(self.model_path):
                make_current(self.model_path, chosen)
                self.watcher.seen = self.watcher.identity()
            else:  # a desktop plays the file itself, and watches it from now on
                self.model_path = chosen
                self.watcher = ModelWatcher(chosen)
        except (ModelError, ChoiceError, OSError) as e:
            self.reload_failures += 1
            self.last_error = f"{chosen}: {e}"
            log.error("the model chosen in the patch is refused, still playing %s: %s", self.model.name, e)
            self._status_dirty.set()
            self.surface.browse(0)
            return False
        self._play(model, "chosen in the patch:")
        return True

    def _play(self, model: Model, verb: str) -> None:
        """Swap in a model that passed every check: a reload's or the patch's choice."""
        self.engine.set_model(model)
        self.performance.model_changed(model)
        self.fallback = None  # the file the box was told to play plays (again)
        self.reloads += 1
        self.loaded_at = _now()
        self.last_error = None
        self._log_model(model, verb)
        self._status_dirty.set()

    def _log_model(self, model: Model, verb: str) -> None:
        log.info(
            "%s model %s (%s, sha256 %s): %d anchors, grain %d @ %d Hz, decode %.2f ms",
            verb,
            model.name,
            os.path.realpath(model.path),
            model.sha256[:12],
            model.num_anchors,
            model.grain_size,
            model.sample_rate,
            model.decode_ms,
        )
        for warning in model.warnings:
            log.warning("model %s: %s", model.name, warning)

    # ------------------------------------------------------------------------------------------ status

    def slots_confirmed(self) -> int:
        """How many slots Pd has confirmed (/ack) holding exactly the grain the runtime last sent them."""
        tolerance = 1e-3 * self.model.grain_size
        latest = {slot: sums[-1] for slot, sums in list(self.link.sent_sums.items()) if sums}
        confirmed = list(self.confirmed.items())
        return sum(1 for slot, total in confirmed if abs(latest.get(slot, math.inf) - total) <= tolerance)

    def status(self) -> dict[str, Any]:
        model = self.model
        heard = self.link.last_heard
        return {
            "pid": os.getpid(),
            "model_path": str(self.model_path),
            "model_file": os.path.realpath(model.path),
            "model_sha256": model.sha256,
            "model_name": model.name,
            "loaded_at": self.loaded_at,
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "last_error": self.last_error,
            "osc_malformed": self.link.malformed,
            "osc_received": self.link.received,
            "grains_sent": self.link.grains_sent,
            "updated_at": _now(),
            # beyond docs/box.md's minimum: what an engineer wants when the box misbehaves
            "controls": self.controls.kind,
            "slots": self.config.slots,
            "osc_port": self.link.port,
            "pd_port": self.config.pd_port,
            "pd_hellos": self.hellos,
            "pd_acks": self.acks,
            "pd_ack_mismatches": self.ack_mismatches,
            "pd_slots_confirmed": self.slots_confirmed(),
            # the sum of each slot's samples as Pd reported storing them (/ack), null until it has
            "pd_slot_sums": [self.confirmed.get(slot) for slot in range(self.config.slots)],
            "pd_last_heard_s": None if heard is None else round(time.monotonic() - heard, 2),
            "osc_last_drop": self.link.last_drop,
            "osc_drops": dict(self.link.drops),  # by reason (docs/box.md)
            "model_fallback": self.fallback,  # null, or what was refused at start and what plays instead
            "pd_hellos_received": self.link.hello.requested,
            "pd_model_accepted": self.link.pd_plays_model,  # Pd answered this model's /model: /model_ok
            "reload_requests": self.reload_requests,
            "decodes": self.engine.decodes,
            "decode_requests": self.engine.requests,
            "decodes_coalesced": self.engine.coalesced,
            "decode_errors": self.engine.errors,
            "nonfinite_decodes": self.engine.nonfinite_decodes,  # decodes with NaN or inf, played as silence
            "repaired_samples": self.engine.repaired_samples,
            "last_decode_ms": round(self.engine.last_decode_ms, 3),
            "torch_threads": torch.get_num_threads(),
            "anchor": self.performance.state.anchor,
            "anchor_name": self.performance.sound_name(self.performance.state.anchor),
            "knobs": [round(v, 6) for v in self.performance.state.knobs],  # knob1..knob8, 0..1
            "freeze": self.performance.state.freeze,
            # the audio input (runtime/listen.py)
            "listen": self.engine.listen_mode,
            "input_received": self.engine.listener.received,
            "input_coalesced": self.engine.listener.coalesced,
            "input_encoded": self.engine.listener.encoded,
            "last_encode_ms": round(self.engine.listener.last_encode_ms, 3),
            "captured_anchors": [a.name for a in self.performance.captured],
            # the play surface (runtime/surface.py)
            "preset": self.performance.preset_name,
            "midi_map": [list(entry) for entry in self.midi.entries()],
            "pd_params": dict(self.performance.pd_params),  # each parameter as Pd last reported it
        }

    def write_status(self) -> None:
        try:
            write_json_atomic(self.config.status_path, self.status())
        except OSError as e:  # a full or read-only card must not stop the music
            log.error("cannot write %s: %s", self.config.status_path, e)

    # ----------------------------------------------------------------------- OSC handlers (LinkHandlers)

    def on_hello(self) -> None:
        self.hellos += 1
        log.info("Pd said hello: sending /model and every slot")
        self.engine.resend()
        self.performance.restore_params()
        self.surface.resend()

    def on_model_accepted(self) -> None:
        """Pd took the model (/model_ok). A Pd that started before this runtime listened says no /hello:
        it gets its parameters and the surface here, as after a hello (twice after a hello: harmless)."""
        self.performance.restore_params()
        self.surface.resend()

    def on_ack(self, slot: int, checksum: float) -> None:
        self.acks += 1
        self.confirmed[slot] = checksum
        tolerance = 1e-3 * self.model.grain_size
        if not any(abs(sent - checksum) <= tolerance for sent in list(self.link.sent_sums.get(slot, ()))):
            self.ack_mismatches += 1  # Pd stored something the runtime never sent to that slot
        for listener in self.ack_listeners:
            listener(slot, checksum)

    def on_knob(self, index: int, value: float) -> None:
        self.surface.patch_moved(index, value)
        self.controls.virtual_knob(index, value)

    def on_note(self, pitch: int, velocity: int) -> None:
        self.controls.virtual_note(pitch, velocity)

    def on_pong(self, ping_id: int) -> None:
        for listener in self.pong_listeners:
            listener(ping_id)

    def on_reload(self) -> None:
        self.request_reload("OSC /reload")

    def on_input(self, grain: np.ndarray) -> None:
        self.engine.offer_input(grain)

    def on_listen(self, mode: int) -> None:
        self.performance.set_listen(LISTEN_MODES[mode])

    def on_param(self, name: str, value: float) -> None:
        self.performance.param_reported(name, value)

    def on_anchor_step(self, steps: int) -> None:
        self.performance.step_anchor(steps)

    def on_anchor_select(self, choice: int | str) -> None:
        p = self.performance
        index = choice - 1 if isinstance(choice, int) else p.find_sound(choice)
        if index is None or not 0 <= index < p.sounds:
            log.warning("the patch chose sound %s; this model has %d: %s", choice, p.sounds,
                        ", ".join(p.sound_name(i) for i in range(p.sounds)))
            self.surface.resend_anchor()
            return
        p.choose_anchor(index)

    def on_preset(self, verb: str, name: str, steps: int) -> None:
        if verb == "save":
            self.performance.save(name or None)
        elif verb == "recall":  # no name typed: the preset last saved or recalled, as the box's button does
            name = name or self.performance.preset_name
            if name == "-":
                log.warning("the patch asked to recall a preset, and none was saved or recalled yet; type a "
                            "name, or save one first")
                return
            self.performance.recall(name)
        else:
            self.performance.step_preset(steps)

    def on_models(self, steps: int) -> None:
        self.surface.browse(steps)

    def on_model_load(self, name: str) -> None:
        chosen = self.surface.find_model(name)
        if chosen is None:
            log.warning("the patch chose model %s, which is not in %s", name, self.surface.models_dir)
            self.surface.browse(0)
            return
        self._chosen_model = chosen  # loaded and checked in the supervisor loop, off the OSC thread
        self._wake.set()

    def on_midimap(self, channel: int, cc: int, control: str) -> None:
        try:
            self.midi.learn(channel, cc, control)
        except (ValueError, OSError) as e:
            log.error("MIDI map: channel %d CC %d -> %s not kept: %s", channel, cc, control, e)
            return
        log.info("MIDI: channel %d CC %d moves %s", channel, cc, control)

    def on_midimap_clear(self) -> None:
        try:
            self.midi.clear()
        except OSError as e:
            log.error("MIDI map: cannot clear %s: %s", self.midi.path, e)
            return
        log.info("MIDI map cleared")


def run_box(config: Config) -> int:
    """`python -m runtime run`: log to stdout (journald adds the time), serve until SIGTERM or SIGINT."""
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    logging.captureWarnings(True)  # gpiozero's pin-factory fallbacks, into the same log
    try:
        box = Box(config)
    except ModelError as e:
        log.error("cannot start: %s", e)
        return 1
    except LinkError as e:
        log.error("cannot start: %s", e)
        return 1
    except OSError as e:  # the state directory (presets, status.json) cannot be created
        log.error("cannot start: %s; the state directory must be writable (--state-dir or [state] dir)", e)
        return 1
    signal.signal(signal.SIGHUP, lambda *_: box.request_reload("SIGHUP"))
    signal.signal(signal.SIGTERM, lambda *_: box.stop())
    signal.signal(signal.SIGINT, lambda *_: box.stop())
    box.start()
    try:
        box.serve_forever()
    finally:
        box.close()
        log.info("stopped")
    return 0
