"""The MIDI map the box keeps (state/midi.json) and the model chosen in the patch on the box's link layout.

Both are the box's state across reboots, so both must keep what is good when they are handed something
bad: a broken map file is set aside with a reason, not lost or half-read; a choice that cannot be made
leaves `current` and `previous` as they were. End to end (real Pd, real runtime) they are played in
test_play_surface.py; here each case the patch cannot easily provoke.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from runtime.midimap import FORMAT, MidiMap, control_range
from runtime.model_choice import LOCK_NAME, ChoiceError, is_link_layout, make_current
from runtime.surface import models_on_disk


def test_a_learned_map_is_saved_at_once_and_read_back_by_the_next_boot(tmp_path: Path) -> None:
    path = tmp_path / "midi.json"
    midi = MidiMap(path)
    midi.learn(1, 21, "knob3")
    midi.learn(1, 22, "tone")
    midi.learn(2, 21, "density")  # the same CC on another channel is another controller
    assert MidiMap(path).entries() == [(1, 21, "knob3"), (1, 22, "tone"), (2, 21, "density")]
    midi.learn(1, 21, "reverb")  # a controller moves one control: learning again replaces
    midi.learn(1, 22, "-")  # "-" forgets it
    assert MidiMap(path).entries() == [(1, 21, "reverb"), (2, 21, "density")]
    midi.clear()
    assert MidiMap(path).entries() == []
    assert json.loads(path.read_text()) == {"format": FORMAT, "map": []}


def test_a_control_midi_cannot_move_is_refused_with_the_ones_it_can(tmp_path: Path) -> None:
    midi = MidiMap(tmp_path / "midi.json")
    for control in ("knob9", "listen", "volume"):  # listen is the runtime's own mode, not a CC's
        with pytest.raises(ValueError, match="knob1..knob8 or a /param"):
            midi.learn(1, 7, control)
    assert midi.entries() == []
    assert not (tmp_path / "midi.json").exists(), "a refusal writes nothing"


def test_a_cc_sweeps_a_parameter_as_its_slider_does() -> None:
    assert control_range("knob1") == (0.0, 1.0, False, False)
    assert control_range("density") == (0.5, 500.0, True, False)  # exponential, as the slider
    low, high, _, integer = control_range("root")
    assert integer and low < high


def test_a_broken_map_file_is_set_aside_and_the_box_starts_with_no_map(tmp_path: Path, caplog) -> None:
    path = tmp_path / "midi.json"
    broken = b'{"format": 1, "map": [{"channel": 1, "cc'  # a card pulled mid-write, before atomic saves
    path.write_bytes(broken)
    with caplog.at_level(logging.WARNING, logger="runtime.midimap"):
        midi = MidiMap(path)
    assert midi.entries() == []
    assert (tmp_path / "midi.json.broken").read_bytes() == broken, "kept for whoever wants to look"
    assert not path.exists()
    assert len(midi.skipped) == 1 and "midi.json.broken, learn again" in midi.skipped[0]
    assert "midi.json cannot be read" in caplog.text
    midi.learn(1, 21, "knob1")  # learning again writes a good file beside the set-aside one
    assert MidiMap(path).entries() == [(1, 21, "knob1")]


@pytest.mark.parametrize("content", ['[1, 2, 3]', '{"format": 2, "map": []}', '{"format": 1}', "\udcff"])
def test_a_map_of_another_format_is_set_aside_too(tmp_path: Path, content: str) -> None:
    path = tmp_path / "midi.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    assert MidiMap(path).entries() == []
    assert (tmp_path / "midi.json.broken").exists()


def test_bad_entries_are_skipped_and_named_and_the_good_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "midi.json"
    entries = [
        {"channel": 1, "cc": 21, "control": "knob3"},
        {"channel": 0, "cc": 21, "control": "knob1"},  # channels count from 1
        {"channel": 1, "cc": 128, "control": "knob1"},  # a CC is 0..127
        {"channel": 1, "cc": 23, "control": "listen"},
        {"channel": "1", "cc": 24, "control": "tone"},
        {"channel": True, "cc": 25, "control": "tone"},
        "knob5",
        {"channel": 3, "cc": 7, "control": "gain"},
    ]
    path.write_text(json.dumps({"format": FORMAT, "map": entries}))
    midi = MidiMap(path)
    assert midi.entries() == [(1, 21, "knob3"), (3, 7, "gain")]
    assert len(midi.skipped) == 6 and all("is not a mapping" in why for why in midi.skipped)
    assert path.exists(), "a readable file with a few bad entries stays where it is"


def box_models(tmp_path: Path) -> Path:
    """A box's models folder (deploy/boxside.sh's layout): two flashed files, current -> a, previous -> b."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("a.ts", "b.ts", "c.ts"):
        (models / name).write_bytes(name.encode())
    (models / "current").symlink_to("a.ts")
    (models / "previous").symlink_to("b.ts")
    return models


def test_a_chosen_model_becomes_current_and_the_old_one_previous(tmp_path: Path) -> None:
    models = box_models(tmp_path)
    assert is_link_layout(models / "current")
    assert [p.name for p in models_on_disk(models)] == ["a.ts", "b.ts", "c.ts"], "the links are not models"
    make_current(models / "current", models / "c.ts")
    assert (os.readlink(models / "current"), os.readlink(models / "previous")) == ("c.ts", "a.ts")
    assert sorted(p.name for p in models.iterdir()) == ["a.ts", "b.ts", "c.ts", "current", "previous"]
    make_current(models / "current", models / "c.ts")  # choosing what plays changes nothing
    assert (os.readlink(models / "current"), os.readlink(models / "previous")) == ("c.ts", "a.ts")


def test_a_choice_during_a_flash_is_refused_and_the_links_stay(tmp_path: Path) -> None:
    models = box_models(tmp_path)
    (models / LOCK_NAME).mkdir()  # deploy/boxside.sh holds it while it flashes
    with pytest.raises(ChoiceError, match="a flash is in progress on this box; choose again when it ends"):
        make_current(models / "current", models / "c.ts")
    assert (os.readlink(models / "current"), os.readlink(models / "previous")) == ("a.ts", "b.ts")
    assert (models / LOCK_NAME).is_dir(), "the flash's lock is the flash's"


def test_a_file_outside_the_models_folder_is_refused(tmp_path: Path) -> None:
    models = box_models(tmp_path)
    stray = tmp_path / "elsewhere.ts"
    stray.write_bytes(b"x")
    with pytest.raises(ChoiceError, match="flash it to the box first"):
        make_current(models / "current", stray)
    assert (os.readlink(models / "current"), os.readlink(models / "previous")) == ("a.ts", "b.ts")
    assert not (models / LOCK_NAME).exists()


def test_the_lock_is_released_when_the_links_cannot_be_changed(tmp_path: Path) -> None:
    models = box_models(tmp_path)
    (models / "current").unlink()
    (models / "current").write_bytes(b"not a link")  # readlink fails: the choice fails, the lock goes
    with pytest.raises(OSError):
        make_current(models / "current", models / "c.ts")
    assert not (models / LOCK_NAME).exists()
    assert os.readlink(models / "previous") == "b.ts"
