"""Audio folder -> grains, with real files written by soundfile into a temporary folder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trainer import GRAIN_SIZE, SAMPLE_RATE, audio
from trainer.data import NoAudioError, load_grains


def write(path: Path, x: np.ndarray, sr: int = SAMPLE_RATE, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, **kw)
    return path


def sine(hz: float, seconds: float, sr: int = SAMPLE_RATE, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * hz * np.arange(round(seconds * sr)) / sr)).astype(np.float32)


def noise(n: int, seed: int = 0, amp: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-amp, amp, n).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Frequency of the strongest partial, to ~0.05 Hz: zero-padded FFT plus a parabola through the peak."""
    pad = 1 << 20
    mag = np.log(np.abs(np.fft.rfft(x * np.hanning(len(x)), pad)) + 1e-12)
    k = int(mag.argmax())
    a, b, c = mag[k - 1 : k + 2]
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / pad


def load(folder: Path, tmp_path: Path, **kw):
    kw.setdefault("progress", False)
    return load_grains(str(folder), cache_dir=tmp_path / "cache", **kw)


# --- one file ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8_000, 44_100, 48_000, 96_000])
def test_resampling_keeps_a_440_hz_sine_at_440_hz(tmp_path, rate):
    path = write(tmp_path / f"a440_{rate}.wav", sine(440.0, 2.0, rate), rate, subtype="FLOAT")
    x = audio.load_mono(path)
    assert x.dtype == np.float32
    assert abs(len(x) - 2 * SAMPLE_RATE) <= 1
    assert abs(peak_hz(x) - 440.0) < 1.0
    assert np.abs(x[1000:-1000]).max() == pytest.approx(0.5, abs=0.01)  # the level is kept too


def test_channels_are_averaged_to_mono(tmp_path):
    left, right = sine(440.0, 0.5), sine(660.0, 0.5)
    x = audio.load_mono(write(tmp_path / "stereo.wav", np.stack([left, right], 1), subtype="FLOAT"))
    assert np.allclose(x, (left + right) / 2, atol=1e-6)


def test_common_formats_in_nested_folders_are_all_read(tmp_path):
    data = tmp_path / "data"
    tone = sine(330.0, 0.5)
    write(data / "a.flac", tone)
    write(data / "deeper" / "b.aiff", tone)
    write(data / "deeper" / "c.ogg", tone, format="OGG", subtype="VORBIS")
    write(data / "deeper" / "deepest" / "d.mp3", tone, format="MP3", subtype="MPEG_LAYER_III")
    write(data / "E.WAV", tone)
    (data / "notes.txt").write_text("not audio")
    (data / "cover.png").write_bytes(b"\x89PNG\r\n")
    gs = load(data, tmp_path, val_fraction=0.0)
    assert gs.source_names == ["E.WAV", "a.flac", "deeper/b.aiff", "deeper/c.ogg", "deeper/deepest/d.mp3"]
    assert gs.summary["files_ignored"] == 2 and gs.summary["files_skipped"] == 0


def test_grain_count_is_exact_for_known_length_and_hop(tmp_path):
    assert audio.grain_count(22_050, hop=512) == 1 + (22_050 - 1024) // 512 == 42
    for hop in (512, 256, 1000):
        data = tmp_path / f"hop{hop}"
        write(data / "one_second.wav", noise(22_050), subtype="FLOAT")
        gs = load(data, tmp_path, hop=hop, val_fraction=0.0)
        expected = 1 + (22_050 - GRAIN_SIZE) // hop
        assert len(gs.train) == gs.summary["grains_cut"] == expected
    # grains really start every hop samples, at sample 0, and carry the (peak-normalised) audio
    x = audio.peak_normalise(noise(22_050))
    grains = audio.cut_grains(x, hop=300)
    assert np.array_equal(grains[5], x[1500 : 1500 + GRAIN_SIZE])


def test_a_file_shorter_than_a_grain_is_padded_into_one(tmp_path):
    click = noise(400, amp=0.8)
    data = tmp_path / "short"
    write(data / "click.wav", click, subtype="FLOAT")
    gs = load(data, tmp_path, val_fraction=0.0)
    assert gs.train.shape == (1, GRAIN_SIZE)
    assert np.allclose(gs.train[0, :400], click / np.abs(click).max())  # peak-normalised
    assert np.all(gs.train[0, 400:] == 0.0)


def test_silence_gate_drops_a_silent_files_grains_and_keeps_a_loud_ones(tmp_path):
    data = tmp_path / "gate"
    write(data / "silent.wav", np.zeros(22_050, np.float32))
    write(data / "hiss.wav", noise(22_050, amp=1e-5), subtype="FLOAT")  # -100 dBFS: not blown up
    write(data / "loud.wav", noise(22_050, seed=1))
    # loud for 22 hops then silent: grains 0..21 touch the loud part, grains 22..41 are pure silence
    write(data / "half.wav", np.concatenate([noise(22 * 512, seed=2), np.zeros(22_050 - 22 * 512)]))
    gs = load(data, tmp_path, val_fraction=0.0)
    s = gs.summary
    assert s["silent_files"] == ["hiss.wav", "silent.wav"]
    assert gs.source_names == ["half.wav", "loud.wav"]
    kept = np.bincount(gs.train_source, minlength=2)
    assert list(kept) == [22, 42]
    assert s["grains_dropped_silent"] == 42 + 42 + 20
    assert (audio.rms_dbfs(gs.train) > audio.SILENCE_DBFS).all()


# --- a folder ------------------------------------------------------------------------------------


def one_shots(folder: Path, n: int = 20) -> list[Path]:
    """n one-shots shorter than 0.3 s, a few shorter than one grain; each its own pitch."""
    rng = np.random.default_rng(3)
    paths = []
    for i in range(n):
        seconds = 0.03 if i % 7 == 0 else rng.uniform(0.05, 0.29)
        x = sine(200.0 + 40 * i, seconds) * np.exp(-np.linspace(0, 4, round(seconds * SAMPLE_RATE)))
        paths.append(write(folder / f"hit_{i:02d}.wav", x.astype(np.float32), subtype="FLOAT"))
    return paths


def test_no_file_appears_in_both_splits(tmp_path):
    data = tmp_path / "shots"
    one_shots(data)
    gs = load(data, tmp_path, val_fraction=0.2, seed=5)
    train_files, val_files = set(gs.train_source), set(gs.val_source)
    assert train_files and val_files and not train_files & val_files
    assert train_files | val_files == set(range(20))
    assert len(gs.val) / (len(gs.train) + len(gs.val)) >= 0.2  # about val_fraction of the grains, whole files
    assert sorted(gs.source_names[i] for i in val_files) == gs.summary["val_file_names"]
    # each grain in a split is exactly a grain of the file it is attributed to
    for grains, sources in ((gs.train, gs.train_source), (gs.val, gs.val_source)):
        for i in np.unique(sources):
            expected, _, _ = audio.file_to_grains(data / gs.source_names[i])
            assert np.array_equal(grains[sources == i], expected)


def test_split_is_deterministic_from_the_seed(tmp_path):
    data = tmp_path / "shots"
    one_shots(data)
    val_files = {seed: load(data, tmp_path, seed=seed).summary["val_file_names"] for seed in (0, 1, 2)}
    again = load(data, tmp_path / "other-cache", seed=0)
    assert again.summary["val_file_names"] == val_files[0]
    assert len({tuple(v) for v in val_files.values()}) > 1


def test_twenty_one_shots_make_a_working_grain_set(tmp_path):
    data = tmp_path / "shots"
    one_shots(data)
    gs = load(data, tmp_path)
    assert gs.summary["files_loaded"] == 20 and gs.summary["split"] == "by file"
    assert len(gs.train) > 0 and len(gs.val) > 0
    assert gs.train.dtype == np.float32 and gs.train.shape[1] == GRAIN_SIZE
    assert np.isfinite(gs.train).all() and np.abs(gs.train).max() <= 1.0


def test_a_single_file_is_split_in_time_without_overlap(tmp_path):
    data = tmp_path / "single"
    write(data / "take.wav", noise(22_050), subtype="FLOAT")  # 42 grains at hop 512
    gs = load(data, tmp_path, val_fraction=0.1)
    assert gs.summary["split"].startswith("by time within each file")
    assert len(gs.val) == 4 and len(gs.train) == 42 - 4 - 1  # one grain left out: it overlaps both
    x = audio.peak_normalise(audio.load_mono(data / "take.wav"))
    first_val_start = (42 - 4) * 512
    assert np.array_equal(gs.val[0], x[first_val_start : first_val_start + GRAIN_SIZE])
    last_train_end = (len(gs.train) - 1) * 512 + GRAIN_SIZE
    assert last_train_end <= first_val_start


def test_two_files_both_validate_split_in_time_and_the_describe_line_says_so(tmp_path):
    data = tmp_path / "two"
    write(data / "drone.wav", sine(110.0, 2.0))
    write(data / "bell.wav", sine(880.0, 2.0))
    gs = load(data, tmp_path, val_fraction=0.1)
    assert gs.summary["val_files"] == 2 and gs.summary["train_files"] == 2
    assert sorted(set(gs.val_source.tolist())) == [0, 1]  # not one drone as the whole validation
    assert "split by time within each file (by file, 1 of 2 files would validate" in gs.describe()
    assert gs.summary["val_files"] == 2


def test_silent_and_too_short_files_are_reported_with_the_gated_share(tmp_path):
    data = tmp_path / "mixed"
    write(data / "tone.wav", sine(220.0, 1.0))
    write(data / "blip.wav", sine(440.0, 0.02))  # 441 samples: less than one grain
    write(data / "quiet.wav", np.zeros(22_050, np.float32))
    text = load(data, tmp_path).describe()
    assert "1 silent" in text and "1 shorter than a grain (zero-padded)" in text
    assert "zero-padded blip.wav" in text and "silent quiet.wav" in text
    assert "dropped by the silence gate at -45 dBFS" in text


def test_a_corrupt_file_is_skipped_and_reported_while_the_others_load(tmp_path, caplog):
    data = tmp_path / "mixed"
    write(data / "good_a.wav", sine(220.0, 0.5))
    write(data / "good_b.flac", sine(330.0, 0.5))
    (data / "broken.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    write(data / "nan.wav", np.full(2048, np.nan, np.float32), subtype="FLOAT")
    (data / "readme.txt").write_text("ignored, not audio")
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        gs = load(data, tmp_path)
        load(data, tmp_path)  # a cache hit, as export loads it: says nothing again
    s = gs.summary
    assert gs.source_names == ["good_a.wav", "good_b.flac"]
    assert s["files_found"] == 4 and s["files_loaded"] == 2 and s["files_ignored"] == 1
    assert s["files_skipped"] == 2
    assert [x["file"] for x in s["skipped"]] == ["broken.wav", "nan.wav"]
    assert "NaN" in s["skipped"][1]["reason"]
    assert "skipped" not in caplog.text  # not logged: described once, by the command that loads it
    described = gs.describe()
    assert "skipped broken.wav" in described and "skipped nan.wav" in described and "readme" not in described


def test_an_empty_folder_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoAudioError, match=rf"no audio files: searched {empty} recursively for .*\.wav"):
        load(empty, tmp_path)
    (empty / "notes.txt").write_text("hello")
    with pytest.raises(NoAudioError, match=r"found 1 other files \(e\.g\. notes\.txt\)"):
        load(empty, tmp_path)


def test_a_folder_of_only_unusable_audio_is_a_clear_error(tmp_path, caplog):
    data = tmp_path / "bad"
    (data).mkdir()
    (data / "broken.wav").write_bytes(b"RIFF....garbage")
    write(data / "silent.flac", np.zeros(4096, np.float32))
    with pytest.raises(NoAudioError, match=r"1 unreadable \(broken\.wav\) and 1 silent"):
        load(data, tmp_path)


def test_a_missing_folder_says_what_data_can_be(tmp_path):
    with pytest.raises(NoAudioError, match="no such folder; give 'synth'"):
        load(tmp_path / "nowhere", tmp_path)


def test_the_reconstructions_come_from_every_validation_file_in_turn():
    from trainer.grain_report import stratified

    sources = np.array([0] * 500 + [1] * 3 + [2] * 3)  # one long drone and two short notes
    picked = stratified(sources, 6, np.random.default_rng(0))
    assert len(picked) == 6 and sorted(np.bincount(sources[picked]).tolist()) == [2, 2, 2]
    assert len(set(picked.tolist())) == 6
