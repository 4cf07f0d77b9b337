"""`python -m trainer mnist --latent-dim Z --minutes M --out RUN`: the MNIST VAE, trained and scored.

Trains Kingma & Welling's MLP VAE (or the improved preset) on dynamically binarised MNIST with the shared
loop (trainer/loop.py), then writes into RUN:

    metrics.json          test ELBO and importance-weighted log-likelihood (nats per image), run facts
    model.pt              config + final weights (MnistVAE.from_state rebuilds it)
    elbo_curves.png       train and test ELBO against images seen (refreshed at every validation)
    samples.png, reconstructions.png, and for a 2-D latent manifold.png and latent_scatter.png
    checkpoints/, history.json   the loop's (resume with --resume)

Data: the 60,000 training images minus the last --val-images (held out for the loop's validation), each
batch binarised afresh; the 10,000 test images binarised once with seed 0. Figures use the final weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

from trainer.loop import TrainConfig, train
from trainer.mnist.data import DEFAULT_DATA, IdxError, fixed_binarization, load_mnist
from trainer.mnist.eval import evaluate, mean_elbo
from trainer.mnist.model import MnistVAE, MnistVAEConfig
from trainer.mnist.plots import (
    plot_elbo_curves,
    plot_latent_scatter,
    plot_manifold,
    plot_reconstructions,
    plot_samples,
)

HELP = "train the MNIST VAE of Kingma & Welling (2013) and score it: test ELBO, importance-weighted log p(x)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("data")
    data.add_argument("--data", type=Path, default=DEFAULT_DATA,
                      help="folder with the four MNIST IDX files, gzipped or not (default: "
                           "shared/datasets/mnist beside the project folder)")
    data.add_argument("--val-images", type=int, default=5000,
                      help="training images held out for validation and the best checkpoint (5000)")

    model = p.add_argument_group("model")
    model.add_argument("--latent-dim", type=int, default=20, help="size Z of the latent space (20)")
    model.add_argument("--preset", choices=("improved", "kingma2013"), default="improved",
                       help="improved: 2 x 500 ELU layers; kingma2013: the paper's 1 x 500 tanh (improved)")
    model.add_argument("--hidden", type=int, default=None, help="units per hidden layer (preset: 500)")
    model.add_argument("--layers", type=int, default=None, help="hidden layers per network (preset)")
    model.add_argument("--activation", default=None, help="tanh, relu, elu, softplus, gelu (preset)")

    run = p.add_argument_group("training")
    run.add_argument("--out", type=Path, required=True, help="run folder: metrics, plots, model, checkpoints")
    run.add_argument("--minutes", type=float, default=None, help="wall-clock budget in minutes")
    run.add_argument("--steps", type=int, default=None, help="stop after this many optimiser steps")
    run.add_argument("--epochs", type=int, default=None,
                     help="stop after this many epochs (with none of the three: 10 minutes)")
    run.add_argument("--batch-size", type=int, default=128, help="images per step (128)")
    run.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (0.001)")
    run.add_argument("--beta-max", type=float, default=1.0, help="final KL weight beta (1.0: the true ELBO)")
    run.add_argument("--warmup-steps", type=int, default=2000,
                     help="steps for beta to rise from 0 to beta-max; 0 for none (2000)")
    run.add_argument("--seed", type=int, default=0, help="seed of weights, data order and binarisation (0)")
    run.add_argument("--eval-every", type=int, default=1000, help="steps between validation passes (1000)")
    run.add_argument("--checkpoint-minutes", type=float, default=5.0, help="minutes between checkpoints (5)")
    run.add_argument("--device", default="cpu", help="cpu, auto (CUDA, then MPS, then CPU), cuda, mps (cpu)")
    run.add_argument("--threads", type=int, default=None, help="CPU threads for torch (torch's choice)")
    run.add_argument("--resume", action="store_true", help="continue RUN from RUN/checkpoints/last.pt")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    score = p.add_argument_group("evaluation")
    score.add_argument("--iw-k", type=int, default=1000,
                       help="importance samples per image for the log-likelihood estimate; 0 skips it (1000)")
    score.add_argument("--iw-images", type=int, default=1000,
                       help="test images for that estimate (k decoder passes each); 0 for all 10000 (1000)")


def run(args: argparse.Namespace) -> int:
    try:
        data = load_mnist(args.data)
    except IdxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not 0 < args.val_images < len(data.train_images):
        print(f"error: --val-images must be between 1 and {len(data.train_images) - 1}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)

    preset = MnistVAEConfig.kingma2013 if args.preset == "kingma2013" else MnistVAEConfig.improved
    overrides = {k: v for k in ("hidden", "layers", "activation") if (v := getattr(args, k)) is not None}
    try:
        config = dataclasses.replace(preset(args.latent_dim), **overrides)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = MnistVAE(config)
    train_images = data.train_images[: -args.val_images]
    val_binary = fixed_binarization(data.train_images[-args.val_images :], seed=1)
    test_binary = fixed_binarization(data.test_images, seed=0)
    model.init_output_bias(train_images.mean(dim=0))

    if args.steps is None and args.epochs is None and args.minutes is None:
        args.minutes = 10.0
    cfg = TrainConfig(out=args.out, batch_size=args.batch_size, lr=args.lr, steps=args.steps,
                      epochs=args.epochs, minutes=args.minutes, beta_max=args.beta_max,
                      warmup_steps=args.warmup_steps, seed=args.seed, eval_every=args.eval_every,
                      checkpoint_minutes=args.checkpoint_minutes, device=args.device, resume=args.resume,
                      progress=not args.no_progress)
    out = Path(args.out)
    curves = out / "elbo_curves.png"

    def history_curves() -> tuple[list, list]:
        history = json.loads((out / "history.json").read_text())
        train_curve = [(h["step"], h["train"]["elbo"]) for h in history if "elbo" in h["train"]]
        test_curve = [(h["step"], h["val"]["test_elbo"]) for h in history if "test_elbo" in h["val"]]
        return train_curve, test_curve

    def on_eval(step: int, val: dict) -> None:
        # Stored in the validation record, which the loop keeps in history.json and its checkpoints, so the
        # test curve survives --resume. Scored in eval mode on fixed binary images: cheap (~10k forwards).
        val["test_elbo"] = mean_elbo(model, test_binary)
        train_curve, test_curve = history_curves()
        test_curve.append((step, val["test_elbo"]))
        plot_elbo_curves(train_curve, test_curve, curves, images_per_step=args.batch_size)

    started, load_at_start = time.time(), os.getloadavg()[0]
    extra = {"mnist_model": {"config": dataclasses.asdict(config)}, "data": data.summary()}
    summary = train(model, train_images, val_binary, cfg, on_eval=on_eval, fingerprint=data.fingerprint,
                    extra_state=extra)
    model.cpu().eval()

    iw_images = None if args.iw_images == 0 else args.iw_images
    t_eval = time.perf_counter()
    metrics = evaluate(model, test_binary, iw_k=args.iw_k, iw_images=iw_images)
    eval_seconds = time.perf_counter() - t_eval
    train_curve, test_curve = history_curves()
    plot_elbo_curves(train_curve, test_curve, curves, images_per_step=args.batch_size)
    plot_samples(model, out / "samples.png")
    plot_reconstructions(model, test_binary, out / "reconstructions.png")
    if config.latent_dim == 2:
        plot_manifold(model, out / "manifold.png")
        plot_latent_scatter(model, test_binary, data.test_labels, out / "latent_scatter.png")

    result = {
        **metrics,
        "latent_dim": config.latent_dim,
        "preset": args.preset,
        "model": dataclasses.asdict(config),
        "optimiser": f"Adam lr {args.lr}, batch {args.batch_size}",
        "beta": f"linear warm-up 0 -> {args.beta_max} over {args.warmup_steps} steps",
        "binarisation": "dynamic: a fresh Bernoulli sample of every training image at every step; "
        "test set binarised once (seed 0)",
        "train_images": len(train_images),
        "val_images": args.val_images,
        "steps": summary["steps"],
        "epochs": summary["epochs"],
        "images_seen": summary["steps"] * args.batch_size,
        "train_seconds": summary["seconds"],
        "eval_seconds": round(eval_seconds, 2),
        "threads": torch.get_num_threads(),
        "load_avg_1min": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],  # start, end
        "active_units": summary["val"].get("active_units"),
        "data": data.summary(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds": round(time.time() - started, 2),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    torch.save({**model.state(), "metrics": result}, out / "model.pt")

    iw = ""
    if args.iw_k:
        iw = f", log p(x) >= {metrics['test_iw_ll']:.2f} (L_{args.iw_k} on {metrics['iw_images']} images)"
    print(f"MNIST VAE z={config.latent_dim} ({args.preset}): {summary['steps']} steps in "
          f"{summary['seconds']:.0f} s; test ELBO {metrics['test_elbo']:.2f} nats{iw}; results in {out}")
    return 0
