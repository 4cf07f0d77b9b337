"""WAV files with a label: read Pd's recordings, write them back with what made them in the metadata.

A render or a demo take is only useful later if the file says which model played and how, so every WAV
Grainbox writes for a person carries three of the RIFF INFO strings libsndfile reads and writes (any
player or `soxi`/`mediainfo` shows them too):

    title     the model's name (its metadata "name")
    comment   "model FILE sha256 HEX; " and the settings: sound, knobs, params, or the demo's script
    software  who wrote it ("grainbox runtime render"; libsndfile appends its own version)

    >>> write_wav(Path("x.wav"), audio, 44100, Tags("factory-synth", "model ...; knobs ...", "grainbox"))
    >>> read_tags(Path("x.wav")).title
    'factory-synth'

soundfile (libsndfile) is the workstation's: the box does not install it, and `python -m runtime run`
never imports this module.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

SILENCE_DBFS = -200.0  # what a level of exactly zero reads as (log of 0), so it prints as a number


@dataclass(frozen=True)
class Tags:
    """The INFO strings Grainbox writes (empty ones are left out)."""

    title: str = ""
    comment: str = ""
    software: str = ""


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 samples and the sample rate."""
    audio, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    return audio, int(sr)


def wav_frames(path: Path) -> int:
    """Frames in a WAV as its header says (0 while the file is missing or not yet closed)."""
    try:
        return soundfile.info(str(path)).frames
    except (RuntimeError, OSError, soundfile.LibsndfileError):
        return 0


def write_wav(path: Path, audio: np.ndarray, sample_rate: int, tags: Tags, subtype: str = "FLOAT") -> None:
    """Write `audio` (frames, channels) to `path` with `tags`, replacing it only once the file is whole
    (a temporary file beside it, then a rename): an interrupted write never leaves half a WAV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        # libsndfile writes the INFO chunk with the header, so the strings are set before any sample
        with soundfile.SoundFile(str(temp), "w", sample_rate, audio.shape[1], subtype, format="WAV") as f:
            for name in ("title", "comment", "software"):
                if value := getattr(tags, name):
                    setattr(f, name, value)
            f.write(audio)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def tag_wav(path: Path, tags: Tags) -> None:
    """Add `tags` to an existing WAV (one Pd wrote, say), keeping its samples and sample format."""
    info = soundfile.info(str(path))
    audio, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    write_wav(path, audio, sr, tags, subtype=info.subtype)


def read_tags(path: Path) -> Tags:
    """The INFO strings of a WAV, as libsndfile reads them ("" for the ones it lacks)."""
    with soundfile.SoundFile(str(path)) as f:
        return Tags(f.title or "", f.comment or "", f.software or "")


def levels_dbfs(audio: np.ndarray) -> tuple[float, float]:
    """(peak, RMS) of all channels together in dBFS (full scale 1.0); silence reads SILENCE_DBFS."""
    if audio.size == 0:
        return SILENCE_DBFS, SILENCE_DBFS
    peak = float(np.max(np.abs(audio)))
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return tuple(20 * math.log10(v) if v > 0 else SILENCE_DBFS for v in (peak, rms))  # type: ignore[return-value]
