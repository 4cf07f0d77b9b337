"""`python -m trainer audition RUN`: listen to a run: reconstructions, random samples, then each axis's sweep.

Plays the WAVs that training wrote into RUN/audio (trainer/grain_report.py) through the default sound
card with sounddevice, announcing each one. With no sound card (a server, CI, a container) it says so and
lists the files to open in any audio player instead; that is not an error.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import soundfile as sf

HELP = "play a run's reconstructions and latent-axis traversals through the sound card (or name the WAVs)"
ORDER = ("reconstructions", "samples", "traversal")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, metavar="RUN", help="a run folder of `python -m trainer train`")
    p.add_argument(
        "--only",
        choices=ORDER,
        default=None,
        help="play only reconstructions, samples or traversals (default: all, in that order)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="sounddevice output device name or index (default: the system's default output)",
    )


def run_wavs(run: Path, only: str | None = None) -> list[Path]:
    """The run's WAVs in listening order: reconstructions, samples, traversal_axis1, 2, ... 10."""

    def key(path: Path) -> tuple[int, int]:
        group = next((i for i, prefix in enumerate(ORDER) if path.stem.startswith(prefix)), len(ORDER))
        number = re.search(r"(\d+)$", path.stem)
        return group, int(number.group(1)) if number else 0

    wavs = sorted((run / "audio").glob("*.wav"), key=key)
    return [w for w in wavs if only is None or w.stem.startswith(only)]


def output_device(device: str | None) -> tuple[object | None, str]:
    """(the sounddevice module, "") when a sound card can play; (None, why not) otherwise."""
    try:  # imported here: without PortAudio the import itself fails, and that is an answer, not a crash
        import sounddevice as sd
    except OSError as e:  # PortAudio itself is missing
        return None, f"PortAudio is not available ({e}); install libportaudio2"
    try:
        sd.check_output_settings(device=device, channels=1, samplerate=22050)
    except Exception as e:  # sounddevice raises PortAudioError or ValueError for a missing device
        return None, f"no audio output device ({e})"
    return sd, ""


def run(args: argparse.Namespace) -> int:
    if not args.run.is_dir():
        print(f"error: {args.run} is not a folder; give a run folder of `python -m trainer train`")
        return 1
    wavs = run_wavs(args.run, args.only)
    if not wavs:
        print(
            f"error: no WAV files in {args.run / 'audio'}; train first (`python -m trainer train --out "
            f"{args.run}`); the WAVs appear after the first validation"
        )
        return 1
    device = int(args.device) if args.device is not None and args.device.isdigit() else args.device
    sd, why = output_device(device)
    if sd is None:
        print(f"cannot play: {why}. Open these WAV files in any audio player instead:")
        for wav in wavs:
            print(f"  {wav}")
        return 0
    try:
        for wav in wavs:
            audio, rate = sf.read(wav, dtype="float32")
            print(f"playing {wav.name} ({len(audio) / rate:.1f} s)", flush=True)
            sd.play(audio, rate, device=device)
            sd.wait()
    except KeyboardInterrupt:
        sd.stop()
        print("stopped", file=sys.stderr)
        return 130
    return 0
