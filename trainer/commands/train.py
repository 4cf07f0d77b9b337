"""`python -m trainer train --data synth|DIR --out RUN`: train a Grain-VAE, with plots and sounds in RUN.

Works the same on one process and under `torchrun --nproc_per_node=N -m trainer train ...` (only rank 0
writes). RUN/config.json records everything needed to rebuild the model and its data (export reads it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from trainer.data import NoAudioError, load_grainset
from trainer.grain_model import DECODERS, ENCODERS, GrainVAE, GrainVAEConfig, count_parameters
from trainer.grain_report import RunReport
from trainer.loop import TrainConfig, load_checkpoint, train

HELP = (
    "train a Grain-VAE on grains of the built-in synth or an audio folder; plots and WAVs in the run folder"
)


def _sigma(text: str) -> float | None:
    if text == "learned":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--sigma must be 'learned' or a positive number, got {text}")
    return value


def add_data_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The options that choose and cut the grains (shared with `baseline`, so both read the same set)."""
    data = p.add_argument_group("data")
    data.add_argument(
        "--data",
        required=required,
        default=None if required else "synth",
        help="'synth' for the built-in synth, or a folder of audio files" + ("" if required else " (synth)"),
    )
    data.add_argument(
        "--synth-grains", type=int, default=20_000, help="grains rendered for --data synth (20000)"
    )
    data.add_argument(
        "--hop", type=int, default=512, help="samples between grains cut from audio files (512)"
    )
    data.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of grains kept for validation (0.1)"
    )
    data.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where decoded grains are cached (default: $GRAINBOX_CACHE or ~/.cache/grainbox)",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)

    model = p.add_argument_group("model")
    model.add_argument("--latent-dim", type=int, default=16, help="size Z of the latent space (16)")
    model.add_argument(
        "--decoder",
        choices=DECODERS,
        default="harmonic",
        help="the decoder: 'harmonic' (the default) is an oscillator bank at a predicted f0 plus filtered "
        "noise, DDSP-like; 'noise' is filtered noise only, after Bitton et al. 2020; 'conv' is "
        "transposed convolutions",
    )
    model.add_argument(
        "--encoder",
        choices=ENCODERS,
        default=None,
        help="spectral: MLP on log spectra and pitch; conv: strided convolutions "
        "(default: spectral, conv for --decoder conv and noise as they were benchmarked)",
    )
    model.add_argument(
        "--width", type=int, default=32, help="channels of the outer conv layers, doubling inwards (32)"
    )
    model.add_argument("--depth", type=int, default=4, help="stride-4 conv layers in encoder and decoder (4)")
    model.add_argument(
        "--sigma",
        type=_sigma,
        default=None,
        help="std of the Gaussian likelihood, or 'learned' for a learned global sigma (learned)",
    )
    model.add_argument(
        "--spectral-weight",
        type=float,
        default=1.0,
        help="weight of the multi-resolution STFT loss per sample; 0 turns it off (1.0)",
    )

    run = p.add_argument_group("training")
    run.add_argument(
        "--out", type=Path, required=True, help="run folder for checkpoints, plots, WAVs, metrics"
    )
    run.add_argument(
        "--minutes", type=float, default=None, help="wall-clock budget in minutes (--resume: minutes more)"
    )
    run.add_argument(
        "--cpu-minutes",
        type=float,
        default=None,
        help="budget in minutes of this process's CPU time (a fair budget on a busy machine)",
    )
    run.add_argument("--steps", type=int, default=None, help="stop after this many optimiser steps")
    run.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="stop after this many epochs (with none of the three: 10 minutes)",
    )
    run.add_argument("--batch-size", type=int, default=64, help="grains per step and process (64)")
    run.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (0.001)")
    run.add_argument("--beta-max", type=float, default=1.0, help="final KL weight beta (1.0)")
    run.add_argument(
        "--warmup-steps", type=int, default=5000, help="steps for beta to rise from 0 to beta-max (5000)"
    )
    run.add_argument("--seed", type=int, default=0, help="seed of data split, initialisation and order (0)")
    run.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="steps between validation passes (default: about 20 in the run: --steps / 20, or every "
        "--minutes * 3 s of a timed run, and every 500 steps)",
    )
    run.add_argument(
        "--plot-seconds",
        type=float,
        default=60.0,
        help="refresh plots and WAVs at most this often during training (60)",
    )
    run.add_argument("--checkpoint-minutes", type=float, default=5.0, help="minutes between checkpoints (5)")
    run.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps"
    )
    run.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    run.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    run.add_argument(
        "--resume", action="store_true", help="continue RUN from RUN/checkpoints/last.pt exactly"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def data_spec(args: argparse.Namespace) -> dict:
    """How to rebuild the same GrainSet later (export, resume): stored in config.json and checkpoints."""
    data = args.data if args.data == "synth" else str(Path(args.data).resolve())
    return {
        "data": data,
        "hop": args.hop,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "synth_grains": args.synth_grains,
    }


def figures_line(m: dict) -> str:
    """One line of a metrics dict: SC, LSD, SNR, pitch kept (of how many voiced), flatness recon / source."""
    line = f"SC {m['sc']:.3f}  LSD {m['lsd_db']:.2f} dB  SNR {m['snr_db']:.2f} dB"
    if m.get("pitch_kept") is not None:
        line += f"  pitch kept {m['pitch_kept']:.0%} of {m['voiced']} voiced"
    if m.get("true_pitch_kept") is not None:
        line += f" ({m['true_pitch_kept']:.0%} on the note played)"
    if "flatness_ratio" in m:
        line += f"  flatness x{m['flatness_ratio']:.2f} the source's"
    return line


# metric key, name in words, which way is better ("lower", "higher", or "one": a ratio best at 1)
VERDICT_METRICS = (
    ("sc", "spectral match (SC)", "lower"),
    ("lsd_db", "log-spectral distance", "lower"),
    ("snr_db", "waveform SNR", "higher"),
    ("pitch_kept", "pitch kept", "higher"),
    ("flatness_ratio", "noisiness (flatness)", "one"),
)
EVALS_PER_RUN = 20  # validation passes a run draws its curves from, unless --eval-every says otherwise
USEFUL_WARMUPS = 2  # a model is worth listening to after about twice the KL warm-up (factory: 11,000 steps)
MIN_EVALS = 3  # fewer validation points draw no curve


def verdict(vae: dict, pca: dict) -> str:
    """One line: on which metrics the model beats the PCA baseline at the same latent size, and on which
    it does not (a VAE that loses to PCA everywhere has learned nothing a linear map could not)."""
    better, worse = [], []
    for key, name, way in VERDICT_METRICS:
        a, b = vae.get(key), pca.get(key)
        if a is None or b is None:
            continue
        wins = a < b if way == "lower" else a > b if way == "higher" else abs(math.log(a)) < abs(math.log(b))
        (better if wins else worse).append(name)
    k = pca.get("k", "?")
    if not worse:
        return f"verdict: the model beats PCA k={k} on every figure ({', '.join(better)})"
    if not better:
        return f"verdict: PCA k={k} is better on every figure ({', '.join(worse)}): train longer"
    return f"verdict: the model beats PCA k={k} on {', '.join(better)}; PCA is better on {', '.join(worse)}"


def short_run_warning(summary: dict, warmup_steps: int) -> str | None:
    """A warning, with what to do, when a run was too short to be worth listening to; else None."""
    steps, seconds, evals = summary["steps"], summary["seconds"], len(summary["history"])
    needed = USEFUL_WARMUPS * warmup_steps
    why = []
    if steps < warmup_steps:
        why.append(f"the KL warm-up is unfinished (step {steps:,} of {warmup_steps:,})")
    elif steps < needed:
        why.append(f"{steps:,} steps is few (about {needed:,} make a playable model)")
    if evals < MIN_EVALS:
        why.append(f"only {evals} validation point{'s' if evals != 1 else ''}, so no learning curve")
    if not why:
        return None
    rate = steps / seconds if seconds > 0 else 0.0
    advice = f"this data needs about {needed:,} steps"
    if rate > 0 and steps < needed:
        more = math.ceil((needed - steps) / rate / 60)
        advice += (f"; at the measured {rate:.1f} steps/s that is {more} more minutes: "
                   f"continue with --resume --minutes {more}")
    return f"warning: this run is too short to be useful: {'; '.join(why)}. {advice[0].upper()}{advice[1:]}"


def in_words(vae: dict, pca: dict) -> str:
    """The validation figures a musician can read: how close the spectra are, and pitch, against PCA."""
    words = f"spectral match {max(0.0, 1 - vae['sc']):.0%} (PCA {max(0.0, 1 - pca['sc']):.0%})"
    if vae.get("pitch_kept") is not None:
        words += f", pitch kept {vae['pitch_kept']:.0%} (PCA {pca.get('pitch_kept', 0) or 0:.0%})"
    return words


def _write_progress(line: str, bar: bool) -> None:
    if bar:
        tqdm.write(line)  # above the progress bar, not through it
    else:
        print(line, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    rank = int(os.environ.get("RANK", "0"))
    if args.minutes is None and args.steps is None and args.epochs is None and args.cpu_minutes is None:
        args.minutes = 10.0
        if rank == 0:
            print("no --minutes, --steps or --epochs given: training for 10 minutes")

    spec = data_spec(args)
    model_cfg = GrainVAEConfig(
        latent_dim=args.latent_dim,
        decoder=args.decoder,
        encoder=args.encoder or ("spectral" if args.decoder == "harmonic" else "conv"),
        width=args.width,
        depth=args.depth,
        sigma=args.sigma,
        spectral_weight=args.spectral_weight,
    )
    if args.resume:
        last = args.out / "checkpoints" / "last.pt"
        if not last.is_file():
            print(f"error: --resume but {last} does not exist; run without --resume to start {args.out}")
            return 2
        saved = load_checkpoint(last)["extra"]
        if saved.get("data") != spec or saved.get("model") != model_cfg.to_dict():
            print(
                "error: --resume with different options than the run was started with:\n"
                f"  data  then {saved.get('data')}\n        now  {spec}\n"
                f"  model then {saved.get('model')}\n        now  {model_cfg.to_dict()}\n"
                "give the same options, or start a new run folder"
            )
            return 2
    elif rank == 0 and (args.out / "checkpoints" / "last.pt").exists():
        print(f"error: {args.out} already holds a run; add --resume to continue it, or choose another --out")
        return 2

    try:
        grains = load_grainset(spec, args.cache_dir, progress=not args.no_progress and rank == 0)
    except (NoAudioError, OSError) as e:
        print(f"error: {e}")
        return 2
    if len(grains.train) == 0 or len(grains.val) == 0:
        print(
            f"error: {len(grains.train)} training and {len(grains.val)} validation grains are too few to "
            "train on; add audio (a few seconds at least) or change --val-fraction"
        )
        return 2
    if rank == 0:
        print(grains.describe())  # what was loaded, skipped, dropped and how it was split: once per run

    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = GrainVAE(model_cfg)
    cfg = TrainConfig(
        out=args.out,
        batch_size=args.batch_size,
        lr=args.lr,
        steps=args.steps,
        epochs=args.epochs,
        minutes=args.minutes,
        cpu_minutes=args.cpu_minutes,
        beta_max=args.beta_max,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        eval_every=args.eval_every or (max(1, args.steps // EVALS_PER_RUN) if args.steps else 500),
        eval_seconds=(
            None if args.eval_every or args.minutes is None else max(5.0, args.minutes * 60 / EVALS_PER_RUN)
        ),
        checkpoint_minutes=args.checkpoint_minutes,
        device=args.device,
        amp=not args.no_amp,
        resume=args.resume,
        progress=not args.no_progress,
    )
    extra = {"model": model_cfg.to_dict(), "data": spec, "kind": "grain-vae"}
    if rank == 0:
        args.out.mkdir(parents=True, exist_ok=True)
        config = {
            "train": cfg.to_dict(),
            **extra,
            "dataset": grains.summary,
            "fingerprint": grains.fingerprint,
            "parameters": {
                "encoder": count_parameters(model.encoder),
                "decoder": count_parameters(model.decoder),
            },
        }
        (args.out / "config.json").write_text(json.dumps(config, indent=1, default=str))
        n_enc, n_dec = config["parameters"]["encoder"], config["parameters"]["decoder"]
        print(f"model: {model_cfg.decoder} decoder, Z={model_cfg.latent_dim}: {n_enc:,} + {n_dec:,} weights")

    report = RunReport(model, grains, args.out, refresh_seconds=args.plot_seconds, seed=args.seed)

    def on_eval(step: int, val: dict) -> None:
        if (metrics := report.on_eval(step, val)) is not None:
            _write_progress(f"step {step:,}: {in_words(metrics['val'], metrics['pca'])}", cfg.progress)

    summary = train(
        model,
        torch.from_numpy(np.array(grains.train)),  # writable copies of the cache's read-only memmaps
        torch.from_numpy(np.array(grains.val)),
        cfg,
        on_eval=on_eval,
        fingerprint=grains.fingerprint,
        extra_state=extra,
    )
    if rank == 0:
        # The figures, WAVs and verdict describe the best checkpoint: the model export ships.
        best = args.out / "checkpoints" / "best.pt"
        best_step = summary["steps"]
        if best.is_file():
            state = load_checkpoint(best)
            model.load_state_dict(state["model"])
            best_step = state["step"]
        metrics = report.refresh(best_step, summary["val"] if best_step == summary["steps"] else None)
        m, p = metrics["val"], metrics["pca"]
        print(
            f"done: {summary['steps']} steps in {summary['seconds'] / 60:.1f} min on {summary['device']}"
            f" (x{summary['world_size']}); best validation loss {summary['best_val_loss']:.5g} (at beta_max)"
            f" at step {best_step:,}: the checkpoint export ships, described below and in the WAVs"
        )
        print(f"validation VAE: {figures_line(m)}")
        print(f"      PCA k={p['k']}: {figures_line(p)}")
        print(verdict(m, p))
        if warning := short_run_warning(summary, args.warmup_steps):
            print(warning)
        if args.resume and summary["steps_this_start"] == 0:
            print(f"no more steps: the run was already at step {summary['steps']:,} and "
                  f"{summary['stopped_by']}; raise it, or give --minutes for more time")
        print(f"run folder: {args.out} (plots/, audio/, metrics.json, checkpoints/best.pt)")
    return 0
