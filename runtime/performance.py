"""The performance: what each gesture does, per the config's [mapping].

It is the ControlSink every control source talks to. A knob mapped to an axis or to spray changes the
control state and asks the engine for new grains; a knob mapped to a synthesis parameter goes straight to
Pd as /param (no decode needed); the encoder steps through the model's anchors (or the saved presets);
the button toggles freeze, saves or recalls a preset. A note sets the transposition and fires a grain.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from runtime.artifact import Model
from runtime.config import LISTEN_MODES, Config
from runtime.contract import pd_word
from runtime.engine import Engine
from runtime.listen import AnchorStore, CapturedAnchor
from runtime.params import PARAMS
from runtime.presets import ControlState, PresetError, PresetStore

log = logging.getLogger(__name__)

MIDDLE_C = 60
RUNTIME_OWNED = ("freeze", "listen")  # parameters the runtime decides (a preset keeps freeze in its state)
SAME_KNOB = 1e-4  # a reported parameter this close to its knob's value is the knob's own echo


class ParamSender(Protocol):
    def send_param(self, name: str, value: float) -> None: ...
    def send_trigger(self) -> None: ...


def initial_state(config: Config) -> ControlState:
    """Axes centred, parameters at their documented defaults, spray off, first anchor, not frozen."""
    knobs = []
    for action in config.knob_actions:
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
        self.pd_params: dict[str, float] = {}  # every parameter's value as Pd last reported it (/param)
        self.preset_name = "-"  # the preset last saved or recalled
        self.changed: Callable[[], None] = lambda: None  # the patch shows the state: runtime.surface
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
            action = self.config.knob_actions[index]
            if action in PARAMS:
                self.pd.send_param(action, PARAMS[action].from_knob(value))
            elif action != "none":  # an axis or spray: the grains change
                self.engine.request(self.state)
        self.changed()

    def encoder(self, steps: int) -> None:
        with self._lock:
            if self.config.encoder == "anchor":
                self.step_anchor(steps)
            elif self.config.encoder == "preset":
                self.step_preset(steps)

    def step_anchor(self, steps: int) -> None:
        with self._lock:
            self.choose_anchor((self.state.anchor + steps) % self.sounds)

    def choose_anchor(self, index: int) -> None:
        """Play sound `index` (0-based: the model's anchors, then the captured ones)."""
        with self._lock:
            self.state.anchor = index % self.sounds
            log.info("sound %d: %s", self.state.anchor + 1, self.sound_name(self.state.anchor))
            self.engine.request(self.state)
        self.changed()

    def find_sound(self, name: str) -> int | None:
        """The index of the sound called `name` (spaces and underscores alike, as Pd shows names)."""
        wanted = pd_word(name)
        for index in range(self.sounds):
            if pd_word(self.sound_name(index)) == wanted:
                return index
        return None

    def step_preset(self, steps: int) -> None:
        names = self.presets.names()
        if names:
            if self.preset_name in names and self._preset_cursor < 0:
                self._preset_cursor = names.index(self.preset_name)
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

    def param_reported(self, name: str, value: float) -> None:
        """Pd says a parameter now has `value` (its GUI, a MIDI controller or a /param set it). The runtime
        keeps it for presets; freeze follows the patch's toggle; a knob mapped to it follows the slider."""
        with self._lock:
            self.pd_params[name] = value
            if name == "freeze" and bool(value) != self.state.freeze:
                self.set_freeze(bool(value))
            for index, action in enumerate(self.config.knob_actions):
                if action == name and abs(PARAMS[name].to_knob(value) - self.state.knobs[index]) > SAME_KNOB:
                    self.state.knobs[index] = PARAMS[name].to_knob(value)
        self.changed()

    def model_changed(self, model: Model) -> None:
        """A reload may bring fewer anchors, and the captured ones belong to the model they were heard
        with: keep the sound index within what this model has."""
        with self._lock:
            self.captured = self.anchors.load(model.sha256, model.latent_dim) if self.anchors else []
            for skipped in self.anchors.skipped if self.anchors else []:
                log.warning("captured anchor skipped: %s", skipped)
            self.engine.captured_anchors = [a.latent for a in self.captured]
            self.state.anchor %= self.sounds
        self.changed()

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
        self.changed()

    def set_freeze(self, frozen: bool) -> None:
        with self._lock:
            self.state.freeze = frozen
            self.pd.send_param("freeze", 1.0 if frozen else 0.0)
            self.engine.set_frozen(frozen)
            log.info("freeze %s", "on" if frozen else "off")
        self.changed()

    def save(self, name: str | None = None) -> str | None:
        with self._lock:
            try:
                saved = self.presets.save(self.state, name, self.engine.model.name, self.saved_params())
            except (PresetError, OSError) as e:
                log.error("saving the preset failed: %s", e)
                return None
            self.preset_name = saved
        log.info("saved preset %s", saved)
        self.changed()
        return saved

    def saved_params(self) -> dict[str, float]:
        """Every Pd parameter a preset keeps: as Pd reported it, else its default (what Pd loads with)."""
        return {name: self.pd_params.get(name, p.default) for name, p in PARAMS.items()
                if name not in RUNTIME_OWNED}

    def recall(self, name: str) -> bool:
        try:
            state, params = self.presets.load_preset(name)
        except PresetError as e:
            log.error("%s", e)
            return False
        with self._lock:
            state.anchor %= self.sounds
            self.state = state
            self.preset_name = name
            for param, value in params.items():  # the knobs' own parameters follow, from the knobs
                if param not in self.config.knob_actions and param not in RUNTIME_OWNED:
                    self.pd.send_param(param, value)
            self.send_params()
            self.engine.set_frozen(False)
            self.engine.request(self.state)
            self.engine.set_frozen(state.freeze)
        log.info("recalled preset %s", name)
        self.changed()
        return True

    def restore_params(self) -> None:
        """Pd restarted: give it back every parameter it had reported, then the knobs' and freeze."""
        with self._lock:
            for name, value in self.pd_params.items():
                if name not in self.config.knob_actions and name not in RUNTIME_OWNED:
                    self.pd.send_param(name, value)
            self.send_params()

    def send_params(self) -> None:
        """Every parameter knob and freeze, as the state has them (after a recall, or when Pd restarts)."""
        with self._lock:
            for index, action in enumerate(self.config.knob_actions):
                if action in PARAMS:
                    self.pd.send_param(action, PARAMS[action].from_knob(self.state.knobs[index]))
            if self.transpose_from_note is not None and "transpose" not in self.config.knob_actions:
                self.pd.send_param("transpose", self.transpose_from_note)
            self.pd.send_param("freeze", 1.0 if self.state.freeze else 0.0)
            self.pd.send_param("listen", float(LISTEN_MODES.index(self.engine.listen_mode)))
