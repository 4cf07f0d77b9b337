"""Export a trained Grain-VAE as the box's model artifact: one TorchScript file (docs/model-format.md).

    meta = export_run("runs/synth", "model.ts")     # a run folder (its best checkpoint) or a .pt file

What goes in, and where it comes from:

    decode, encode      the trained encoder and decoder, scripted, in eval mode, frozen for inference
    center, axes,       PCA of the posterior means of (up to MAX_MAP_GRAINS) training grains: the knob map.
    scales              A knob mapped to axis{k + 1}, at v in [0, 1], plays
                        center + (2v - 1) * 2 * scales[k] * axes[k].
    anchors             up to 32 latent points of real training grains, each the medoid of a k-means cluster
                        of the posterior means (or, for a folder of few files, of one file's grains), named
                        after the synth parameters ("saw low bright") or the source file ("kick_03")
    grainbox.json       schema version, sizes, anchor names, data set and training summary, validation
                        metrics (and the PCA baseline at k = latent size), creation time, trainer version,
                        content hash

Before writing, the scripted decode is compared with the eager model (within 1e-5); after writing, the
file is loaded with the box's own loader (runtime.artifact.load_model), so an export that the box would
refuse never leaves the workstation.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import trainer
from runtime.artifact import ModelError, content_hash, load_model
from runtime.contract import MAX_ANCHORS, METADATA_FILE, MIN_AXES, SCHEMA_VERSION
from trainer.data import load_grainset
from trainer.grain_model import F0_RANGE_HZ, PITCH_REFERENCE_HZ, GrainVAE, GrainVAEConfig
from trainer.latent import LatentMap, fit_latent_map, posterior_means
from trainer.metrics import evaluate
from trainer.pca import pca_baseline
from trainer.synth import SHAPE_NAMES, UNPITCHED_SHAPES, midi_to_hz

MAX_MAP_GRAINS = 8000  # training grains encoded for the knob map and anchors
MAX_METRIC_GRAINS = 2000  # validation grains scored in the metadata
MAX_PCA_GRAINS = 20_000  # training grains the PCA baseline is fitted on (all of the synth set)
EAGER_TOLERANCE = 1e-5


class ExportError(ValueError):
    """The run cannot be exported as it is; the message says why and what to do."""


class ExportedGrainModel(nn.Module):
    """What the box loads: decode and encode, and the navigation buffers (docs/model-format.md)."""

    def __init__(self, model: GrainVAE, latent_map: LatentMap, anchors: Tensor):
        super().__init__()
        self.encoder = model.encoder
        self.decoder = model.decoder
        self.register_buffer("center", latent_map.center.float().contiguous())
        self.register_buffer("axes", latent_map.axes.float().contiguous())
        self.register_buffer("scales", latent_map.scales.float().contiguous())
        self.register_buffer("anchors", anchors.float().contiguous())

    @torch.jit.export
    def decode(self, z: Tensor) -> Tensor:
        """Grains [B, G] in [-1, 1] for latent points [B, Z] (the decoder ends in tanh; the clamp is free)."""
        return self.decoder(z).clamp(-1.0, 1.0)

    @torch.jit.export
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance [B, Z] of grains [B, G]."""
        return self.encoder(x)

    def forward(self, z: Tensor) -> Tensor:
        return self.decode(z)


@dataclass
class Anchors:
    """Latent points [A, Z], their names, and the training grain each one is (index into the train split)."""

    points: Tensor
    names: list[str]
    train_index: list[int]


# ---------------------------------------------------------------------------------------------------------
# Reading a run


def resolve_checkpoint(source: str | Path) -> Path:
    """A run folder means its best checkpoint (the last one if there is no best); a file is itself."""
    source = Path(source)
    if source.is_dir():
        for name in ("best.pt", "last.pt"):
            if (source / "checkpoints" / name).is_file():
                return source / "checkpoints" / name
        raise ExportError(
            f"{source} has no checkpoints/best.pt or last.pt: is it a run folder of `python -m trainer "
            "train`? Give a run folder or a checkpoint file"
        )
    if not source.is_file():
        raise ExportError(f"{source} does not exist; give a run folder or a checkpoint (.pt) file")
    return source


def load_trained(checkpoint: Path) -> tuple[GrainVAE, dict]:
    """The Grain-VAE of a checkpoint written by trainer.loop, in eval mode on the CPU, and the checkpoint."""
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ExportError(f"{checkpoint} is not a readable checkpoint ({e}); give a .pt from a run") from None
    extra = ckpt.get("extra", {}) if isinstance(ckpt, dict) else {}
    if extra.get("kind") != "grain-vae" or "model" not in extra:
        raise ExportError(
            f"{checkpoint} is not a Grain-VAE checkpoint (no model config inside); export a run of "
            "`python -m trainer train`"
        )
    model = GrainVAE(GrainVAEConfig.from_dict(extra["model"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


# ---------------------------------------------------------------------------------------------------------
# Knob map and anchors


def kmeans(points: Tensor, k: int, seed: int = 0, iterations: int = 50) -> Tensor:
    """Cluster labels [N] of points [N, D] into k clusters: k-means++ seeding, then Lloyd's iterations."""
    g = torch.Generator().manual_seed(seed)
    n = len(points)
    centres = points[torch.randint(n, (1,), generator=g)]
    for _ in range(1, k):
        d2 = torch.cdist(points, centres).min(dim=1).values.pow(2)
        if float(d2.sum()) == 0:
            break  # fewer distinct points than clusters
        centres = torch.cat([centres, points[torch.multinomial(d2, 1, generator=g)]])
    labels = torch.cdist(points, centres).argmin(dim=1)
    for _ in range(iterations):
        centres = torch.stack(
            [points[labels == c].mean(0) if (labels == c).any() else centres[c] for c in range(len(centres))]
        )
        new = torch.cdist(points, centres).argmin(dim=1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels


def medoids(points: Tensor, labels: Tensor) -> list[int]:
    """For each non-empty cluster, the index of the point nearest its mean: a real example, not an average."""
    chosen = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).squeeze(1)
        centre = points[members].mean(0, keepdim=True)
        chosen.append(int(members[torch.cdist(points[members], centre).argmin()]))
    return chosen


def synth_name(params: dict[str, np.ndarray], i: int) -> str:
    """A short name for synth grain i from its parameters: shape, register, brightness ("saw low bright")."""
    shape = SHAPE_NAMES[int(params["shape"][i])]
    pitch = float(params["pitch_midi"][i])
    register = "low" if pitch < 52 else "mid" if pitch < 68 else "high"
    if shape in UNPITCHED_SHAPES:  # noise has no pitch: its colour is the cutoff alone
        cutoff = float(params["cutoff_hz"][i])
        return f"{shape} " + ("dark" if cutoff < 800 else "mid" if cutoff < 3000 else "bright")
    octaves = np.log2(float(params["cutoff_hz"][i]) / float(midi_to_hz(pitch)))
    colour = "dark" if octaves < 1.5 else "warm" if octaves < 3.2 else "bright"
    return f"{shape} {register} {colour}"


def _unique(names: list[str]) -> list[str]:
    """Number repeated names ("saw low bright", "saw low bright 2") so the box can tell them apart."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} {seen[name]}")
    return out


def choose_anchors(grains, subset: np.ndarray, mu: Tensor, count: int, seed: int = 0) -> Anchors:
    """Up to `count` anchors among the training grains `subset` (posterior means mu [len(subset), Z]).

    A folder with no more files than `count`: one anchor per file, its most typical grain. Otherwise
    k-means of the posterior means, one anchor per cluster. Anchors are ordered along the first latent axis
    (axis1) from its top end down, so stepping through them moves steadily through the sound space and the
    box starts on the sound at the top of axis1, knob1's by default (for the factory model: high and
    bright, a note, where the bottom end is dark noise hits).
    """
    sources = np.asarray(grains.train_source)[subset]
    if grains.train_params is None and len(np.unique(sources)) <= count:
        labels = torch.as_tensor(np.unique(sources, return_inverse=True)[1])
    else:
        labels = kmeans(mu.double(), min(count, len(mu)), seed).long()
    picked = medoids(mu.double(), labels)
    if grains.train_params is not None:
        params = {k: np.asarray(v)[subset] for k, v in grains.train_params.items()}
        names = [synth_name(params, i) for i in picked]
    else:
        names = [Path(grains.source_names[int(sources[i])]).stem for i in picked]
    points = mu[picked]
    order = np.argsort(-((points - mu.mean(0)) @ _first_axis(mu)).numpy(), kind="stable")
    return Anchors(
        points=points[order].contiguous(),
        names=_unique([names[i] for i in order]),
        train_index=[int(subset[picked[i]]) for i in order],
    )


def _first_axis(mu: Tensor) -> Tensor:
    return fit_latent_map(mu, 1).axes[0]


# ---------------------------------------------------------------------------------------------------------
# Scripting and writing


def script_for_inference(module: ExportedGrainModel) -> torch.jit.ScriptModule:
    """torch.jit.script, then freeze: weights become constants the optimiser can fold; buffers stay."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 steers to torch.export; TS is it
        scripted = torch.jit.script(module.eval())
        return torch.jit.freeze(scripted, preserved_attrs=["decode", "encode", *BUFFER_NAMES])


BUFFER_NAMES = ("center", "axes", "scales", "anchors")


def check_against_eager(scripted: torch.jit.ScriptModule, eager: ExportedGrainModel, z: Tensor) -> float:
    """Largest |scripted decode - eager decode| over z; raises ExportError above EAGER_TOLERANCE."""
    with torch.inference_mode():
        gap = float((scripted.decode(z) - eager.decode(z)).abs().max())
    if not gap <= EAGER_TOLERANCE:
        raise ExportError(
            f"the scripted decode differs from the trained model by {gap:.2e} (> {EAGER_TOLERANCE:g}); "
            "this is a bug in export or in TorchScript: please report it with the run"
        )
    return gap


def save_artifact(scripted: torch.jit.ScriptModule, path: Path, metadata: dict[str, Any]) -> Path:
    """Write the archive with grainbox.json (content_hash filled in), via a temporary file and a rename."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # Hash what the box will see: the module as it comes back from a saved archive.
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        metadata = dict(metadata, content_hash=content_hash(torch.jit.load(buffer)))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_FILE: json.dumps(metadata, indent=1)})
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------------------
# The whole export


def export_run(
    source: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    num_axes: int = MIN_AXES,
    num_anchors: int = 16,
    cache_dir: Path | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Export the run (folder or checkpoint) `source` to `out`; returns the metadata written."""
    if not 1 <= num_anchors <= MAX_ANCHORS:
        raise ExportError(f"--anchors must be 1..{MAX_ANCHORS}, got {num_anchors}")
    checkpoint = resolve_checkpoint(source)
    model, ckpt = load_trained(checkpoint)
    z_dim = model.cfg.latent_dim
    if not MIN_AXES <= num_axes <= z_dim:
        raise ExportError(
            f"--axes must be {MIN_AXES}..latent size {z_dim}, got {num_axes}"
            + (f"; the box needs {MIN_AXES} axes, so train with --latent-dim {MIN_AXES} or more"
               if z_dim < MIN_AXES else "")
        )
    grains = load_grainset(ckpt["extra"]["data"], cache_dir, progress=progress)
    if ckpt.get("fingerprint") and ckpt["fingerprint"] != grains.fingerprint:
        raise ExportError(
            f"the run's data changed since training (fingerprint {ckpt['fingerprint'][:12]}, now "
            f"{grains.fingerprint[:12]}): the knob map must come from the data the model learned"
        )

    rng = np.random.default_rng(seed)
    subset = np.sort(rng.choice(len(grains.train), min(MAX_MAP_GRAINS, len(grains.train)), replace=False))
    mu = posterior_means(model, grains.train[subset])
    latent_map = fit_latent_map(mu, num_axes)
    anchors = choose_anchors(grains, subset, mu, num_anchors, seed)

    eager = ExportedGrainModel(model, latent_map, anchors.points).eval()
    scripted = script_for_inference(eager)
    reach = 2 * latent_map.scales[:, None] * latent_map.axes
    probe = torch.cat([anchors.points, latent_map.center + reach, latent_map.center - reach])
    probe = torch.cat([probe, torch.randn(32, z_dim, generator=torch.Generator().manual_seed(seed))])
    gap = check_against_eager(scripted, eager, probe)

    metadata = build_metadata(model, ckpt, grains, latent_map, anchors, name or _default_name(checkpoint))
    metadata["export"] = {"checkpoint": str(checkpoint), "max_scripted_vs_eager": gap}
    path = save_artifact(scripted, Path(out), metadata)
    try:
        loaded = load_model(path)
    except ModelError as e:
        path.unlink(missing_ok=True)
        raise ExportError(f"the box's loader refuses the export ({e}); nothing was written") from None
    for warning in loaded.warnings:
        warnings.warn(f"{path}: {warning}", stacklevel=2)
    return loaded.metadata


def _default_name(checkpoint: Path) -> str:
    run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    return run.resolve().name or "grainbox-model"


def _pitch_coordinate(model: GrainVAE) -> dict | None:
    """Where the model keeps its pitch, if it has a pitch axis: f0 = reference_hz * 2^(z[latent])."""
    if model.cfg.decoder != "harmonic":
        return None
    return {"latent": 0, "reference_hz": PITCH_REFERENCE_HZ, "octaves_per_unit": 1.0, "range_hz": F0_RANGE_HZ}


def build_metadata(
    model: GrainVAE, ckpt: dict, grains, latent_map: LatentMap, anchors: Anchors, name: str
) -> dict[str, Any]:
    """grainbox.json without the content hash (save_artifact adds it): docs/model-format.md."""
    val = np.array(grains.val[:MAX_METRIC_GRAINS], dtype=np.float32)  # a writable copy of the memmap
    with torch.no_grad():
        recon = torch.cat(
            [model.reconstruct(torch.from_numpy(val[i : i + 512])) for i in range(0, len(val), 512)]
        )
    train = np.asarray(grains.train[:MAX_PCA_GRAINS], dtype=np.float32)
    truth = grains.true_pitch_midi("val")
    truth = None if truth is None else truth[:MAX_METRIC_GRAINS]
    k = model.cfg.latent_dim
    summary = grains.summary
    train_cfg = ckpt.get("config", {})
    variance = latent_map.scales.double().pow(2)
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "sample_rate": int(grains.sample_rate),
        "grain_size": int(model.cfg.grain_size),
        "latent_dim": k,
        "num_axes": int(latent_map.axes.shape[0]),
        "anchor_names": anchors.names,
        "anchor_train_index": anchors.train_index,
        "axis_std": [round(float(s), 6) for s in latent_map.scales],
        "axis_variance_share": [round(float(v), 4) for v in variance / variance.sum()],
        "decoder": model.cfg.decoder,
        "pitch": _pitch_coordinate(model),
        "dataset": {
            "source": summary.get("source", "?"),
            "folder": summary.get("folder"),
            "train_grains": int(len(grains.train)),
            "val_grains": int(len(grains.val)),
            "fingerprint": grains.fingerprint,
            "spec": ckpt["extra"].get("data"),
        },
        "training": {
            "steps": int(ckpt.get("step", 0)),
            "minutes": round(float(ckpt.get("seconds", 0.0)) / 60, 2),
            "device": ckpt.get("device", train_cfg.get("device", "?")),
            "beta_max": train_cfg.get("beta_max"),
            "best_val_loss": ckpt.get("best_val_loss"),
            "world_size": ckpt.get("world_size", 1),
            "config": {"model": model.cfg.to_dict(), "train": train_cfg},
        },
        "metrics": {
            "val": {**evaluate(val, recon, truth), "grains": len(val)},
            "pca": {"k": k, **pca_baseline(train, val, k, truth)},
        },
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "trainer_version": trainer.__version__,
    }
