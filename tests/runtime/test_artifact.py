"""The model loader and `python -m runtime check`: a valid artifact passes, each broken one is named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runtime.__main__ import main
from runtime.artifact import ModelError, content_hash, load_model, probe_points
from tests.support import model_fixtures as fixtures

REPO = Path(__file__).resolve().parents[2]

# Each broken artifact and words its error must contain, so the message names the problem.
EXPECTED_ERRORS = {
    "not_archive": "not a TorchScript archive",
    "truncated": "truncated or damaged",
    "empty": "empty",
    "no_metadata": "no grainbox.json",
    "missing_method": "no `encode` method",
    "missing_buffer": "no `anchors` buffer",
    "float64_buffer": "`scales` is torch.float64",
    "unknown_schema": "schema_version 99",
    "latent_mismatch": "latent_dim=32",
    "anchor_names_mismatch": "1 anchor_names for 4 anchors",
    "grain_size_mismatch": "grain_size=2048",
    "decode_nan": "NaN",
    "decode_wrong_shape": "returned shape [20, 512], expected [20, 1024]",
    "decode_out_of_range": "outside [-1, 1]",
    "decode_float64": "decode returned torch.float64",
    "decode_raises": "decode(tensor of shape",
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("artifacts")
    built = {"valid": fixtures.write_valid(folder / "valid.ts")}
    for problem in fixtures.BROKEN:
        built[problem] = fixtures.write_broken(folder / f"{problem}.ts", problem)
    return built


def test_every_broken_fixture_has_an_expected_error() -> None:
    assert set(EXPECTED_ERRORS) == set(fixtures.BROKEN)


def test_valid_model_loads_with_its_metadata_and_buffers(artifacts: dict[str, Path]) -> None:
    model = load_model(artifacts["valid"])
    assert (model.name, model.sample_rate, model.grain_size, model.latent_dim) == (
        "tiny-test",
        22050,
        1024,
        16,
    )
    assert model.num_axes == 8 and model.num_anchors == 4
    assert model.anchor_names == ("sound 1", "sound 2", "sound 3", "sound 4")
    assert model.axes.shape == (8, 16) and model.anchors.dtype == torch.float32
    assert len(model.sha256) == 64 and model.size_bytes == artifacts["valid"].stat().st_size
    assert model.warnings == ()  # content_hash matches the weights
    grains = model.decode(model.anchors)
    assert grains.shape == (4, 1024) and grains.abs().max() <= 1
    assert model.decode_ms > 0


def test_content_hash_follows_the_documented_recipe(artifacts: dict[str, Path]) -> None:
    model = load_model(artifacts["valid"])
    assert content_hash(model.module) == fixtures.state_hash(fixtures.TinyGrainModel())
    assert content_hash(model.module) == model.metadata["content_hash"]


def test_probe_points_reach_every_anchor_and_both_ends_of_every_axis(artifacts: dict[str, Path]) -> None:
    model = load_model(artifacts["valid"])
    z = probe_points(
        {"center": model.center, "axes": model.axes, "scales": model.scales, "anchors": model.anchors}
    )
    assert z.shape == (4 + 2 * 8, 16)
    assert torch.allclose(z[4], model.center + 2 * model.scales[0] * model.axes[0])


@pytest.mark.parametrize("problem", sorted(EXPECTED_ERRORS))
def test_broken_model_is_refused_with_a_message_naming_the_problem(
    artifacts: dict[str, Path], problem: str
) -> None:
    with pytest.raises(ModelError) as raised:
        load_model(artifacts[problem])
    assert EXPECTED_ERRORS[problem] in str(raised.value)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.ts")


@pytest.mark.parametrize("problem", sorted(EXPECTED_ERRORS))
def test_check_command_exits_1_with_one_clear_line(
    artifacts: dict[str, Path], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(artifacts[problem])]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "invalid model" in err and EXPECTED_ERRORS[problem] in err


def test_check_command_prints_a_summary_and_exits_0(artifacts: dict[str, Path]) -> None:
    # A real subprocess: what flash.sh runs. It must not import the trainer.
    code = (
        "import sys, runtime.__main__ as m; rc = m.main(sys.argv[1:]); "
        "assert 'trainer' not in sys.modules, 'runtime imported trainer'; sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "check", str(artifacts["valid"])],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for words in (
        "tiny-test",
        "grain 1024 samples @ 22050 Hz",
        "latent 16, axes 8",
        "4: sound 1, sound 2, sound 3, sound 4",
        "val: sc 0.5 lsd_db 9 snr_db 3",
        "ms per grain at batch 1",
        "OK",
    ):
        assert words in done.stdout


def test_check_command_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["check"])
    assert raised.value.code == 2


def test_the_committed_factory_model_passes_the_check() -> None:
    """models/factory.ts (the box's default model) loads with the current schema; models/ stays under 5 MB."""
    from runtime.contract import ARTIFACT_SCHEMAS

    factory = REPO / "models" / "factory.ts"
    model = load_model(factory)
    assert model.metadata["schema_version"] == max(ARTIFACT_SCHEMAS)
    assert model.name == "factory-synth" and model.metadata["dataset"]["source"] == "synth"
    assert model.warnings == () and model.num_axes >= 8 and 1 <= model.num_anchors <= 32
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "check", str(factory)], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0 and "OK: the box can play this model" in proc.stdout, proc.stderr
    total = sum(p.stat().st_size for p in (REPO / "models").rglob("*") if p.is_file())
    assert total < 5_000_000, f"models/ holds {total / 1e6:.2f} MB"
