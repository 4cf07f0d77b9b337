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
    assert m == {"sc": 0.0, "lsd_db": 0.0, "snr_db": metrics.SNR_CAP_DB}


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
    assert all(math.isfinite(v) for v in bad.values())
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
    assert metrics.evaluate(x, x_hat) == pytest.approx(whole, rel=1e-12)


def test_mismatched_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match=r"same shape.*\(2, 1024\).*\(3, 1024\)"):
        metrics.evaluate(noise(2), noise(3))
    with pytest.raises(ValueError, match="shaped"):
        metrics.snr_db(np.zeros((2, 2, G)), np.zeros((2, 2, G)))
