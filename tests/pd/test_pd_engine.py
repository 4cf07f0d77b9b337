"""The granular engine in pd/main.pd, rendered by the real Pd in batch mode (tests/support/pd_harness.py).

Each test plays a score of OSC messages (serialised by pyliblo3) into the patch and analyses the WAV
recorded from main.pd's outlets (the signal its /record and dac~ get). Reverb is off unless a test is
about it, so the output is the grains alone.
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.pd_harness import Score, osc_bytes, render, sine

pytestmark = pytest.mark.skipif(shutil.which("pd") is None, reason="needs Pd (apt: puredata-core)")

MODEL_SR, GRAIN = 22050, 1024


def test_short_renders_keep_every_frame_with_the_cpu_busy(tmp_path: Path) -> None:
    """Forty 20 ms renders while every core is kept busy: each comes back whole.

    Renders once went through the patch's [writesf~], whose file is opened by a thread of its own; in batch
    mode a short render could end before that thread had opened the file, and Pd 0.53 then loses the take
    ("Pd rendered 0 of N frames", 15 of 40 0.05 s renders with both cores busy). The harness now records
    with [tabwrite~] and writes with [soundfiler] in Pd's main thread."""
    spin = [sys.executable, "-c", "while True: pass"]
    spinners = [subprocess.Popen(spin) for _ in range(min(os.cpu_count() or 1, 4))]
    try:
        for k in range(40):  # an empty score: the shorter the render, the likelier the race was
            out = render(Score(), 0.02, tmp_path / str(k), timeout=60)
            assert out.audio.shape == (round(0.02 * out.sample_rate), 2), k
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def base_score(**params: float) -> Score:
    """/model, then every parameter given (reverb 0 unless given)."""
    score = Score()
    score.add(0, "/model", MODEL_SR, GRAIN, 8, 8)
    for name, value in {"reverb": 0.0, **params}.items():
        score.add(0, "/param", name, float(value))
    return score


def fill_slots(score: Score, grains: list[list[float]], at_ms: float = 0.0) -> None:
    for slot, grain in enumerate(grains):
        score.add(at_ms, "/grain", slot, *grain)


def noise(seed: int, amplitude: float = 0.5) -> list[float]:
    return [float(v) for v in np.random.default_rng(seed).uniform(-amplitude, amplitude, GRAIN)]


def onsets(mono: np.ndarray, sr: int, threshold: float = 0.02) -> np.ndarray:
    """Sample indices where the envelope (|x| held over 1 ms) rises through threshold."""
    hold = max(1, sr // 1000)
    padded = np.concatenate([np.abs(mono), np.zeros(hold)])
    env = np.lib.stride_tricks.sliding_window_view(padded, hold).max(axis=1)[: len(mono)]
    above = env > threshold
    return np.flatnonzero(above[1:] & ~above[:-1]) + 1


def fundamental(mono: np.ndarray, sr: int) -> float:
    """Frequency of the strongest spectral peak, refined by parabolic interpolation of log magnitudes."""
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono)))) + 1e-12
    k = int(np.argmax(spectrum[1:])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / len(mono)


def band_energy(mono: np.ndarray, sr: int, freq: float, width: float = 40.0) -> float:
    """Fraction of the signal's energy within `width` Hz of freq."""
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono)))) ** 2
    freqs = np.fft.rfftfreq(len(mono), 1 / sr)
    return float(spectrum[np.abs(freqs - freq) < width].sum() / spectrum.sum())


def test_output_is_non_silent_and_finite(tmp_path: Path) -> None:
    score = base_score(density=40, duration=60, reverb=0.3)
    fill_slots(score, [noise(k) for k in range(8)])
    out = render(score, 1.5, tmp_path)
    assert out.audio.shape[1] == 2 and len(out.audio) >= 1.4 * out.sample_rate
    assert np.isfinite(out.audio).all()
    rms = float(np.sqrt(np.mean(out.audio[out.sample_rate // 2 :] ** 2)))
    assert rms > 0.01, f"output RMS {rms:.5f}: the patch is silent"
    assert "error" not in out.log, out.log


@pytest.mark.parametrize("density", [25.0, 80.0])
def test_onset_rate_matches_density(tmp_path: Path, density: float) -> None:
    # short grains (5 ms) with gaps between them so every onset is a separate rise of the envelope
    score = base_score(density=density, duration=5, pan=0, normalize=0)
    fill_slots(score, [[0.8] * GRAIN] * 8)
    out = render(score, 2.0, tmp_path)
    mono, sr = out.audio[:, 0], out.sample_rate
    found = onsets(mono, sr)
    found = found[found > 0.25 * sr]  # after the first grains, whatever the clock's phase
    rate = (len(found) - 1) / ((found[-1] - found[0]) / sr)
    assert abs(rate / density - 1) < 0.10, f"{rate:.2f} onsets/s for density {density}"
    # sample-accurate: the period (1764 or 551.25 samples) is not a multiple of Pd's 64-sample block,
    # yet every interval is within a sample of it ([vline~] starts grains between block boundaries)
    intervals = np.diff(found)
    assert np.abs(intervals - sr / density).max() <= 1.0, f"intervals {sorted(set(intervals.tolist()))}"


def single_grain_pitch(tmp_path: Path, transpose: float, scale: int = 0, model_sr: int = MODEL_SR,
                       grain: int = GRAIN, note: tuple[int, int] | None = None) -> float:
    """Fundamental of one long grain (clocked mode, one /trigger) of a 16-cycle sine, transposed.

    `note` (pitch, velocity) is played on the patch's keys (gb_note_in) before the grain."""
    score = Score()
    score.add(0, "/model", model_sr, grain, 8, 8)
    for name, value in dict(reverb=0, clocked=1, duration=1000, transpose=transpose, pan=0, spread=0,
                            reverse=0, normalize=0, scale=scale).items():
        score.add(0, "/param", name, float(value))
    score.add(0, "/grain", 0, *sine(grain, 16.0, 0.8))
    if note:
        score.add_pd(50, "gb_note_in", *note)
    score.add(100, "/trigger")
    out = render(score, 1.2, tmp_path / f"t{transpose:g}")
    sr = out.sample_rate
    body = out.audio[int(0.3 * sr) : int(0.9 * sr), 0]  # the middle of the grain
    assert np.sqrt(np.mean(body**2)) > 0.05
    return fundamental(body, sr)


def test_octave_up_doubles_the_fundamental(tmp_path: Path) -> None:
    expected = 16 * MODEL_SR / GRAIN  # 344.5 Hz: the slot plays at the model's rate, not Pd's
    f0 = single_grain_pitch(tmp_path, 0.0)
    f12 = single_grain_pitch(tmp_path, 12.0)
    assert abs(f0 / expected - 1) < 0.02, f"untransposed fundamental {f0:.1f} Hz, expected {expected:.1f}"
    assert abs(f12 / f0 / 2 - 1) < 0.02, f"+12 semitones: {f0:.1f} -> {f12:.1f} Hz"


def test_freeze_holds_the_material_while_new_grains_arrive(tmp_path: Path) -> None:
    a_cycles, b_cycles = 16.0, 40.0  # 344.5 Hz and 861.3 Hz
    a_hz, b_hz = (c * MODEL_SR / GRAIN for c in (a_cycles, b_cycles))
    score = base_score(density=10, duration=90, pan=0)  # grains one at a time: no phase cancellation
    fill_slots(score, [sine(GRAIN, a_cycles, 0.8)] * 8)  # material A, written at once
    score.add(20, "/param", "freeze", 1.0)
    for k in range(20):  # new material B arrives every 50 ms while frozen
        fill_slots(score, [sine(GRAIN, b_cycles, 0.8)] * 8, at_ms=300 + 50 * k)
    score.add(1400, "/param", "freeze", 0.0)  # thaw: the held B grains now play
    out = render(score, 2.0, tmp_path)
    sr, mono = out.sample_rate, out.audio[:, 0]
    frozen, thawed = mono[int(0.5 * sr) : int(1.35 * sr)], mono[int(1.55 * sr) : int(2.0 * sr)]
    assert band_energy(frozen, sr, a_hz) > 0.9, "frozen output should be material A"
    assert band_energy(frozen, sr, b_hz) < 0.01, "B arrived while frozen and must not be heard"
    assert band_energy(thawed, sr, b_hz) > 0.9, "after freeze goes off the held grains play"


def channel_correlation(tmp_path: Path, pan: float) -> tuple[np.ndarray, float]:
    score = base_score(density=120, duration=60, pan=pan)
    fill_slots(score, [noise(k) for k in range(8)])
    out = render(score, 1.2, tmp_path / f"pan{pan:g}")
    stereo = out.audio[int(0.2 * out.sample_rate) :]
    return stereo, float(np.corrcoef(stereo[:, 0], stereo[:, 1])[0, 1])


def test_pan_spread(tmp_path: Path) -> None:
    centre, corr0 = channel_correlation(tmp_path, 0.0)
    assert np.sqrt(np.mean(centre**2)) > 0.01
    assert np.array_equal(centre[:, 0], centre[:, 1]), "pan spread 0 must give identical channels"
    _, corr1 = channel_correlation(tmp_path, 1.0)
    # random equal-power pan per grain: E[cos sin] / E[cos^2] = (1/pi) / (1/2) ~ 0.64 for one grain
    assert corr1 < 0.8, f"pan spread 1: channel correlation {corr1:.3f}"


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_32_full_scale_voices_never_clip(tmp_path: Path, gain: float) -> None:
    """Gain 1 is the acceptance case; 2 is the top of the range."""
    score = base_score(voices=32, density=500, duration=1000, normalize=0, gain=gain, pan=0, shape=0.5,
                       reverb=0.5)
    fill_slots(score, [[1.0] * GRAIN] * 4 + [[-1.0] * GRAIN] * 4)
    score.add(0, "/param", "spread", 0.0)  # all from slot 0: every voice in phase, the worst case
    out = render(score, 1.5, tmp_path)
    peak = float(np.abs(out.audio).max())
    assert peak < 1.0, f"peak {peak:.6f} reaches 0 dBFS"
    assert peak > 0.9, f"peak {peak:.3f}: the test did not drive the limiter"


def test_replacing_slots_100_times_a_second_adds_no_clicks(tmp_path: Path) -> None:
    """One grain at a time from slot 0, which is rewritten every 10 ms alternating between two sines.

    Without double buffering a grain would jump from one material to the other mid-read (steps up to
    twice the amplitude). Bound: the output can only move as fast as the material, scaled by the
    output gain (gain 1, centre pan cos(pi/4)), plus the Hann envelope's own slope (pi/(2*len) per
    sample at full amplitude); 10% margin for interpolation.
    """
    a, b = sine(GRAIN, 8.0, 0.9), [-v for v in sine(GRAIN, 13.0, 0.9)]
    own_step = max(float(np.abs(np.diff(g)).max()) for g in (a, b))
    score = base_score(density=10, duration=80, spread=0, pan=0, normalize=0, gain=1, reverse=0)
    for k in range(150):
        score.add(10 * k, "/grain", 0, *(a if k % 2 else b))
    out = render(score, 1.6, tmp_path)
    sr = out.sample_rate
    mono = out.audio[:, 0]
    assert np.sqrt(np.mean(mono**2)) > 0.05
    pan_gain = math.cos(math.pi / 4)
    envelope_slope = 0.9 * math.pi / (2 * 0.080 * sr)
    # the slot is read at MODEL_SR / sr of a table sample per output sample
    bound = 1.1 * pan_gain * (own_step * MODEL_SR / sr + envelope_slope)
    largest = float(np.abs(np.diff(mono)).max())
    assert largest <= bound, f"largest output step {largest:.4f} > bound {bound:.4f}"


def test_malformed_messages_are_dropped_and_the_patch_plays_on(tmp_path: Path) -> None:
    score = base_score(density=60, duration=50)
    fill_slots(score, [noise(k) for k in range(8)])
    bad = [
        osc_bytes("/grain", 0, *([0.5] * 10)),  # wrong count
        osc_bytes("/grain", 99, *([0.5] * GRAIN)),  # slot out of range
        osc_bytes("/grain", "zero", *([0.5] * GRAIN)),  # wrong type
        osc_bytes("/grain", 1, *([float("nan")] * GRAIN)),  # not finite ([oscparse] would read 0)
        osc_bytes("/param", "gain", float("inf")),  # not finite
        osc_bytes("/param", "gain", float("-inf")),  # not finite
        b"\x00\x01garbage",  # not OSC at all
        osc_bytes("/model", 22050, 1024, 8),  # wrong count
        osc_bytes("/model", 22050.0, "big", 8, 8),  # wrong types
        osc_bytes("/param", 3, 4),  # wrong types
        osc_bytes("/param", "no_such_param", 1.0),  # unknown name
        osc_bytes("/param", "gain"),  # wrong count
        osc_bytes("/record", "yes"),  # wrong type
        osc_bytes("/ping", "x"),  # wrong type
        osc_bytes("/trigger", 1),  # arguments where none are taken
        osc_bytes("/no/such/address", 1.0),  # unknown address
        osc_bytes("/grainy", 0),  # unknown address
    ]
    for k, packet in enumerate(bad):
        score.add_raw(300 + 20 * k, packet)
    out = render(score, 1.5, tmp_path)
    sr = out.sample_rate
    after = out.audio[int(0.8 * sr) :]
    assert np.isfinite(out.audio).all()
    assert np.sqrt(np.mean(after**2)) > 0.01, "the patch stopped playing after malformed messages"
    # every malformed OSC message is counted, the non-OSC datagram too, before [oscparse] sees it
    assert out.log.count("grainbox: dropped") == len(bad), out.log
    assert out.log.count("grainbox: dropped non-finite float") == 3, out.log
    assert "grainbox: dropped not an OSC packet 9 bytes" in out.log and "oscparse" not in out.log


def test_a_flood_of_bad_packets_is_counted_exactly_in_a_few_log_lines(tmp_path: Path) -> None:
    """500 bad messages in one second: 20 lines, then one a second that says how many more."""
    score = base_score()
    for k in range(500):
        score.add_raw(100 + 2 * k, osc_bytes("/param", "no_such_param", float(k)))
    out = render(score, 2.5, tmp_path)
    lines = [line for line in out.log.splitlines() if line.startswith("grainbox: dropped")]
    summaries = [line for line in lines if " more in the last second" in line]
    assert len(lines) - len(summaries) == 20, out.log
    assert 1 <= len(summaries) <= 2, out.log
    more = sum(int(line.split()[2]) for line in summaries)
    assert 20 + more == 500, out.log
    assert summaries[-1].endswith("latest param unknown name"), summaries


def test_an_oversize_packet_is_dropped_before_it_is_parsed(tmp_path: Path) -> None:
    """A packet longer than any message the model allows never reaches the byte scan or [oscparse]."""
    score = base_score(density=60, duration=50)
    fill_slots(score, [noise(k) for k in range(8)])
    n = 12000  # 60 KB, packed by hand: liblo refuses to send a message this long (grain size is 1024)
    tags = (",i" + "f" * n).encode() + b"\0"
    big = b"/grain\0\0" + tags + bytes(-len(tags) % 4) + struct.pack(f">i{n}f", 0, *([0.25] * n))
    score.add_raw(200, big)
    score.add_raw(210, bytes(65000))  # zeros: not even OSC
    out = render(score, 1.0, tmp_path)
    assert f"grainbox: dropped oversize packet {len(big)} bytes" in out.log, out.log
    assert "grainbox: dropped oversize packet 65000 bytes" in out.log, out.log
    assert "oscparse" not in out.log, out.log  # [oscparse] never saw them
    assert np.sqrt(np.mean(out.audio[int(0.5 * out.sample_rate) :] ** 2)) > 0.01, "the patch went quiet"


def test_stealing_the_oldest_voice_does_not_click(tmp_path: Path) -> None:
    """2 voices asked for 10 overlapping grains: every grain steals, fading the old one out over 3 ms.

    Bound: at most the 2 voices plus one fading one move at once, each no faster than the material
    (scaled by pan and rate) plus its envelope (the 3 ms steal fade is the steepest: 1/(0.003*sr)).
    An unfaded steal would jump by up to the grain's amplitude (0.9 * 0.707 here).
    """
    grain = sine(GRAIN, 8.0, 0.9)
    own_step = float(np.abs(np.diff(grain)).max())
    # flat-top grains (20 ms attack) are at full level when the next-but-one grain steals them
    score = base_score(voices=2, density=50, duration=200, shape=0.5, spread=0, pan=0, normalize=0, gain=1)
    score.add(0, "/grain", 0, *grain)
    out = render(score, 1.2, tmp_path)
    sr, mono = out.sample_rate, out.audio[:, 0]
    assert np.sqrt(np.mean(mono**2)) > 0.05
    bound = 3 * math.cos(math.pi / 4) * (0.9 * own_step * MODEL_SR / sr + 0.9 / (0.003 * sr))
    largest = float(np.abs(np.diff(mono)).max())
    assert largest <= bound, f"largest output step {largest:.4f} > bound {bound:.4f}"


def test_scale_quantises_the_transposition(tmp_path: Path) -> None:
    """+6 semitones is not in C major: the nearest degree below (+5, a fourth) plays instead."""
    untouched = single_grain_pitch(tmp_path / "off", 6.0)
    score_ratio = untouched / (16 * MODEL_SR / GRAIN)
    assert abs(score_ratio / 2 ** (6 / 12) - 1) < 0.01, f"scale off: ratio {score_ratio:.4f}"
    quantised = single_grain_pitch(tmp_path / "major", 6.0, scale=2)
    ratio = quantised / (16 * MODEL_SR / GRAIN)
    assert abs(ratio / 2 ** (5 / 12) - 1) < 0.01, f"major: ratio {ratio:.4f}, expected a fourth"


def test_reverse_plays_the_grain_backwards(tmp_path: Path) -> None:
    """One grain of a decaying tone that spans the slot once: forwards it fades, backwards it swells."""
    n = np.arange(GRAIN)
    decaying = [float(v) for v in 0.9 * np.exp(-4 * n / GRAIN) * np.sin(2 * np.pi * 32 * n / GRAIN)]
    halves = {}
    for reverse in (0, 1):
        score = base_score(clocked=1, duration=1000 * GRAIN / MODEL_SR, reverse=reverse, shape=0.5,
                           spread=0, pan=0, normalize=0)
        score.add(0, "/grain", 0, *decaying)
        score.add(100, "/trigger")
        out = render(score, 0.3, tmp_path / f"r{reverse}")
        sr = out.sample_rate
        body = out.audio[int(0.1 * sr) : int(0.1 * sr) + 2 * GRAIN, 0]  # the grain: 1024 at half rate
        halves[reverse] = (float(np.sum(body[:GRAIN] ** 2)), float(np.sum(body[GRAIN:] ** 2)))
    assert halves[0][0] > 3 * halves[0][1], f"forwards should fade: {halves[0]}"
    assert halves[1][1] > 3 * halves[1][0], f"backwards should swell: {halves[1]}"


def test_lfo_square_on_gain_gates_the_output(tmp_path: Path) -> None:
    """LFO 1, square at 2 Hz, full depth on gain (target 15): 250 ms loud, 250 ms silent."""
    score = base_score(density=80, duration=40, gain=1, lfo1shape=2, lfo1rate=2, lfo1depth=1,
                       lfo1target=15)
    fill_slots(score, [noise(k) for k in range(8)])
    out = render(score, 2.0, tmp_path)
    sr, mono = out.sample_rate, out.audio[:, 0]
    rms = np.array([np.sqrt(np.mean(mono[int(t * sr) : int((t + 0.05) * sr)] ** 2))
                    for t in np.arange(0.2, 1.95, 0.05)])
    loud, quiet = np.percentile(rms, 90), np.percentile(rms, 10)
    assert loud > 0.02 and quiet < 0.1 * loud, f"no gating: 10th/90th percentile RMS {quiet:.4f}/{loud:.4f}"


@pytest.mark.parametrize(("model_sr", "grain"), [(44100, 1024), (22050, 512)])
def test_model_rate_and_grain_size_set_the_playback(tmp_path: Path, model_sr: int, grain: int) -> None:
    """/model resizes the slots and sets the rate: 16 cycles per grain play at 16 * sr / grain Hz."""
    f0 = single_grain_pitch(tmp_path, 0.0, model_sr=model_sr, grain=grain)
    expected = 16 * model_sr / grain
    assert abs(f0 / expected - 1) < 0.02, f"{f0:.1f} Hz, expected {expected:.1f}"


def test_a_key_transposes_from_the_root(tmp_path: Path) -> None:
    """Key 72 with root 60 (the default) plays an octave up, like the kslider or MIDI [notein] would."""
    f0 = single_grain_pitch(tmp_path / "plain", 0.0)
    up = single_grain_pitch(tmp_path / "key", 0.0, note=(72, 127))
    assert abs(up / f0 / 2 - 1) < 0.02, f"key 72: {f0:.1f} -> {up:.1f} Hz"


def test_intermittency_skips_grains_at_random(tmp_path: Path) -> None:
    """Intermittency 0.5 keeps about half of 80 grains/s (binomial: 140 grains, 3 sigma is about 25%)."""
    score = base_score(density=80, duration=5, pan=0, normalize=0, intermittency=0.5)
    fill_slots(score, [[0.8] * GRAIN] * 8)
    out = render(score, 2.0, tmp_path)
    sr = out.sample_rate
    found = onsets(out.audio[:, 0], sr)
    kept = np.count_nonzero(found > 0.25 * sr) / 1.75
    assert abs(kept / 40 - 1) < 0.25, f"{kept:.1f} grains/s kept of 80 with intermittency 0.5"
    assert np.diff(found).max() > 1.5 * sr / 80, "no grain was skipped"


def test_tone_filters_and_an_open_filter_is_bypassed(tmp_path: Path) -> None:
    """tone 1 with no resonance bypasses the filter (switched off to save CPU) and keeps the highs of
    noise grains; at 0.5 s tone 0.4 (about 750 Hz) switches it in and takes them out."""
    score = base_score(density=100, duration=40, tone=1, pan=0)
    fill_slots(score, [noise(k) for k in range(8)])
    score.add(500, "/param", "tone", 0.4)
    out = render(score, 1.2, tmp_path)
    sr, mono = out.sample_rate, out.audio[:, 0]

    def highs(part: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(part)) ** 2
        return float(spectrum[np.fft.rfftfreq(len(part), 1 / sr) > 4000].sum() / spectrum.sum())

    open_, closed = highs(mono[int(0.2 * sr) : int(0.5 * sr)]), highs(mono[int(0.7 * sr) :])
    assert open_ > 0.3, f"open filter: {open_:.3f} of the energy above 4 kHz"
    assert closed < 0.01 * open_, f"tone 0.4 left {closed:.4f} above 4 kHz"


FACTORY = Path(__file__).resolve().parents[2] / "models" / "factory.ts"


def measured_pitch(mono: np.ndarray, sr: int) -> float:
    """Median f0 (trainer/pitch.py, normalised autocorrelation) over the voiced 4096-sample chunks."""
    import torch

    from trainer.pitch import grain_pitch

    chunks = torch.from_numpy(mono[: len(mono) // 4096 * 4096].reshape(-1, 4096).astype(np.float64))
    f0, peak = grain_pitch(chunks, sample_rate=float(sr))
    voiced = peak >= 0.8
    assert voiced.sum() >= 3, f"the output is not periodic: autocorrelation peaks {peak.numpy().round(2)}"
    return float(f0[voiced].median())


def test_a_factory_anchor_keeps_its_pitch_through_the_patch_and_an_octave_up(tmp_path: Path) -> None:
    """The voice's pitch survives the granular engine: a pitched anchor of the factory model, decoded as
    the runtime would (the box's own loader), played as a steady cloud of grains at transpose 0 and +12,
    is heard at the decoded grain's own f0 and at twice it, within 50 cents."""
    import torch

    from runtime.artifact import load_model
    from trainer.metrics import pitch_per_grain

    model = load_model(FACTORY)
    with torch.inference_mode():
        grains = model.module.decode(model.anchors).numpy()
    f0, peak = pitch_per_grain(grains)
    pitched = np.flatnonzero((peak >= 0.9) & (f0 > 110) & (f0 < 700))  # +12 stays within the estimator
    assert len(pitched), f"no pitched anchor in the factory model: f0 {f0.round(0)}, peak {peak.round(2)}"
    anchor = int(pitched[np.argmax(np.sqrt((grains[pitched] ** 2).mean(1)))])  # the loudest of them
    heard = {}
    for transpose in (0.0, 12.0):
        # Random onsets (async 1): a metronomic stream would repeat exactly at its onset interval, a
        # period of its own that the autocorrelation would report instead of the grain's pitch.
        score = base_score(density=80, duration=46.4, transpose=transpose, pan=0, spread=0, reverse=0,
                           pitchjitter=0, normalize=1, tone=1, **{"async": 1})  # fmt: skip
        fill_slots(score, [[float(v) for v in grains[anchor]]])
        out = render(score, 1.5, tmp_path / f"t{transpose:g}")
        body = out.audio[int(0.3 * out.sample_rate) : int(1.4 * out.sample_rate), 0]
        assert np.sqrt(np.mean(body**2)) > 0.01
        heard[transpose] = measured_pitch(body, out.sample_rate)
    name = model.anchor_names[anchor]
    print(f"anchor {name!r}: decoded f0 {f0[anchor]:.2f} Hz; heard {heard[0.0]:.2f}, +12 {heard[12.0]:.2f}")
    assert abs(1200 * math.log2(heard[0.0] / f0[anchor])) < 50, (name, f0[anchor], heard)
    assert abs(1200 * math.log2(heard[12.0] / (2 * f0[anchor]))) < 50, (name, f0[anchor], heard)
