"""What a Grain-VAE run leaves in its folder, refreshed while it trains, so you can look and listen early.

    RUN/plots/loss_curves.png        reconstruction, spectral, KL with beta, active units, KL per dimension
    RUN/plots/reconstructions.png    fixed validation grains: waveform and spectrogram, original beside recon
    RUN/plots/latent_pca.png         posterior means on the first two latent principal axes, coloured by
                                     synth parameter (synth data) or by source file (audio folders)
    RUN/plots/traversals.png         grains decoded along each latent axis k, the box's `axis{k}` (a knob
                                     mapped to it plays it: knob1..knob4 play axis1..axis4 by default)
    RUN/audio/reconstructions.wav    each fixed grain as a grain cloud: original, then reconstruction
    RUN/audio/samples.wav            grains decoded from random points of the prior N(0, I)
    RUN/audio/traversal_axis{k}.wav  a slow sweep along latent axis k (the box's control `axis{k}`),
                                     -2 to +2 std and back
    RUN/metrics.json                 SC, LSD, SNR on the validation grains, and PCA at the same k

A single grain lasts 46 ms, too short to judge by ear; the WAVs play each grain as the box does, as a
cloud: Hann-windowed copies overlap-added every G/4 samples. Every WAV is brought to -20 dBFS RMS (its
peak at most -1 dBFS) so it can be heard whatever the model's level; the levels inside a file are kept,
and an original and its reconstruction share one gain, so their loudness can still be compared.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from trainer import SAMPLE_RATE, plots
from trainer.latent import LatentMap, fit_latent_map, posterior_means
from trainer.metrics import evaluate
from trainer.pca import pca_baseline
from trainer.synth import SHAPE_NAMES

FIXED_GRAINS = 6
TRAVERSAL_AXES = 8  # the box's axis1..axis8: every model has them, and any knob can be mapped to one
TRAVERSAL_SPREADS = np.linspace(-2.0, 2.0, 9)  # an axis knob covers centre +- 2 std (docs/model-format.md)
LATENT_POINTS = 4000  # training grains encoded for the latent plot and map
PRIOR_SAMPLES = 8


# ---------------------------------------------------------------------------------------------------------
# Audio


def grain_cloud(grain: np.ndarray, seconds: float = 0.5) -> np.ndarray:
    """One grain repeated as a steady cloud: Hann-windowed copies every G/4 samples, unity gain."""
    g = len(grain)
    hop = g // 4
    n = max(1, int(seconds * SAMPLE_RATE) // hop)
    return sweep(np.repeat(grain[None], n, axis=0))


def sweep(grains: np.ndarray) -> np.ndarray:
    """Overlap-add a sequence of grains [N, G] (Hann window, hop G/4): a sound that morphs through them."""
    n, g = grains.shape
    hop = g // 4
    window = np.hanning(g + 1)[:g]  # periodic Hann: copies at hop G/4 sum to exactly 2
    out = np.zeros((n - 1) * hop + g, dtype=np.float64)
    for i, grain in enumerate(grains):
        out[i * hop : i * hop + g] += grain * window
    return (out / 2.0).astype(np.float32)


TARGET_RMS_DBFS = -20.0  # audition level: a comfortable listening level with room for peaks
PEAK_DBFS = -1.0


def audition_gain(audio: np.ndarray) -> float:
    """The gain that brings `audio` to TARGET_RMS_DBFS without a peak above PEAK_DBFS (1 for silence)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if rms < 1e-7 or peak == 0.0:
        return 1.0
    return min(10 ** (TARGET_RMS_DBFS / 20) / rms, 10 ** (PEAK_DBFS / 20) / peak)


def write_wav(path: Path, audio: np.ndarray, normalise: bool = True) -> Path:
    """16-bit WAV at the model's rate, written atomically; brought to the audition level unless told."""
    if normalise:
        audio = audio * audition_gain(audio)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.wav")
    sf.write(tmp, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    tmp.replace(path)
    return path


def _join(pieces: Sequence[np.ndarray], gap_s: float = 0.2) -> np.ndarray:
    gap = np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([p for piece in pieces for p in (piece, gap)])


# ---------------------------------------------------------------------------------------------------------
# The reporter


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def stratified(sources: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices of grains, taken from the sources in turn (a random grain of each), so that one long
    file cannot fill the reconstructions; sorted."""
    order = rng.permutation(np.unique(sources))
    by_source = [rng.permutation(np.flatnonzero(sources == s)).tolist() for s in order]
    picked: list[int] = []
    while len(picked) < min(n, len(sources)):
        for pool in by_source:
            if pool and len(picked) < n:
                picked.append(pool.pop())
    return np.sort(np.array(picked, dtype=np.int64))


class RunReport:
    """Draws the figures, writes the WAVs and metrics.json of a run; `on_eval` for trainer.loop.train.

    Figures cost seconds, so during training they are refreshed at most every `refresh_seconds`; call
    `refresh()` once more at the end for the final state.
    """

    def __init__(self, model: nn.Module, grains, out: Path, *, refresh_seconds: float = 60.0, seed: int = 0):
        self.model = model
        self.grains = grains
        self.out = Path(out)
        self.refresh_seconds = refresh_seconds
        rng = np.random.default_rng(seed)
        self.fixed = stratified(np.asarray(grains.val_source), FIXED_GRAINS, rng)
        self.latent_idx = np.sort(
            rng.choice(len(grains.train), size=min(LATENT_POINTS, len(grains.train)), replace=False)
        )
        self.prior_z = torch.randn(
            PRIOR_SAMPLES, model.cfg.latent_dim, generator=torch.Generator().manual_seed(seed)
        )
        self._pca: dict | None = None
        self._last_refresh = -np.inf

    # trainer.loop calls this after each validation pass (rank 0 only).
    def on_eval(self, step: int, val_metrics: dict) -> dict | None:
        """Refresh when due; the metrics then written, or None."""
        if time.monotonic() - self._last_refresh >= self.refresh_seconds:
            return self.refresh(step, val_metrics)
        return None

    def refresh(self, step: int, val_metrics: dict | None = None) -> dict:
        """Redraw everything for the model as it is now; returns the metrics written to metrics.json."""
        self._last_refresh = time.monotonic()
        history_path = self.out / "history.json"
        history = json.loads(history_path.read_text()) if history_path.is_file() else []
        if history:
            plots.loss_curves(history, self.out / "plots" / "loss_curves.png")
        latent_map = self._latent_map_and_plot()
        self._reconstructions()
        self._traversals(latent_map)
        self._samples()
        metrics = self._metrics(step, val_metrics or {})
        self._last_refresh = time.monotonic()
        return metrics

    def _decode(self, z: torch.Tensor) -> np.ndarray:
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            x = self.model.decode(z.to(device)).float().cpu().numpy()
        self.model.train(was_training)
        return x

    def _reconstruct(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        mu = posterior_means(self.model, x, batch_size)
        return np.concatenate([self._decode(mu[i : i + batch_size]) for i in range(0, len(mu), batch_size)])

    def _latent_map_and_plot(self) -> LatentMap:
        mu = posterior_means(self.model, self.grains.train[self.latent_idx])
        latent_map = fit_latent_map(mu, TRAVERSAL_AXES)
        coords = latent_map.project(mu).numpy()
        if coords.shape[1] < 2:
            coords = np.concatenate([coords, np.zeros_like(coords)], axis=1)
        colours, categories = {}, {}
        params = self.grains.train_params
        if params:
            for name in ("shape", "pitch_midi", "cutoff_hz"):
                if name in params:
                    colours[name] = np.asarray(params[name])[self.latent_idx]
            if "shape" in colours:
                categories["shape"] = SHAPE_NAMES
        else:
            colours["source file"] = np.asarray(self.grains.train_source)[self.latent_idx]
            categories["source file"] = list(self.grains.source_names)
        plots.latent_scatter(coords, self.out / "plots" / "latent_pca.png", colours, categories)
        return latent_map

    def _reconstructions(self) -> None:
        originals = self.grains.val[self.fixed]
        recons = self._reconstruct(originals)
        names = list(self.grains.source_names)
        titles = [names[int(self.grains.val_source[i])] if names else f"grain {i}" for i in self.fixed]
        plots.reconstructions(originals, recons, self.out / "plots" / "reconstructions.png", titles)
        pieces = []
        for original, recon in zip(originals, recons, strict=True):
            pair = (grain_cloud(original), grain_cloud(recon))
            gain = audition_gain(np.concatenate(pair))  # one gain per pair: the two stay comparable
            pieces += [pair[0] * gain, pair[1] * gain]
        write_wav(self.out / "audio" / "reconstructions.wav", _join(pieces), normalise=False)

    def _traversals(self, latent_map: LatentMap) -> None:
        k = latent_map.axes.shape[0]
        points = torch.stack([latent_map.point(i, s) for i in range(k) for s in TRAVERSAL_SPREADS])
        grains = self._decode(points).reshape(k, len(TRAVERSAL_SPREADS), -1)
        plots.traversals(grains, TRAVERSAL_SPREADS, self.out / "plots" / "traversals.png")
        # The WAV sweeps slowly (64 points, about 3 s each way) so the change is audible as a gesture.
        fine = np.concatenate([np.linspace(-2, 2, 64), np.linspace(2, -2, 64)])
        for i in range(k):
            sweep_grains = self._decode(torch.stack([latent_map.point(i, float(s)) for s in fine]))
            write_wav(
                self.out / "audio" / f"traversal_axis{i + 1}.wav", sweep(np.repeat(sweep_grains, 2, axis=0))
            )

    def _samples(self) -> None:
        grains = self._decode(self.prior_z)
        write_wav(self.out / "audio" / "samples.wav", _join([grain_cloud(g) for g in grains]))

    def _pca_baseline(self) -> dict:
        """PCA with k = latent_dim fitted on the training grains, scored on the validation grains (cached)."""
        if self._pca is None:
            k = self.model.cfg.latent_dim
            truth = self.grains.true_pitch_midi("val")
            self._pca = {"k": k, **pca_baseline(self.grains.train, self.grains.val, k, truth)}
        return self._pca

    def _metrics(self, step: int, val_metrics: dict) -> dict:
        recon = self._reconstruct(self.grains.val)
        metrics = {
            "step": step,
            "val_grains": len(self.grains.val),
            "val": evaluate(self.grains.val, recon, self.grains.true_pitch_midi("val")),
            "pca": self._pca_baseline(),
            "active_units": val_metrics.get("active_units"),
            "kl_per_dim": val_metrics.get("kl_per_dim"),
            "val_loss": val_metrics.get("loss"),
        }
        _atomic_json(self.out / "metrics.json", metrics)
        return metrics
