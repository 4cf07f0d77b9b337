"""Presets: saved and recalled whole, refused with a clear message when damaged, and never half-written,
even when the process is killed with SIGKILL in the middle of a save."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.atomic import TEMP_PREFIX
from runtime.presets import ControlState, PresetError, PresetStore
from tests.support.runtime_helpers import REPO

OLD = ControlState([0.1] * 8, anchor=1, freeze=False)
NEW = ControlState([0.9] * 8, anchor=2, freeze=True)


def test_save_recall_and_numbering(tmp_path: Path) -> None:
    store = PresetStore(tmp_path / "presets")
    assert store.latest() is None and store.next_name() == "preset-001"
    assert store.save(OLD) == "preset-001"
    assert store.save(NEW, "dusty pad") == "dusty pad"
    assert store.save(NEW) == "preset-002"
    assert store.names() == ["dusty pad", "preset-001", "preset-002"]
    assert store.load("preset-001") == OLD and store.load("dusty pad") == NEW
    assert store.latest() == "preset-002"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "cannot be recalled"),
        ('{"format": 3, "knobs": [0.5], "anchor": 0, "freeze": false}', "format 3"),
        ('{"format": 2, "knobs": [0,0,0,0,0,0,0,0], "anchor": 0, "freeze": false, "params": {"loud": 1}}',
         "loud"),
        ('{"format": 1, "knobs": [0.5, 2], "anchor": 0, "freeze": false}', "8 numbers in 0..1"),
        ('{"format": 1, "knobs": [0,0,0,0,0,0,0,0], "anchor": -1, "freeze": false}', "anchor"),
    ],
)
def test_a_damaged_preset_is_refused_naming_the_file(tmp_path: Path, content: str, words: str) -> None:
    store = PresetStore(tmp_path)
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(PresetError, match=words) as e:
        store.load("bad")
    assert str(tmp_path / "bad.json") in str(e.value)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"[" * 100_000, "nests JSON too deeply"),
        (b'{"knobs": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nests JSON too deeply"),
        (bytes(range(256)), "not UTF-8 text"),
        (json.dumps({"format": "x" * 100_000}).encode(), "format 'xxxx"),
    ],
    ids=["deep-array", "deep-inside-an-object", "binary", "huge-format-value"],
)
def test_an_unreadable_preset_is_one_short_line_naming_the_file(
        tmp_path: Path, content: bytes, words: str) -> None:
    store = PresetStore(tmp_path)
    (tmp_path / "bad.json").write_bytes(content)
    with pytest.raises(PresetError) as e:
        store.load("bad")
    message = str(e.value)
    assert words in message and str(tmp_path / "bad.json") in message, message[:300]
    assert "\n" not in message and len(message) < len(str(tmp_path)) + 200, f"{len(message)}: {message[:300]}"


def test_a_huge_preset_name_is_quoted_as_a_short_excerpt(tmp_path: Path) -> None:
    store = PresetStore(tmp_path)
    for attempt in (lambda: store.load("x" * 100_000), lambda: store.save(OLD, "x" * 100_000)):
        with pytest.raises(PresetError) as e:
            attempt()
        assert "'xxxx" in str(e.value) and "…" in str(e.value)
        assert len(str(e.value)) < len(str(tmp_path)) + 200, len(str(e.value))


def test_unknown_and_unsafe_names_are_refused(tmp_path: Path) -> None:
    store = PresetStore(tmp_path)
    with pytest.raises(PresetError, match="no preset named 'nope'"):
        store.load("nope")
    with pytest.raises(PresetError, match="not allowed"):
        store.save(OLD, "../escape")


# The child saves NEW over OLD with os.fsync wrapped: at the chosen fsync it says so and waits to be killed.
# fsync 1 is the temporary file's (before the rename), fsync 2 the folder's (after it).
CHILD = """
import os, sys, time
from runtime.presets import ControlState, PresetStore
real_fsync, calls = os.fsync, [0]
def fsync(fd):
    calls[0] += 1
    if calls[0] == int(sys.argv[2]):
        print("saving", flush=True)
        time.sleep(120)
    real_fsync(fd)
os.fsync = fsync
PresetStore(sys.argv[1]).save(ControlState([0.9] * 8, anchor=2, freeze=True), "live")
"""


@pytest.mark.parametrize(("fsync_call", "survivor"), [(1, OLD), (2, NEW)], ids=["before-rename", "after"])
def test_a_kill_9_in_the_middle_of_a_save_leaves_a_whole_preset(
    tmp_path: Path, fsync_call: int, survivor: ControlState
) -> None:
    folder = tmp_path / "presets"
    PresetStore(folder).save(OLD, "live")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder), str(fsync_call)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "saving\n", "the child never saved"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    leftovers = list(folder.glob(TEMP_PREFIX + "*"))
    assert len(leftovers) == (1 if fsync_call == 1 else 0), leftovers
    json.loads((folder / "live.json").read_text())  # a whole JSON document, old or new
    store = PresetStore(folder)  # what the runtime does at start: stale temporaries go
    assert list(folder.glob(TEMP_PREFIX + "*")) == []
    assert store.names() == ["live"]
    assert store.load("live") == survivor
