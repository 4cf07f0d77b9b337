"""`python -m trainer export RUN_OR_CHECKPOINT [--out model.ts]`: the box's model artifact from a trained run.

See trainer/export.py for what goes into the file and docs/model-format.md for the format itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from runtime.contract import MAX_ANCHORS, MIN_AXES
from trainer.commands.train import figures_line
from trainer.export import ExportError, export_run

HELP = "export a trained Grain-VAE run as one TorchScript model file for the box (docs/model-format.md)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, metavar="RUN_OR_CHECKPOINT", help="a run folder or a checkpoint .pt")
    p.add_argument(
        "--out", type=Path, default=None, help="the model file to write (default: model.ts in the run folder)"
    )
    p.add_argument("--name", default=None, help="the model's name on the box (default: the run folder's)")
    p.add_argument(
        "--axes",
        type=int,
        default=MIN_AXES,
        help=f"latent axes K the knobs can be mapped to (axis1..axisK), {MIN_AXES}..latent size "
        f"({MIN_AXES}: one for each knob)",
    )
    p.add_argument("--anchors", type=int, default=16, help=f"named anchor sounds, 1..{MAX_ANCHORS} (16)")
    p.add_argument("--cache-dir", type=Path, default=None, help="grain cache of the run's data (default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the grain subset and k-means (0)")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    if args.out is None:  # beside the run's plots and checkpoints, never the folder export was started in
        run_folder = args.source if args.source.is_dir() else args.source.parent.parent
        args.out = run_folder / "model.ts"
    try:
        meta = export_run(
            args.source,
            args.out,
            name=args.name,
            num_axes=args.axes,
            num_anchors=args.anchors,
            cache_dir=args.cache_dir,
            seed=args.seed,
            progress=True,
        )
    except ExportError as e:
        print(f"error: {e}")
        return 1
    m, p = meta["metrics"]["val"], meta["metrics"]["pca"]
    print(f"wrote {args.out}: {meta['name']}, latent {meta['latent_dim']}, {meta['num_axes']} axes")
    print(f"anchors: {', '.join(meta['anchor_names'])}")
    print(f"validation VAE: {figures_line(m)}")
    print(f"      PCA k={p['k']}: {figures_line(p)}")
    print(f"check it with: python -m runtime check {args.out}")
    return 0
