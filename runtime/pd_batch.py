"""Drive the real pd/main.pd in Pd's batch mode: play a timed score of OSC packets into it, get its output.

`python -m runtime render` uses this to hear a model without the box, and the tests and bench/pd_render.py
use it (through tests/support/pd_harness.py) to check and time the patch. How it works:

1. Each message of the score is serialised by liblo itself (the binding sends it to a UDP socket of ours
   on 127.0.0.1 and we keep the datagram's bytes), so the patch parses exactly what the runtime would send.
2. A throw-away driver patch holds ``[main pd_port runtime_port]`` and a ``[qlist]`` that sends each
   packet's bytes to ``gb_osc_bytes`` at its time. That receiver feeds the same ``[oscparse]`` as the
   UDP socket, so every check and route of pd/grainbox-osc.pd is exercised (only the socket is skipped:
   Pd does not poll sockets in batch mode; tests/pd/test_pd_osc.py covers the sockets in real time).
3. Pd runs with ``pd -nogui -noaudio -batch``: logical time runs as fast as the CPU allows, so a 2 s
   render takes a fraction of that. The driver takes main.pd's two signal outlets (the same signal the
   patch's /record and dac~ get) into two arrays with [tabwrite~], writes them with [soundfiler] (32-bit
   float WAV, stereo, Pd's sample rate) and quits; we wait for Pd to exit and read the WAV.

   Why not the patch's own /record ([writesf~])? Its file is opened by a thread of its own, and Pd 0.53
   loses the take when "stop" reaches that thread before it has opened the file: the header is never
   finished and nothing is written. In real time that needs a stop within a millisecond or so of the
   start; in batch mode a 0.3 s render takes a few ms of wall time, so under load it happened ("Pd
   rendered 0 of N frames": 15 of 40 0.05 s renders with both cores busy). [soundfiler] writes in the
   main thread, so nothing races. tests/pd/test_pd_osc.py records through /record in real time.

Example::

    score = Score()
    score.add(0, "/model", 22050, 1024, 8, 8)
    score.add(0, "/grain", 0, *samples)          # 1024 floats
    score.add(0, "/param", "density", 50.0)
    audio = render(score, seconds=1.0, workdir=Path("/tmp/r")).audio   # (frames, 2) float32
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

from runtime.liblo_binding import liblo
from runtime.wavfile import read_wav, wav_frames

REPO = Path(__file__).resolve().parent.parent
PD_DIR = REPO / "pd"
HOST = "127.0.0.1"
SAMPLE_RATE = 44100
PD_BINARY = os.environ.get("GRAINBOX_PD", "pd")
RENDER_TABLES = ("grainbox-render-left", "grainbox-render-right")


def osc_bytes(path: str, *args: Any) -> bytes:
    """The datagram liblo sends for the OSC message path(*args) (ints stay 'i', floats 'f', str 's')."""
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
        """The OSC message path(*args) at `at_ms`, as the runtime would send it."""
        self.add_raw(at_ms, osc_bytes(path, *args))

    def add_raw(self, at_ms: float, packet: bytes) -> None:
        """A packet as given (for malformed-message tests); it goes through the patch's parser."""
        self.events.append((float(at_ms), "gb_osc_bytes " + " ".join(map(str, packet))))

    def add_pd(self, at_ms: float, receiver: str, *atoms: float) -> None:
        """A Pd message to a named receiver, as the GUI or MIDI would send it (e.g. gb_note_in 72 127)."""
        self.events.append((float(at_ms), " ".join([receiver, *(f"{a:g}" for a in atoms)])))


@dataclass
class Render:
    """What one batch run gave: main.pd's stereo output and what Pd printed."""

    audio: np.ndarray  # (frames, 2) float32
    sample_rate: int
    log: str  # what Pd printed (its stderr)
    wall_seconds: float  # how long Pd ran, start to exit


def _qlist_text(score: Score, save_ms: float) -> str:
    """[qlist] text: each line waits its delta in ms, then sends its message (OSC packets as bytes to
    gb_osc_bytes); the last one tells the driver to save the recording and quit."""
    lines, now = [], 0.0
    # a stable sort: messages at the same time keep their order (/model before its /grain)
    for at, message in sorted(score.events, key=lambda e: e[0]):
        lines.append(f"{at - now:g} {message};")
        now = at
    lines.append(f"{max(save_ms - now, 0.0):g} grainbox-render-save bang;")
    return "\n".join(lines) + "\n"


def driver_patch(qlist: Path, wav: Path, frames: int, pd_port: int, runtime_port: int) -> str:
    """A patch that holds main.pd (as an abstraction), records its two outlets into `frames`-long arrays
    from load time on, plays the qlist, and on grainbox-render-save writes the WAV and quits Pd."""
    left, right = RENDER_TABLES
    return (
        "#N canvas 0 0 700 300 12;\n"
        f"#X obj 20 20 main {pd_port} {runtime_port};\n"  # 0
        "#X obj 20 60 loadbang;\n"  # 1
        f"#X msg 20 90 read {qlist} \\, bang;\n"  # 2
        "#X obj 20 120 qlist;\n"  # 3
        f"#X obj 300 90 tabwrite~ {left};\n"  # 4
        f"#X obj 300 120 tabwrite~ {right};\n"  # 5
        f"#X obj 300 20 table {left} {frames};\n"  # 6
        f"#X obj 300 50 table {right} {frames};\n"  # 7
        "#X obj 20 160 r grainbox-render-save;\n"  # 8
        f"#X msg 20 190 write -bytes 4 {wav} {left} {right};\n"  # 9
        "#X obj 20 220 soundfiler;\n"  # 10
        "#X msg 20 250 \\; pd quit;\n"  # 11
        "#X connect 0 0 4 0;\n"
        "#X connect 0 1 5 0;\n"
        "#X connect 1 0 4 0;\n"
        "#X connect 1 0 5 0;\n"
        "#X connect 1 0 2 0;\n"
        "#X connect 2 0 3 0;\n"
        "#X connect 8 0 9 0;\n"
        "#X connect 9 0 10 0;\n"
        "#X connect 10 0 11 0;\n"
    )


def free_port() -> int:
    """A UDP port on 127.0.0.1 nobody holds right now (main.pd wants two, though batch mode never binds
    them: two renders side by side must not share one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pd_command(patch: Path, batch: bool = True, sample_rate: int = SAMPLE_RATE,
               also_open: tuple[Path, ...] = ()) -> list[str]:
    """The Pd command line: headless, no audio device, pd/ on the search path, never real-time.

    -nrt: as root (CI) Pd would take SCHED_FIFO, and in -batch it never sleeps; a batch render has no
    deadline to keep, so it has no business starving the rest of the machine."""
    cmd = [PD_BINARY, "-nogui", "-noaudio", "-nrt", "-stderr", "-r", str(sample_rate), "-path", str(PD_DIR)]
    others = [arg for path in also_open for arg in ("-open", path.as_posix())]
    return [*cmd, *others, "-batch", patch.as_posix()] if batch else [*cmd, *others, patch.as_posix()]


def render(score: Score, seconds: float, workdir: Path, timeout: float = 120.0,
           sample_rate: int = SAMPLE_RATE, also_open: tuple[Path, ...] = ()) -> Render:
    """Play `score` into main.pd for `seconds` of Pd time in batch mode and return the recorded output.

    `workdir` gets the driver patch, the qlist, Pd's log and its WAV (render.wav). `also_open`: more
    patches Pd opens beside it (help patches, say), in the same Pd. Raises TimeoutError when Pd takes
    longer than `timeout` s of wall time (it is killed), RuntimeError when it exits without the whole
    recording, FileNotFoundError when there is no Pd binary."""
    workdir.mkdir(parents=True, exist_ok=True)
    wav, qlist, patch = workdir / "render.wav", workdir / "score.txt", workdir / "driver.pd"
    wav.unlink(missing_ok=True)
    frames = round(seconds * sample_rate)
    # save two blocks after the arrays are full: [tabwrite~] fills them a 64-sample block at a time
    qlist.write_text(_qlist_text(score, (frames + 2 * 64) * 1000.0 / sample_rate))
    patch.write_text(driver_patch(qlist, wav, frames, free_port(), free_port()))
    log_path = workdir / "pd.log"
    start = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(pd_command(patch, sample_rate=sample_rate, also_open=also_open), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise TimeoutError(f"Pd did not finish a {seconds} s render in {timeout} s:\n"
                           f"{log_path.read_text()[-3000:]}") from None
    wall = time.monotonic() - start
    log_text = log_path.read_text()
    if recorded_frames(wav) != frames:
        raise RuntimeError(f"Pd exited ({proc.returncode}) with {recorded_frames(wav)} of {frames} frames "
                           f"in {wav}:\n{log_text[-3000:]}")
    audio, sr = read_wav(wav)
    return Render(audio=audio, sample_rate=sr, log=log_text, wall_seconds=wall)


def recorded_frames(wav: Path) -> int:
    """Frames in a WAV as its header says (0 while the file is missing or not yet closed)."""
    return wav_frames(wav)
