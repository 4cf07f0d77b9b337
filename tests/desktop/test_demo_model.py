"""`make demo MODEL=...` and `make play MODEL=...`: the demo plays the model it is given, and says so.

The demo runs for real (python -m desktop demo, the runtime, headless Pd, OSC), as tests/desktop/test_demo.py
runs it, with its helpers, on a model of its own with a name no other model has, passed by a path relative
to where the demo starts (as `make demo MODEL=runs/mine/model.ts` passes it). The Makefile's wiring is
checked with `make -n` (the recipe it would run): the real target would first set up apt and the venv.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from runtime.wavfile import levels_dbfs, read_tags, read_wav
from tests.desktop.test_demo import RUN_TIMEOUT_S, demo_command, kill_leftovers
from tests.support.model_fixtures import write_valid

REPO = Path(__file__).resolve().parents[2]
NAME = "mine-demo-model-test"
SECONDS = 3.0


@pytest.mark.skipif(shutil.which("pd") is None, reason="needs Pd (apt: puredata-core)")
def test_demo_plays_the_model_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    model = write_valid(tmp_path / "runs" / "mine" / "model.ts", seed=3, name=NAME)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = demo_command(Path("out"), Path("runs/mine/model.ts"), "--seconds", f"{SECONDS:g}")
    try:
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
    finally:
        kill_leftovers(str(out))
    assert proc.returncode == 0, f"demo failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    # the log names the model that played, where it starts and where it records
    lines = proc.stdout.splitlines()
    assert f"model {NAME}" in next(ln for ln in lines if ln.startswith("Pd (pid")), proc.stdout
    recorded = next(ln for ln in lines if ln.startswith("recorded "))
    assert f"model {NAME} ({model.resolve()}" in recorded, recorded
    audio, sr = read_wav(out / "demo.wav")
    assert SECONDS - 0.5 <= len(audio) / sr <= SECONDS + 2.0
    assert np.isfinite(audio).all()
    assert levels_dbfs(audio)[1] > -60, f"(nearly) silent: RMS {levels_dbfs(audio)[1]:.1f} dBFS"
    tags = read_tags(out / "demo.wav")
    assert tags.title == NAME
    assert hashlib.sha256(model.read_bytes()).hexdigest() in tags.comment and "scripted demo" in tags.comment


def make_dry_run(*args: str) -> str:
    """The commands `make ARGS` would run, without running them."""
    # Under `make test` this is a sub-make: without --no-print-directory (and the parent's MAKEFLAGS) it
    # would wrap its output in "Entering/Leaving directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    proc = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_and_play_pass_the_model() -> None:
    demo = make_dry_run("demo", "MODEL=runs/my model/model.ts", "DEMO_SECONDS=3").splitlines()[-1]
    assert demo.endswith("-m desktop demo --model 'runs/my model/model.ts'"), demo
    assert demo.startswith("DEMO_SECONDS=3 "), demo
    play = make_dry_run("play", "MODEL=/abs/model.ts").splitlines()[-1]
    assert play.endswith("-m desktop demo --gui --model '/abs/model.ts'"), play
    # no MODEL: the demo's own default, models/factory.ts
    assert "--model" not in make_dry_run("demo").splitlines()[-1]
