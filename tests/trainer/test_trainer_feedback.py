"""What `python -m trainer` tells a musician, asserted on its output: a verdict against PCA, a warning with
what to do when a run is too short, curves in every run, audible WAVs named like the box's controls, a
resume that adds time, one `error:` line for bad data, and help texts that say what they mean."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from trainer.grain_report import PEAK_DBFS, TARGET_RMS_DBFS

TRAIN = [sys.executable, "-m", "trainer", "train", "--data", "synth", "--synth-grains", "300"]


def trainer(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trainer", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Six steps on a small synth set: far too short, which is what these tests are about."""
    out = tmp_path_factory.mktemp("runs") / "short"
    proc = subprocess.run([*TRAIN, "--steps", "6", "--out", str(out), "--no-progress", "--plot-seconds", "0"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc.stdout


def test_the_run_says_plainly_whether_it_beats_pca_and_that_it_is_too_short(
    short_run: tuple[Path, str],
) -> None:
    _, out = short_run
    verdict = next(line for line in out.splitlines() if line.startswith("verdict: "))
    assert "PCA k=16" in verdict and ("beats" in verdict or "is better" in verdict)
    warning = next(line for line in out.splitlines() if line.startswith("warning: "))
    assert "too short to be useful: the KL warm-up is unfinished (step 6 of 5,000)" in warning
    assert "This data needs about 10,000 steps" in warning and "continue with --resume --minutes " in warning


def test_the_best_checkpoint_is_chosen_by_the_loss_at_full_beta(short_run: tuple[Path, str]) -> None:
    import torch

    run, _ = short_run
    history = json.loads((run / "history.json").read_text())
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=False)
    # during the warm-up the loss at the current beta grows with beta: by it the first step would win
    full = [h["val"]["loss_at_beta_max"] for h in history]
    assert best["step"] == history[int(np.argmin(full))]["step"]
    assert best["best_val_loss"] == pytest.approx(min(full))
    # and the figures the run printed are the best checkpoint's, the one export ships
    assert json.loads((run / "metrics.json").read_text())["step"] == best["step"]
    assert f"at step {best['step']:,}: the checkpoint export ships" in short_run[1]


def test_the_data_is_described_once(short_run: tuple[Path, str]) -> None:
    _, out = short_run
    assert out.count("synth: 270 train / 30 val grains, split by grain") == 1


def test_every_run_draws_curves_and_writes_tensorboard_scalars_when_installed(
    short_run: tuple[Path, str],
) -> None:
    run, _ = short_run
    history = json.loads((run / "history.json").read_text())
    assert len(history) >= 3, "a curve needs more than one point"  # --steps 6: a pass every step
    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip("tensorboard is not installed (pip install grainbox[tensorboard])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert len(events.Scalars("val/loss")) == len(history)


def dbfs(x: np.ndarray) -> tuple[float, float]:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20 * np.log10(rms), 20 * np.log10(float(np.max(np.abs(x))))


def test_audition_wavs_are_loud_enough_to_hear_and_named_by_latent_axis(short_run: tuple[Path, str]) -> None:
    run, _ = short_run
    names = sorted(p.name for p in (run / "audio").glob("*.wav"))
    axes = [f"traversal_axis{k}.wav" for k in range(1, 9)]  # the box's controls axis1..axis8
    assert names == sorted(["reconstructions.wav", "samples.wav", *axes])
    for name in ("samples.wav", "traversal_axis1.wav"):
        rms, peak = dbfs(soundfile.read(run / "audio" / name)[0])
        loud_enough = rms >= TARGET_RMS_DBFS - 1.0 or peak >= PEAK_DBFS - 0.2  # a peaky sound stops at -1
        assert peak <= PEAK_DBFS + 0.1 and loud_enough, (name, rms, peak)


def test_resume_with_minutes_trains_more_and_says_why_when_it_cannot(short_run: tuple[Path, str]) -> None:
    run, _ = short_run
    again = subprocess.run([*TRAIN, "--steps", "6", "--out", str(run), "--resume", "--no-progress"],
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no more steps: the run was already at step 6 and --steps 6 reached" in again.stdout
    more = subprocess.run([*TRAIN, "--minutes", "0.05", "--out", str(run), "--resume", "--no-progress",
                           "--plot-seconds", "600"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert more.returncode == 0, more.stdout + more.stderr
    steps = int(more.stdout.split("done: ")[1].split(" steps")[0])
    assert steps > 6, more.stdout


def test_a_timed_run_shows_elapsed_and_remaining_of_its_budget(tmp_path: Path) -> None:
    command = [*TRAIN, "--minutes", "0.1", "--out", str(tmp_path / "run"), "--plot-seconds", "600"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bar = proc.stderr.replace("\r", "\n")
    assert " of 0:06, " in bar and " left, step " in bar, bar[-2000:]


def bad_data(kind: str, root: Path) -> Path:
    """A --data that cannot be trained on, of one kind."""
    if kind == "missing":
        return root / "missing"
    if kind == "a-single-file":
        soundfile.write(root / "one.wav", np.sin(np.arange(22050) * 0.05), 22050)
        return root / "one.wav"
    folder = root / kind
    folder.mkdir()
    if kind == "only-corrupt":
        (folder / "x.wav").write_bytes(b"junk")
    elif kind == "only-silent":
        soundfile.write(folder / "s.wav", np.zeros(4410), 22050)
    return folder


@pytest.mark.parametrize(
    ("kind", "words"),
    [("missing", "no such folder; give 'synth'"), ("a-single-file", "is a file, not a folder"),
     ("empty", "no audio files"), ("only-corrupt", "1 unreadable (x.wav)"), ("only-silent", "1 silent")],
)  # fmt: skip
def test_bad_data_is_one_error_line(tmp_path: Path, kind: str, words: str) -> None:
    data = bad_data(kind, tmp_path)
    proc = trainer("train", "--data", data, "--out", tmp_path / "run", "--steps", "1", "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and words in errors[0], proc.stdout


def test_help_texts_say_what_they_mean() -> None:
    train = trainer("train", "--help").stdout
    assert "'harmonic' (the default)" in " ".join(train.split())
    assert "/tmp" not in trainer("mnist", "--help").stdout
    assert "the system's default output" in " ".join(trainer("audition", "--help").stdout.split())
    assert "model.ts in the run folder" in " ".join(trainer("export", "--help").stdout.split())
    run = subprocess.run([sys.executable, "-m", "runtime", "run", "--help"], capture_output=True, text=True,
                         timeout=60).stdout  # fmt: skip
    assert "Run the instrument:" in run


def test_export_without_out_writes_into_the_run_folder(short_run: tuple[Path, str], tmp_path: Path) -> None:
    run, _ = short_run
    command = [sys.executable, "-m", "trainer", "export", str(run), "--axes", "8", "--anchors", "2"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (run / "model.ts").is_file() and not list(tmp_path.iterdir())
    assert "skipped" not in proc.stdout + proc.stderr
