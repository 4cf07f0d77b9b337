"""`python -m trainer audition RUN`: plays a run's WAVs in listening order, or names them when it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer.commands.audition import run_wavs
from trainer.grain_report import grain_cloud, write_wav

REPO = Path(__file__).resolve().parents[2]
NAMES = ["samples", "traversal_axis10", "traversal_axis2", "reconstructions", "traversal_axis1"]


@pytest.fixture()
def run_folder(tmp_path: Path) -> Path:
    t = np.arange(1024) / 22050
    for i, name in enumerate(NAMES):
        write_wav(
            tmp_path / "audio" / f"{name}.wav", grain_cloud(0.5 * np.sin(2 * np.pi * 200 * (i + 1) * t))
        )
    return tmp_path


def _audition(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "trainer", "audition", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=REPO)


def test_wavs_come_in_listening_order(run_folder: Path) -> None:
    names = [p.stem for p in run_wavs(run_folder)]
    assert names == ["reconstructions", "samples", "traversal_axis1", "traversal_axis2", "traversal_axis10"]
    assert [p.stem for p in run_wavs(run_folder, "traversal")] == names[2:]


def test_without_a_sound_card_it_says_so_and_names_the_files(run_folder: Path) -> None:
    proc = _audition(str(run_folder), "--device", "9999")  # no machine has output device 9999
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cannot play: no audio output device" in proc.stdout
    listed = [line.strip() for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert listed == [str(p) for p in run_wavs(run_folder)] and all(Path(p).is_file() for p in listed)


def test_a_folder_without_wavs_is_a_clear_error(tmp_path: Path) -> None:
    proc = _audition(str(tmp_path))
    assert proc.returncode == 1 and "no WAV files in" in proc.stdout and "train first" in proc.stdout
    proc = _audition(str(tmp_path / "missing"))
    assert proc.returncode == 1 and "is not a folder" in proc.stdout
