"""`python -m runtime render`: a model through the real pd/main.pd in `pd -batch`, to a labelled WAV.

Real models (models/factory.ts; tests/support's brightness model, whose knob 1 is brightness by
construction), the real engine, the real Pd: nothing is mocked. Each render is 2 s of audio, a fraction of
a second of Pd here; the model's load and probe is most of each test's time.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.__main__ import main as runtime_main
from runtime.render import Settings, render_model
from runtime.wavfile import levels_dbfs, read_tags, read_wav
from tests.support.demo_fixtures import write_brightness_model
from tests.support.model_fixtures import write_broken, write_valid

pytestmark = pytest.mark.skipif(shutil.which("pd") is None, reason="needs Pd (apt: puredata-core)")

REPO = Path(__file__).resolve().parents[2]
FACTORY = REPO / "models" / "factory.ts"
SECONDS = 2.0
PD_RATE = 44100
# where the box starts (runtime.performance.initial_state): axes centred, density 20/s, 80 ms, no
# transposition, no spray; knob1 (axis 1) is set per test
START = (0.5, 0.5, 0.5, 0.5, 0.5340, 0.5233, 0.5, 0.0)


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime", "render", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def centroid_hz(audio: np.ndarray, sr: int) -> float:
    """The spectral centroid of the whole render (both channels summed), power-weighted."""
    mono = audio.mean(axis=1)
    power = np.abs(np.fft.rfft(mono * np.hanning(len(mono)))) ** 2
    return float((np.fft.rfftfreq(len(mono), 1 / sr) * power).sum() / power.sum())


def knobs_with(knob1: float, transpose: float = 0.5) -> tuple[float, ...]:
    return (knob1, *START[1:6], transpose, START[7])


@pytest.fixture(scope="module")
def factory_render(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The factory model rendered for SECONDS by the command itself, as a person would run it."""
    out = tmp_path_factory.mktemp("render") / "sub dir" / "factory.wav"  # a folder to create, with a space
    proc = cli(str(FACTORY), "--seconds", f"{SECONDS:g}", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


@pytest.fixture(scope="module")
def bright(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_brightness_model(tmp_path_factory.mktemp("model") / "bright.ts")


def test_the_render_is_sound_of_the_asked_length(factory_render: tuple[Path, str]) -> None:
    out, _ = factory_render
    audio, sr = read_wav(out)
    assert sr == PD_RATE and audio.shape == (round(SECONDS * PD_RATE), 2)
    assert np.isfinite(audio).all()
    peak, rms = levels_dbfs(audio)
    assert rms > -60, f"(nearly) silent: RMS {rms:.1f} dBFS"
    assert peak < -0.01, f"clips: peak {peak:.2f} dBFS"  # Pd's limiter never reaches full scale
    # sound from the start to the end, not one burst: every half second carries signal
    halves = [levels_dbfs(audio[i : i + sr // 2])[1] for i in range(0, len(audio), sr // 2)]
    assert min(halves) > -60, halves


def test_the_wav_names_the_model_and_the_settings(factory_render: tuple[Path, str]) -> None:
    out, stdout = factory_render
    tags = read_tags(out)
    assert tags.title == "factory-synth"
    assert hashlib.sha256(FACTORY.read_bytes()).hexdigest() in tags.comment
    assert "sound 1 (" in tags.comment and "knobs 0.5,0.5,0.5,0.5," in tags.comment, tags.comment
    assert "density=20 duration=80 transpose=0" in tags.comment, tags.comment
    assert tags.software.startswith("grainbox runtime render")
    with open(out, "rb") as f:
        assert f.read(4) == b"RIFF"
    # one line naming the model, the file, the length and the levels, which agree with the file
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    assert "factory-synth" in lines[0] and str(out) in lines[0] and f"{SECONDS:g} s" in lines[0], lines[0]
    peak, rms = (float(v) for v in re.search(r"peak (-?[\d.]+) dBFS, RMS (-?[\d.]+) dBFS", lines[0]).groups())
    measured = levels_dbfs(read_wav(out)[0])
    assert abs(peak - measured[0]) < 0.06 and abs(rms - measured[1]) < 0.06, (lines[0], measured)


def test_knob1_moves_the_spectrum(bright: Path, tmp_path: Path) -> None:
    """The knobs reach the sound: with the brightness model knob 1 fades the grains from a 65 Hz sine (0)
    to a 1034 Hz one (1), so the centroid must rise with it, by far (measured 63, 472, 1041 Hz at 0, 0.5,
    1). The control: the same setting rendered twice gives the same centroid (measured: identical, Pd's
    batch render is deterministic), so the differences are the knob's, not the render's noise."""
    centroids = {}
    for knob1 in (0.0, 0.5, 1.0):
        result = render_model(bright, Settings(SECONDS, knobs_with(knob1)), tmp_path / f"k{knob1:g}.wav")
        centroids[knob1] = centroid_hz(*read_wav(result.out))
    again = render_model(bright, Settings(SECONDS, knobs_with(0.5)), tmp_path / "again.wav")
    assert abs(centroid_hz(*read_wav(again.out)) / centroids[0.5] - 1) < 0.02, centroids
    assert centroids[0.0] < centroids[0.5] < centroids[1.0], centroids
    assert centroids[1.0] > 8 * centroids[0.0], centroids


def test_a_param_reaches_pd(bright: Path, tmp_path: Path) -> None:
    """--param transpose=12 plays an octave up: the centroid of the low sine doubles (measured 2.05x)."""
    low = render_model(bright, Settings(SECONDS, knobs_with(0.0)), tmp_path / "low.wav")
    up = render_model(bright, Settings(SECONDS, knobs_with(0.0, 0.75), params={"transpose": 12.0}),
                      tmp_path / "up.wav")
    ratio = centroid_hz(*read_wav(up.out)) / centroid_hz(*read_wav(low.out))
    assert 1.8 < ratio < 2.3, ratio
    assert "transpose=12" in read_tags(up.out).comment


def test_anchor_by_number_or_name(bright: Path, tmp_path: Path) -> None:
    """--anchor 3 and --anchor "plus dim 4" (its name, spaces or underscores) play the same sound."""
    by_number = render_model(bright, Settings(SECONDS, START, anchor="3"), tmp_path / "n.wav")
    by_name = render_model(bright, Settings(SECONDS, START, anchor="Plus_Dim_4"), tmp_path / "m.wav")
    first = render_model(bright, Settings(SECONDS, START), tmp_path / "1.wav")
    assert np.array_equal(read_wav(by_number.out)[0], read_wav(by_name.out)[0])
    assert not np.array_equal(read_wav(by_number.out)[0], read_wav(first.out)[0])
    assert "sound 3 (plus dim 4)" in read_tags(by_name.out).comment


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_valid(tmp_path_factory.mktemp("tiny") / "tiny.ts")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seconds", "0"], "--seconds must be above 0 and at most 600, got 0"),
        (["--seconds", "600.5"], "--seconds must be above 0 and at most 600"),
        (["--seconds", "nan"], "--seconds must be above 0"),
        (["--seconds", "ten"], "--seconds 'ten' is not a number"),
        (["--knobs", "0.1,0.2"], "--knobs takes 8 positions (knob1..knob8), got 2"),
        (["--knobs", "knob3=1.5"], "--knobs knob3=1.5 is outside 0..1"),
        (["--knobs", "knob3=-0.1"], "--knobs knob3=-0.1 is outside 0..1"),
        (["--knobs", "knob9=0.5"], "no knob 'knob9'; the knobs are knob1..knob8"),
        (["--knobs", "knob2=0.1,0.3"], "not a mix of both"),
        (["--knobs", "knob2=x"], "--knobs knob2='x' is not a number"),
        (["--param", "densty=4"], "--param densty: no such param; did you mean density?"),
        (["--param", "density=1000"], "--param density=1000 is out of range: density is 0.5 to 500 grains/s"),
        (["--param", "voices=2.5"], "voices is a whole number 1 to 32"),
        (["--param", "reverb"], "write it as name=value"),
        (["--param", "density=4", "--knobs", "knob5=0.2"], "density is set twice"),
        (["--anchor", "5"], "--anchor 5: the model has sounds 1 to 4 (1 sound 1, 2 sound 2"),
        (["--anchor", "bells"], "--anchor 'bells': no sound of that name"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                            args: list[str], message: str) -> None:
    out = tmp_path / "x.wav"
    code = runtime_main(["render", str(tiny), "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("grainbox: render: ") and message in err, err
    assert not out.exists()


def test_a_missing_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = runtime_main(["render", str(tmp_path / "nope.ts"), "--out", str(tmp_path / "x.wav")])
    assert code == 2
    assert capsys.readouterr().err == f"grainbox: render: no model file at {tmp_path / 'nope.ts'}\n"


def test_a_refused_model_exits_1_without_a_traceback(tmp_path: Path) -> None:
    """Through the real command line: one line saying why the loader refused it, nothing written."""
    model = write_broken(tmp_path / "nan.ts", "decode_nan")
    proc = cli(str(model), "--seconds", "1", "--out", str(tmp_path / "x.wav"))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"grainbox: render: {model}: model refused: "), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.wav").exists()


def test_render_imports_neither_the_trainer_nor_matplotlib() -> None:
    """runtime stays light: the render command pulls in no trainer, desktop or plotting code at all."""
    probe = ("import sys, runtime.__main__, runtime.render; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'trainer', 'desktop', 'matplotlib'}))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
