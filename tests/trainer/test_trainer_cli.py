"""`python -m trainer --help` lists every command with its real one-line help, without importing them."""

from __future__ import annotations

import subprocess
import sys

from trainer.__main__ import _cheap_help, _command_names


def test_every_command_has_its_help_line_read_without_importing_it():
    names = _command_names()
    assert {"train", "export", "audition", "baseline", "mnist"} <= set(names)
    for name in names:
        help_line = _cheap_help(name)
        assert len(help_line) > 20 and help_line.strip() != "(", (name, help_line)


def test_help_runs_and_names_every_command():
    out = subprocess.run([sys.executable, "-m", "trainer", "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    for name in _command_names():
        assert name in out
    assert "train a Grain-VAE" in out


def test_baseline_prints_the_pca_floor_and_writes_its_rows(tmp_path):
    """`make baseline`'s command on a small synth set: one row per k, SC falling as k grows."""
    import json

    out = tmp_path / "pca.json"
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "baseline", "--synth-grains", "400", "--k", "4,32",
         "--cache-dir", str(tmp_path / "cache"), "--json", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| 4 |" in proc.stdout and "| 32 |" in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["k"] for r in rows] == [4, 32] and rows[1]["sc"] < rows[0]["sc"]


def test_baseline_names_a_missing_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "trainer", "baseline", "--data", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no such folder; give 'synth'" in proc.stdout
