"""The scripted performer: a timeline of control moves standing in for a player's hands.

`make demo` has no knob box and no player, so this module plays the box instead. It drives the runtime
through the same `ControlSink` gestures a KnobBox delivers (runtime/controls.py): a knob (knob1..knob8)
moved to a position, the encoder turned one detent at a time. It reads the script at the knob box's own
poll rate and, like a 10-bit MCP3008 pot, reports a knob only when it moved by at least one step, so the
runtime sees exactly what real hands on real pots would give it, and the model, engine, OSC link and Pd
do the rest.

The script is written for NOMINAL_SECONDS (24 s) and stretched or squeezed to the length asked for:

    start            everything where the box starts: axes centred, density 20/s, duration 80 ms
    latent axis 1    axis1 swept 0.5 -> 0 -> 1 -> 0.5 (the model's first principal direction)
    latent axes 2-4  axis2 alone, then axis3 and axis4 together, in opposite directions
    sounds           three encoder detents: the anchors (the model's representative sounds) in turn
    density          20 -> 2 -> 200 -> 20 grains/s
    duration         80 -> 400 -> 15 -> 80 ms
    pitch and spray  transpose 0 -> -12 -> +7 -> 0 semitones while the spray opens and closes
    home             three detents back to the first sound
    listening        the button (long press: listen) follows the phrase Pd plays into its input, then
                     captures it as a new sound, then plays that sound

Every gesture is also written to a GestureLog with its time, so the plot and the tests can put the knob
positions beside the recording on the same time axis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.config import Config
from runtime.controls import Controls, ControlSink
from runtime.params import PARAMS

NOMINAL_SECONDS = 24.0
KNOB_STEP = 1 / 1023  # an MCP3008 reads 10 bits: the smallest move a pot can report


def to_knob(control: str, value: float) -> float:
    """A value in the control's unit as the 0..1 knob position that gives it."""
    return PARAMS[control].to_knob(value) if control in PARAMS else min(1.0, max(0.0, value))


@dataclass(frozen=True)
class KnobMove:
    """One knob travels through `path` (evenly spaced in time) from `start` to `end` (nominal seconds).
    `control` is the knob's action in the config's [mapping]; values are in that control's unit (0..1
    for axes and spray, grains/s, ms or semitones for parameters)."""

    control: str
    start: float
    end: float
    path: tuple[float, ...]

    def knob_at(self, t: float) -> float:
        """The knob position (0..1) at nominal time t, holding the ends outside the move. Hands turn a
        knob at an even pace, so the path is interpolated in knob positions, not in the unit: an
        exponential density knob sweeps 2 -> 200 grains/s in equal ratios per second."""
        knobs = [to_knob(self.control, v) for v in self.path]
        if t <= self.start:
            return knobs[0]
        if t >= self.end:
            return knobs[-1]
        x = (t - self.start) / (self.end - self.start) * (len(knobs) - 1)
        i = min(int(x), len(knobs) - 2)
        return knobs[i] + (knobs[i + 1] - knobs[i]) * (x - i)


@dataclass(frozen=True)
class EncoderTurn:
    """The encoder turned `steps` detents (one gesture per detent) at nominal time `at`."""

    at: float
    steps: int


@dataclass(frozen=True)
class Section:
    """A named stretch of the script, for the plot's labels and the tests' windows."""

    name: str
    start: float
    end: float


SECTIONS = (
    Section("start", 0.0, 0.8),
    Section("latent axis 1", 0.8, 4.8),
    Section("latent axes 2-4", 4.8, 8.0),
    Section("sounds", 8.0, 11.0),
    Section("density", 11.0, 13.5),
    Section("duration", 13.5, 15.5),
    Section("pitch and spray", 15.5, 19.0),
    Section("home", 19.0, 20.0),
    Section("listening", 20.0, 24.0),
)
MOVES = (
    KnobMove("axis1", 0.8, 4.8, (0.5, 0.0, 1.0, 0.5)),
    KnobMove("axis2", 4.8, 6.4, (0.5, 1.0, 0.0, 0.5)),
    KnobMove("axis3", 6.4, 8.0, (0.5, 0.0, 1.0, 0.5)),
    KnobMove("axis4", 6.4, 8.0, (0.5, 1.0, 0.0, 0.5)),
    KnobMove("density", 11.0, 13.5, (20.0, 2.0, 200.0, 20.0)),
    KnobMove("duration", 13.5, 15.5, (80.0, 400.0, 15.0, 80.0)),
    KnobMove("transpose", 15.5, 19.0, (0.0, -12.0, 7.0, 0.0)),
    KnobMove("spray", 15.5, 19.0, (0.0, 0.7, 0.0)),
)
TURNS = (
    EncoderTurn(8.3, +1),
    EncoderTurn(9.2, +1),
    EncoderTurn(10.1, +1),
    EncoderTurn(19.2, -1),
    EncoderTurn(19.4, -1),
    EncoderTurn(19.6, -1),
)
# The button's long press, mapped to "listen" in the demo: follow the phrase Pd plays into its input,
# then capture the last grains heard as a new sound, then off (playing that sound).
LONG_PRESSES = (20.3, 23.0, 23.7)


class GestureLog:
    """A ControlSink that writes down every gesture with its time, then passes it on to the real sink.

    Times are seconds since `zero` (set when the recording starts), so they line up with the WAV.
    It wraps the Performance, so the scripted performer and the Pd GUI's virtual knobs are logged alike.
    """

    def __init__(
        self, sink: Any, knob_actions: Sequence[str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.sink = sink  # runtime.performance.Performance (any ControlSink with .state and .engine)
        self.knob_actions = tuple(knob_actions)  # knob1..knob8's action, as the config maps them
        self.clock = clock
        self.zero = clock()
        self.events: list[tuple[float, str, int, float]] = []  # (t, "knob"|"anchor", index, value)
        self.initial_knobs: list[float] = []
        self.initial_anchor = 0
        self._lock = threading.Lock()

    def start_clock(self) -> None:
        """Time zero is now; the knob positions and the sound at this moment are the starting point."""
        with self._lock:
            self.zero = self.clock()
            self.initial_knobs = list(self.sink.state.knobs)
            self.initial_anchor = int(self.sink.state.anchor)
            self.events.clear()

    def _note(self, kind: str, index: int, value: float) -> None:
        with self._lock:
            self.events.append((self.clock() - self.zero, kind, index, value))

    def knob(self, index: int, value: float) -> None:
        self.sink.knob(index, value)
        self._note("knob", index, value)

    def encoder(self, steps: int) -> None:
        self.sink.encoder(steps)
        self._note("anchor", int(self.sink.state.anchor), float(steps))

    def press(self) -> None:
        self.sink.press()

    def long_press(self) -> None:
        self.sink.long_press()
        mode = getattr(getattr(self.sink, "engine", None), "listen_mode", None)
        if mode is not None:  # the demo maps it to "listen": log the mode it switched to
            self._note("listen", 0, float(("off", "follow", "capture").index(mode)))

    def note(self, pitch: int, velocity: int) -> None:
        self.sink.note(pitch, velocity)

    def to_json(self, sections: Sequence[Section] = (), scale: float = 1.0) -> dict[str, Any]:
        """Everything the plot needs: the mapping, where each knob started, every move, the sections
        (in real seconds) and the anchor names."""
        model = self.sink.engine.model
        with self._lock:
            events = [[round(t, 4), kind, index, round(value, 5)] for t, kind, index, value in self.events]
        return {
            "knob_actions": list(self.knob_actions),
            "initial_knobs": self.initial_knobs,
            "initial_anchor": self.initial_anchor,
            "model": model.name,
            "anchor_names": list(model.anchor_names),
            "events": events,
            "sections": [
                {"name": s.name, "start": round(s.start * scale, 4), "end": round(s.end * scale, 4)}
                for s in sections
            ],
        }


class Performer(Controls):
    """Plays the script into a ControlSink. `play()` runs it in the calling thread (the demo's main
    thread, which also handles Ctrl-C), so start() does nothing: the box may start before the music."""

    kind = "performer"

    def __init__(self, sink: ControlSink, config: Config, seconds: float = NOMINAL_SECONDS) -> None:
        super().__init__(sink)
        if seconds <= 0:
            raise ValueError(f"the performance needs a positive length, got {seconds} s")
        self.seconds = seconds
        self.scale = seconds / NOMINAL_SECONDS  # real seconds per nominal second
        self.poll_s = config.poll_ms / 1000
        self.knob_of = {action: i for i, action in enumerate(config.knob_actions)}
        missing = sorted({m.control for m in MOVES} - set(self.knob_of))
        if missing:
            raise ValueError(
                f"the demo's script moves {', '.join(missing)}, which no knob is mapped to; "
                "run the demo with the default [mapping]"
            )

    @property
    def sections(self) -> tuple[Section, ...]:
        return SECTIONS

    def positions(self, t: float) -> dict[int, float]:
        """Knob index -> 0..1 position the script holds at real time t (only the knobs it moves)."""
        nominal = t / self.scale
        latest: dict[str, KnobMove] = {}
        for move in MOVES:  # the last move of each control that has begun (or the first, before any)
            if move.control not in latest or move.start <= nominal:
                latest[move.control] = move
        return {self.knob_of[c]: m.knob_at(nominal) for c, m in latest.items()}

    def play(
        self,
        should_stop: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> bool:
        """Perform the script from now; True if it ran to its end, False if should_stop() cut it short."""
        start = clock()
        sent: dict[int, float] = {}
        turns = sorted(TURNS, key=lambda turn: turn.at)
        presses = list(LONG_PRESSES)
        while True:
            t = clock() - start
            for index, value in self.positions(t).items():
                if index not in sent or abs(value - sent[index]) >= KNOB_STEP:
                    self.sink.knob(index, value)
                    sent[index] = value
            while turns and turns[0].at * self.scale <= t:
                turn = turns.pop(0)
                for _ in range(abs(turn.steps)):
                    self.sink.encoder(1 if turn.steps > 0 else -1)
            while presses and presses[0] * self.scale <= t:
                presses.pop(0)
                self.sink.long_press()
            if t >= self.seconds:
                return True
            if should_stop():
                return False
            time.sleep(min(self.poll_s, max(0.0, self.seconds - t)))
