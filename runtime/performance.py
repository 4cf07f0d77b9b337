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
from runtime.config import Config
from runtime.engine import Engine
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

    def __init__(self, config: Config, engine: Engine, pd: ParamSender, presets: PresetStore) -> None:
        self.config = config
        self.engine = engine
        self.pd = pd
        self.presets = presets
        self.state = initial_state(config)
        self._lock = threading.RLock()
        self._preset_cursor = -1
        self.transpose_from_note: float | None = None

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
                self.state.anchor = (self.state.anchor + steps) % self.engine.model.num_anchors
                log.info(
                    "sound %d: %s", self.state.anchor + 1, self.engine.model.anchor_names[self.state.anchor]
                )
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
        """A reload may bring fewer anchors: keep the sound index within the new model's."""
        with self._lock:
            self.state.anchor %= model.num_anchors

    # ---------------------------------------------------------------------------------------- actions

    def _do(self, action: str) -> None:
        if action == "freeze":
            self.set_freeze(not self.state.freeze)
        elif action == "save_preset":
            self.save()
        elif action == "recall_preset":
            latest = self.presets.latest()
            if latest is None:
                log.info("no preset saved yet: long-press to save one")
            else:
                self.recall(latest)

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
            state.anchor %= self.engine.model.num_anchors
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
