"""The performance: what each gesture does, per the config's [mapping].

It is the ControlSink every control source talks to. A pot mapped to an axis or to spray changes the
control state and asks the engine for new grains; a pot mapped to a synthesis parameter goes straight to
Pd as /param (no decode needed); the encoder steps through the model's anchors (or the saved presets);
the button toggles freeze, saves or recalls a preset. A note sets the transposition and fires a grain.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from runtime.artifact import Model
from runtime.config import LISTEN_MODES, Config
from runtime.engine import Engine
from runtime.listen import AnchorStore, CapturedAnchor
from runtime.params import PARAMS
from runtime.presets import ControlState, PresetError, PresetStore

log = logging.getLogger(__name__)

MIDDLE_C = 60


class ParamSender(Protocol):
    def send_param(self, name: str, value: float) -> None: ...
    def send_trigger(self) -> None: ...


def initial_state(config: Config) -> ControlState:
    """Axes centred, parameters at their documented defaults, spray off, first anchor, not frozen."""
    knobs = []
    for action in config.pots:
        if action in PARAMS:
            knobs.append(PARAMS[action].to_knob(PARAMS[action].default))
        elif action == "spray":
            knobs.append(0.0)
        else:
            knobs.append(0.5)
    return ControlState(knobs=knobs)


class Performance:
    """Turns gestures into engine requests and /param messages. Thread-safe: gestures come from the knob
    poller, gpiozero's pin threads and the OSC thread at once."""

    def __init__(self, config: Config, engine: Engine, pd: ParamSender, presets: PresetStore,
                 anchors: AnchorStore | None = None) -> None:
        self.config = config
        self.engine = engine
        self.pd = pd
        self.presets = presets
        self.anchors = anchors
        self.state = initial_state(config)
        self._lock = threading.RLock()
        self._preset_cursor = -1
        self.transpose_from_note: float | None = None
        self.captured: list[CapturedAnchor] = []  # anchors captured from the input, for this model
        self.model_changed(engine.model)
        if config.listen != "off":
            self.set_listen(config.listen)

    @property
    def sounds(self) -> int:
        """The encoder's list: the model's anchors, then those captured from the input."""
        return self.engine.model.num_anchors + len(self.captured)

    def sound_name(self, index: int) -> str:
        model = self.engine.model
        return model.anchor_names[index] if index < model.num_anchors else self.captured[
            index - model.num_anchors].name

    # ------------------------------------------------------------------------------------ the gestures

    def knob(self, index: int, value: float) -> None:
        with self._lock:
            self.state.knobs[index] = value
            action = self.config.pots[index]
            if action in PARAMS:
                self.pd.send_param(action, PARAMS[action].from_knob(value))
            elif action != "none":  # an axis or spray: the grains change
                self.engine.request(self.state)

    def encoder(self, steps: int) -> None:
        with self._lock:
            if self.config.encoder == "anchor":
                self.state.anchor = (self.state.anchor + steps) % self.sounds
                log.info("sound %d: %s", self.state.anchor + 1, self.sound_name(self.state.anchor))
                self.engine.request(self.state)
            elif self.config.encoder == "preset":
                names = self.presets.names()
                if names:
                    self._preset_cursor = (self._preset_cursor + steps) % len(names)
                    self.recall(names[self._preset_cursor])

    def press(self) -> None:
        self._do(self.config.button_press)

    def long_press(self) -> None:
        self._do(self.config.button_long_press)

    def note(self, pitch: int, velocity: int) -> None:
        if velocity == 0:
            return  # grains have no note-off: the cloud keeps playing
        transpose = PARAMS["transpose"]
        self.transpose_from_note = min(transpose.high, max(transpose.low, float(pitch - MIDDLE_C)))
        self.pd.send_param("transpose", self.transpose_from_note)
        self.pd.send_trigger()

    def model_changed(self, model: Model) -> None:
        """A reload may bring fewer anchors, and the captured ones belong to the model they were heard
        with: keep the sound index within what this model has."""
        with self._lock:
            self.captured = self.anchors.load(model.sha256, model.latent_dim) if self.anchors else []
            for skipped in self.anchors.skipped if self.anchors else []:
                log.warning("captured anchor skipped: %s", skipped)
            self.engine.captured_anchors = [a.latent for a in self.captured]
            self.state.anchor %= self.sounds

    # ---------------------------------------------------------------------------------------- actions

    def _do(self, action: str) -> None:
        if action == "freeze":
            self.set_freeze(not self.state.freeze)
        elif action == "save_preset":
            self.save()
        elif action == "listen":
            mode = LISTEN_MODES[(LISTEN_MODES.index(self.engine.listen_mode) + 1) % len(LISTEN_MODES)]
            self.set_listen(mode)
        elif action == "recall_preset":
            latest = self.presets.latest()
            if latest is None:
                log.info("no preset saved yet: long-press to save one")
            else:
                self.recall(latest)

    def set_listen(self, mode: str) -> None:
        """Off, follow or capture (runtime/listen.py). Pd sends its input only while the mode is on."""
        with self._lock:
            captured = self.engine.set_listen_mode(mode, self.config.capture_grains)
            self.pd.send_param("listen", float(LISTEN_MODES.index(mode)))
            if mode == "capture" and captured is None:
                log.info("capture: nothing heard yet; follow the input first, then capture")
            elif mode == "capture" and captured is not None and self.anchors is not None:
                try:
                    anchor = self.anchors.save(captured, self.engine.model.sha256)
                except (OSError, ValueError) as e:
                    log.error("capture: saving the anchor failed: %s; the slots hold it until changed", e)
                else:
                    self.captured.append(anchor)
                    self.engine.captured_anchors = [a.latent for a in self.captured]
                    self.state.anchor = self.sounds - 1  # off again plays the captured sound
                    log.info("captured %s: sound %d", anchor.name, self.state.anchor + 1)
            self.engine.request(self.state)
            log.info("listen: %s", mode)

    def set_freeze(self, frozen: bool) -> None:
        with self._lock:
            self.state.freeze = frozen
            self.pd.send_param("freeze", 1.0 if frozen else 0.0)
            self.engine.set_frozen(frozen)
            log.info("freeze %s", "on" if frozen else "off")

    def save(self, name: str | None = None) -> str | None:
        with self._lock:
            try:
                saved = self.presets.save(self.state, name, self.engine.model.name)
            except (PresetError, OSError) as e:
                log.error("saving the preset failed: %s", e)
                return None
        log.info("saved preset %s", saved)
        return saved

    def recall(self, name: str) -> bool:
        try:
            state = self.presets.load(name)
        except PresetError as e:
            log.error("%s", e)
            return False
        with self._lock:
            state.anchor %= self.sounds
            self.state = state
            self.send_params()
            self.engine.set_frozen(False)
            self.engine.request(self.state)
            self.engine.set_frozen(state.freeze)
        log.info("recalled preset %s", name)
        return True

    def send_params(self) -> None:
        """Every parameter knob and freeze, as the state has them (after a recall, or when Pd restarts)."""
        with self._lock:
            for index, action in enumerate(self.config.pots):
                if action in PARAMS:
                    self.pd.send_param(action, PARAMS[action].from_knob(self.state.knobs[index]))
            if self.transpose_from_note is not None and "transpose" not in self.config.pots:
                self.pd.send_param("transpose", self.transpose_from_note)
            self.pd.send_param("freeze", 1.0 if self.state.freeze else 0.0)
            self.pd.send_param("listen", float(LISTEN_MODES.index(self.engine.listen_mode)))
