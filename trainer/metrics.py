"""Reference metrics for grain reconstructions: the exact definitions every benchmark and report uses.

All three compare target grains x with reconstructions x^ (numpy arrays or torch tensors, shaped [N, G]
or [G]) and return one python float, the mean over grains. Computation is in float64, in chunks, so a
figure does not depend on the input dtype or batch size and 100k grains fit in bounded memory.

  STFT   n_fft 256, hop 64, periodic Hann window, centred with reflect padding; magnitude |S|.
         A 1024-sample grain gives 129 bins x 17 frames.
  SC     spectral convergence ||S - S^||_F / ||S||_F per grain (0 = perfect, 1 = predicting silence).
  LSD    log-spectral distance in dB: per frame sqrt(mean over bins of
         (20 log10(|S| + 1e-5) - 20 log10(|S^| + 1e-5))^2), averaged over frames, then grains.
  SNR    10 log10(sum x^2 / sum (x - x^)^2) per grain, in dB, clipped to +-SNR_CAP_DB (see below).

What a musician hears, which SC and LSD can miss (a noise band with the right envelope scores well on LSD
and has no pitch at all):
  pitch kept   f0 of both grains by normalised autocorrelation (trainer/pitch.py: 50 Hz..2 kHz, parabolic
               peak). A source grain is voiced when its peak is >= 0.8; its pitch is kept when the
               reconstruction's own peak is >= 0.5 and its f0 is within 50 cents of the source's. Reported
               as the share of voiced grains kept, with the number voiced.
  flatness     spectral flatness of each grain: geometric over arithmetic mean of its Hann-windowed
               1024-point power spectrum (1 for white noise, near 0 for a few partials); the median over
               grains for sources and reconstructions, and recon / source (1 is right, 20 is "noisier").
  true pitch   (synth set, where every grain knows its pitch_midi) the share of pitched grains whose
               reconstruction has peak >= 0.5 and f0 within 50 cents of the note played.

Edge cases, defined so that no grain yields inf or nan:
  - SNR of a perfect reconstruction is +inf; we cap each grain at SNR_CAP_DB = 100 dB (float32 round-off
    alone sits near 140 dB, so 100 dB means "exact" for audio). A silent target reconstructed as silence
    counts as perfect (+cap); a silent target with any error as -cap.
  - SC of a silent target: ||S||_F is floored at SC_FLOOR, so silence reconstructed as silence gives 0 and
    anything else a large number (the error's norm over the floor), never a division by zero.
"""

from __future__ import annotations

import numpy as np
import torch

from trainer.pitch import KEPT_CENTS, KEPT_PEAK, VOICED_PEAK, cents, grain_pitch

N_FFT = 256
HOP = 64
LOG_EPS = 1e-5  # inside the log of LSD: -100 dB, far below any audible bin of a normalised grain
SNR_CAP_DB = 100.0
SC_FLOOR = 1e-12
FLATNESS_EPS = 1e-12  # added to every power bin: silence has flatness 1, and log never sees 0
_CHUNK = 2048  # grains per STFT batch: ~70 MB of float64 spectra at G = 1024


def _as_grains(x, name: str) -> torch.Tensor:
    """Any array-like [N, G] or [G] as a float64 CPU tensor [N, G]."""
    if isinstance(x, torch.Tensor):
        t = x.detach().to(device="cpu", dtype=torch.float64)
    else:  # a float64 copy: grains are often read-only memmaps, which torch.from_numpy warns about
        t = torch.from_numpy(np.array(x, dtype=np.float64))
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2:
        raise ValueError(f"{name} must be shaped [N, G] or [G], got shape {tuple(t.shape)}")
    if t.shape[1] < N_FFT // 2 + 1:
        raise ValueError(f"{name} grains have {t.shape[1]} samples; the STFT needs at least {N_FFT // 2 + 1}")
    return t


def _pair(x, x_hat) -> tuple[torch.Tensor, torch.Tensor]:
    x, x_hat = _as_grains(x, "x"), _as_grains(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise ValueError(
            f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("no grains to compare (N = 0)")
    return x, x_hat


def stft_magnitude(x) -> torch.Tensor:
    """|STFT| of grains: float64 tensor [N, 129, frames] (17 frames for 1024-sample grains)."""
    x = _as_grains(x, "x")
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    spec = torch.stft(
        x, n_fft=N_FFT, hop_length=HOP, window=window, center=True, pad_mode="reflect",
        return_complex=True,
    )
    return spec.abs()


def _chunks(x: torch.Tensor, x_hat: torch.Tensor):
    for i in range(0, x.shape[0], _CHUNK):
        yield x[i : i + _CHUNK], x_hat[i : i + _CHUNK]


def spectral_convergence_per_grain(x, x_hat) -> np.ndarray:
    """||S - S^||_F / ||S||_F for each grain: float64 [N]."""
    x, x_hat = _pair(x, x_hat)
    out = []
    for a, b in _chunks(x, x_hat):
        s, s_hat = stft_magnitude(a), stft_magnitude(b)
        num = torch.linalg.vector_norm(s - s_hat, dim=(1, 2))
        den = torch.linalg.vector_norm(s, dim=(1, 2)).clamp_min(SC_FLOOR)
        out.append((num / den).numpy())
    return np.concatenate(out)


def log_spectral_distance_per_grain(x, x_hat) -> np.ndarray:
    """LSD of each grain in dB (frame LSDs averaged over the grain's frames): float64 [N]."""
    x, x_hat = _pair(x, x_hat)
    out = []
    for a, b in _chunks(x, x_hat):
        db = 20.0 * torch.log10(stft_magnitude(a) + LOG_EPS)
        db_hat = 20.0 * torch.log10(stft_magnitude(b) + LOG_EPS)
        per_frame = (db - db_hat).pow(2).mean(dim=1).sqrt()  # mean over bins -> [n, frames]
        out.append(per_frame.mean(dim=1).numpy())
    return np.concatenate(out)


def snr_db_per_grain(x, x_hat) -> np.ndarray:
    """10 log10(signal energy / error energy) of each grain in dB, clipped to +-SNR_CAP_DB: float64 [N]."""
    x, x_hat = _pair(x, x_hat)
    signal = x.pow(2).sum(dim=1).numpy()
    error = (x - x_hat).pow(2).sum(dim=1).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = 10.0 * np.log10(signal / error)
    snr[error == 0] = SNR_CAP_DB  # exact, including silence reconstructed as silence
    return np.clip(snr, -SNR_CAP_DB, SNR_CAP_DB)


def spectral_convergence(x, x_hat) -> float:
    """Spectral convergence averaged over grains (0 is perfect, 1 is what silence scores)."""
    return float(spectral_convergence_per_grain(x, x_hat).mean())


def log_spectral_distance(x, x_hat) -> float:
    """Log-spectral distance in dB, averaged over frames and grains (0 is perfect)."""
    return float(log_spectral_distance_per_grain(x, x_hat).mean())


def snr_db(x, x_hat) -> float:
    """Signal-to-noise ratio in dB averaged over grains; a perfect grain counts as SNR_CAP_DB."""
    return float(snr_db_per_grain(x, x_hat).mean())


def pitch_per_grain(x) -> tuple[np.ndarray, np.ndarray]:
    """f0 in Hz and autocorrelation peak of each grain (trainer/pitch.py): two float64 [N]."""
    x = _as_grains(x, "x")
    f0, peak = zip(*(grain_pitch(c) for c in x.split(_CHUNK)), strict=True)
    return torch.cat(f0).numpy(), torch.cat(peak).numpy()


def pitch_kept_per_grain(x, x_hat) -> tuple[np.ndarray, np.ndarray]:
    """(voiced, kept) booleans [N]: which sources are voiced, and which of those keep their pitch."""
    x, x_hat = _pair(x, x_hat)
    f0, peak = pitch_per_grain(x)
    f0_hat, peak_hat = pitch_per_grain(x_hat)
    voiced = peak >= VOICED_PEAK
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.abs(cents(torch.from_numpy(f0_hat), torch.from_numpy(f0)).numpy())
    kept = voiced & (peak_hat >= KEPT_PEAK) & (off <= KEPT_CENTS)
    return voiced, kept


def true_pitch_kept_per_grain(x_hat, pitch_midi) -> np.ndarray:
    """Which reconstructions have peak >= 0.5 and f0 within 50 cents of the given MIDI pitch: bool [N]."""
    f0_hat, peak_hat = pitch_per_grain(x_hat)
    target = 440.0 * 2.0 ** ((np.asarray(pitch_midi, dtype=np.float64) - 69.0) / 12.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.abs(1200.0 * np.log2(f0_hat / target))
    return (peak_hat >= KEPT_PEAK) & (off <= KEPT_CENTS)


def spectral_flatness_per_grain(x) -> np.ndarray:
    """Geometric / arithmetic mean of each grain's Hann-windowed power spectrum: float64 [N] in (0, 1]."""
    x = _as_grains(x, "x")
    window = torch.hann_window(x.shape[1], periodic=True, dtype=torch.float64)
    out = []
    for c in x.split(_CHUNK):
        power = torch.fft.rfft(c * window, dim=1).abs().pow(2) + FLATNESS_EPS
        out.append((power.log().mean(dim=1).exp() / power.mean(dim=1)).numpy())
    return np.concatenate(out)


def musical(x, x_hat, pitch_midi=None) -> dict[str, float | int | None]:
    """Pitch kept and spectral flatness; given each grain's pitch_midi [N], also the true pitch kept over
    the grains whose pitch_midi is finite (NaN marks a grain with no pitch, such as noise)."""
    voiced, kept = pitch_kept_per_grain(x, x_hat)
    flat, flat_hat = np.median(spectral_flatness_per_grain(x)), np.median(spectral_flatness_per_grain(x_hat))
    out: dict[str, float | int | None] = {
        "pitch_kept": float(kept.sum() / voiced.sum()) if voiced.any() else None,
        "voiced": int(voiced.sum()),
        "flatness_source": float(flat),
        "flatness_recon": float(flat_hat),
        "flatness_ratio": float(flat_hat / flat),
    }
    if pitch_midi is not None:
        pitch_midi = np.asarray(pitch_midi, dtype=np.float64)
        pitched = np.isfinite(pitch_midi)
        x_hat_pitched = _as_grains(x_hat, "x_hat")[torch.from_numpy(pitched)]
        true_kept = true_pitch_kept_per_grain(x_hat_pitched, pitch_midi[pitched]) if pitched.any() else []
        out["true_pitch_kept"] = float(np.mean(true_kept)) if pitched.any() else None
        out["pitched"] = int(pitched.sum())
    return out


def evaluate(x, x_hat, pitch_midi=None) -> dict[str, float | int | None]:
    """Every metric: "sc", "lsd_db", "snr_db" and musical()'s "pitch_kept", "voiced", "flatness_source",
    "flatness_recon", "flatness_ratio" (and "true_pitch_kept", "pitched" when pitch_midi is given)."""
    out: dict[str, float | int | None] = {
        "sc": spectral_convergence(x, x_hat),
        "lsd_db": log_spectral_distance(x, x_hat),
        "snr_db": snr_db(x, x_hat),
    }
    return out | musical(x, x_hat, pitch_midi)
