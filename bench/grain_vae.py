"""Grain-VAE against PCA (issue 3): train latent 16 for N minutes, score it and PCA k = 16 and 64 on the same
validation grains, on the built-in synth set and on ../shared/datasets/timgm6mb-notes.

    .venv/bin/python bench/grain_vae.py                   # 10 minutes per set, one thread: ~22 minutes
    .venv/bin/python bench/grain_vae.py --minutes 2       # a shorter look
    .venv/bin/python bench/grain_vae.py --decoder conv    # the transposed-convolution decoder instead

Each training is `python -m trainer train` (the command users run) under `flock /tmp/grainbox-bench.lock`,
so it never overlaps another heavy benchmark. The VAE is scored from its best checkpoint (lowest validation
loss) on every validation grain: decode(posterior mean). PCA is fitted on the same training grains.
The bar (issue 3): the VAE beats PCA k = 16 on SC and LSD on both sets; the goal: it beats PCA k = 64.
The decode time is measured on the exported model (the artifact the box plays), batch 1, one thread.
The machine is shared: the load average beside each row says how many cores the training really had.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.decode import cpu_name, time_decode  # noqa: E402
from runtime.artifact import load_model  # noqa: E402
from trainer.commands.train import load_grainset  # noqa: E402
from trainer.export import export_run, load_trained, resolve_checkpoint  # noqa: E402
from trainer.metrics import evaluate  # noqa: E402
from trainer.pca import pca_baseline_table  # noqa: E402

NOTES = REPO.parent / "shared" / "datasets" / "timgm6mb-notes"
LOCK = "/tmp/grainbox-bench.lock"


def train_run(data: str, out: Path, minutes: float, decoder: str, threads: int) -> float:
    """One `python -m trainer train` under the bench lock; returns the load average while it trained."""
    cmd = [
        "flock", LOCK, "nice", "-n", "10", sys.executable, "-m", "trainer", "train",
        "--data", data, "--out", str(out), "--latent-dim", "16", "--decoder", decoder,
        "--minutes", str(minutes), "--threads", str(threads), "--no-progress", "--plot-seconds", "600",
    ]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    started = time.time()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    loads = []
    for line in proc.stdout:
        loads.append(os.getloadavg()[0])
        if line.startswith(("data:", "model:", "done:", "error")):
            print(f"    {line.rstrip()}", flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"training on {data} failed (exit {proc.returncode}); see {out}")
    print(f"    ({(time.time() - started) / 60:.1f} min including the wait for the lock)", flush=True)
    return float(np.mean(loads)) if loads else os.getloadavg()[0]


def score(run: Path) -> tuple[list[dict], dict]:
    """Rows for the VAE and PCA k = 16, 64 on the run's validation grains, and run facts."""
    checkpoint = resolve_checkpoint(run)
    model, ckpt = load_trained(checkpoint)
    grains = load_grainset(ckpt["extra"]["data"], progress=False)
    val = np.array(grains.val, dtype=np.float32)
    with torch.no_grad():
        recon = torch.cat(
            [model.reconstruct(torch.from_numpy(val[i : i + 512])) for i in range(0, len(val), 512)]
        )
    rows = [{"model": f"VAE z16 {model.cfg.decoder}", **evaluate(val, recon)}]
    for row in pca_baseline_table(np.asarray(grains.train), val, [16, 64]):
        rows.append({"model": f"PCA k={row['k']}", **row})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.ts"
        export_run(run, path, name="bench")
        torch.set_num_threads(1)
        decode_us = time_decode(load_model(path), 1, 2.0) * 1e6
    facts = {
        "steps": ckpt["step"], "best_step": ckpt["step"], "minutes": ckpt["seconds"] / 60,
        "train_grains": len(grains.train), "val_grains": len(val), "decode_us": decode_us,
    }  # fmt: skip
    return rows, facts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="training minutes per data set (10)")
    p.add_argument("--decoder", choices=("noise", "conv"), default="noise", help="decoder type (noise)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for training (1: on this shared 2-core machine 2 threads ran 3x slower)",
    )
    p.add_argument("--notes", type=Path, default=NOTES, help=f"the instrument-notes folder ({NOTES})")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench-grain-vae", help="run folders")
    p.add_argument("--only", choices=("synth", "notes"), default=None, help="one data set only")
    args = p.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs ({platform.machine()}), torch {torch.__version__}")
    sets = [("synth", "synth")]
    if args.notes.is_dir():
        sets.append(("notes", str(args.notes)))
    else:
        print(f"skipping timgm6mb-notes: {args.notes} does not exist (it is on the project's machines only)")
    sets = [s for s in sets if args.only in (None, s[0])]
    results = []
    for name, data in sets:
        run = args.out / f"{name}-{args.decoder}-{args.minutes:g}min"
        if (run / "checkpoints" / "last.pt").exists():
            print(f"{name}: reusing the finished run in {run} (delete it to train again)")
            load = float("nan")
        else:
            print(
                f"{name}: training latent 16 ({args.decoder}) for {args.minutes:g} min -> {run}", flush=True
            )
            load = train_run(data, run, args.minutes, args.decoder, args.threads)
        rows, facts = score(run)
        results.append((name, rows, facts, load))
        (run / "bench.json").write_text(json.dumps({"rows": rows, "facts": facts, "load": load}, indent=1))

    print(f"\n{'set':<7} {'model':<16} {'SC':>7} {'LSD dB':>7} {'SNR dB':>7}   notes")
    for name, rows, facts, load in results:
        for i, row in enumerate(rows):
            note = ""
            if i == 0:
                note = (
                    f"{facts['minutes']:.1f} min, best at step {facts['best_step']}, load {load:.1f}; "
                    f"{facts['train_grains']} train / {facts['val_grains']} val grains"
                )
            figures = f"{row['sc']:>7.3f} {row['lsd_db']:>7.2f} {row['snr_db']:>7.2f}"
            print(f"{name:<7} {row['model']:<16} {figures}   {note}")
    print()
    for name, rows, facts, _ in results:
        vae, pca16, pca64 = rows
        bar = vae["sc"] < pca16["sc"] and vae["lsd_db"] < pca16["lsd_db"]
        goal = vae["sc"] < pca64["sc"] and vae["lsd_db"] < pca64["lsd_db"]
        print(
            f"{name}: beats PCA k=16 on SC and LSD: {'yes' if bar else 'NO'}; beats PCA k=64: "
            f"{'yes' if goal else 'no'}; decode {facts['decode_us']:.0f} µs per grain at batch 1, one thread"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
