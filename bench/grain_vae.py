"""Grain-VAE against PCA and against the old decoder: what a musician hears, on three kinds of sound.

    .venv/bin/python -m bench.grain_vae                    # 10 CPU-minutes per model and set: ~35 min
    .venv/bin/python -m bench.grain_vae --cpu-minutes 2    # a shorter look
    .venv/bin/python -m bench.grain_vae --only notes       # one set

Sets: the built-in synth, ../shared/datasets/timgm6mb-notes (instrument notes) and timgm6mb-drums (one-shots).
Models, latent 16, each trained by `python -m trainer train` (the command users run) for the same budget of
CPU time on one thread, so a busy machine slows the run but does not change what each model got:
  - the default: harmonic decoder (oscillator bank at the measured pitch + filtered noise), spectral encoder;
  - the old default: filtered-noise decoder (Bitton et al. 2020), convolutional encoder;
  - PCA with k = 16 and k = 64, fitted on the same training grains.
All are scored on every validation grain with trainer/metrics.py: SC, LSD, SNR, pitch kept (share of the
voiced source grains whose reconstruction keeps their f0 within 50 cents), the number voiced, the
reconstructions' spectral flatness over the sources' (1 is right; above 1 is noisier), and on the synth set
the share of pitched grains on the note played. VAEs are scored from their best checkpoint, decode(mean).
Decode time is measured on each exported model (the artifact the box plays), batch 1, one thread.

The bar: the default beats PCA k = 16 on pitch kept, SC and LSD on notes and synth; the goal: PCA k = 64 on
pitch kept and SC. On drums it must not lose to the old decoder on SC and LSD.
Two trainings run at once (--jobs, one thread each) on a 2-core machine; the load average is printed.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from bench.decode import cpu_name, time_decode
from runtime.artifact import load_model
from trainer.data import load_grainset
from trainer.export import export_run, load_trained, resolve_checkpoint
from trainer.metrics import evaluate
from trainer.pca import pca_baseline_table

REPO = Path(__file__).resolve().parent.parent

DATASETS = REPO.parent / "shared" / "datasets"
SETS = {"synth": "synth", "notes": DATASETS / "timgm6mb-notes", "drums": DATASETS / "timgm6mb-drums"}
def spec(data: str) -> dict:
    """The data spec every run of the benchmark trains on (train's defaults)."""
    return {"data": data, "hop": 512, "val_fraction": 0.1, "seed": 0, "synth_grains": 20_000}


MODELS = {"harmonic": ["--decoder", "harmonic"], "old noise": ["--decoder", "noise", "--encoder", "conv"]}


def train_run(data: str, out: Path, cpu_minutes: float, options: list[str]) -> float:
    """One `python -m trainer train` on one thread; returns the mean load average while it trained."""
    cmd = [
        sys.executable, "-m", "trainer", "train", "--data", data, "--out", str(out), "--latent-dim", "16",
        *options, "--cpu-minutes", str(cpu_minutes), "--threads", "1", "--no-progress",
        "--plot-seconds", "1e9",
    ]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    loads = []
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    with subprocess.Popen(cmd, cwd=REPO, env=env, **pipe) as p:
        for line in p.stdout:
            loads.append(os.getloadavg()[0])
            if line.startswith(("done:", "error")):
                print(f"    {out.name}: {line.rstrip()}", flush=True)
    if p.returncode != 0:
        raise SystemExit(f"training {out} failed (exit {p.returncode}); see {out}")
    return float(np.mean(loads)) if loads else os.getloadavg()[0]


def score_vae(run: Path, val: np.ndarray, truth) -> dict:
    model, ckpt = load_trained(resolve_checkpoint(run))
    with torch.no_grad():
        recon = torch.cat(
            [model.reconstruct(torch.from_numpy(val[i : i + 512])) for i in range(0, len(val), 512)]
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.ts"
        export_run(run, path, name="bench")
        torch.set_num_threads(1)
        decode_us = time_decode(load_model(path), 1, 2.0) * 1e6
    facts = {"steps": ckpt["step"], "cpu_minutes": ckpt.get("cpu_seconds", 0) / 60, "decode_us": decode_us}
    return evaluate(val, recon, truth) | facts


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def row_text(name: str, model: str, r: dict) -> str:
    kept = "-" if r.get("pitch_kept") is None else f"{r['pitch_kept']:.3f} ({r['voiced']})"
    return (
        f"{name:<6} {model:<10} {r['sc']:>6.3f} {r['lsd_db']:>7.2f} {r['snr_db']:>7.2f} {kept:>13} "
        f"{fmt(r.get('true_pitch_kept'), '.3f'):>6} {r['flatness_ratio']:>7.2f} "
        f"{fmt(r.get('decode_us'), '.0f'):>6} {r.get('note', '')}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-minutes", type=float, default=10.0, help="CPU minutes of training per model (10)")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once, one thread each (2)")
    p.add_argument("--only", choices=tuple(SETS), action="append", help="this set only (repeatable)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench-grain-vae", help="run folders")
    args = p.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs ({platform.machine()}), torch {torch.__version__}")
    sets = {}
    for name, data in SETS.items():
        if args.only and name not in args.only:
            continue
        if data != "synth" and not Path(data).is_dir():
            print(f"skipping {name}: {data} does not exist (it is on the project's machines only)")
            continue
        sets[name] = str(data)

    jobs = []
    for name, data in sets.items():
        load_grainset(spec(data), progress=False)  # fill the cache once, before parallel runs race for it
        for model, options in MODELS.items():
            run = args.out / f"{name}-{model.replace(' ', '-')}-{args.cpu_minutes:g}cpumin"
            jobs.append((name, model, data, run, options))
    started = time.time()
    loads: dict[Path, float] = {}

    def train(job) -> None:
        name, model, data, run, options = job
        if (run / "checkpoints" / "last.pt").exists():
            print(f"{run.name}: reusing the finished run (delete it to train again)", flush=True)
            loads[run] = float("nan")
            return
        print(f"{run.name}: training for {args.cpu_minutes:g} CPU-minutes", flush=True)
        loads[run] = train_run(data, run, args.cpu_minutes, options)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(train, jobs))
    print(f"training done in {(time.time() - started) / 60:.1f} min of wall time\n", flush=True)

    results: dict[str, list[tuple[str, dict]]] = {}
    for name, data in sets.items():
        grains = load_grainset(spec(data), progress=False)
        val = np.array(grains.val, dtype=np.float32)
        truth = grains.true_pitch_midi("val")
        rows = []
        for job_name, model, _, run, _ in jobs:
            if job_name == name:
                r = score_vae(run, val, truth)
                r["note"] = f"{r['steps']} steps, {r['cpu_minutes']:.1f} CPU-min, load {loads[run]:.1f}"
                rows.append((model, r))
        for r in pca_baseline_table(np.asarray(grains.train), val, [16, 64], truth):
            rows.append((f"PCA k={r['k']}", r))
        results[name] = rows
        summary = {model: r for model, r in rows}
        (args.out / f"bench-{name}.json").write_text(json.dumps(summary, indent=1, default=float))
        print(f"{name}: {len(grains.train)} train / {len(val)} val grains", flush=True)

    print(
        f"\n{'set':<6} {'model':<10} {'SC':>6} {'LSD dB':>7} {'SNR dB':>7} {'pitch kept':>13} "
        f"{'true':>6} {'flat x':>7} {'dec µs':>6}"
    )
    for name, rows in results.items():
        for model, r in rows:
            print(row_text(name, model, r))
    print("\npitch kept: share of voiced source grains (count) kept within 50 cents; true: on the note "
          "played (synth); flat x: reconstructions' median spectral flatness / the sources'")  # fmt: skip
    for name, rows in results.items():
        r = dict(rows)
        new, old, pca16, pca64 = r["harmonic"], r["old noise"], r["PCA k=16"], r["PCA k=64"]

        def beats(a: dict, b: dict, keys: tuple[str, ...]) -> str:
            won = []
            for k in keys:
                if k == "pitch_kept":
                    ok = a[k] is not None and b[k] is not None and a[k] > b[k]
                else:
                    ok = a[k] < b[k]
                won.append(f"{k} {'yes' if ok else 'NO'}")
            return ", ".join(won)

        print(f"{name}: beats PCA k=16: {beats(new, pca16, ('pitch_kept', 'sc', 'lsd_db'))}; "
              f"PCA k=64: {beats(new, pca64, ('pitch_kept', 'sc'))}; "
              f"old decoder: {beats(new, old, ('sc', 'lsd_db'))}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
