"""`python -m trainer baseline --data synth|DIR`: the PCA floor that any VAE of latent size k must beat.

Loads (and caches) the grains exactly as `train` does, fits PCA on the training grains once, and prints
SC, LSD and SNR of the validation grains reconstructed from k components, for each k asked for.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from trainer.commands.train import add_data_arguments, data_spec
from trainer.data import NoAudioError, load_grainset
from trainer.pca import pca_baseline_table

HELP = "print the PCA baseline (SC, LSD, SNR on validation grains) for several k on synth or an audio folder"


def _ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k takes comma-separated integers, got {text!r}") from None
    if not ks or ks[0] < 1 or ks[-1] > 1024:
        raise argparse.ArgumentTypeError(f"--k values must lie in 1..1024, got {text!r}")
    return ks


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, required=False)
    p.add_argument("--k", type=_ks, default=[8, 16, 32, 64], help="components, comma-separated (8,16,32,64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synth and of the split (0)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def format_table(rows: list[dict], title: str) -> str:
    """A Markdown table of pca_baseline_table rows."""
    lines = [f"PCA baseline, {title}", "",
             "| k | SC | LSD (dB) | SNR (dB) | pitch kept (voiced) | flatness x | train variance kept |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        kept = "-" if r.get("pitch_kept") is None else f"{100 * r['pitch_kept']:.1f} % ({r['voiced']})"
        lines.append(f"| {r['k']} | {r['sc']:.3f} | {r['lsd_db']:.2f} | {r['snr_db']:.2f} | {kept} | "
                     f"{r['flatness_ratio']:.2f} | {100 * r['variance_kept']:.1f} % |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        gs = load_grainset(data_spec(args), args.cache_dir, progress=not args.no_progress)
    except (NoAudioError, FileNotFoundError, ValueError) as e:
        print(f"grainbox: {e}")
        return 2
    loaded = time.perf_counter()
    print(gs.describe())
    if len(gs.val) == 0:
        print("grainbox: no validation grains (one source file?): give a larger --val-fraction or more files")
        return 2
    ks = [k for k in args.k if k < len(gs.train)]
    rows = pca_baseline_table(gs.train, gs.val, ks, gs.true_pitch_midi("val"))
    print()
    print(format_table(rows, f"{args.data}: fit on {len(gs.train):,} train grains, "
                             f"scored on {len(gs.val):,} validation grains"))
    print(f"\n(data {loaded - started:.1f} s, PCA and scoring {time.perf_counter() - loaded:.1f} s)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"data": args.data, "fingerprint": gs.fingerprint, "rows": rows},
                                        indent=2))
    return 0
