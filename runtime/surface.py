"""The play surface: the patch shows the box's state and drives everything the box can do (docs/osc.md).

The runtime is the one place the state lives (knob positions, the sound playing, freeze, the preset, the
listening mode, the model); the patch is a view of it and one more source of gestures. Surface keeps the
view in step: after every change it sends Pd what differs from what the patch shows (/knobs, /anchor,
/playing), and on /hello all of it, so a patch opened at any time shows where the box is and a slider
dragged from there starts where the runtime is: no jump. A knob the patch itself moved is not echoed back
(its slider is already there, and an echo arriving mid-drag would pull it back).

It also answers the patch's browser over the models on disk (the folder of the model path: on the box the
flashed models beside `current`, on a desktop models/).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

from runtime.contract import pd_word
from runtime.midimap import MidiMap, control_range
from runtime.performance import Performance

MODEL_SUFFIX = ".ts"


class SurfaceSender(Protocol):
    def send_knobs(self, knobs: list[float]) -> None: ...
    def send_anchor(self, number: int, count: int, name: str) -> None: ...
    def send_playing(self, model_name: str, preset: str) -> None: ...
    def send_model_choice(self, number: int, count: int, name: str) -> None: ...
    def send_midimap(self, channel: int, cc: int, control: str, low: float, high: float, log_curve: bool,
                     integer: bool) -> None: ...
    def send_midimap_clear(self) -> None: ...


def models_on_disk(folder: Path) -> list[Path]:
    """The model files in `folder`, by name: plain .ts files (a box's `current` and `previous` links are
    names for two of them, not models of their own)."""
    try:
        return sorted(p for p in folder.iterdir() if p.suffix == MODEL_SUFFIX and p.is_file()
                      and not p.is_symlink() and not p.name.startswith("."))
    except OSError:
        return []


class Surface:
    """Sends the patch what changed; thread-safe (changes come from the OSC thread, pins and the poller)."""

    def __init__(self, performance: Performance, sender: SurfaceSender, midi: MidiMap,
                 models_dir: Path) -> None:
        self.performance = performance
        self.sender = sender
        self.midi = midi
        self.models_dir = models_dir
        self._lock = threading.Lock()
        self._knobs: list[float] | None = None  # what the patch's sliders show
        self._anchor: tuple[int, int, str] | None = None
        self._playing: tuple[str, str] | None = None
        self._model_cursor = -1

    def patch_moved(self, index: int, value: float) -> None:
        """The patch moved knob `index` itself: its slider shows `value` already."""
        with self._lock:
            if self._knobs is not None:
                self._knobs[index] = value

    def refresh(self) -> None:
        """Send whatever differs from what the patch shows."""
        p = self.performance
        with self._lock:
            knobs = list(p.state.knobs)
            if knobs != self._knobs:
                self._knobs = knobs
                self.sender.send_knobs(knobs)
            index = p.state.anchor % p.sounds
            anchor = (index + 1, p.sounds, p.sound_name(index))
            if anchor != self._anchor:
                self._anchor = anchor
                self.sender.send_anchor(*anchor)
            playing = (p.engine.model.name, p.preset_name)
            if playing != self._playing:
                self._playing = playing
                self.sender.send_playing(*playing)

    def resend_anchor(self) -> None:
        """The patch asked for a sound that is not there: show it again the one that plays."""
        with self._lock:
            self._anchor = None
        self.refresh()

    def resend(self) -> None:
        """Pd (re)started: everything, and the MIDI map it learned before."""
        with self._lock:
            self._knobs = self._anchor = self._playing = None
        self.refresh()
        self.browse(0)
        self.sender.send_midimap_clear()
        for channel, cc, control in self.midi.entries():
            self.sender.send_midimap(channel, cc, control, *control_range(control))

    # -------------------------------------------------------------------------------------- the models

    def models(self) -> list[Path]:
        return models_on_disk(self.models_dir)

    def browse(self, steps: int) -> None:
        """Move the patch's model browser by `steps` (0: show the entry, starting at the model playing)."""
        files = self.models()
        with self._lock:
            if not files:
                self._model_cursor = -1
                self.sender.send_model_choice(0, 0, "-")
                return
            if not 0 <= self._model_cursor < len(files):
                playing = Path(self.performance.engine.model.path).resolve()
                resolved = [f.resolve() for f in files]
                self._model_cursor = resolved.index(playing) if playing in resolved else 0
            self._model_cursor = (self._model_cursor + steps) % len(files)
            self.sender.send_model_choice(self._model_cursor + 1, len(files), files[self._model_cursor].name)

    def find_model(self, name: str) -> Path | None:
        """The model file the patch names (Pd shows spaces as underscores)."""
        wanted = pd_word(name)
        return next((f for f in self.models() if pd_word(f.name) == wanted), None)
