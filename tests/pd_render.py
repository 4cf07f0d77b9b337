"""Render harness for the Pd patch: play a timed score of OSC messages into the real pd/main.pd, get a WAV.

How it works (batch mode, faster than real time):

1. Each message of the score is serialised by pyliblo3 itself (liblo sends it to a UDP socket of ours on
   127.0.0.1 and we keep the datagram's bytes), so the patch parses exactly what the runtime would send.
2. A throw-away driver patch holds ``[main pd_port runtime_port]`` and a ``[qlist]`` that sends each
   packet's bytes to ``gb_osc_bytes`` at its time. That receiver feeds the same ``[oscparse]`` as the
   UDP socket, so every check and route of pd/grainbox-osc.pd is exercised (only the socket is skipped:
   Pd does not poll sockets in batch mode; tests/test_pd_osc.py covers the sockets in real time).
3. The score starts with ``/record 1 <wav>`` and ends with ``/record 0``, and Pd runs with
   ``pd -nogui -noaudio -batch``: logical time runs as fast as the CPU allows, so a 2 s render takes a
   fraction of that. [writesf~] finishes the file in its own thread, so the harness waits until the
   WAV's header shows every frame, then kills Pd. The WAV (32-bit float, stereo, Pd's sample rate)
   comes back as a numpy array.

Example::

    score = Score()
    score.add(0, "/model", 22050, 1024, 8, 8)
    score.add(0, "/grain", 0, *sine(1024, 441.0))
    score.add(0, "/param", "density", 50.0)
    audio = render(score, seconds=1.0, workdir=tmp_path).audio   # (frames, 2) float32

The harness is also used by bench/pd_render.py to time the patch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyliblo3 as liblo
import soundfile

REPO = Path(__file__).resolve().parent.parent
PD_DIR = REPO / "pd"
HOST = "127.0.0.1"
SAMPLE_RATE = 44100
PD_BINARY = os.environ.get("GRAINBOX_PD", "pd")


def osc_bytes(path: str, *args: Any) -> bytes:
    """The datagram pyliblo3 sends for the OSC message path(*args) (ints stay 'i', floats 'f', str 's')."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(5.0)
        liblo.send(liblo.Address(HOST, sock.getsockname()[1], liblo.UDP), liblo.Message(path, *args))
        return sock.recv(65536)


@dataclass
class Score:
    """OSC messages at times in ms from the start of the render."""

    events: list[tuple[float, str]] = field(default_factory=list)  # (time, "receiver atoms...")

    def add(self, at_ms: float, path: str, *args: Any) -> None:
        self.add_raw(at_ms, osc_bytes(path, *args))

    def add_raw(self, at_ms: float, packet: bytes) -> None:
        """A packet as given (for malformed-message tests); it goes through the patch's parser."""
        self.events.append((float(at_ms), "gb_osc_bytes " + " ".join(map(str, packet))))

    def add_pd(self, at_ms: float, receiver: str, *atoms: float) -> None:
        """A Pd message to a named receiver, as the GUI or MIDI would send it (e.g. gb_note_in 72 127)."""
        self.events.append((float(at_ms), " ".join([receiver, *(f"{a:g}" for a in atoms)])))


@dataclass
class Render:
    audio: np.ndarray  # (frames, 2) float32
    sample_rate: int
    log: str  # what Pd printed (its stderr)
    wall_seconds: float  # how long Pd ran, start to exit


def _qlist_text(score: Score, end_ms: float, wav: Path) -> str:
    """[qlist] text: each line waits its delta in ms, then sends its message (OSC packets as bytes to
    gb_osc_bytes)."""
    first, last = Score(), Score()
    first.add(0.0, "/record", 1, str(wav))
    last.add(end_ms, "/record", 0, "")
    events = [*first.events, *sorted(score.events, key=lambda e: e[0]), *last.events]
    lines, now = [], 0.0
    for at, message in events:
        lines.append(f"{at - now:g} {message};")
        now = at
    lines.append("0 pd dsp 0;")  # the harness kills Pd once [writesf~]'s thread has closed the file
    return "\n".join(lines) + "\n"


def driver_patch(qlist: Path, pd_port: int, runtime_port: int) -> str:
    """A patch that holds main.pd (as an abstraction) and plays the qlist once it has loaded."""
    return (
        "#N canvas 0 0 450 200 12;\n"
        f"#X obj 20 20 main {pd_port} {runtime_port};\n"
        "#X obj 20 60 loadbang;\n"
        f"#X msg 20 90 read {qlist} \\, bang;\n"
        "#X obj 20 120 qlist;\n"
        "#X connect 1 0 2 0;\n"
        "#X connect 2 0 3 0;\n"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pd_command(patch: Path, batch: bool = True, sample_rate: int = SAMPLE_RATE) -> list[str]:
    """The Pd command line: headless, no audio device, pd/ on the search path, never real-time.

    -nrt: as root (CI) Pd takes SCHED_FIFO by default, and in -batch it never sleeps. The thread of
    [writesf~] that opens and writes the WAV then waits behind a real-time spinner on a 2-core machine, and
    once in a few hundred renders it never ran at all: "Pd rendered 0 of N frames in 120 s", with
    pd-watchdog signalling in the log. A batch render has no deadline to keep, so it has no business
    being real-time."""
    cmd = [PD_BINARY, "-nogui", "-noaudio", "-nrt", "-stderr", "-r", str(sample_rate), "-path", str(PD_DIR)]
    return [*cmd, "-batch", patch.as_posix()] if batch else [*cmd, patch.as_posix()]


def render(score: Score, seconds: float, workdir: Path, timeout: float = 120.0,
           sample_rate: int = SAMPLE_RATE) -> Render:
    """Play score into the patch for `seconds` of Pd time in batch mode and return the recorded output."""
    workdir.mkdir(parents=True, exist_ok=True)
    wav, qlist, patch = workdir / "render.wav", workdir / "score.txt", workdir / "driver.pd"
    wav.unlink(missing_ok=True)
    qlist.write_text(_qlist_text(score, seconds * 1000.0, wav))
    patch.write_text(driver_patch(qlist, free_port(), free_port()))
    log_path = workdir / "pd.log"
    expected = int(seconds * sample_rate) - 2 * 64  # /record 0 lands within a block of the end
    start = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(pd_command(patch, sample_rate=sample_rate), stdout=log,
                                stderr=subprocess.STDOUT, cwd=workdir)
    try:
        # [writesf~] writes and closes the file in its own thread; its header holds the frame count
        # only once it is closed, so wait for that rather than for Pd's logical time
        while recorded_frames(wav) < expected and proc.poll() is None:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"Pd rendered {recorded_frames(wav)} of {expected} frames in {timeout} s")
            time.sleep(0.005)
        wall = time.monotonic() - start
    finally:
        proc.kill()
        proc.wait(timeout=10)
    log_text = log_path.read_text()
    if recorded_frames(wav) < expected:
        raise RuntimeError(f"Pd stopped early (exit {proc.returncode}), {recorded_frames(wav)} of "
                           f"{expected} frames in {wav}:\n{log_text[-3000:]}")
    audio, sr = soundfile.read(wav, dtype="float32", always_2d=True)
    return Render(audio=audio, sample_rate=sr, log=log_text, wall_seconds=wall)


def recorded_frames(wav: Path) -> int:
    """Frames in a WAV as its header says (0 while the file is missing or not yet closed)."""
    try:
        return soundfile.info(str(wav)).frames
    except (RuntimeError, OSError, soundfile.LibsndfileError):
        return 0


def sine(n: int, cycles: float, amplitude: float = 1.0) -> list[float]:
    """n samples holding exactly `cycles` periods of a sine (a grain that loops without a seam)."""
    t = np.arange(n) / n
    return [float(v) for v in amplitude * np.sin(2 * np.pi * cycles * t)]
