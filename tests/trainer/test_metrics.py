"""The reference metrics: exact values on cases that can be checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer import metrics

G = 1024


def noise(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.8, 0.8, size=(n, G)).astype(np.float32)


def test_stft_shape_and_window_of_a_constant():
    # A constant through a periodic Hann window: bin 0 = sum(w) = N/2, bins +-1 = N/4, all else 0.
    # Reflect padding keeps a constant constant, so every frame is the same.
    s = metrics.stft_magnitude(np.ones(G))
    assert s.shape == (1, 129, 17)
    assert torch.allclose(s[0, 0], torch.full((17,), 128.0, dtype=torch.float64))
    assert torch.allclose(s[0, 1], torch.full((17,), 64.0, dtype=torch.float64))
    assert s[0, 2:].abs().max() < 1e-9


def test_stft_puts_a_bin_centred_sine_in_its_bin():
    k = 20  # bin 20 of a 256-point FFT
    t = np.arange(G)
    s = metrics.stft_magnitude(np.sin(2 * np.pi * k * t / metrics.N_FFT))
    assert int(s[0, :, 8].argmax()) == k


def test_perfect_reconstruction():
    x = noise()
    m = metrics.evaluate(x, x.copy())
    assert (m["sc"], m["lsd_db"], m["snr_db"]) == (0.0, 0.0, metrics.SNR_CAP_DB)
    assert m["voiced"] == 0 and m["pitch_kept"] is None  # uniform noise has no pitch
    assert m["flatness_ratio"] == 1.0


def test_silence_as_reconstruction_scores_sc_one():
    x = noise()
    assert metrics.spectral_convergence(x, np.zeros_like(x)) == pytest.approx(1.0, abs=1e-12)
    assert metrics.snr_db(x, np.zeros_like(x)) == pytest.approx(0.0, abs=1e-9)  # error energy = signal


def test_half_amplitude_is_six_db_everywhere():
    x = noise()
    m = metrics.evaluate(x, 0.5 * x)
    assert m["sc"] == pytest.approx(0.5, abs=1e-9)  # |S - S/2| = |S|/2
    assert m["snr_db"] == pytest.approx(10 * math.log10(4), abs=1e-9)  # error = x/2: energy ratio 4
    assert m["lsd_db"] == pytest.approx(20 * math.log10(2), abs=0.05)  # 6.02 dB in every loud bin


def test_phase_inversion_is_invisible_to_spectra_but_not_to_snr():
    x = noise()
    m = metrics.evaluate(x, -x)
    assert m["sc"] == pytest.approx(0.0, abs=1e-12)
    assert m["lsd_db"] == pytest.approx(0.0, abs=1e-9)
    assert m["snr_db"] == pytest.approx(10 * math.log10(1 / 4), abs=1e-9)  # error = 2x


def test_lsd_of_a_constant_against_silence_by_hand():
    # Only bins 0 and 1 differ (128 and 64 against 0); the other 127 bins are 1e-5 on both sides.
    expected = math.sqrt(
        ((20 * math.log10(128 + 1e-5) + 100) ** 2 + (20 * math.log10(64 + 1e-5) + 100) ** 2) / 129
    )
    assert metrics.log_spectral_distance(np.ones(G), np.zeros(G)) == pytest.approx(expected, rel=1e-6)


def test_snr_of_a_sine_plus_offset_by_hand():
    t = np.arange(G)
    x = 0.5 * np.sin(2 * np.pi * 8 * t / G)  # whole periods: energy G * 0.5^2 / 2
    expected = 10 * math.log10((0.5**2 / 2) / 0.01**2)
    assert metrics.snr_db(x, x + 0.01) == pytest.approx(expected, abs=1e-9)


def test_silent_targets_never_give_inf_or_nan():
    z = np.zeros((2, G))
    assert metrics.snr_db(z, z) == metrics.SNR_CAP_DB
    assert metrics.spectral_convergence(z, z) == 0.0
    bad = metrics.evaluate(z, noise(2))
    assert all(math.isfinite(v) for v in bad.values() if v is not None)
    assert bad["pitch_kept"] is None  # no voiced source: nothing to keep, not 0 % kept
    assert bad["snr_db"] == -metrics.SNR_CAP_DB


def test_means_over_grains_and_input_kinds_agree():
    x = noise(3)
    x_hat = x * np.array([[1.0], [0.5], [0.0]], dtype=np.float32)
    per = metrics.spectral_convergence_per_grain(x, x_hat)
    assert per == pytest.approx([0.0, 0.5, 1.0], abs=1e-9)
    assert metrics.spectral_convergence(x, x_hat) == pytest.approx(0.5, abs=1e-9)
    # torch tensors, float32 and a single [G] grain give the same figures as numpy float64
    assert metrics.evaluate(torch.from_numpy(x), torch.from_numpy(x_hat)) == pytest.approx(
        metrics.evaluate(x.astype(np.float64), x_hat.astype(np.float64))
    )
    assert metrics.evaluate(x[1], x_hat[1])["sc"] == pytest.approx(0.5, abs=1e-9)


def test_results_do_not_depend_on_chunking(monkeypatch):
    x, x_hat = noise(10), noise(10, seed=1)
    whole = metrics.evaluate(x, x_hat)
    monkeypatch.setattr(metrics, "_CHUNK", 3)
    chunked = metrics.evaluate(x, x_hat)
    assert chunked.keys() == whole.keys()
    for key, value in whole.items():
        assert chunked[key] == (value if value is None else pytest.approx(value, rel=1e-12)), key


def test_mismatched_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match=r"same shape.*\(2, 1024\).*\(3, 1024\)"):
        metrics.evaluate(noise(2), noise(3))
    with pytest.raises(ValueError, match="shaped"):
        metrics.snr_db(np.zeros((2, 2, G)), np.zeros((2, 2, G)))


# ---------------------------------------------------------------------------------------------------------
# What a musician hears: pitch kept and spectral flatness


SR = 22050.0


def tone(f0: float, partials: int = 1, phase: float = 0.3, decay: float = 0.0) -> np.ndarray:
    """A harmonic tone of `partials` partials at 1/k amplitudes (a band-limited saw), optionally decaying."""
    t = np.arange(G) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t + k * phase) / k for k in range(1, partials + 1) if k * f0 < SR / 2)
    return (0.5 * x * np.exp(-decay * t)).astype(np.float64)


@pytest.mark.parametrize("f0", [55.0, 110.0, 261.63, 440.0, 987.77, 1760.0])
@pytest.mark.parametrize("partials", [1, 12])
def test_pitch_of_sines_and_harmonic_tones_within_five_cents(f0, partials):
    got, peak = metrics.pitch_per_grain(tone(f0, partials, decay=8.0))
    assert abs(1200 * math.log2(got[0] / f0)) < 5.0
    assert peak[0] > 0.9  # voiced (>= 0.8) with room: between-sample periods peak a little lower


def test_a_tone_with_a_strong_second_partial_is_not_read_an_octave_low_or_high():
    t = np.arange(G) / SR
    x = 0.3 * np.sin(2 * np.pi * 200 * t) + 0.6 * np.sin(2 * np.pi * 400 * t)
    got, _ = metrics.pitch_per_grain(x)
    assert abs(1200 * math.log2(got[0] / 200.0)) < 5.0


def test_noise_and_silence_are_unvoiced():
    _, peak = metrics.pitch_per_grain(noise(8))
    assert peak.max() < 0.5
    f0, peak = metrics.pitch_per_grain(np.zeros((2, G)))
    assert (f0 == 0).all() and (peak == 0).all()


def test_pitch_kept_counts_voiced_sources_and_kept_reconstructions():
    sources = np.stack([tone(220, 8), tone(440, 8), tone(330, 8), noise(1)[0]])
    recons = np.stack([
        tone(220 * 2 ** (30 / 1200), 3),  # 30 cents sharp, other timbre: kept
        tone(440 * 2 ** (80 / 1200), 8),  # 80 cents sharp: not kept
        noise(1, seed=5)[0],  # noise where a tone was: not kept
        tone(500, 8),  # a tone where the source was noise: not counted
    ])  # fmt: skip
    voiced, kept = metrics.pitch_kept_per_grain(sources, recons)
    assert voiced.tolist() == [True, True, True, False]
    assert kept.tolist() == [True, False, False, False]
    m = metrics.evaluate(sources, recons)
    assert m["voiced"] == 3 and m["pitch_kept"] == pytest.approx(1 / 3)


def test_true_pitch_kept_against_the_note_played():
    recons = np.stack([tone(440.0, 5), tone(440.0 * 2 ** (60 / 1200), 5), noise(1)[0]])
    assert metrics.true_pitch_kept_per_grain(recons, [69.0, 69.0, 69.0]).tolist() == [True, False, False]
    m = metrics.evaluate(recons, recons, pitch_midi=[69.0, 69.0, np.nan])  # NaN: a grain with no pitch
    assert m["pitched"] == 2 and m["true_pitch_kept"] == pytest.approx(0.5)


def test_spectral_flatness_of_white_noise_a_sine_and_silence():
    white = np.random.default_rng(0).standard_normal((200, G))
    # White noise: each power bin is exponential, E[log P] = log E[P] - Euler's gamma: flatness -> e^-0.577
    assert np.median(metrics.spectral_flatness_per_grain(white)) == pytest.approx(math.exp(-0.5772), rel=0.03)
    assert metrics.spectral_flatness_per_grain(tone(440.0))[0] < 1e-6
    assert metrics.spectral_flatness_per_grain(tone(110.0, 40))[0] < 1e-3
    assert metrics.spectral_flatness_per_grain(np.zeros(G))[0] == pytest.approx(1.0)


def test_flatness_ratio_says_how_much_noisier_the_reconstruction_is():
    sources = np.stack([tone(220.0 + 10 * i, 10) for i in range(5)])
    m = metrics.evaluate(sources, noise(5))
    assert m["flatness_ratio"] > 1e3
    assert m["flatness_ratio"] == pytest.approx(m["flatness_recon"] / m["flatness_source"])
