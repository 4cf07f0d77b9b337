"""The training loop shared by the Grain-VAE and the MNIST VAE: one function, read top to bottom.

    summary = train(model, train_data, val_data, TrainConfig(out=Path("runs/x"), minutes=10))

The model is any nn.Module with `forward_loss(x, beta) -> dict` ("loss", "recon", "kl", "kl_per_dim", and
any other scalars to log). The loop owns everything else: the device (CUDA, then Apple MPS, then CPU),
mixed precision on CUDA, Adam, the beta warm-up, the stopping rule (steps, epochs or minutes, whichever
comes first), validation every `eval_every` steps, checkpoints, history.json and the progress bar.

Distributed data-parallel: launched by `torchrun --nproc_per_node=N`, every process runs this same code on
its own shard of each epoch (the shuffled indices split rank::world_size); gradients are averaged by DDP;
rank 0 alone validates and writes files; the stop decision is rank 0's, broadcast every step so that all
processes stop on the same step. Without torchrun it is a world of one and nothing changes.

Exact resume: the data order of epoch e is a permutation drawn from (seed, e), so the position
(epoch, batch in epoch) plus the saved RNG states, model and optimiser put a resumed run on the very same
path as the uninterrupted one. Validation draws its noise from its own fixed seed and never touches the
training RNG.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from trainer.vae import BetaSchedule, active_units


@dataclass
class TrainConfig:
    out: Path  # run folder; only rank 0 writes
    batch_size: int = 64  # per process
    lr: float = 1e-3
    steps: int | None = None  # stop after this many optimiser steps
    epochs: int | None = None  # or epochs
    # or a wall-clock budget (whichever comes first); on resume, time *added* to the run
    minutes: float | None = None
    cpu_minutes: float | None = None  # or a budget of this process's CPU time: fair on a shared machine
    beta_max: float = 1.0
    warmup_steps: int = 5000
    seed: int = 0
    eval_every: int = 500  # steps between validation passes
    eval_seconds: float | None = None  # and at least this often in time, so a timed run draws curves
    checkpoint_minutes: float = 5.0
    device: str = "auto"  # CUDA, then MPS, then CPU
    amp: bool = True  # mixed precision, CUDA only
    resume: bool = False
    progress: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


class _LossModule(nn.Module):
    """Routes forward() to forward_loss(): DistributedDataParallel syncs the gradients of forward() only."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, beta: float) -> dict[str, Tensor]:
        return self.model.forward_loss(x, beta)


# ---------------------------------------------------------------------------------------------------------
# Devices and processes


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """ "auto": CUDA, then Apple MPS, then CPU. Anything else is passed to torch.device ("cpu", "cuda:1")."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _init_distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; a world of one otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if world > 1:
        return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------------------
# Data order


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1
) -> list[Tensor]:
    """This rank's batches of example indices for one epoch: a permutation seeded by (seed, epoch), padded
    by wrapping around so every rank gets the same number of batches (as DistributedSampler does)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    per_rank = math.ceil(n / world)
    if per_rank * world > n:
        perm = torch.cat([perm, perm[: per_rank * world - n]])
    mine = perm[rank::world]
    return list(mine.split(batch_size))


# ---------------------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, data: Tensor, beta: float, device: torch.device, batch_size: int = 256, seed: int = 1234
) -> dict[str, float]:
    """Mean of every scalar in forward_loss over `data`, plus KL per dimension and active units.

    The reparameterisation noise comes from a fixed seed inside fork_rng: the same model gives the same
    validation loss, and the training RNG is left untouched (exact resume depends on it).
    """
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    kl_dims = None
    mus = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(data), batch_size):
            x = data[i : i + batch_size].to(device)
            out = model.forward_loss(x, beta)
            for k, v in out.items():
                if k == "kl_per_dim":
                    kl_dims = v * len(x) if kl_dims is None else kl_dims + v * len(x)
                elif v.ndim == 0:
                    sums[k] = sums.get(k, 0.0) + float(v) * len(x)
            if hasattr(model, "encode"):
                mus.append(model.encode(x)[0].float().cpu())
    model.train(was_training)
    metrics = {k: v / len(data) for k, v in sums.items()}
    if kl_dims is not None:
        metrics["kl_per_dim"] = (kl_dims / len(data)).float().cpu().tolist()
    if mus:
        metrics["active_units"] = active_units(torch.cat(mus))
    return metrics


# ---------------------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file, then rename: a checkpoint is the old one or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path | str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------
# The loop


def train(
    model: nn.Module,
    train_data: Tensor,
    val_data: Tensor,
    cfg: TrainConfig,
    *,
    on_eval: Callable[[int, dict], None] | None = None,
    fingerprint: str = "",
    extra_state: dict | None = None,
) -> dict:
    """Train `model` on `train_data` [N, ...] and validate on `val_data`; returns a summary dict.

    Writes cfg.out/checkpoints/{last,best}.pt and cfg.out/history.json (rank 0). `on_eval(step, val_metrics)`
    runs on rank 0 after each validation (plots). `extra_state` is stored in checkpoints as is (the model's
    config and the data spec, so that export can rebuild both). The summary: steps, seconds, best_val_loss,
    final val metrics, device, history.
    """
    if cfg.steps is None and cfg.epochs is None and cfg.minutes is None and cfg.cpu_minutes is None:
        raise ValueError("no stopping rule: set steps, epochs, minutes or cpu_minutes (e.g. minutes=10)")
    if len(train_data) == 0 or len(val_data) == 0:
        raise ValueError(
            f"empty data: {len(train_data)} training and {len(val_data)} validation examples; "
            "give more audio, or a smaller validation fraction"
        )
    rank, world, local_rank = _init_distributed()
    device = pick_device(cfg.device, local_rank)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    _seed_everything(cfg.seed)

    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = BetaSchedule(cfg.beta_max, cfg.warmup_steps)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    step, epoch, batch_in_epoch, seconds, cpu_seconds = 0, 0, 0, 0.0, 0.0
    history: list[dict] = []
    best_val = math.inf
    if cfg.resume:
        last = ckpt_dir / "last.pt"
        if not last.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {last}; start without --resume")
        ckpt = load_checkpoint(last)
        if fingerprint and ckpt.get("fingerprint") and ckpt["fingerprint"] != fingerprint:
            raise ValueError(
                f"--resume: the data differ from the checkpoint's (fingerprint {fingerprint[:12]} vs "
                f"{ckpt['fingerprint'][:12]}); resume with the same --data and options, or start a new run"
            )
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        step, epoch, batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        seconds, history, best_val = ckpt["seconds"], ckpt["history"], ckpt["best_val_loss"]
        cpu_seconds = ckpt.get("cpu_seconds", 0.0)
        _set_rng_state(ckpt["rng"][rank] if isinstance(ckpt["rng"], list) else ckpt["rng"])

    net: nn.Module = _LossModule(model)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[local_rank] if device.type == "cuda" else None
        )

    def checkpoint_state() -> dict:
        rng = _rng_state()
        if world > 1:  # every rank's RNG, so each resumes on its own path
            gathered: list = [None] * world
            dist.all_gather_object(gathered, rng)
            rng = gathered
        return {
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "scaler": scaler.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "config": cfg.to_dict(),
            "fingerprint": fingerprint,
            "rng": rng,
            "history": history,
            "best_val_loss": best_val,
            "extra": extra_state or {},
            "world_size": world,
            "device": str(device),
        }

    def write_checkpoint(best: bool) -> None:
        state = checkpoint_state()  # a collective when distributed: every rank calls it
        if rank == 0:
            save_checkpoint(ckpt_dir / "last.pt", state)
            if best:
                save_checkpoint(ckpt_dir / "best.pt", state)
            _write_json(out / "history.json", history)

    def stopped_by() -> str | None:
        """Which stopping rule has been met, in words, or None. Time budgets count from this start, so
        `--resume --minutes 2` trains two more minutes; steps and epochs are totals of the run."""
        if cfg.steps is not None and step >= cfg.steps:
            return f"--steps {cfg.steps} reached"
        if cfg.epochs is not None and epoch >= cfg.epochs:
            return f"--epochs {cfg.epochs} reached"
        if cfg.minutes is not None and seconds - seconds_at_start >= cfg.minutes * 60:
            return f"--minutes {cfg.minutes:g} used"
        if cfg.cpu_minutes is not None and cpu_seconds - cpu_at_start >= cfg.cpu_minutes * 60:
            return f"--cpu-minutes {cfg.cpu_minutes:g} used"
        return None

    def decide() -> tuple[bool, bool]:
        """(stop now?, periodic checkpoint due?) by rank 0's clock, broadcast so every rank agrees."""
        done = stopped_by() is not None
        due = time.perf_counter() - t_checkpoint >= cfg.checkpoint_minutes * 60
        if world > 1:
            flags = torch.tensor([int(done), int(due)], device=device if device.type == "cuda" else "cpu")
            dist.broadcast(flags, src=0)
            done, due = bool(flags[0]), bool(flags[1])
        return done, due

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    budget_s = cfg.minutes * 60 if cfg.minutes is not None and cfg.steps is None else None
    bar = _progress_bar(cfg, step, budget_s) if rank == 0 and cfg.progress else None
    scalars = _scalar_writer(out) if rank == 0 else None

    model.train()
    running: dict[str, float] = {}
    running_n = 0
    last_val: dict = {}
    seconds_at_start, t_start = seconds, time.perf_counter()
    cpu_at_start, cpu_start = cpu_seconds, time.process_time()
    t_checkpoint = t_start
    last_eval_seconds = seconds
    step_at_start = step
    batches, batches_epoch = [], -1
    stop, _ = decide()
    while not stop:
        if batches_epoch != epoch:
            batches, batches_epoch = (
                epoch_batches(len(train_data), cfg.batch_size, cfg.seed, epoch, rank, world),
                epoch,
            )
        x = train_data[batches[batch_in_epoch]].to(device, non_blocking=True)
        beta = schedule(step)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            losses = net(x, beta)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(losses["loss"]).backward()
        scaler.step(optimiser)
        scaler.update()
        step += 1
        batch_in_epoch += 1
        if batch_in_epoch == len(batches):
            epoch, batch_in_epoch = epoch + 1, 0
        seconds = (
            seconds_at_start + time.perf_counter() - t_start
        )  # wall clock, validation and plots included
        cpu_seconds = cpu_at_start + time.process_time() - cpu_start  # every thread of this process

        for k, v in losses.items():
            if v.ndim == 0:
                running[k] = running.get(k, 0.0) + float(v.detach())
        running_n += 1
        if bar is not None:
            if budget_s is None:
                bar.update(1)
            else:  # the budget bar counts seconds of this start
                bar.n = min(budget_s, seconds - seconds_at_start)
            if step % 10 == 0 or budget_s is not None:
                shown = {
                    k: f"{v / running_n:.4g}"
                    for k, v in running.items()
                    if k in ("loss", "recon", "spectral", "kl")
                }
                shown["beta"] = f"{beta:.3g}"
                if budget_s is None:
                    bar.set_postfix(shown)
                else:  # the clock of the budget, computed here: tqdm's estimate stalls during validation
                    used = seconds - seconds_at_start
                    figures = ", ".join(f"{k}={v}" for k, v in shown.items())
                    bar.set_description_str(
                        f"{_clock(used)} of {_clock(budget_s)}, {_clock(budget_s - used)} left, "
                        f"step {step:,}, {figures}"
                    )

        stop, checkpoint_due = decide()
        eval_due = step % cfg.eval_every == 0 or (
            cfg.eval_seconds is not None and seconds - last_eval_seconds >= cfg.eval_seconds
        )
        if eval_due or stop:
            last_eval_seconds = seconds
            improved = False
            if rank == 0:
                val = evaluate_loss(model, val_data, beta, device)
                history.append(
                    {
                        "step": step,
                        "epoch": epoch,
                        "seconds": round(seconds, 2),
                        "beta": beta,
                        "train": {k: v / running_n for k, v in running.items()},
                        "val": val,
                    }
                )
                # The best checkpoint is chosen by the loss at beta_max: during the KL warm-up the loss
                # at the current beta rises with beta, so by it the earliest, worst model would win.
                if "kl" in val:
                    val["loss_at_beta_max"] = val["loss"] + (cfg.beta_max - beta) * val["kl"]
                selection = val.get("loss_at_beta_max", val["loss"])
                improved = selection < best_val
                best_val = min(best_val, selection)
                last_val = val
                if bar is not None:
                    bar.write(
                        f"step {step}: val loss {val['loss']:.5g}, recon {val.get('recon', 0):.5g}, "
                        f"kl {val.get('kl', 0):.4g}, active units {val.get('active_units', '-')}"
                    )
                _write_json(out / "history.json", history)  # before on_eval: plots read it
                if scalars is not None:
                    _write_scalars(scalars, history[-1])
                if on_eval is not None:
                    on_eval(step, val)
            running, running_n = {}, 0
            if world > 1:
                flag = torch.tensor([int(improved)], device=device if device.type == "cuda" else "cpu")
                dist.broadcast(flag, src=0)
                improved = bool(flag.item())
            if improved or stop or checkpoint_due:
                write_checkpoint(best=improved)
                t_checkpoint = time.perf_counter()
        elif checkpoint_due:
            write_checkpoint(best=False)
            t_checkpoint = time.perf_counter()
    if bar is not None:
        bar.close()
    if scalars is not None:
        scalars.close()

    summary = {
        "stopped_by": stopped_by(),
        "steps_this_start": step - step_at_start,
        "steps": step,
        "epochs": epoch,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "best_val_loss": best_val,
        "val": last_val,
        "device": str(device),
        "world_size": world,
        "history": history,
    }
    if world > 1:
        dist.barrier()
    return summary


def _progress_bar(cfg: TrainConfig, step: int, budget_s: float | None):
    """tqdm over the steps, or over this start's seconds when a time budget rules: elapsed and time left
    of the budget, the step and the losses beside it."""
    if budget_s is None:
        return tqdm(total=cfg.steps, initial=step, unit="step", dynamic_ncols=True)
    # the text after the bar is the description: tqdm puts ", " before a postfix
    return tqdm(total=budget_s, unit="s", dynamic_ncols=True, bar_format="{percentage:3.0f}%|{bar}| {desc}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(max(0.0, seconds)), 60)
    return f"{minutes}:{secs:02d}"


def _scalar_writer(out: Path):
    """A TensorBoard event writer in RUN/tensorboard when tensorboard is installed (optional), else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is not installed: history.json and the plots still have it all
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def _write_scalars(writer, entry: dict) -> None:
    step = entry["step"]
    writer.add_scalar("beta", entry["beta"], step)
    for split in ("train", "val"):
        for name, value in entry[split].items():
            if isinstance(value, int | float):
                writer.add_scalar(f"{split}/{name}", value, step)
    writer.flush()
