"""The built-in "synth" data set: grains of a small subtractive synthesizer, rendered in numpy.

In the spirit of the DIVA sample sets the Grain-VAE seed trained on, every grain is a 1024-sample window
(46 ms at 22,050 Hz) cut from a synth note:

    oscillator ──► resonant low-pass ──► amplitude envelope ──► peak level
    sine, triangle,   12 dB/oct state-variable     linear attack, exponential
    saw, square,      filter (cutoff, resonance)   decay to a sustain level;
    noise, a mix,                                  the grain starts onset_s into the note
    2-operator FM,
    noise percussion

so the set spans what a granular instrument is played with: pads (slow attacks), plucks (fast decays),
bright saws and squares (cutoff up to 5 octaves above the key), FM tones from electric piano to metallic
bell (integer ratios, a decaying index), and noise hits (snare- and hat-like: millisecond attacks, short
decays), over four octaves.

Each grain keeps the parameters that made it (SYNTH_PARAM_NAMES), so latent-space plots can be coloured
by pitch, cutoff, shape... Everything is drawn from one seed, so a given (n, seed) always renders the same
grains. Saw and square are band-limited with PolyBLEP (aliasing would be learned as timbre); the filter
runs a pre-roll before the grain so the grain starts in the filter's steady state, not in its start-up
transient.

    grains, params = render_synth_grains(20_000, seed=0)     # float32 [20000, 1024], dict of [20000]
    grains = render_grains({"shape": [2], "pitch_midi": [45], ...})   # one low saw, by hand
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from trainer import GRAIN_SIZE, SAMPLE_RATE

SYNTH_VERSION = 2
"""Bump whenever rendering changes, so cached synth sets (trainer/data.py) are rebuilt."""

SHAPE_NAMES: tuple[str, ...] = ("sine", "triangle", "saw", "square", "noise", "mix", "fm", "perc")
"""Oscillator shapes; the "shape" parameter is an index into this. "mix" = saw/square blend plus noise;
"fm" = a sine carrier phase-modulated by a sine at fm_ratio x f0; "perc" = noise, percussive envelope."""

UNPITCHED_SHAPES: tuple[str, ...] = ("noise", "perc")
"""Shapes whose grains have no pitch: their pitch_midi only places the cutoff."""

SYNTH_PARAM_NAMES: tuple[str, ...] = (
    "shape",  # int index into SHAPE_NAMES
    "pitch_midi",  # oscillator pitch, MIDI note number (69 = A 440 Hz), continuous
    "cutoff_hz",  # low-pass cutoff frequency
    "resonance",  # 0 (none) .. 0.9 (rings at the cutoff: Q = 1 / (2 - 2 r) = 5)
    "attack_s",  # envelope attack time (linear rise)
    "decay_s",  # envelope decay time constant (exponential fall to sustain)
    "sustain",  # envelope sustain level, 0..1
    "onset_s",  # where the grain starts in the note; < 0: the grain holds the note's start
    "blend",  # "mix" only: 0 = saw, 1 = square
    "noise",  # "mix" only: white-noise amount added to the oscillator
    "fm_ratio",  # "fm" only: modulator frequency / f0, an integer 1..5 so the tone stays harmonic
    "fm_index",  # "fm" only: modulation index at the note's start; it decays with the envelope's decay_s
    "level",  # peak amplitude of the grain
)

PITCH_RANGE = (36.0, 84.0)  # C2 .. C6: four octaves
CUTOFF_OCTAVES_ABOVE_PITCH = (0.0, 5.0)  # cutoff tracks the key, as on most synth patches
MAX_CUTOFF_HZ = 9_000.0
PRE_ROLL = 512  # samples rendered before the grain and dropped: the filter settles
_CHUNK = 2048  # grains rendered at once: bounds memory to ~50 MB whatever n is


def sample_params(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw n random synth settings: a dict of SYNTH_PARAM_NAMES -> array [n]."""
    shape = rng.integers(0, len(SHAPE_NAMES), n)
    pitch = rng.uniform(*PITCH_RANGE, n)
    f0 = midi_to_hz(pitch)
    cutoff = np.minimum(f0 * 2.0 ** rng.uniform(*CUTOFF_OCTAVES_ABOVE_PITCH, n), MAX_CUTOFF_HZ)
    unpitched = np.isin(shape, [SHAPE_NAMES.index(s) for s in UNPITCHED_SHAPES])
    cutoff = np.where(unpitched, 2.0 ** rng.uniform(7.5, 13.0, n), cutoff)
    is_mix = shape == SHAPE_NAMES.index("mix")
    is_fm = shape == SHAPE_NAMES.index("fm")
    is_perc = shape == SHAPE_NAMES.index("perc")
    attack = np.exp(rng.uniform(np.log(0.002), np.log(0.2), n))
    decay = np.exp(rng.uniform(np.log(0.05), np.log(1.5), n))
    onset = rng.uniform(-0.02, 0.5, n)
    # A hit: attack within 3 ms, gone in 10-150 ms, the grain at or just after its start.
    attack = np.where(is_perc, np.exp(rng.uniform(np.log(0.0005), np.log(0.003), n)), attack)
    decay = np.where(is_perc, np.exp(rng.uniform(np.log(0.01), np.log(0.15), n)), decay)
    onset = np.where(is_perc, rng.uniform(-0.01, 0.03, n), onset)
    return {
        "shape": shape.astype(np.int64),
        "pitch_midi": pitch.astype(np.float32),
        "cutoff_hz": cutoff.astype(np.float32),
        "resonance": rng.uniform(0.0, 0.9, n).astype(np.float32),
        "attack_s": attack.astype(np.float32),
        "decay_s": decay.astype(np.float32),
        "sustain": np.where(is_perc, 0.0, rng.uniform(0.0, 1.0, n)).astype(np.float32),
        "onset_s": onset.astype(np.float32),
        "blend": np.where(is_mix, rng.uniform(0.0, 1.0, n), 0.0).astype(np.float32),
        "noise": np.where(is_mix, rng.uniform(0.0, 0.5, n), 0.0).astype(np.float32),
        "fm_ratio": np.where(is_fm, rng.integers(1, 6, n), 0).astype(np.float32),
        "fm_index": np.where(is_fm, rng.uniform(0.5, 6.0, n), 0.0).astype(np.float32),
        "level": rng.uniform(0.25, 0.9, n).astype(np.float32),
    }


def true_pitch_midi(params: dict[str, np.ndarray]) -> np.ndarray:
    """Each grain's pitch as a MIDI number, NaN for the shapes that have none (noise, perc): float64 [N]."""
    unpitched = np.isin(params["shape"], [SHAPE_NAMES.index(s) for s in UNPITCHED_SHAPES])
    return np.where(unpitched, np.nan, np.asarray(params["pitch_midi"], dtype=np.float64))


def render_synth_grains(
    n: int, seed: int = 0, progress: bool = False
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """n random synth grains, float32 [n, 1024] in [-1, 1], and the parameters of each (arrays of [n])."""
    if n < 1:
        raise ValueError(f"number of synth grains must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    params = sample_params(n, rng)
    return render_grains(params, rng, progress), params


def render_grains(
    params: dict[str, np.ndarray], rng: np.random.Generator | int = 0, progress: bool = False
) -> np.ndarray:
    """Render grains from explicit parameter arrays (all SYNTH_PARAM_NAMES, equal lengths): float32 [n, 1024].

    rng (or a seed) supplies oscillator start phases and noise, so the same call gives the same grains.
    progress shows a tqdm bar (rendering 20,000 grains takes a few seconds).
    """
    missing = [k for k in SYNTH_PARAM_NAMES if k not in params]
    if missing:
        raise ValueError(f"synth parameters missing: {', '.join(missing)} (need all of SYNTH_PARAM_NAMES)")
    p = {k: np.atleast_1d(np.asarray(params[k], dtype=np.float64)) for k in SYNTH_PARAM_NAMES}
    n = len(p["shape"])
    if any(len(v) != n for v in p.values()):
        raise ValueError("synth parameter arrays must all have the same length")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    out = np.empty((n, GRAIN_SIZE), dtype=np.float32)
    starts = range(0, n, _CHUNK)
    if progress:
        starts = tqdm(starts, desc="rendering synth grains", unit="chunk", leave=False)
    for i in starts:
        chunk = {k: v[i : i + _CHUNK, None] for k, v in p.items()}  # columns broadcast over time
        out[i : i + _CHUNK] = _render_chunk(chunk, rng)
    return out


def midi_to_hz(pitch_midi):
    return 440.0 * 2.0 ** ((np.asarray(pitch_midi) - 69.0) / 12.0)


def _render_chunk(p: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    n = p["shape"].shape[0]
    length = PRE_ROLL + GRAIN_SIZE
    t = p["onset_s"] + (np.arange(length) - PRE_ROLL) / SAMPLE_RATE  # time in the note, [n, length]
    x = _oscillator(p, t, rng.uniform(0.0, 1.0, (n, 1)), rng.uniform(-1.0, 1.0, (n, length)))
    x = _lowpass(x, p["cutoff_hz"][:, 0], p["resonance"][:, 0])
    # the envelope (VCA) comes after the filter, as on a synth
    x = x[:, PRE_ROLL:] * _envelope(p, t[:, PRE_ROLL:].astype(np.float32))
    peak = np.abs(x).max(axis=1, keepdims=True)
    return x * (p["level"] / np.maximum(peak, 1e-9))


def _oscillator(p, t: np.ndarray, phase0: np.ndarray, white: np.ndarray) -> np.ndarray:
    """The raw oscillator of every grain; each waveform is computed only for the rows that use it."""
    f0 = midi_to_hz(p["pitch_midi"])
    dt = (f0 / SAMPLE_RATE).astype(np.float32)  # phase increment per sample, in cycles
    phase = ((phase0 + f0 * t) % 1.0).astype(np.float32)
    shape = p["shape"][:, 0].astype(int)
    x = np.zeros(t.shape, dtype=np.float32)

    def rows(*names: str) -> np.ndarray:
        return np.flatnonzero(np.isin(shape, [SHAPE_NAMES.index(s) for s in names]))

    r = rows("sine")
    x[r] = np.sin(2.0 * np.pi * phase[r])
    r = rows("triangle")
    x[r] = 4.0 * np.abs(phase[r] - 0.5) - 1.0  # harmonics fall at 12 dB/oct: its aliasing is inaudible
    r = rows("noise", "perc")
    x[r] = white[r]
    r = rows("fm")
    # Phase modulation: the index falls with the note (bright attack, mellow tail), as on a DX7 patch.
    index = p["fm_index"][r] * np.exp(-np.maximum(t[r], 0.0) / p["decay_s"][r])
    modulator = np.sin(2.0 * np.pi * ((p["fm_ratio"][r] * phase[r].astype(np.float64)) % 1.0))
    x[r] = np.sin(2.0 * np.pi * phase[r] + index * modulator).astype(np.float32)
    r = rows("saw", "mix")
    saw_weight = np.where(shape[r, None] == SHAPE_NAMES.index("mix"), 1.0 - p["blend"][r], 1.0)
    x[r] += saw_weight.astype(np.float32) * _saw(phase[r], dt[r])
    r = rows("square", "mix")
    square_weight = np.where(shape[r, None] == SHAPE_NAMES.index("mix"), p["blend"][r], 1.0)
    x[r] += square_weight.astype(np.float32) * _square(phase[r], dt[r])
    r = rows("mix")
    x[r] += p["noise"][r].astype(np.float32) * white[r]
    return x


def _saw(phase: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Band-limited rising saw in [-1, 1]: the naive ramp minus a PolyBLEP at each wrap."""
    return 2.0 * phase - 1.0 - _polyblep(phase, dt)


def _square(phase: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Band-limited square: +1 then -1, a PolyBLEP at the rising (phase 0) and falling (0.5) edge."""
    naive = np.where(phase < 0.5, np.float32(1.0), np.float32(-1.0))
    return naive + _polyblep(phase, dt) - _polyblep((phase + 0.5) % 1.0, dt)


def _polyblep(phase: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Polynomial band-limited step (Välimäki 2007): the correction that rounds a unit jump at phase 0.

    Non-zero only within one sample of the jump, so it is computed on those few samples alone.
    """
    dt = np.broadcast_to(dt, phase.shape)
    out = np.zeros_like(phase)
    after = phase < dt  # the sample just after the jump
    a = phase[after] / dt[after]
    out[after] = 2 * a - a * a - 1.0
    before = phase > 1.0 - dt  # the sample just before it
    b = (phase[before] - 1.0) / dt[before]
    out[before] = b * b + 2 * b + 1.0
    return out


def _lowpass(x: np.ndarray, cutoff_hz: np.ndarray, resonance: np.ndarray) -> np.ndarray:
    """Resonant 2-pole low-pass: the trapezoidal state-variable filter (Zavalishin / Simper).

    Stable at any cutoff and resonance, unlike a naive biquad swept the same way. Loops over time,
    vectorised over grains, so the cost is one small numpy step per sample of the longest grain.
    """
    g = np.tan(np.pi * np.minimum(cutoff_hz, 0.45 * SAMPLE_RATE) / SAMPLE_RATE)
    k = 2.0 - 2.0 * resonance  # damping, 1/Q
    a1 = 1.0 / (1.0 + g * (g + k))
    a2 = g * a1
    a3 = g * a2
    ic1 = np.zeros_like(g)
    ic2 = np.zeros_like(g)
    y = np.empty_like(x)
    for i in range(x.shape[1]):
        v3 = x[:, i] - ic2
        v1 = a1 * ic1 + a2 * v3
        v2 = ic2 + a2 * ic1 + a3 * v3
        ic1 = 2.0 * v1 - ic1
        ic2 = 2.0 * v2 - ic2
        y[:, i] = v2
    return y


def _envelope(p, t: np.ndarray) -> np.ndarray:
    """Linear attack to 1, then exponential decay towards the sustain level; 0 before the note starts."""
    attack, decay, sustain = (p[k].astype(np.float32) for k in ("attack_s", "decay_s", "sustain"))
    rising = np.clip(t / attack, 0.0, 1.0)
    falling = sustain + (1.0 - sustain) * np.exp(-np.maximum(t - attack, 0.0) / decay)
    return np.where(t < attack, rising, falling)
