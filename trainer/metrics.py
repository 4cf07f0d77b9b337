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

N_FFT = 256
HOP = 64
LOG_EPS = 1e-5  # inside the log of LSD: -100 dB, far below any audible bin of a normalised grain
SNR_CAP_DB = 100.0
SC_FLOOR = 1e-12
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


def evaluate(x, x_hat) -> dict[str, float]:
    """All three metrics: {"sc": .., "lsd_db": .., "snr_db": ..}."""
    return {
        "sc": spectral_convergence(x, x_hat),
        "lsd_db": log_spectral_distance(x, x_hat),
        "snr_db": snr_db(x, x_hat),
    }
