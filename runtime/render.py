"""`python -m runtime render MODEL`: hear a model without the box, rendered by the real Pd patch to a WAV.

    python -m runtime render runs/mine/model.ts --seconds 10 --out mine.wav
    python -m runtime render model.ts --out bright.wav --knobs knob1=0.9,knob8=0.4 --anchor 2
    python -m runtime render model.ts --out slow.wav --param density=4 --param reverb=0.5

The grains are the box's own: the box's decode engine (runtime.engine.Engine, with the default config's
knob mapping, spray, seed and 8 slots) decodes them for the knob positions and sound asked for, and what it
would send to Pd (/model, one /grain per slot) is played, with the knob-mapped parameters (density,
duration, transpose out of the box) as the runtime sends them and any --param after them, into
pd/main.pd run by `pd -batch` (runtime/pd_batch.py): faster than real time, no sound card, no ports.
The knobs stay where they are for the whole render: a still picture of one place in the latent space.

The WAV is Pd's output as it was (32-bit float, stereo, 44,100 Hz), with the model's name as its title and
the model's sha256 and every setting in its comment (runtime/wavfile.py), so the file says what made it.
One line on stdout names the model, the file, the length and the levels.

Exit 0; 2 for a usage error (a missing model file, a bad knob, sound or param, seconds out of range) and
1 when the model is refused (runtime.artifact.load_model says why) or Pd fails, each with one line.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.artifact import Model, ModelError, load_model
from runtime.config import Config
from runtime.contract import DEFAULT_KNOB_ACTIONS, KNOB_COUNT, KNOB_NAMES, pd_word
from runtime.engine import Engine, Layout
from runtime.params import PARAMS, Param
from runtime.pd_batch import PD_BINARY, Score, render
from runtime.performance import initial_state
from runtime.presets import ControlState
from runtime.threads import limit_torch_threads
from runtime.wavfile import Tags, levels_dbfs, write_wav

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_SECONDS = 600.0
DECODE_TIMEOUT_S = 60.0
SOFTWARE = "grainbox runtime render (pd/main.pd, pd -batch)"


class UsageError(Exception):
    """An argument the render cannot take; the message names it and what is accepted (exit 2)."""


class RenderFailed(Exception):
    """The model was refused or Pd failed; the message says which and why (exit 1)."""


@dataclass(frozen=True)
class Settings:
    """Everything a render plays, checked: the length, the 8 knob positions, the sound as --anchor gave
    it (a number or a name, checked against the model later; None: the first), the /params given."""

    seconds: float
    knobs: tuple[float, ...]
    anchor: str | None = None
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """A finished render: where it went, what played, how it measured."""

    out: Path
    model: Model
    seconds: float
    peak_dbfs: float
    rms_dbfs: float
    wall_seconds: float
    sound: int  # 1-based, as the box's log says "sound N"
    tags: Tags


# ---------------------------------------------------------------------------------------- parsing


def parse_seconds(text: str) -> float:
    """--seconds: a finite number of seconds above 0 and at most MAX_SECONDS."""
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(f"--seconds {text!r} is not a number; e.g. --seconds 10") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise UsageError(f"--seconds must be above 0 and at most {MAX_SECONDS:g}, got {text}")
    return seconds


def _unit_value(label: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--knobs {label}={text!r} is not a number; knob positions are 0..1") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise UsageError(f"--knobs {label}={text} is outside 0..1 (0 fully left, 1 fully right)")
    return value


def parse_knobs(text: str | None, defaults: list[float]) -> tuple[tuple[float, ...], set[int]]:
    """--knobs: 8 positions "0.5,0.5,..." or pairs "knob3=0.2,knob5=0.8" (commas or spaces between).
    Returns the 8 positions (unnamed knobs keep `defaults`) and the indices the user set."""
    knobs = list(defaults)
    words = [w for w in re.split(r"[,\s]+", text or "") if w]
    if not words:
        return tuple(knobs), set()
    pairs = ["=" in w for w in words]
    if all(pairs):
        given: set[int] = set()
        for word in words:
            name, _, text = word.partition("=")
            name = name.strip().lower()
            if name not in KNOB_NAMES:
                raise UsageError(f"--knobs: no knob {name!r}; the knobs are "
                                 f"{KNOB_NAMES[0]}..{KNOB_NAMES[-1]}")
            index = KNOB_NAMES.index(name)
            if index in given:
                raise UsageError(f"--knobs: {name} is given twice")
            knobs[index] = _unit_value(name, text)
            given.add(index)
        return tuple(knobs), given
    if any(pairs):
        raise UsageError("--knobs takes either 8 numbers or knobN=value pairs, not a mix of both")
    if len(words) != KNOB_COUNT:
        raise UsageError(f"--knobs takes {KNOB_COUNT} positions (knob1..knob{KNOB_COUNT}), got {len(words)}; "
                         "or name some: --knobs knob3=0.2")
    values = tuple(_unit_value(KNOB_NAMES[i], w) for i, w in enumerate(words))
    return values, set(range(KNOB_COUNT))


def _param_range(p: Param) -> str:
    kind = "a whole number " if p.integer else ""
    unit = f" {p.unit}" if p.unit and p.unit not in ("0..1", "0/1") else ""
    return f"{kind}{p.low:g} to {p.high:g}{unit}"


def parse_params(items: list[str] | None) -> dict[str, float]:
    """--param name=value (repeatable): any /param of runtime/contract.json, in its range and unit."""
    params: dict[str, float] = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--param {item!r}: write it as name=value, e.g. --param density=40")
        if name not in PARAMS:
            close = difflib.get_close_matches(name, PARAMS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UsageError(f"--param {name}: no such param; {hint}the params are {', '.join(PARAMS)}")
        p = PARAMS[name]
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"--param {name}={text!r} is not a number; "
                             f"{name} is {_param_range(p)}") from None
        if not (math.isfinite(value) and p.low <= value <= p.high) or (p.integer and value != round(value)):
            raise UsageError(f"--param {name}={text} is out of range: {name} is {_param_range(p)}")
        if name in params:
            raise UsageError(f"--param {name} is given twice")
        params[name] = value
    return params


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Check every argument that needs no model: seconds, knobs, params (UsageError on the first bad one).
    A param a knob also sets wins over that knob's default, and moves the knob there; both given is a
    contradiction."""
    defaults = initial_state(Config()).knobs
    knobs, given = parse_knobs(args.knobs, defaults)
    params = parse_params(args.param)
    knobs = list(knobs)
    for index, action in enumerate(DEFAULT_KNOB_ACTIONS):
        if action in params:
            if index in given:
                raise UsageError(f"{action} is set twice: by --knobs {KNOB_NAMES[index]} (its knob) and by "
                                 f"--param {action}; give one")
            knobs[index] = PARAMS[action].to_knob(params[action])
    return Settings(parse_seconds(args.seconds), tuple(knobs), args.anchor, params)


def find_anchor(model: Model, anchor: str | None) -> int:
    """The 0-based anchor for --anchor: a sound number 1..N, as the box's log says "sound N", or a name
    of model.anchor_names (case, spaces and underscores aside, as Pd shows names)."""
    if anchor is None:
        return 0
    names = model.anchor_names
    listed = ", ".join(f"{i} {n}" for i, n in enumerate(names, start=1))
    text = anchor.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        number = int(text)
        if not 1 <= number <= len(names):
            raise UsageError(f"--anchor {number}: the model has sounds 1 to {len(names)} ({listed})")
        return number - 1
    wanted = pd_word(text.lower())
    for index, name in enumerate(names):
        if pd_word(name.lower()) == wanted:
            return index
    raise UsageError(f"--anchor {anchor!r}: no sound of that name; the model's sounds are {listed}")


# ---------------------------------------------------------------------------------------- the render


class _ScoreSender:
    """The engine's GrainSender, writing what it sends into a score at time 0 instead of a socket."""

    def __init__(self, score: Score, slots: int) -> None:
        self.score = score
        self.slots = slots
        self.filled: set[int] = set()
        self.done = threading.Event()

    def send_model(self, model: Model, slots: int) -> None:
        self.score.add(0, "/model", model.sample_rate, model.grain_size, model.latent_dim, slots)

    def send_grains(self, grains: np.ndarray, first_slot: int = 0) -> None:
        for slot, samples in enumerate(grains, start=first_slot):
            self.score.add(0, "/grain", slot, *samples.tolist())  # as runtime/link.py sends them
            self.filled.add(slot)
        if len(self.filled) >= self.slots:
            self.done.set()


def decode_score(model: Model, state: ControlState, config: Config) -> Score:
    """/model and every slot's /grain for `state`, decoded by the box's own engine (the slot-0-first
    decode, the spray cloud, the repair of non-finite samples), in the order the engine sends them."""
    score = Score()
    sender = _ScoreSender(score, config.slots)
    engine = Engine(model, sender, slots=config.slots, spray_max=config.spray, seed=config.seed,
                    layout=Layout.from_pots(DEFAULT_KNOB_ACTIONS))
    engine.start()
    try:
        engine.request(state)
        if not sender.done.wait(DECODE_TIMEOUT_S):
            raise RenderFailed(f"the engine decoded {len(sender.filled)} of {config.slots} slots in "
                               f"{DECODE_TIMEOUT_S:g} s ({engine.errors} errors)")
    finally:
        engine.close()
    return score


def knob_params(knobs: tuple[float, ...], params: dict[str, float]) -> dict[str, float]:
    """The /params to send, in order: each knob-mapped one as the runtime sends it (from_knob), with a
    value given by --param in its place, then the other --params."""
    sent = {a: PARAMS[a].from_knob(knobs[i]) for i, a in enumerate(DEFAULT_KNOB_ACTIONS) if a in PARAMS}
    return {**sent, **params}


def describe(model: Model, settings: Settings, sound: int, sent: dict[str, float]) -> str:
    """The WAV's comment: the model's file and sha256, the sound, the knobs as --knobs takes them (with
    what each does), and every /param sent; enough to render the same file again."""
    knobs = ",".join(f"{v:.6g}" for v in settings.knobs)
    roles = " ".join(DEFAULT_KNOB_ACTIONS)
    params = " ".join(f"{k}={v:.6g}" for k, v in sent.items())
    return (f"model {model.path.name} sha256 {model.sha256}; sound {sound + 1} "
            f"({model.anchor_names[sound]}); knobs {knobs} (knob1..knob{KNOB_COUNT}: {roles}); "
            f"params {params}; {settings.seconds:g} s")


def render_model(model_path: Path, settings: Settings, out: Path) -> Result:
    """Render `settings` of the model at `model_path` to the WAV `out`. UsageError for a missing file or
    an unknown sound, RenderFailed for a refused model or a Pd that fails."""
    if not model_path.is_file():
        folder = " (it is a folder)" if model_path.is_dir() else ""
        raise UsageError(f"no model file at {model_path}{folder}")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the WAV's file name, e.g. {out / 'render.wav'}")
    if shutil.which(PD_BINARY) is None:
        raise RenderFailed(f"Pd not found ({PD_BINARY}): install Pd vanilla 0.52+ (`make setup`, or "
                           "`sudo apt install puredata-core puredata-extra`)")
    limit_torch_threads()
    try:
        model = load_model(model_path)
    except ModelError as e:
        raise RenderFailed(f"{model_path}: model refused: {e}") from None
    sound = find_anchor(model, settings.anchor)
    config = Config()
    score = decode_score(model, ControlState(knobs=list(settings.knobs), anchor=sound), config)
    sent = knob_params(settings.knobs, settings.params)
    for name, value in sent.items():
        score.add(0, "/param", name, float(value))
    work = Path(tempfile.mkdtemp(prefix="grainbox-render-"))
    try:
        # Pd renders 20-40x real time here; allow for a machine 20x slower than that
        rendered = render(score, settings.seconds, work, timeout=60 + 2 * settings.seconds)
    except (RuntimeError, TimeoutError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RenderFailed(f"Pd failed to render (its files are in {work}): {first}") from None
    if not np.isfinite(rendered.audio).all():
        raise RenderFailed(f"Pd's output holds NaN or inf (its files are in {work})")
    tags = Tags(title=model.name, comment=describe(model, settings, sound, sent), software=SOFTWARE)
    try:
        write_wav(out, rendered.audio, rendered.sample_rate, tags)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write it: {e.strerror or e}") from None
    shutil.rmtree(work, ignore_errors=True)
    peak, rms = levels_dbfs(rendered.audio)
    return Result(out, model, len(rendered.audio) / rendered.sample_rate, peak, rms, rendered.wall_seconds,
                  sound + 1, tags)


def summary_line(result: Result) -> str:
    """The one line a render prints: the model, the file, the length and the levels, Pd's speed."""
    speed = result.seconds / result.wall_seconds if result.wall_seconds > 0 else float("inf")
    return (f"rendered {result.model.name} ({result.model.path}, sound {result.sound}) to {result.out}: "
            f"{result.seconds:g} s, peak {result.peak_dbfs:.1f} dBFS, RMS {result.rms_dbfs:.1f} dBFS "
            f"(Pd took {result.wall_seconds:.2f} s, {speed:.0f}x real time)")


def run_render(args: argparse.Namespace) -> int:
    """The command (its arguments are declared in runtime/__main__.py): check, render, write, print one
    line; each error as one line on stderr."""
    try:
        settings = settings_from_args(args)
        result = render_model(args.model, settings, args.out)
    except UsageError as e:
        print(f"grainbox: render: {e}", file=sys.stderr)
        return EXIT_USAGE
    except RenderFailed as e:
        print(f"grainbox: render: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(summary_line(result))
    return EXIT_OK

