"""Pitch of a grain by normalised autocorrelation: one definition for the metrics and for the model.

    f0_hz, peak = grain_pitch(x)        # x [B, G] -> f0 [B] in Hz, peak [B] in [-1, 1]

For each lag tau the normalised cross-correlation of the grain with itself shifted by tau, over the
samples the two copies share (the overlap), divided by the energy of each copy's part of it:

    r(tau) = sum_{n < G - tau} x[n] x[n + tau] / sqrt(sum_{n < G - tau} x[n]^2 * sum_{n >= tau} x[n]^2)

Dividing by the overlap's own energies, not by r(0), makes it unbiased: r(tau) of a periodic grain is 1 at
its period whatever the overlap length or a decaying envelope (the "normalised cross-correlation" of
Talkin's RAPT). Lags span F0_MIN_HZ to F0_MAX_HZ (50 Hz to 2 kHz: 441 down to 11 samples at 22,050 Hz).

A parabola through each local maximum and its two neighbours gives its lag to a fraction of a sample (at
1 kHz a whole sample is 80 cents) and its height between samples. The period is the first local maximum
whose height is within 10 % of the highest one: a periodic grain peaks as high at twice its period, and
the first such peak is the pitch, not an octave below it. Heights, not the values at whole lags, are
compared: a 1.7 kHz tone whose period falls between two samples peaks lower there than at two periods.
A grain with no local maximum in the range (silence, a monotone decay) gets f0 0 and peak 0.

Everything is plain torch on [B, G] tensors and TorchScript-compatible: the model's encoder computes the
same pitch of its input inside the exported artifact.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

F0_MIN_HZ = 50.0
F0_MAX_HZ = 2000.0
VOICED_PEAK = 0.8  # a source grain whose peak reaches this is voiced (has a pitch to keep)
KEPT_PEAK = 0.5  # a reconstruction must be at least this periodic to count as keeping it
KEPT_CENTS = 50.0  # and within this many cents of the source's f0


def grain_pitch(
    x: Tensor, sample_rate: float = 22050.0, f0_min: float = F0_MIN_HZ, f0_max: float = F0_MAX_HZ
) -> tuple[Tensor, Tensor]:
    """f0 in Hz [B] and the normalised autocorrelation peak [B] of grains x [B, G] (float32 or float64)."""
    g = x.shape[-1]
    lag_min = int(math.floor(sample_rate / f0_max))
    lag_max = min(int(math.ceil(sample_rate / f0_min)), g - 2)
    n_fft = 1
    while n_fft < 2 * g:
        n_fft *= 2
    spectrum = torch.fft.rfft(x, n=n_fft, dim=-1)
    cross = torch.fft.irfft(spectrum.real.pow(2) + spectrum.imag.pow(2), n=n_fft, dim=-1)
    lags = torch.arange(lag_min - 1, lag_max + 2, device=x.device)  # one extra each side for the parabola
    zero = torch.zeros_like(x[..., :1])
    cumulative = torch.cat([zero, torch.cumsum(x * x, dim=-1)], dim=-1)  # cumulative[k] = sum_{n<k} x^2
    head = cumulative.index_select(-1, g - lags)
    tail = cumulative[..., g : g + 1] - cumulative.index_select(-1, lags)
    r = cross.index_select(-1, lags) / torch.sqrt(head * tail + 1e-20)
    left, centre, right = r[..., :-2], r[..., 1:-1], r[..., 2:]
    is_peak = (centre >= left) & (centre > right)
    # The parabola through every lag and its neighbours: vertex offset and height (used at the peaks).
    curvature = (left - 2.0 * centre + right).clamp(max=-1e-12)
    shift = (0.5 * (left - right) / curvature).clamp(-0.5, 0.5)
    height = centre - 0.25 * (left - right) * shift
    heights = torch.where(is_peak, height, torch.full_like(height, -2.0))
    highest = heights.max(dim=-1, keepdim=True).values
    chosen = (is_peak & (heights >= 0.9 * highest)).to(torch.int64).argmax(dim=-1, keepdim=True)
    lag = (lag_min + chosen).to(x.dtype) + shift.gather(-1, chosen)
    found = highest > -2.0
    f0 = torch.where(found, sample_rate / lag, zero).squeeze(-1)
    peak = torch.where(found, heights.gather(-1, chosen).clamp(-1.0, 1.0), zero).squeeze(-1)
    return f0, peak


def cents(f0: Tensor, reference: Tensor) -> Tensor:
    """1200 log2(f0 / reference); inf where either is 0."""
    return 1200.0 * torch.log2(f0 / reference)
