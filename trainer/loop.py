"""The training loop shared by the Grain-VAE and the MNIST VAE: one function, read top to bottom.

    summary = train(model, train_data, val_data, TrainConfig(out=Path("runs/x"), minutes=10))

The model is any nn.Module with `forward_loss(x, beta) -> dict` ("loss", "recon", "kl", "kl_per_dim", and
any other scalars to log). The loop owns everything else: the device (CUDA, then Apple MPS, then CPU),
mixed precision on CUDA, Adam, the beta warm-up, the stopping rule (steps, epochs or minutes, whichever
comes first), validation every `eval_every` steps, checkpoints, history.json and the progress bar.
train() reads top to bottom; a Checkpointer saves and resumes the run, evaluation_step does one validation.

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

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
# Where the run is, and when it stops


@dataclass
class Progress:
    """How far the run has come: what a checkpoint saves and --resume restores."""

    step: int = 0  # optimiser steps of the whole run
    epoch: int = 0
    batch_in_epoch: int = 0  # with epoch and the seeded data order: the next batch, exactly
    seconds: float = 0.0  # wall clock of the whole run, validation and plots included
    cpu_seconds: float = 0.0  # CPU time of every thread of this process, the whole run
    best_val: float = math.inf  # the lowest validation loss at beta_max so far
    history: list[dict] = field(default_factory=list)  # one record per validation (history.json)

    def advance(self, batches_per_epoch: int) -> None:
        """One optimiser step done: on to the next batch, and the next epoch after the last batch."""
        self.step += 1
        self.batch_in_epoch += 1
        if self.batch_in_epoch == batches_per_epoch:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0


def stopped_by(cfg: TrainConfig, now: Progress, start: Progress) -> str | None:
    """Which stopping rule has been met, in words, or None. Time budgets count from this start (`start`),
    so `--resume --minutes 2` trains two more minutes; steps and epochs are totals of the run."""
    if cfg.steps is not None and now.step >= cfg.steps:
        return f"--steps {cfg.steps} reached"
    if cfg.epochs is not None and now.epoch >= cfg.epochs:
        return f"--epochs {cfg.epochs} reached"
    if cfg.minutes is not None and now.seconds - start.seconds >= cfg.minutes * 60:
        return f"--minutes {cfg.minutes:g} used"
    if cfg.cpu_minutes is not None and now.cpu_seconds - start.cpu_seconds >= cfg.cpu_minutes * 60:
        return f"--cpu-minutes {cfg.cpu_minutes:g} used"
    return None


def _rank0_says(flags: list[bool], world: int, device: torch.device) -> list[bool]:
    """Rank 0's flags on every rank (a broadcast), so all processes stop, validate and save together."""
    if world == 1:
        return flags
    sent = torch.tensor([int(f) for f in flags], device=device if device.type == "cuda" else "cpu")
    dist.broadcast(sent, src=0)
    return [bool(f) for f in sent.tolist()]


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


class Checkpointer:
    """RUN/checkpoints/last.pt and best.pt, with RUN/history.json beside them; `resume` reads last.pt back.

        checkpointer = Checkpointer(cfg, model, optimiser, scaler, rank=0, world=1, device=device)
        progress = checkpointer.resume() if cfg.resume else Progress()
        ...
        checkpointer.save(progress, best=improved)     # last.pt, and best.pt too when best

    A checkpoint holds everything exact resume needs: the weights, the optimiser and the gradient scaler,
    the position in the seeded data order, the clocks, the history and every rank's RNG state, with the
    run's config, the data fingerprint and `extra_state` (the model config and data spec export rebuilds
    from). Only rank 0 writes, but `save` gathers the RNG states, so under torchrun every rank calls it.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        optimiser: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        *,
        rank: int,
        world: int,
        device: torch.device,
        fingerprint: str = "",
        extra_state: dict | None = None,
    ) -> None:
        self.cfg, self.model, self.optimiser, self.scaler = cfg, model, optimiser, scaler
        self.rank, self.world, self.device = rank, world, device
        self.fingerprint, self.extra_state = fingerprint, extra_state or {}
        self.out = Path(cfg.out)
        self.folder = self.out / "checkpoints"
        self.saved_at = time.perf_counter()

    def resume(self) -> Progress:
        """Load last.pt into the model, optimiser, scaler and RNGs; the Progress it was saved at."""
        last = self.folder / "last.pt"
        if not last.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {last}; start without --resume")
        ckpt = load_checkpoint(last)
        if self.fingerprint and ckpt.get("fingerprint") and ckpt["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"--resume: the data differ from the checkpoint's (fingerprint {self.fingerprint[:12]} vs "
                f"{ckpt['fingerprint'][:12]}); resume with the same --data and options, or start a new run"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimiser.load_state_dict(ckpt["optimiser"])
        if "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"][self.rank] if isinstance(ckpt["rng"], list) else ckpt["rng"])
        return Progress(
            step=ckpt["step"],
            epoch=ckpt["epoch"],
            batch_in_epoch=ckpt["batch_in_epoch"],
            seconds=ckpt["seconds"],
            cpu_seconds=ckpt.get("cpu_seconds", 0.0),
            best_val=ckpt["best_val_loss"],
            history=ckpt["history"],
        )

    def due(self) -> bool:
        """A periodic checkpoint is due: checkpoint_minutes have passed since the last one (or the start)."""
        return time.perf_counter() - self.saved_at >= self.cfg.checkpoint_minutes * 60

    def save(self, progress: Progress, best: bool) -> None:
        """last.pt (and best.pt when `best`) and history.json; a collective when distributed."""
        state = self._state(progress)
        if self.rank == 0:
            save_checkpoint(self.folder / "last.pt", state)
            if best:
                save_checkpoint(self.folder / "best.pt", state)
            _write_json(self.out / "history.json", progress.history)
        self.saved_at = time.perf_counter()

    def _state(self, progress: Progress) -> dict:
        rng = _rng_state()
        if self.world > 1:  # every rank's RNG, so each resumes on its own path
            gathered: list = [None] * self.world
            dist.all_gather_object(gathered, rng)
            rng = gathered
        return {
            "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": progress.step,
            "epoch": progress.epoch,
            "batch_in_epoch": progress.batch_in_epoch,
            "seconds": progress.seconds,
            "cpu_seconds": progress.cpu_seconds,
            "config": self.cfg.to_dict(),
            "fingerprint": self.fingerprint,
            "rng": rng,
            "history": progress.history,
            "best_val_loss": progress.best_val,
            "extra": self.extra_state,
            "world_size": self.world,
            "device": str(self.device),
        }


# ---------------------------------------------------------------------------------------------------------
# One validation


def evaluation_step(
    model: nn.Module,
    val_data: Tensor,
    device: torch.device,
    cfg: TrainConfig,
    progress: Progress,
    beta: float,
    train_means: dict[str, float],
    *,
    bar: tqdm | None = None,
    scalars: Any = None,  # a TensorBoard SummaryWriter, when tensorboard is installed
    on_eval: Callable[[int, dict], None] | None = None,
) -> tuple[dict, bool]:
    """Validate (rank 0 only), add the record to the history, and say if this is the best model so far.

    Returns (the validation metrics, improved). The history record holds the means of the training losses
    since the last validation (`train_means`) beside the validation metrics; history.json is written
    before `on_eval` runs, because the plots it draws read it.
    """
    val = evaluate_loss(model, val_data, beta, device)
    progress.history.append(
        {
            "step": progress.step,
            "epoch": progress.epoch,
            "seconds": round(progress.seconds, 2),
            "beta": beta,
            "train": train_means,
            "val": val,
        }
    )
    # The best checkpoint is chosen by the loss at beta_max: during the KL warm-up the loss at the current
    # beta rises with beta, so by it the earliest, worst model would win.
    if "kl" in val:
        val["loss_at_beta_max"] = val["loss"] + (cfg.beta_max - beta) * val["kl"]
    selection = val.get("loss_at_beta_max", val["loss"])
    improved = selection < progress.best_val
    progress.best_val = min(progress.best_val, selection)
    if bar is not None:
        bar.write(
            f"step {progress.step}: val loss {val['loss']:.5g}, recon {val.get('recon', 0):.5g}, "
            f"kl {val.get('kl', 0):.4g}, active units {val.get('active_units', '-')}"
        )
    _write_json(Path(cfg.out) / "history.json", progress.history)
    if scalars is not None:
        _write_scalars(scalars, progress.history[-1])
    if on_eval is not None:
        on_eval(progress.step, val)
    return val, improved


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
    _seed_everything(cfg.seed)

    # model, optimiser, KL weight, mixed precision
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = BetaSchedule(cfg.beta_max, cfg.warmup_steps)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    # a new run, or the saved one continued on its very path
    checkpointer = Checkpointer(
        cfg, model, optimiser, scaler, rank=rank, world=world, device=device,
        fingerprint=fingerprint, extra_state=extra_state,
    )  # fmt: skip
    progress = checkpointer.resume() if cfg.resume else Progress()

    net: nn.Module = _LossModule(model)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[local_rank] if device.type == "cuda" else None
        )

    # what rank 0 shows and logs
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    budget_s = cfg.minutes * 60 if cfg.minutes is not None and cfg.steps is None else None
    bar = _progress_bar(cfg, progress.step, budget_s) if rank == 0 and cfg.progress else None
    scalars = _scalar_writer(out) if rank == 0 else None

    model.train()
    start = replace(progress)  # the step and clocks at this start: time budgets count from here
    t_start, cpu_start = time.perf_counter(), time.process_time()
    checkpointer.saved_at = t_start  # the periodic checkpoint counts from this start too
    running: dict[str, float] = {}  # sums of the training losses since the last validation
    running_n = 0
    last_val: dict = {}
    last_eval_seconds = progress.seconds
    batches, batches_epoch = [], -1
    stop, _ = _rank0_says([stopped_by(cfg, progress, start) is not None, checkpointer.due()], world, device)
    while not stop:
        # one optimiser step on the next batch of the seeded data order
        if batches_epoch != progress.epoch:
            batches = epoch_batches(len(train_data), cfg.batch_size, cfg.seed, progress.epoch, rank, world)
            batches_epoch = progress.epoch
        x = train_data[batches[progress.batch_in_epoch]].to(device, non_blocking=True)
        beta = schedule(progress.step)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            losses = net(x, beta)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(losses["loss"]).backward()
        scaler.step(optimiser)
        scaler.update()
        progress.advance(len(batches))
        progress.seconds = start.seconds + time.perf_counter() - t_start
        progress.cpu_seconds = start.cpu_seconds + time.process_time() - cpu_start

        for k, v in losses.items():
            if v.ndim == 0:
                running[k] = running.get(k, 0.0) + float(v.detach())
        running_n += 1
        if bar is not None:
            _show_progress(bar, budget_s, progress, start, running, running_n, beta)

        # stop, validate, checkpoint: rank 0 decides, every rank follows
        stop, checkpoint_due = _rank0_says(
            [stopped_by(cfg, progress, start) is not None, checkpointer.due()], world, device
        )
        eval_due = progress.step % cfg.eval_every == 0 or (
            cfg.eval_seconds is not None and progress.seconds - last_eval_seconds >= cfg.eval_seconds
        )
        if eval_due or stop:
            last_eval_seconds = progress.seconds
            improved = False
            if rank == 0:
                train_means = {k: v / running_n for k, v in running.items()}
                last_val, improved = evaluation_step(
                    model, val_data, device, cfg, progress, beta, train_means,
                    bar=bar, scalars=scalars, on_eval=on_eval,
                )  # fmt: skip
            running, running_n = {}, 0
            (improved,) = _rank0_says([improved], world, device)
            if improved or stop or checkpoint_due:
                checkpointer.save(progress, best=improved)
        elif checkpoint_due:
            checkpointer.save(progress, best=False)
    if bar is not None:
        bar.close()
    if scalars is not None:
        scalars.close()

    summary = {
        "stopped_by": stopped_by(cfg, progress, start),
        "steps_this_start": progress.step - start.step,
        "steps": progress.step,
        "epochs": progress.epoch,
        "seconds": round(progress.seconds, 2),
        "cpu_seconds": round(progress.cpu_seconds, 2),
        "best_val_loss": progress.best_val,
        "val": last_val,
        "device": str(device),
        "world_size": world,
        "history": progress.history,
    }
    if world > 1:
        dist.barrier()
    return summary


# ---------------------------------------------------------------------------------------------------------
# What the run shows as it goes: the progress bar and TensorBoard


SHOWN_LOSSES = ("loss", "recon", "spectral", "kl")  # beside the bar; history.json has every one


def _show_progress(
    bar: tqdm,
    budget_s: float | None,
    progress: Progress,
    start: Progress,
    running: dict[str, float],
    running_n: int,
    beta: float,
) -> None:
    """Move the bar one step (or to this start's seconds under a time budget); every 10 steps, or at every
    step under a budget, the mean losses since the last validation beside it."""
    if budget_s is None:
        bar.update(1)
    else:  # the budget bar counts seconds of this start
        bar.n = min(budget_s, progress.seconds - start.seconds)
    if progress.step % 10 != 0 and budget_s is None:
        return
    shown = {k: f"{v / running_n:.4g}" for k, v in running.items() if k in SHOWN_LOSSES}
    shown["beta"] = f"{beta:.3g}"
    if budget_s is None:
        bar.set_postfix(shown)
        return
    # the clock of the budget, computed here: tqdm's estimate stalls during validation
    used = progress.seconds - start.seconds
    figures = ", ".join(f"{k}={v}" for k, v in shown.items())
    bar.set_description_str(
        f"{_clock(used)} of {_clock(budget_s)}, {_clock(budget_s - used)} left, "
        f"step {progress.step:,}, {figures}"
    )


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
