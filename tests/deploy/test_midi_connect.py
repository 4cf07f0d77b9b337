"""deploy/midi-connect.sh: every USB MIDI controller goes to Pd's MIDI input, and only those.

The box's ALSA sequencer is not here (no /dev/snd/seq in CI), so `aconnect` is a stand-in on PATH that
prints what alsa-utils' aconnect prints on a Pi with Pd running (-alsamidi -mididev 1) and two controllers
plugged in, and records each connection asked for. The script itself runs as the units run it (/bin/sh).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "deploy" / "midi-connect.sh"

# `aconnect -i` (readable ports) and `aconnect -o` (writable) on a Pi 4 with a Korg nanoKONTROL2 and an
# Arturia MiniLab (two ports), as alsa-utils 1.2 prints them.
READABLE = """\
client 0: 'System' [type=kernel]
    0 'Timer           '
    1 'Announce        '
client 14: 'Midi Through' [type=kernel]
    0 'Midi Through Port-0'
client 20: 'nanoKONTROL2' [type=kernel,card=2]
    0 'nanoKONTROL2 nanoKONTROL2 _ CTR'
client 24: 'Arturia MiniLab mkII' [type=kernel,card=3]
    0 'Arturia MiniLab mkII MIDI 1'
    1 'Arturia MiniLab mkII MIDI 2'
{pd_out}"""
PD_OUT = """client 128: 'Pure Data' [type=user,pid=812]
    1 'Pure Data Midi-Out 1'
"""
WRITABLE = """\
client 14: 'Midi Through' [type=kernel]
    0 'Midi Through Port-0'
client 20: 'nanoKONTROL2' [type=kernel,card=2]
    0 'nanoKONTROL2 nanoKONTROL2 _ CTR'
{pd_in}"""
PD_IN = """client 128: 'Pure Data' [type=user,pid=812]
    0 'Pure Data Midi-In 1'
"""


def fake_aconnect(bin_dir: Path, pd_running: bool, already: str = "") -> Path:
    """An aconnect that lists the ports above and logs `SRC DEST` for each connection; `already` is one
    that exists (aconnect then fails, as the real one does: "Connection is already subscribed")."""
    bin_dir.mkdir()
    log = bin_dir / "connections.log"
    (bin_dir / "readable.txt").write_text(READABLE.format(pd_out=PD_OUT if pd_running else ""))
    (bin_dir / "writable.txt").write_text(WRITABLE.format(pd_in=PD_IN if pd_running else ""))
    script = bin_dir / "aconnect"
    script.write_text(f"""#!/bin/sh
case "$1" in
    -i) cat '{bin_dir}/readable.txt' ;;
    -o) cat '{bin_dir}/writable.txt' ;;
    *) if [ "$1 $2" = '{already}' ]; then echo 'Connection is already subscribed' >&2; exit 1; fi
       echo "$1 $2" >> '{log}' ;;
esac
""")
    script.chmod(0o755)
    return log


def run(bin_dir: Path, wait_s: str = "10") -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GRAINBOX_MIDI_WAIT_S": wait_s}
    return subprocess.run(["/bin/sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def test_every_controller_port_goes_to_pds_input_and_nothing_else(tmp_path: Path) -> None:
    log = fake_aconnect(tmp_path / "bin", pd_running=True)
    result = run(tmp_path / "bin")
    assert result.returncode == 0, result.stderr
    # not the System client, not Midi Through, not Pd's own output back into itself
    assert log.read_text().splitlines() == ["20:0 128:0", "24:0 128:0", "24:1 128:0"]
    assert "nanoKONTROL2 (20:0) -> Pd (128:0)" in result.stdout
    assert "3 controller port(s), 3 newly connected" in result.stdout


def test_a_second_run_keeps_what_is_connected(tmp_path: Path) -> None:
    log = fake_aconnect(tmp_path / "bin", pd_running=True, already="20:0 128:0")
    result = run(tmp_path / "bin")
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == ["24:0 128:0", "24:1 128:0"]
    assert "3 controller port(s), 2 newly connected" in result.stdout


def test_without_pd_it_waits_then_says_so_and_connects_nothing(tmp_path: Path) -> None:
    log = fake_aconnect(tmp_path / "bin", pd_running=False)
    result = run(tmp_path / "bin", wait_s="1")
    assert result.returncode == 0, result.stderr  # not an error: Pd's unit connects when it starts
    assert "Pd has no MIDI input port" in result.stdout
    assert not log.exists()
