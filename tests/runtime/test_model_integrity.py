"""A model damaged after export is refused, never played: bit rot inside the archive (a CRC-32 error)
and weights that no longer hash to the export's content_hash."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest
import torch

from runtime.__main__ import main
from runtime.artifact import ModelError, load_model, probe_points, reachable_points
from tests.support import model_fixtures


def zero_inside_the_largest_member(path: Path, size: int = 4096) -> str:
    """Overwrite `size` bytes in the middle of the archive's largest member with zeros; its name."""
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    header = member.header_offset  # the local file header: 30 bytes, then its name and extra field
    name_length, extra_length = struct.unpack("<HH", data[header + 26 : header + 30])
    start = header + 30 + name_length + extra_length
    middle = start + member.file_size // 2 - size // 2
    assert member.file_size > size and any(data[middle : middle + size]), "nothing to damage there"
    data[middle : middle + size] = bytes(size)
    path.write_bytes(bytes(data))
    return member.filename


@pytest.fixture
def rotten(tmp_path: Path) -> tuple[Path, str]:
    path = model_fixtures.write_valid(tmp_path / "model.ts")
    return path, zero_inside_the_largest_member(path)


def test_a_crc_error_inside_the_archive_is_refused(rotten: tuple[Path, str]) -> None:
    path, member = rotten
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() == member  # what zipfile itself reports
    with pytest.raises(ModelError) as raised:
        load_model(path)
    assert f"its member {member} fails the archive's CRC-32 check" in str(raised.value)


def test_runtime_check_refuses_the_rotten_model_in_one_line(
    rotten: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = rotten
    assert main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "OK: the box can play" not in out and err.count("\n") == 1 and "copy the model again" in err


def test_weights_that_do_not_match_the_content_hash_are_refused(tmp_path: Path) -> None:
    path = model_fixtures._with_metadata(tmp_path / "model.ts", content_hash="0" * 64)
    with pytest.raises(ModelError) as raised:
        load_model(path)
    assert "do not match the content_hash recorded at export (000000000000" in str(raised.value)


def test_an_export_without_a_content_hash_plays_with_a_warning(tmp_path: Path) -> None:
    path = model_fixtures._with_metadata(tmp_path / "model.ts", content_hash=None)
    assert any("no content_hash" in w for w in load_model(path).warnings)


def write_scaled(path: Path, factor: float, where: tuple[int, int] | None = None) -> Path:
    """A valid model whose decoder weights are multiplied by `factor` (everywhere, or at one entry)."""
    model = model_fixtures.TinyGrainModel()
    with torch.no_grad():
        if where is None:
            model.decoder.weight.mul_(factor)
        else:
            model.decoder.weight[where] = factor
    meta = model_fixtures.metadata_for(model)
    return model_fixtures.save(model, path, meta)


def test_weights_scaled_by_1e30_play_hard_clipped_noise_and_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as raised:
        load_model(write_scaled(tmp_path / "model.ts", 1e30))
    assert "at full scale in" in str(raised.value) and "hard-clipped" in str(raised.value)


def test_an_inf_weight_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as raised:
        load_model(write_scaled(tmp_path / "model.ts", float("inf"), where=(5, 3)))
    assert "the weights hold NaN or inf" in str(raised.value)


def test_nan_only_at_the_corners_of_the_knob_box_is_refused(tmp_path: Path) -> None:
    model = model_fixtures.TinyGrainModel(failure="nan_far")
    buffers = {name: getattr(model, name) for name in ("anchors", "center", "axes", "scales")}
    with torch.no_grad():  # the precondition: the old probe points alone were all finite
        assert torch.isfinite(model.decode(probe_points(buffers))).all()
        assert not torch.isfinite(model.decode(reachable_points(buffers))).all()
    path = model_fixtures.save(model, tmp_path / "model.ts", model_fixtures.metadata_for(model))
    with pytest.raises(ModelError) as raised:
        load_model(path)
    assert "NaN or inf" in str(raised.value)
