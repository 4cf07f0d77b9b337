"""The training loop and `python -m trainer train`: learning, exact resume, torchrun, run-folder outputs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import free_tcp_port
from trainer.grain_model import GrainVAE, GrainVAEConfig
from trainer.loop import TrainConfig, epoch_batches, load_checkpoint, train
from trainer.synth import render_synth_grains

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]
TINY = GrainVAEConfig(width=8, max_width=32, latent_dim=8, decoder="conv")


@pytest.fixture(scope="module")
def synth_grains() -> tuple[torch.Tensor, torch.Tensor]:
    grains, _ = render_synth_grains(384, seed=3)
    x = torch.from_numpy(grains)
    return x[:320], x[320:]


def _model(seed: int = 0) -> GrainVAE:
    torch.manual_seed(seed)
    return GrainVAE(TINY)


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(
        out=out,
        batch_size=32,
        steps=40,
        eval_every=20,
        warmup_steps=20,
        beta_max=0.5,
        progress=False,
        checkpoint_minutes=60,
    )
    return TrainConfig(**(base | kw))


def test_short_run_lowers_validation_loss(tmp_path, synth_grains):
    train_x, val_x = synth_grains
    summary = train(_model(), train_x, val_x, _cfg(tmp_path, steps=60, eval_every=10, warmup_steps=0))
    losses = [h["val"]["loss"] for h in summary["history"]]
    assert summary["steps"] == 60 and len(losses) == 6
    assert losses[-1] < 0.9 * losses[0], losses
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["step"] for h in history] == [10, 20, 30, 40, 50, 60]
    assert {"recon", "kl", "spectral", "active_units", "kl_per_dim"} <= history[-1]["val"].keys()
    assert len(history[-1]["val"]["kl_per_dim"]) == TINY.latent_dim
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert {"model", "optimiser", "step", "config", "fingerprint", "rng", "history"} <= ckpt.keys()


def test_resume_reproduces_the_uninterrupted_run(tmp_path, synth_grains):
    """40 steps straight, against 20 steps + checkpoint + a fresh process state resumed to 40: same path.

    Batch 32 over 320 grains is 10 steps an epoch: the checkpoint at step 15 falls mid-epoch, the resumed
    half crosses two epoch edges, and beta is still warming up at the checkpoint.
    """
    train_x, val_x = synth_grains
    straight = train(_model(), train_x, val_x, _cfg(tmp_path / "a", steps=40, warmup_steps=30))

    train(_model(), train_x, val_x, _cfg(tmp_path / "b", steps=15, eval_every=15, warmup_steps=30))
    torch.manual_seed(999)  # whatever the process did in between must not matter
    resumed = train(
        _model(seed=5), train_x, val_x, _cfg(tmp_path / "b", steps=40, warmup_steps=30, resume=True)
    )

    assert resumed["steps"] == 40
    a, b = straight["history"][-1]["val"], resumed["history"][-1]["val"]
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    assert b["kl"] == pytest.approx(a["kl"], rel=1e-4)
    wa = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-5, atol=1e-6)


def test_resume_refuses_other_data(tmp_path, synth_grains):
    train_x, val_x = synth_grains
    train(_model(), train_x, val_x, _cfg(tmp_path, steps=5), fingerprint="aaaa")
    with pytest.raises(ValueError, match="data differ"):
        train(_model(), train_x, val_x, _cfg(tmp_path, steps=10, resume=True), fingerprint="bbbb")


def test_epoch_batches_split_every_example_once_across_ranks():
    one = torch.cat(epoch_batches(100, 16, seed=1, epoch=3))
    assert sorted(one.tolist()) == list(range(100))
    two = [torch.cat(epoch_batches(100, 16, seed=1, epoch=3, rank=r, world=2)) for r in (0, 1)]
    assert len(two[0]) == len(two[1]) == 50 and set(torch.cat(two).tolist()) == set(range(100))
    assert not torch.equal(one, torch.cat(epoch_batches(100, 16, seed=1, epoch=4)))  # reshuffled per epoch


def test_no_stopping_rule_is_refused(tmp_path, synth_grains):
    with pytest.raises(ValueError, match="steps, epochs, minutes or cpu_minutes"):
        train(_model(), *synth_grains, TrainConfig(out=tmp_path, progress=False))


# ---------------------------------------------------------------------------------------------------------
# The command, end to end


def _run_trainer(args: list[str], *, torchrun: int = 0, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m trainer train ARGS`, or under torchrun with N CPU processes (gloo, loopback only)."""
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    if torchrun:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={torchrun}",
            "--master_addr=127.0.0.1",
            # A real free port: torchrun hands port 0 to the workers literally, and they wait forever.
            f"--master_port={free_tcp_port()}",
            "-m",
            "trainer",
            "train",
            *args,
        ]
    else:
        cmd = [sys.executable, "-m", "trainer", "train", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


QUICK = [
    "--width",
    "8",
    "--latent-dim",
    "8",
    "--batch-size",
    "32",
    "--eval-every",
    "10",
    "--warmup-steps",
    "10",
    "--no-progress",
    "--threads",
    "1",
    "--plot-seconds",
    "0",
]
PLOTS = ["loss_curves.png", "reconstructions.png", "latent_pca.png", "traversals.png"]
WAVS = ["reconstructions.wav", "samples.wav"] + [f"traversal_axis{k}.wav" for k in range(1, 9)]


def _assert_run_folder(run: Path) -> dict:
    for name in PLOTS:
        assert (run / "plots" / name).stat().st_size > 10_000, name
    import soundfile as sf

    for name in WAVS:
        audio, sr = sf.read(run / "audio" / name)
        assert sr == 22050 and len(audio) > 22050 // 2 and np.abs(audio).max() > 1e-3, name
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("val", "pca"):
        assert {"sc", "lsd_db", "snr_db"} <= metrics[key].keys()
    assert metrics["pca"]["k"] == 8
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "checkpoints" / "last.pt").is_file()
    return metrics


def _synth_run_args(tmp_path: Path, run: Path, steps: int) -> list[str]:
    """A quick run on 600 synth grains, cached under tmp_path."""
    return ["--data", "synth", "--synth-grains", "600", "--out", str(run),
            "--cache-dir", str(tmp_path / "cache"), "--steps", str(steps), *QUICK]


def test_train_command_writes_every_plot_wav_and_metrics(tmp_path):
    run = tmp_path / "run"
    proc = _run_trainer(
        _synth_run_args(tmp_path, run, steps=30)
    )
    assert "PCA k=8" in proc.stdout
    _assert_run_folder(run)
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["data"] == "synth" and config["model"]["latent_dim"] == 8


def test_torchrun_two_processes_on_cpu_write_one_set_of_files(tmp_path):
    run = tmp_path / "ddp"
    proc = _run_trainer(
        _synth_run_args(tmp_path, run, steps=20),
        torchrun=2,
    )
    assert "(x2)" in proc.stdout and proc.stdout.count("done:") == 1
    _assert_run_folder(run)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 20 and len(ckpt["rng"]) == 2
    tensorboard = ["tensorboard"] if importlib.util.find_spec("tensorboard") else []  # optional scalars
    assert sorted(p.name for p in run.iterdir()) == sorted([
        "audio",
        "checkpoints",
        "config.json",
        "history.json",
        "metrics.json",
        "plots",
        *tensorboard,
    ])


def test_twenty_short_one_shots_train(tmp_path):
    """Small collections are where audio VAEs fail: 20 one-shots under 0.3 s each must train cleanly."""
    import soundfile as sf

    folder = tmp_path / "one-shots"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        n = int(22050 * rng.uniform(0.03, 0.29))  # some shorter than one grain (1024 samples = 46 ms)
        t = np.arange(n) / 22050
        tone = np.sin(2 * np.pi * rng.uniform(60, 2000) * t) * np.exp(-t * rng.uniform(5, 40))
        click = rng.normal(0, 0.3, n) * np.exp(-t * 200)
        sf.write(folder / f"hit_{i:02d}.wav", (0.7 * tone + click).astype(np.float32), 22050)
    run = tmp_path / "run"
    _run_trainer(
        [
            "--data",
            str(folder),
            "--out",
            str(run),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--steps",
            "30",
            *QUICK,
        ]
    )
    metrics = _assert_run_folder(run)
    assert np.isfinite(metrics["val"]["sc"]) and metrics["val_grains"] >= 1
