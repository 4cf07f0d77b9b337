"""`train` and `export` on the folder a musician really has (tests/support/mixed_audio.py: wav, flac,
ogg, mp3 and aiff at 16, 22.05, 44.1 and 48 kHz, stereo, a non-ASCII name, a corrupt, a silent and a tiny
file, a text file), asserted on what they print: every problem file named once per run, a verdict, a
too-short warning, WAVs at the audition level, and no traceback anywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.support.mixed_audio import build
from trainer.grain_report import PEAK_DBFS, TARGET_RMS_DBFS


def _trainer(*args: str | Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer", *map(str, args)], capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "GRAINBOX_CACHE": str(cache)},
    )  # fmt: skip


def _levels(path: Path) -> tuple[float, float]:
    audio = soundfile.read(path)[0]
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20 * np.log10(rms), 20 * np.log10(float(np.max(np.abs(audio))))


@pytest.mark.slow
def test_a_mixed_folder_trains_with_every_problem_file_named_once_and_audible_wavs(tmp_path: Path) -> None:
    data, run, cache = build(tmp_path / "my sounds"), tmp_path / "run", tmp_path / "cache"
    train = _trainer("train", "--data", data, "--out", run, "--steps", "6", "--threads", "1",
                     "--no-progress", "--plot-seconds", "600", cache=cache)  # fmt: skip
    print(train.stdout)
    assert train.returncode == 0 and "Traceback" not in train.stderr, train.stdout + train.stderr
    out = train.stdout
    assert f"{data}: 9 audio files, 8 loaded, 1 skipped, 1 silent, 1 non-audio ignored" in out
    for problem in ("skipped broken.wav: ", "silent silent.flac: ", "zero-padded tiny.wav: "):
        assert out.count(problem) == 1, problem
    assert "dropped by the silence gate" in out and " split by " in out
    assert sum(line.startswith("verdict: ") and "PCA k=16" in line for line in out.splitlines()) == 1
    assert "warning: this run is too short to be useful" in out and "--resume --minutes " in out
    for name in ("samples.wav", "traversal_axis1.wav", "traversal_axis8.wav"):
        rms, peak = _levels(run / "audio" / name)
        assert peak <= PEAK_DBFS + 0.1 and (rms >= TARGET_RMS_DBFS - 1.0 or peak >= PEAK_DBFS - 0.2), name
    rms, peak = _levels(run / "audio" / "reconstructions.wav")  # one gain per original and reconstruction
    assert peak <= PEAK_DBFS + 0.1 and rms >= TARGET_RMS_DBFS - 3.0, (rms, peak)  # pairs, and gaps between

    export = _trainer("export", run, cache=cache)  # loads the same data: it must not report it again
    print(export.stdout)
    assert export.returncode == 0 and "Traceback" not in export.stderr, export.stdout + export.stderr
    assert "broken.wav" not in export.stdout + export.stderr and (run / "model.ts").is_file()
    assert "café_naïve" in export.stdout  # a non-ASCII file name survives into the anchors' names
