"""out/demo.png: what the demo played (a spectrogram of out/demo.wav, its spectral centroid on top) above
what the hands did (every knob's position, the sound changes), on one time axis.

matplotlib and soundfile belong to the `train` extra, not to the box's install, so they are imported
inside draw(); the analysis functions (spectrogram, spectral_centroid) need only numpy and are shared
with the demo's tests.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from runtime.contract import KNOB_NAMES

N_FFT = 2048
HOP = 512
TOP_DB = 80.0  # dynamic range shown in the spectrogram
MIN_HZ = 20.0  # the centroid ignores DC and sub-audio bins
MAX_HZ = 16000.0  # top of the spectrogram: grains are 22,050 Hz material, transposed at most 2 octaves
# The knobs' colours: the four latent axes in blues, the synthesis parameters in warm colours.
COLOURS = {
    "axis1": "#08306b",
    "axis2": "#2171b5",
    "axis3": "#6baed6",
    "axis4": "#9ecae1",
    "density": "#d94801",
    "duration": "#fd8d3c",
    "transpose": "#7a0177",
    "spray": "#41ab5d",
    "gain": "#737373",
}


def spectrogram(mono: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Magnitudes [frames, n_fft // 2 + 1] of Hann-windowed frames `hop` apart (frame k centred at k*hop)."""
    padded = np.pad(mono.astype(np.float64), (n_fft // 2, n_fft // 2))
    count = 1 + (len(padded) - n_fft) // hop
    if count < 1:
        return np.zeros((0, n_fft // 2 + 1))
    index = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    return np.abs(np.fft.rfft(padded[index] * np.hanning(n_fft), axis=1))


def spectral_centroid(
    mono: np.ndarray, sample_rate: int, n_fft: int = N_FFT, hop: int = HOP
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: its time (s), its spectral centroid (Hz, power-weighted, above MIN_HZ) and its RMS level.
    Silent frames get a centroid of NaN (there is no spectrum to have a centre)."""
    mag = spectrogram(mono, n_fft, hop)
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    power = mag**2 * (freqs >= MIN_HZ)  # a DC offset in the grains is no part of the timbre
    total = power.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = np.where(total > 1e-12, (power * freqs).sum(axis=1) / total, np.nan)
    rms = np.sqrt(total / (n_fft * (np.hanning(n_fft) ** 2).sum()) * 2)
    times = np.arange(len(mag)) * hop / sample_rate
    return times, centroid, rms


def smoothed_centroid(
    centroid: np.ndarray, rms: np.ndarray, floor_db: float = 40.0, width: int = 9
) -> np.ndarray:
    """The centroid for drawing: a running median over `width` frames, blank where the frame is more than
    floor_db below the loudest (a gap between sparse grains has no meaningful centre)."""
    loud = rms > rms.max(initial=0.0) * 10 ** (-floor_db / 20)
    kept = np.where(loud, centroid, np.nan)
    half = width // 2
    padded = np.pad(kept, half, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows stay NaN
        return np.where(loud, np.nanmedian(windows, axis=1), np.nan)


def knob_curves(knobs: dict[str, Any], end: float) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each knob's step curve (its action, times, positions) from the gesture log, held to `end`: knob1's
    first."""
    curves = []
    for index, name in enumerate(knobs["knob_actions"]):
        times, values = [0.0], [knobs["initial_knobs"][index]]
        for t, kind, i, value in knobs["events"]:
            if kind == "knob" and i == index:
                times.append(max(0.0, t))
                values.append(value)
        times.append(end)
        values.append(values[-1])
        curves.append((name, np.asarray(times), np.asarray(values)))
    return curves


def draw(wav: Path, knobs_json: Path, png: Path, title: str = "Grainbox demo") -> Path:
    """Render the figure to `png` and return its path."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt
    import soundfile
    from matplotlib.transforms import blended_transform_factory

    audio, sr = soundfile.read(wav, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    knobs = json.loads(Path(knobs_json).read_text())
    duration = len(mono) / sr
    times, centroid, rms = spectral_centroid(mono, sr)
    db = 20 * np.log10(np.maximum(spectrogram(mono), 1e-9))
    db -= db.max(initial=0.0)
    freqs = np.fft.rfftfreq(N_FFT, 1 / sr)

    fig, (ax_spec, ax_knobs) = plt.subplots(
        2, 1, figsize=(13, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 2], "hspace": 0.06}
    )
    shown = freqs >= 30
    mesh = ax_spec.pcolormesh(
        times,
        freqs[shown],
        db[:, shown].T,
        shading="nearest",
        cmap="magma",
        vmin=-TOP_DB,
        vmax=0,
        rasterized=True,
    )
    ax_spec.plot(
        times,
        smoothed_centroid(centroid, rms),
        color="white",
        lw=1.2,
        alpha=0.9,
    )
    ax_spec.set_yscale("log")
    ax_spec.set_ylim(30, min(sr / 2, MAX_HZ))
    ax_spec.set_ylabel("frequency (Hz)")
    model = knobs.get("model", "?")
    ax_spec.set_title(
        f"{title}: model {model}, {wav.name}, {duration:.1f} s at {sr} Hz.  White line: spectral centroid",
        loc="left",
    )
    colourbar = fig.colorbar(mesh, cax=ax_spec.inset_axes((1.008, 0.0, 0.012, 1.0)))
    colourbar.set_label("level (dB)")

    top = blended_transform_factory(ax_spec.transData, ax_spec.transAxes)
    for section in knobs.get("sections", []):
        if section["start"] < duration:
            for ax in (ax_spec, ax_knobs):
                ax.axvline(section["start"], color="#bbbbbb", lw=0.6, ls=":")
            ax_spec.text(
                section["start"],
                0.985,
                section["name"],
                transform=top,
                color="white",
                fontsize=8,
                rotation=90,
                ha="left",
                va="top",
                bbox={"boxstyle": "round,pad=0.2", "fc": "black", "alpha": 0.45, "lw": 0},
            )

    for knob, (name, t, v) in zip(KNOB_NAMES, knob_curves(knobs, duration), strict=True):
        if name == "none":
            continue
        moved = np.ptp(v) > 1e-6
        ax_knobs.step(
            t,
            v,
            where="post",
            color=COLOURS.get(name, "#444444"),
            lw=1.8 if moved else 0.8,
            alpha=1.0 if moved else 0.45,
            label=f"{knob}: {name}",  # the box's name for the knob, then what it does
        )
    anchor_names = knobs.get("anchor_names", [])
    turns = [(t, index) for t, kind, index, _ in knobs["events"] if kind == "anchor"]
    for k, (t, index) in enumerate(turns):
        ax_knobs.axvline(t, color="black", lw=1.0, ls="--", alpha=0.7)
        if k + 1 < len(turns) and turns[k + 1][0] - t < 0.04 * duration:
            continue  # a quick run of detents: name only the sound it lands on
        label = anchor_names[index] if index < len(anchor_names) else f"sound {index + 1}"
        late = t > 0.8 * duration
        ax_knobs.text(
            t,
            1.04,
            f" sound {index + 1}: {label} ",
            fontsize=7.5,
            rotation=20,
            va="bottom",
            ha="right" if late else "left",
            rotation_mode="anchor",
        )
    ax_knobs.set_ylim(-0.03, 1.03)
    ax_knobs.set_xlim(0, duration)
    ax_knobs.set_ylabel("knob position (0..1)")
    ax_knobs.set_xlabel("time (s)")
    ax_knobs.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=8, fontsize=8, frameon=False)
    ax_knobs.grid(axis="y", color="#dddddd", lw=0.5)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return png
