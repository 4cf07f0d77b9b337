"""The built-in synth data set: deterministic, non-silent, varied, and each part doing what its name says."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import GRAIN_SIZE, SAMPLE_RATE
from trainer.synth import SHAPE_NAMES, SYNTH_PARAM_NAMES, render_grains, render_synth_grains

SILENCE_GATE_DBFS = -45.0  # the audio pipeline's gate: synth grains must all pass it


@pytest.fixture(scope="module")
def rendered():
    return render_synth_grains(3000, seed=7)


def patch(**overrides) -> dict[str, np.ndarray]:
    """One grain's parameters: an open, dry, sustained note; override what the test is about."""
    p = dict(shape=SHAPE_NAMES.index("saw"), pitch_midi=57.0, cutoff_hz=9000.0, resonance=0.0,
             attack_s=0.002, decay_s=1.0, sustain=1.0, onset_s=0.3, blend=0.0, noise=0.0, fm_ratio=0.0,
             fm_index=0.0, level=0.8)
    p.update(overrides)
    return {k: np.array([v]) for k, v in p.items()}


def spectrum(grain: np.ndarray, pad: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    mag = np.abs(np.fft.rfft(grain * np.hanning(len(grain)), pad))
    return np.fft.rfftfreq(pad, 1 / SAMPLE_RATE), mag


def level_at(freqs, mag, hz: float) -> float:
    near = np.abs(freqs - hz) < 15
    return float(mag[near].max())


def test_shapes_types_and_range(rendered):
    grains, params = rendered
    assert grains.shape == (3000, GRAIN_SIZE) and grains.dtype == np.float32
    assert np.isfinite(grains).all() and np.abs(grains).max() <= 1.0
    assert tuple(params) == SYNTH_PARAM_NAMES
    assert all(len(v) == 3000 for v in params.values())
    assert set(np.unique(params["shape"])) == set(range(len(SHAPE_NAMES)))


def test_same_seed_same_grains_other_seed_other_grains(rendered):
    grains, params = rendered
    again, params_again = render_synth_grains(3000, seed=7)
    assert np.array_equal(grains, again)
    assert all(np.array_equal(params[k], params_again[k]) for k in SYNTH_PARAM_NAMES)
    assert not np.array_equal(grains[:10], render_synth_grains(10, seed=8)[0])


def test_every_grain_passes_the_silence_gate(rendered):
    grains, _ = rendered
    rms_db = 20 * np.log10(np.sqrt(np.mean(grains.astype(np.float64) ** 2, axis=1)))
    assert rms_db.min() > SILENCE_GATE_DBFS + 10


def test_grains_are_varied(rendered):
    grains, params = rendered
    # no two grains alike, and brightness (spectral centroid) spans a wide range
    assert len(np.unique(grains, axis=0)) == len(grains)
    mag = np.abs(np.fft.rfft(grains, axis=1))
    centroid = (mag * np.fft.rfftfreq(GRAIN_SIZE, 1 / SAMPLE_RATE)).sum(1) / mag.sum(1)
    assert np.percentile(centroid, 90) > 3 * np.percentile(centroid, 10)
    # pitch covers four octaves
    assert params["pitch_midi"].min() < 40 and params["pitch_midi"].max() > 80


def test_sine_is_at_its_pitch():
    grain = render_grains(patch(shape=SHAPE_NAMES.index("sine"), pitch_midi=69.0))[0]
    freqs, mag = spectrum(grain)
    assert abs(freqs[mag.argmax()] - 440.0) < 2.0


def test_saw_and_square_have_their_harmonics():
    f0 = 440.0 * 2 ** ((57 - 69) / 12)  # 220 Hz
    freqs, mag = spectrum(render_grains(patch())[0])
    ratio = level_at(freqs, mag, f0) / level_at(freqs, mag, 2 * f0)
    assert ratio == pytest.approx(2.0, rel=0.15)  # saw: harmonic k at 1/k
    freqs, mag = spectrum(render_grains(patch(shape=SHAPE_NAMES.index("square")))[0])
    assert level_at(freqs, mag, f0) / level_at(freqs, mag, 3 * f0) == pytest.approx(3.0, rel=0.15)
    assert level_at(freqs, mag, 2 * f0) < 0.05 * level_at(freqs, mag, f0)  # no even harmonics


def test_cutoff_darkens_and_resonance_peaks_at_the_cutoff():
    def centroid(grain):
        freqs, mag = spectrum(grain, pad=GRAIN_SIZE)
        return (freqs * mag).sum() / mag.sum()

    bright = render_grains(patch(cutoff_hz=8000.0))[0]
    dark = render_grains(patch(cutoff_hz=400.0))[0]
    assert centroid(dark) < 0.5 * centroid(bright)

    many = {k: np.repeat(v, 64) for k, v in patch(shape=SHAPE_NAMES.index("noise"), cutoff_hz=2000.0,
                                                 resonance=0.9).items()}
    mag = np.abs(np.fft.rfft(render_grains(many, rng=1), axis=1)).mean(0)  # average out the noise
    freqs = np.fft.rfftfreq(GRAIN_SIZE, 1 / SAMPLE_RATE)
    assert abs(freqs[mag.argmax()] - 2000.0) < 200.0


def test_envelope_starts_the_note_inside_the_grain_and_decays():
    onset = -0.01  # the note starts 10 ms (220 samples) into the grain
    grain = render_grains(patch(onset_s=onset, attack_s=0.005))[0]
    start = round(-onset * SAMPLE_RATE)
    assert np.all(grain[: start - 1] == 0.0)
    assert np.abs(grain[start + 200 :]).max() > 0.5
    decaying = render_grains(patch(onset_s=0.05, decay_s=0.02, sustain=0.0))[0]
    assert np.abs(decaying[-256:]).max() < 0.5 * np.abs(decaying[:256]).max()


def test_mix_blends_saw_into_square():
    f0 = 440.0 * 2 ** ((57 - 69) / 12)
    even = []
    for blend in (0.0, 0.5, 1.0):
        freqs, mag = spectrum(render_grains(patch(shape=SHAPE_NAMES.index("mix"), blend=blend))[0])
        even.append(level_at(freqs, mag, 2 * f0) / level_at(freqs, mag, f0))
    assert even[0] > even[1] > even[2]  # the square has no 2nd harmonic


def test_bad_requests_are_clear_errors():
    with pytest.raises(ValueError, match="at least 1"):
        render_synth_grains(0)
    p = patch()
    del p["cutoff_hz"]
    with pytest.raises(ValueError, match="missing: cutoff_hz"):
        render_grains(p)


def test_fm_tone_is_harmonic_at_its_key_and_brighter_with_a_higher_index():
    from trainer.metrics import pitch_per_grain, spectral_flatness_per_grain

    f0 = 220.0
    soft = render_grains(patch(shape=SHAPE_NAMES.index("fm"), pitch_midi=57.0, fm_ratio=2.0, fm_index=0.5))[0]
    hard = render_grains(patch(shape=SHAPE_NAMES.index("fm"), pitch_midi=57.0, fm_ratio=2.0, fm_index=5.0))[0]
    for grain in (soft, hard):
        heard, peak = pitch_per_grain(grain)
        assert abs(1200 * np.log2(heard[0] / f0)) < 10 and peak[0] > 0.9
        assert spectral_flatness_per_grain(grain)[0] < 0.01  # partials, not noise

    def centroid(grain):
        freqs, mag = spectrum(grain)
        return float((freqs * mag**2).sum() / (mag**2).sum())

    assert centroid(hard) > 2 * centroid(soft)


def test_perc_is_a_noise_hit_that_dies_within_the_grain():
    from trainer.metrics import pitch_per_grain

    hit = render_grains(patch(shape=SHAPE_NAMES.index("perc"), attack_s=0.001, decay_s=0.01, sustain=0.0,
                              onset_s=0.0, cutoff_hz=6000.0))[0]  # fmt: skip
    energy = hit.astype(np.float64) ** 2
    assert energy[:256].sum() > 20 * energy[-256:].sum()  # 10 ms decay: gone by the grain's end
    assert pitch_per_grain(hit)[1][0] < 0.8  # unvoiced


def test_true_pitch_is_nan_for_the_unpitched_shapes(rendered):
    from trainer.synth import UNPITCHED_SHAPES, true_pitch_midi

    _, params = rendered
    truth = true_pitch_midi(params)
    unpitched = np.isin(params["shape"], [SHAPE_NAMES.index(s) for s in UNPITCHED_SHAPES])
    assert np.isnan(truth[unpitched]).all()
    assert np.array_equal(truth[~unpitched], params["pitch_midi"][~unpitched])
