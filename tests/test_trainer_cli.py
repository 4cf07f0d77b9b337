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
