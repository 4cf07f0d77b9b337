"""`python -m desktop demo`: the whole instrument, played by a script, recorded, drawn. `make demo` runs it.

    python -m desktop demo [--seconds S] [--gui] [--out out/] [--model models/factory.ts]

What it does, in order:
1. starts the runtime in this process (model, decode engine, OSC link, exactly as `python -m runtime run`
   builds them) with the scripted performer (desktop/performer.py) in place of the knob box;
2. starts Pd on pd/main.pd in its own process group: headless (`pd -nogui`), with audio when a sound
   card exists (so you hear it live through Pd's dac~), otherwise with -noaudio (it still records);
3. waits until Pd holds every grain slot, starts Pd's recorder (OSC /record, docs/osc.md) and performs;
4. stops the recorder, Pd and the runtime, and draws out/demo.png from out/demo.wav and the gesture log
   out/demo_knobs.json (desktop/demo_plot.py).

`--gui` opens the Pd window instead and lets you play the virtual knobs (the runtime listens for /knob):
no script; it records until you close Pd or press Ctrl-C. That is `make play`.

The length is --seconds, else the DEMO_SECONDS environment variable, else 24. Ctrl-C or SIGTERM ends the
performance early and still cleans up: a second one stops at once. Whatever way it ends, the Pd process
group it started is terminated (then killed) before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import wave
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

import numpy as np

from desktop.performer import GestureLog, Performer
from runtime.artifact import Model
from runtime.box import Box
from runtime.config import FACTORY_MODEL, REPO, Config
from runtime.controls import VirtualKnobs
from runtime.doctor import check_audio
from runtime.liblo_binding import liblo
from runtime.osc_socket import OscSocket

PD_DIR = REPO / "pd"
DEFAULT_SECONDS = 24.0
SAMPLE_RATE = 44100
HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0  # Pd's start on a loaded machine, plus its 2 s /hello period
WAV_TIMEOUT_S = 10.0
log = logging.getLogger("grainbox.demo")


class DemoError(Exception):
    """The demo cannot run; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Options:
    seconds: float
    gui: bool
    out: Path
    model: Path

    @property
    def wav(self) -> Path:
        return self.out / ("play.wav" if self.gui else "demo.wav")

    @property
    def png(self) -> Path:
        return self.wav.with_suffix(".png")

    @property
    def knobs_json(self) -> Path:
        return self.wav.with_name(self.wav.stem + "_knobs.json")

    @property
    def work(self) -> Path:
        return self.out / ".demo"  # Pd's log, the wrapper patch, the runtime's state


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m desktop demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds",
        type=float,
        help=f"length of the scripted performance (default: $DEMO_SECONDS, else {DEFAULT_SECONDS:g})",
    )
    parser.add_argument("--gui", action="store_true", help="open the Pd GUI and play the virtual knobs")
    parser.add_argument("--out", type=Path, default=REPO / "out", help="output folder (default out/)")
    parser.add_argument(
        "--model", type=Path, default=FACTORY_MODEL, help="model artifact (default models/factory.ts)"
    )
    args = parser.parse_args(argv)
    seconds = args.seconds
    if seconds is None:
        raw = os.environ.get("DEMO_SECONDS", "").strip()
        try:
            seconds = float(raw) if raw else DEFAULT_SECONDS
        except ValueError:
            parser.error(f"DEMO_SECONDS={raw!r} is not a number of seconds; e.g. DEMO_SECONDS=8")
    if not 1 <= seconds <= 3600:
        parser.error(f"the demo's length must be 1 to 3600 s, got {seconds:g}")
    # any path: relative ones from where it was started (`make demo MODEL=runs/mine/model.ts`), ~ expanded
    return Options(seconds, args.gui, args.out.resolve(), args.model.expanduser().resolve())


# --------------------------------------------------------------------------------------------- checks


def check_ready(options: Options) -> str:
    """The pd binary's path, after checking everything the demo needs exists; DemoError naming the fix."""
    pd = shutil.which(os.environ.get("GRAINBOX_PD", "pd"))
    if pd is None:
        raise DemoError(
            "Pd not found: install Pd vanilla 0.52+ (`make setup` does, or "
            "`sudo apt install puredata-core puredata-extra`)"
        )
    if not options.model.is_file():
        raise DemoError(
            f"no model at {options.model}: build the factory model with `make factory-model`, "
            "or pass --model FILE (a .ts from `python -m trainer export`)"
        )
    if options.gui and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise DemoError("--gui needs a display (DISPLAY is unset); run `make demo` for the headless demo")
    if options.gui and shutil.which("pd-gui") is None:
        raise DemoError("--gui needs Pd's GUI (pd-gui): `sudo apt install puredata-gui`")
    return pd


def has_sound_card() -> bool:
    """True when PortAudio lists an output device (the same test as `python -m runtime doctor`)."""
    return check_audio().verdict == "OK"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------- Pd


def pd_escape(text: str) -> str:
    """text as one Pd atom: spaces, commas, semicolons and dollars escaped with a backslash."""
    return "".join("\\" + c if c in " ,;$" else c for c in text)


def write_phrase(path: Path, seconds: float = 3.0) -> Path:
    """The demo's input: a phrase the project renders itself (no recording ships): four notes, each
    turning from a dark tone (soft harmonics) into a bright, breathy one (a sawtooth with noise), the way a
    voice opens from "oo" to "ah". Played in a loop into main.pd's inlet, where the box has its input."""
    t = np.arange(int(SAMPLE_RATE * seconds / 4)) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    notes = []
    for f0 in (110.0, 147.0, 131.0, 98.0):
        opening = np.clip(t / t[-1] * 1.5 - 0.25, 0, 1)  # dark for the first part, then bright
        dark = sum(np.sin(2 * np.pi * f0 * k * t) / k**2 for k in range(1, 5))
        bright = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, int(8000 / f0)))
        x = (1 - opening) * dark + opening * (bright + 0.3 * rng.standard_normal(len(t)))
        fade = np.minimum(1, np.minimum(t, t[-1] - t) / 0.01)
        notes.append(0.1 * fade * x / np.sqrt(np.mean(x**2)))
    pcm = (np.clip(np.concatenate(notes), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:  # 16-bit PCM: the standard library writes it, [readsf~] reads it
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return path


def wrapper_patch(pd_port: int, runtime_port: int, record_dir: Path, phrase: Path | None = None) -> str:
    """A patch holding main.pd as [main pd_port runtime_port] (headless Pd with chosen ports) that names
    the recordings folder on load (OSC /record only picks a file name in it), and plays `phrase` in a
    loop into main's inlet, the audio input the runtime listens to when asked."""
    patch = (f"#N canvas 0 0 300 100 12;\n#X obj 20 20 main {pd_port} {runtime_port};\n"
             "#X obj 20 50 loadbang;\n"
             f"#X msg 20 80 \\; gb_record_dir {pd_escape(str(record_dir))};\n"
             "#X connect 1 0 2 0;\n")
    if phrase is not None:
        patch += (f"#X msg 150 50 open {pd_escape(str(phrase))} \\, 1;\n"  # 3
                  "#X obj 150 80 readsf~;\n"  # 4: its right outlet bangs at the end: again
                  "#X connect 1 0 3 0;\n#X connect 3 0 4 0;\n#X connect 4 0 0 0;\n#X connect 4 1 3 0;\n")
    return patch


def pd_command(pd: str, options: Options, audio: bool, pd_port: int, runtime_port: int) -> list[str]:
    sound = [] if audio else ["-noaudio"]
    common = [pd, *sound, "-r", str(SAMPLE_RATE), "-path", str(PD_DIR)]
    if options.gui:  # the real main.pd window; its [grainbox-osc] takes the ports from `gb_ports`
        return [*common, "-open", str(PD_DIR / "main.pd"), "-send", f"gb_ports {pd_port} {runtime_port}",
                "-send", f"gb_record_dir {pd_escape(str(options.wav.parent.resolve()))}"]
    patch = options.work / "demo.pd"
    phrase = write_phrase(options.work / "phrase.wav")
    patch.write_text(wrapper_patch(pd_port, runtime_port, options.wav.parent.resolve(), phrase))
    return [*common, "-nogui", "-open", str(patch)]


def start_pd(command: list[str], log_path: Path) -> subprocess.Popen:
    """Pd in a new session (its own process group), so one killpg stops it and any GUI it spawned."""
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=PD_DIR,
        )


def stop_process_group(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    """SIGTERM Pd's process group, give it grace_s to quit, then SIGKILL whatever of the group is left."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):  # ProcessLookupError: the group is gone already
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)
        if proc.poll() is not None and not _group_alive(proc.pid):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def pd_log_tail(options: Options, lines: int = 15) -> str:
    try:
        text = (options.work / "pd.log").read_text(errors="replace")
    except OSError:
        return "(no Pd log)"
    return "\n".join(text.splitlines()[-lines:])


def send_record(pd_port: int, on: bool, path: Path | None = None) -> None:
    """OSC /record to Pd (docs/osc.md): on=1 starts writing `path`, on=0 closes the file. Pd takes only
    the file name: its recordings folder was set to path's folder when it started (gb_record_dir)."""
    sender = OscSocket(HOST, 0, max_datagram=0)  # bound to 127.0.0.1 like every socket of the box
    try:
        sender.send(pd_port, liblo.Message("/record", 1 if on else 0, path.name if path else ""))
    finally:
        sender.close()


def wav_is_closed(path: Path) -> bool:
    """True once the WAV's RIFF header gives the file's real length: [writesf~] writes it on close."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    return len(head) == 12 and head[:4] == b"RIFF" and struct.unpack("<I", head[4:8])[0] + 8 == size > 44


def repair_wav_header(path: Path) -> bool:
    """Make a WAV whose writer died before closing it readable: set the RIFF and data chunk sizes from
    the file's length (whole frames). Returns True if the header needed it. [writesf~] writes the sizes
    only when it closes the file, so a Pd that quit or was killed mid-recording leaves them at zero."""
    if wav_is_closed(path):
        return False
    with open(path, "r+b") as f:
        data = f.read()
        if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
            return False
        offset, frame_bytes = 12, 0
        while offset + 8 <= len(data):
            chunk, size = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
            if chunk == b"fmt ":
                channels, bits = struct.unpack("<H", data[offset + 10 : offset + 12])[0], data[offset + 22]
                frame_bytes = channels * bits // 8
            if chunk == b"data":
                payload = len(data) - offset - 8
                payload -= payload % max(frame_bytes, 1)
                f.seek(offset + 4)
                f.write(struct.pack("<I", payload))
                f.seek(4)
                f.write(struct.pack("<I", offset + payload))
                f.truncate(offset + 8 + payload)
                return True
            offset += 8 + size + (size & 1)
    return False


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# ---------------------------------------------------------------------------------------------- signals


class StopRequest:
    """SIGINT/SIGTERM set a flag the performance polls; a second signal raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt  # asked twice: stop now (the finally blocks still clean up)
        self.signal = signum
        self.event.set()
        print(f"\n{signal.Signals(signum).name}: ending the demo (again to stop at once)", flush=True)

    def __bool__(self) -> bool:
        return self.event.is_set()


# ------------------------------------------------------------------------------------------------ run


def run(options: Options, stop: StopRequest) -> int:
    pd = check_ready(options)
    options.work.mkdir(parents=True, exist_ok=True)
    audio = has_sound_card()
    if not audio:
        print("no sound card found: Pd runs with -noaudio and the demo is recorded, not played aloud")
    for stale in (options.wav, options.png, options.knobs_json):
        stale.unlink(missing_ok=True)

    runtime_port, pd_port = free_udp_port(), free_udp_port()
    config = replace(
        Config(),
        model_path=options.model,
        state_dir=options.work / "state",
        listen_port=runtime_port,
        pd_port=pd_port,
        controls="none",
        button_long_press="listen",  # the script's listening section: off -> follow -> capture -> off
    )
    box = Box(config)
    # The performer (or Pd's virtual knobs) replaces the knob box: gestures go through a log to the same
    # Performance a KnobBox would drive. Box has no controls factory, so swap before start().
    gestures = GestureLog(box.performance, config.knob_actions)
    performer = None if options.gui else Performer(gestures, config, options.seconds)
    box.controls = VirtualKnobs(gestures) if performer is None else performer
    supervisor = threading.Thread(target=box.serve_forever, name="box-supervisor", daemon=True)
    proc: subprocess.Popen | None = None
    recording = False
    completed = False
    try:
        box.start()
        supervisor.start()
        command = pd_command(pd, options, audio, pd_port, runtime_port)
        proc = start_pd(command, options.work / "pd.log")
        print(
            f"Pd (pid {proc.pid}) on 127.0.0.1:{pd_port}, runtime on 127.0.0.1:{runtime_port}, "
            f"model {box.model.name}"
        )

        def pd_ready() -> bool:
            if proc.poll() is not None:
                raise DemoError(f"Pd exited ({proc.returncode}) while starting:\n{pd_log_tail(options)}")
            return bool(stop) or box.slots_confirmed() >= config.slots

        if not wait_for(pd_ready, READY_TIMEOUT_S):
            raise DemoError(
                f"Pd did not take the grains within {READY_TIMEOUT_S:g} s (acks "
                f"{box.acks}, hellos {box.hellos}); Pd said:\n{pd_log_tail(options)}"
            )
        if stop:
            return 128 + (stop.signal or signal.SIGINT)
        gestures.start_clock()
        send_record(pd_port, True, options.wav)
        recording = True

        def should_stop() -> bool:
            return bool(stop) or proc.poll() is not None

        if performer is not None:
            print(f"performing for {options.seconds:g} s: {', '.join(s.name for s in performer.sections)}")
            completed = performer.play(should_stop)
            heard = box.status()
            captured = ", ".join(heard["captured_anchors"]) or "nothing"
            print(f"listening: {heard['input_encoded']} grains of the input phrase followed, captured "
                  f"{captured}")
        else:
            print("playing: move the virtual knobs in the Pd window; close Pd or press Ctrl-C to finish")
            while not should_stop():
                stop.event.wait(0.2)
            completed = True
        options.knobs_json.write_text(
            json.dumps(
                gestures.to_json(
                    performer.sections if performer else (), performer.scale if performer else 1.0
                )
            )
        )
        if proc.poll() is None:
            send_record(pd_port, False)
            recording = False
            if not wait_for(lambda: wav_is_closed(options.wav), WAV_TIMEOUT_S):
                raise DemoError(f"Pd did not finish writing {options.wav}; Pd said:\n{pd_log_tail(options)}")
        elif not options.gui:
            raise DemoError(f"Pd exited ({proc.returncode}) mid-demo; Pd said:\n{pd_log_tail(options)}")
        elif repair_wav_header(options.wav):
            print(f"Pd quit while recording; repaired the header of {options.wav}")
    finally:
        if proc is not None:
            if recording and proc.poll() is None:
                send_record(pd_port, False)  # interrupted: close the file before Pd goes
                wait_for(lambda: wav_is_closed(options.wav), 2.0)
            stop_process_group(proc)
        box.stop()
        supervisor.join(timeout=5)
        box.close()
    if not options.wav.exists():
        raise DemoError(f"Pd wrote no recording to {options.wav}; Pd said:\n{pd_log_tail(options)}")
    how = "played by hand in the Pd window"
    if performer is not None:
        sections = ", ".join(s.name for s in performer.sections)
        how = f"the scripted demo (desktop/performer.py), {options.seconds:g} s: {sections}"
        how += "" if completed else " (ended early)"
    summarise(options, box.model, how)
    if completed or options.gui:
        draw(options)
    return 0 if completed else 128 + (stop.signal or signal.SIGINT)


def summarise(options: Options, model: Model, how: str) -> None:
    """Name the model that played in the WAV's metadata (title: its name; comment: its file, sha256 and
    how it was played; runtime/wavfile.py) and in the log line, so a take says what made it."""
    try:
        from runtime.wavfile import Tags, tag_wav  # soundfile: the train extra, maybe not installed

        tag_wav(options.wav, Tags(title=model.name, software="grainbox desktop demo (pd/main.pd)",
                                  comment=f"model {model.path.name} sha256 {model.sha256}; {how}"))
    except (ImportError, OSError, RuntimeError) as e:  # the take itself is fine: keep it untagged
        print(f"cannot write the model's name into {options.wav}: {e}")
    size = options.wav.stat().st_size
    print(f"recorded {options.wav} ({size / 1e6:.1f} MB): model {model.name} ({model.path}, "
          f"sha256 {model.sha256[:12]})")


def draw(options: Options) -> None:
    try:
        from desktop.demo_plot import draw as draw_png  # matplotlib: the train extra, maybe not installed

        draw_png(options.wav, options.knobs_json, options.png)
    except ImportError as e:
        print(f"cannot draw {options.png}: {e}; install the plotting extra: pip install -e '.[train]'")
        return
    print(f"drew {options.png}")


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with StopRequest() as stop:
        try:
            return run(options, stop)
        except DemoError as e:
            print(f"demo: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("demo: stopped", file=sys.stderr)
            return 130

