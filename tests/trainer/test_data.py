"""load_grains: the cache (hit, invalidation, found by content), the synth set, and the GrainSet contract."""

from __future__ import annotations

import os

import numpy as np
import pytest

from trainer import GRAIN_SIZE, audio
from trainer.data import GrainSet, load_grains
from trainer.synth import SHAPE_NAMES, SYNTH_PARAM_NAMES

from .test_audio import noise, sine, write


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "data"
    for i in range(5):
        write(data / f"tone_{i}.wav", sine(200.0 + 100 * i, 0.4))
    return data


def load(data, tmp_path, **kw) -> GrainSet:
    return load_grains(str(data), cache_dir=tmp_path / "cache", progress=False, **kw)


def forbid_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("audio was decoded although the cache should have answered")

    monkeypatch.setattr(audio, "load_mono", fail)


def test_the_second_run_is_a_cache_hit_without_decoding(folder, tmp_path, monkeypatch):
    first = load(folder, tmp_path)
    assert first.summary["cache"] == "miss"
    forbid_decoding(monkeypatch)
    second = load(folder, tmp_path)
    assert second.summary["cache"] == "hit"
    assert isinstance(second.train, np.memmap)  # memory-mapped, not read into memory
    assert second.fingerprint == first.fingerprint
    assert np.array_equal(second.train, first.train) and np.array_equal(second.val, first.val)
    assert np.array_equal(second.val_source, first.val_source)
    assert second.source_names == first.source_names


def test_a_changed_file_invalidates_the_cache(folder, tmp_path):
    first = load(folder, tmp_path)
    write(folder / "tone_2.wav", noise(8820))  # same name, new sound
    second = load(folder, tmp_path)
    assert second.summary["cache"] == "miss"
    assert second.fingerprint != first.fingerprint
    assert not np.array_equal(np.concatenate([second.train, second.val]),
                              np.concatenate([first.train, first.val]))


def test_added_and_removed_files_invalidate_the_cache(folder, tmp_path):
    first = load(folder, tmp_path)
    write(folder / "sub" / "new.wav", sine(900.0, 0.4))
    added = load(folder, tmp_path)
    assert added.summary["cache"] == "miss" and "sub/new.wav" in added.source_names
    (folder / "tone_0.wav").unlink()
    removed = load(folder, tmp_path)
    assert removed.summary["cache"] == "miss" and "tone_0.wav" not in removed.source_names
    assert len({first.fingerprint, added.fingerprint, removed.fingerprint}) == 3


def test_a_touched_file_is_found_again_by_content(folder, tmp_path, monkeypatch):
    first = load(folder, tmp_path)
    st = (folder / "tone_1.wav").stat()
    os.utime(folder / "tone_1.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    forbid_decoding(monkeypatch)
    again = load(folder, tmp_path)
    assert again.summary["cache"] == "hit (found by content)"
    assert again.fingerprint == first.fingerprint


def test_parameters_are_part_of_the_key(folder, tmp_path):
    base = load(folder, tmp_path)
    assert load(folder, tmp_path, hop=256).fingerprint != base.fingerprint
    assert load(folder, tmp_path, seed=1).fingerprint != base.fingerprint
    assert load(folder, tmp_path, val_fraction=0.3).fingerprint != base.fingerprint
    assert len(load(folder, tmp_path, hop=256).train) > len(base.train)


def test_non_audio_files_do_not_touch_the_cache(folder, tmp_path, monkeypatch):
    load(folder, tmp_path)
    (folder / "notes.txt").write_text("edited while training")
    forbid_decoding(monkeypatch)
    assert load(folder, tmp_path).summary["cache"] == "hit"


def test_skipped_files_stay_in_the_summary_on_a_cache_hit_and_are_not_logged_again(folder, tmp_path, caplog):
    (folder / "broken.flac").write_bytes(b"fLaC" + bytes(100))
    load(folder, tmp_path)
    caplog.clear()
    gs = load(folder, tmp_path)  # as export loads the run's data: the run already said it
    assert gs.summary["cache"] == "hit" and "broken.flac" not in caplog.text
    assert "skipped broken.flac" in gs.describe() and gs.summary["files_skipped"] == 1


def test_a_broken_cache_entry_is_rebuilt(folder, tmp_path):
    first = load(folder, tmp_path)
    entry = first.summary["cache_path"]
    os.remove(os.path.join(entry, "val.npy"))
    again = load(folder, tmp_path)
    assert again.summary["cache"] == "miss"
    assert np.array_equal(again.val, first.val)


def test_default_cache_dir_follows_grainbox_cache(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAINBOX_CACHE", str(tmp_path / "env-cache"))
    gs = load_grains(str(folder), progress=False)
    assert gs.summary["cache_path"].startswith(str(tmp_path / "env-cache"))


def test_synth_set(tmp_path, monkeypatch):
    args = dict(synth_grains=500, val_fraction=0.1, seed=3, cache_dir=tmp_path, progress=False)
    gs = load_grains("synth", **args)
    assert gs.train.shape == (450, GRAIN_SIZE) and gs.val.shape == (50, GRAIN_SIZE)
    assert gs.source_names == list(SHAPE_NAMES)
    assert gs.summary["split"] == "by grain" and gs.summary["cache"] == "miss"
    for split, grains, params, source in (("train", gs.train, gs.train_params, gs.train_source),
                                           ("val", gs.val, gs.val_params, gs.val_source)):
        assert set(params) == set(SYNTH_PARAM_NAMES), split
        assert all(len(v) == len(grains) for v in params.values())
        assert np.array_equal(source, params["shape"])
    # the cache answers the second time, without rendering
    monkeypatch.setattr("trainer.synth.render_synth_grains", lambda *a, **k: pytest.fail("rendered twice"))
    again = load_grains("synth", **args)
    assert again.summary["cache"] == "hit" and np.array_equal(again.train, gs.train)
    assert np.array_equal(again.train_params["cutoff_hz"], gs.train_params["cutoff_hz"])


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="val_fraction"):
        load_grains("synth", val_fraction=1.0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="hop must be at least 1"):
        load_grains("synth", hop=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="synth_grains"):
        load_grains("synth", synth_grains=1, cache_dir=tmp_path)
