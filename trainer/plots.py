"""Figures of a Grain-VAE run: loss curves, reconstructions, the latent space, traversals.

Each function takes plain arrays and writes one PNG (matplotlib's Agg backend, no display needed), so the
figures can be redrawn from a run folder at any time. trainer/grain_report.py decides what to draw when.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from trainer import SAMPLE_RATE  # noqa: E402

SPEC_FFT, SPEC_HOP = 256, 32


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")  # rename into place: a viewer never sees half a PNG
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def spectrogram_db(grain: np.ndarray) -> np.ndarray:
    """Magnitude spectrogram in dB [bins, frames] (Hann 256, hop 32), floored at -100 dB."""
    window = np.hanning(SPEC_FFT)
    padded = np.pad(grain, SPEC_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, SPEC_FFT)[::SPEC_HOP] * window
    mag = np.abs(np.fft.rfft(frames, axis=-1)).T
    return 20 * np.log10(mag + 1e-5)


def loss_curves(history: Sequence[dict], path: Path) -> Path:
    """Reconstruction, spectral, KL (with beta) and active units against steps, train and validation."""
    steps = [h["step"] for h in history]
    keys = [k for k in ("recon", "spectral", "kl") if any(k in h["val"] for h in history)]
    fig, axs = plt.subplots(1, len(keys) + 1, figsize=(4.2 * (len(keys) + 1), 3.4))
    for ax, key in zip(axs, keys, strict=False):
        ax.plot(steps, [h["train"].get(key, np.nan) for h in history], label="train")
        ax.plot(steps, [h["val"].get(key, np.nan) for h in history], label="validation")
        ax.set(
            title={
                "recon": "reconstruction (Gaussian NLL, nats)",
                "spectral": "multi-res STFT",
                "kl": "KL (nats) and beta",
            }[key],
            xlabel="step",
        )
        if key == "kl":
            twin = ax.twinx()
            twin.plot(steps, [h["beta"] for h in history], "k--", lw=1, label="beta")
            twin.set_ylabel("beta")
        ax.legend(loc="upper right", fontsize=8)
    ax = axs[-1]
    ax.plot(steps, [h["val"].get("active_units", np.nan) for h in history], "o-", ms=3)
    ax.set(title="active units (Var[mu] > 0.01)", xlabel="step")
    kl_dims = history[-1]["val"].get("kl_per_dim") if history else None
    if kl_dims:
        inset = ax.inset_axes([0.45, 0.12, 0.5, 0.4])
        inset.bar(range(len(kl_dims)), kl_dims, color="tab:orange")
        inset.set_title("KL per dim (last)", fontsize=7)
        inset.tick_params(labelsize=6)
    fig.tight_layout()
    return _save(fig, path)


def reconstructions(
    originals: np.ndarray, recons: np.ndarray, path: Path, titles: Sequence[str] = ()
) -> Path:
    """One row per grain: original and reconstruction waveforms, then their spectrograms side by side."""
    n = len(originals)
    fig, axs = plt.subplots(
        n, 3, figsize=(13, 1.9 * n), squeeze=False, gridspec_kw={"width_ratios": [2, 1, 1]}
    )
    t_ms = np.arange(originals.shape[1]) / SAMPLE_RATE * 1000
    extent = [0, t_ms[-1], 0, SAMPLE_RATE / 2000]
    for i in range(n):
        axs[i, 0].plot(t_ms, originals[i], lw=0.8, label="original")
        axs[i, 0].plot(t_ms, recons[i], lw=0.8, alpha=0.8, label="reconstruction")
        axs[i, 0].set_ylim(-1.05, 1.05)
        axs[i, 0].set_ylabel(titles[i] if i < len(titles) else f"grain {i}", fontsize=7)
        for j, grain in ((1, originals[i]), (2, recons[i])):
            axs[i, j].imshow(
                spectrogram_db(grain),
                origin="lower",
                aspect="auto",
                extent=extent,
                vmin=-80,
                vmax=20,
                cmap="magma",
            )
    axs[0, 0].legend(fontsize=7, loc="upper right")
    axs[0, 0].set_title("waveform")
    axs[0, 1].set_title("original (kHz vs ms)")
    axs[0, 2].set_title("reconstruction")
    axs[-1, 0].set_xlabel("ms")
    fig.tight_layout()
    return _save(fig, path)


def latent_scatter(
    coords: np.ndarray,
    path: Path,
    colours: dict[str, np.ndarray],
    categories: dict[str, Sequence[str]] | None = None,
) -> Path:
    """The first two latent principal coordinates, one panel per colouring (a synth parameter or the source).

    `categories[name]` gives labels for an integer colouring (shape names, source files) and draws a legend.
    """
    categories = categories or {}
    names = list(colours) or ["grain"]
    fig, axs = plt.subplots(1, len(names), figsize=(4.4 * len(names), 4), squeeze=False)
    for ax, name in zip(axs[0], names, strict=True):
        c = colours.get(name)
        if name in categories and c is not None:
            labels = categories[name]
            for idx in np.unique(c):
                sel = c == idx
                label = labels[int(idx)] if int(idx) < len(labels) else str(idx)
                ax.scatter(coords[sel, 0], coords[sel, 1], s=4, label=label)
            if len(np.unique(c)) <= 12:
                ax.legend(fontsize=6, markerscale=2)
        else:
            sc = ax.scatter(coords[:, 0], coords[:, 1], s=4, c=c, cmap="viridis")
            if c is not None:
                fig.colorbar(sc, ax=ax, fraction=0.046)
        ax.set(title=f"coloured by {name}", xlabel="latent axis 1 (axis1)", ylabel="latent axis 2 (axis2)")
    fig.tight_layout()
    return _save(fig, path)


def traversals(grains: np.ndarray, spreads: np.ndarray, path: Path) -> Path:
    """Grains decoded along each principal direction: grains [K, S, G] at `spreads` std from the centre.

    Per axis: the magnitude spectrum (dB) of each decoded grain as an image (position left to right), and
    three waveforms (both ends and the centre): what turning a knob mapped to that axis does to the sound.
    """
    k, s, _ = grains.shape
    fig, axs = plt.subplots(
        k, 2, figsize=(12, 2.0 * k), squeeze=False, gridspec_kw={"width_ratios": [1, 1.4]}
    )
    window = np.hanning(grains.shape[-1])
    for i in range(k):
        spectra = 20 * np.log10(np.abs(np.fft.rfft(grains[i] * window, axis=-1)) + 1e-5).T
        axs[i, 0].imshow(
            spectra,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=-60,
            vmax=40,
            extent=[spreads[0], spreads[-1], 0, SAMPLE_RATE / 2000],
        )
        axs[i, 0].set_ylabel(f"axis{i + 1}\nkHz", fontsize=8)
        for j, colour in ((0, "tab:blue"), (s // 2, "gray"), (s - 1, "tab:red")):
            axs[i, 1].plot(grains[i, j], lw=0.7, color=colour, label=f"{spreads[j]:+.1f} std")
        axs[i, 1].set_ylim(-1.05, 1.05)
    axs[0, 0].set_title("spectrum along the axis (std from centre)")
    axs[0, 1].set_title("waveforms at both ends and the centre")
    axs[0, 1].legend(fontsize=7, loc="upper right")
    axs[-1, 0].set_xlabel("position along the axis (std)")
    fig.tight_layout()
    return _save(fig, path)
