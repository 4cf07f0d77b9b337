"""PCA baseline: SC, LSD and SNR of validation grains reconstructed from k = 8, 16, 32, 64 principal
components, on the built-in synth set and on ../shared/datasets/timgm6mb-notes.

    .venv/bin/python -m bench.pca_baseline           # about a minute on 2 cores (first run renders/reads)

This is the floor: a VAE with latent size k must do better than PCA with k components (bench/grain_vae.py
compares them on the same validation grains). The metrics are trainer/metrics.py's reference definitions.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from trainer.commands.baseline import format_table
from trainer.data import load_grains
from trainer.pca import pca_baseline_table

REPO = Path(__file__).resolve().parent.parent

DATASETS = REPO.parent / "shared" / "datasets"
NOTES = DATASETS / "timgm6mb-notes"
DRUMS = DATASETS / "timgm6mb-drums"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", default="8,16,32,64", help="components, comma-separated (8,16,32,64)")
    p.add_argument("--notes", type=Path, default=NOTES, help=f"the instrument-notes folder ({NOTES})")
    args = p.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    sets = [("synth", "synth (20,000 grains, seed 0)")]
    for folder in (args.notes, DRUMS):
        if folder.is_dir():
            sets.append((str(folder), f"{folder.name} (split by file)"))
        else:
            print(f"skipping {folder}: it is absent (it exists only on our machines)")
    for data, title in sets:
        started = time.perf_counter()
        gs = load_grains(data, progress=False)
        rows = pca_baseline_table(gs.train, gs.val, ks, gs.true_pitch_midi("val"))
        print()
        print(format_table(rows, f"{title}: {len(gs.train):,} train / {len(gs.val):,} validation grains"))
        print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
