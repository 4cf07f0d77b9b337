"""Audio files -> grains: read, mix to mono, resample, normalise, cut, gate. One file at a time.

    x = load_mono("kick.wav")                 # float32 mono at 22,050 Hz, resampled with soxr
    x = peak_normalise(x)                     # loudest sample at 0 dBFS
    grains = cut_grains(x, hop=512)           # [n, 1024]; a file shorter than a grain is zero-padded
    grains = grains[rms_dbfs(grains) > SILENCE_DBFS]   # the silence gate

trainer/data.py walks a folder with these and caches the result; this module knows nothing of folders
beyond finding the audio files in one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from trainer import GRAIN_SIZE, SAMPLE_RATE

DEFAULT_HOP = 512
SILENCE_DBFS = -45.0
"""Grains whose RMS is at or below this (after the file's peak normalisation) are dropped as silence."""
SILENT_FILE_DBFS = -80.0
"""A file peaking below this is digital silence or hiss: it is not amplified, so all its grains drop."""

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".oga", ".opus", ".mp3",
     ".caf", ".w64", ".rf64", ".au", ".snd"}
)
"""Extensions read as audio (whatever libsndfile decodes); every other file in a folder is ignored."""


class AudioReadError(Exception):
    """A file that looks like audio (by its extension) but cannot be used: corrupt, empty, non-finite."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def find_audio_files(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """Every file under folder (recursively, hidden ones skipped): (audio files, other files), sorted.

    Paths are relative to folder, so listings compare across machines and copies.
    """
    folder = Path(folder)
    audio, other = [], []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            rel = (Path(root) / name).relative_to(folder)
            (audio if rel.suffix.lower() in AUDIO_EXTENSIONS else other).append(rel)
    return sorted(audio), sorted(other)


def load_mono(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as float32 mono at sample_rate: channels averaged, resampled with soxr (HQ).

    Raises AudioReadError, naming the file and the reason, for anything that is not usable audio.
    """
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile reports corrupt, truncated and unknown files in several ways
        raise AudioReadError(path, f"not readable as audio ({e})") from e
    if data.shape[0] == 0:
        raise AudioReadError(path, "no samples")
    if not np.isfinite(data).all():
        raise AudioReadError(path, "contains NaN or infinite samples")
    mono = data.mean(axis=1, dtype=np.float32)
    if file_rate != sample_rate:
        mono = soxr.resample(mono, file_rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return mono


def peak_dbfs(x: np.ndarray) -> float:
    """The loudest sample in dB relative to full scale (-inf for digital silence)."""
    peak = float(np.abs(x).max()) if x.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else -np.inf


def peak_normalise(x: np.ndarray) -> np.ndarray:
    """Scale so the loudest sample is at +-1.0; a (near) silent signal is returned unchanged.

    Below SILENT_FILE_DBFS there is nothing but noise floor to amplify.
    """
    if peak_dbfs(x) < SILENT_FILE_DBFS:
        return x
    return (x / np.abs(x).max()).astype(np.float32, copy=False)


def grain_count(num_samples: int, hop: int = DEFAULT_HOP, grain_size: int = GRAIN_SIZE) -> int:
    """How many grains cut_grains makes: 1 + (L - G) // hop for L >= G (a partial tail is dropped), else 1."""
    if num_samples <= 0:
        return 0
    return 1 if num_samples < grain_size else 1 + (num_samples - grain_size) // hop


def cut_grains(x: np.ndarray, hop: int = DEFAULT_HOP, grain_size: int = GRAIN_SIZE) -> np.ndarray:
    """Cut a mono signal into grains [n, grain_size] every hop samples, starting at sample 0.

    A signal shorter than one grain is zero-padded at its end into a single grain, so one-shots count.
    """
    if hop < 1:
        raise ValueError(f"hop must be at least 1 sample, got {hop}")
    x = np.asarray(x, dtype=np.float32)
    if 0 < len(x) < grain_size:
        x = np.pad(x, (0, grain_size - len(x)))
    n = grain_count(len(x), hop, grain_size)
    if n == 0:
        return np.zeros((0, grain_size), np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(x, grain_size)[::hop]
    return np.ascontiguousarray(windows[:n])


def rms_dbfs(grains: np.ndarray) -> np.ndarray:
    """RMS level of each grain [n, G] in dBFS (a full-scale sine is -3 dB); -inf for digital silence."""
    rms = np.sqrt(np.mean(np.square(grains, dtype=np.float64), axis=-1))
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(rms)


def file_to_grains(
    path: str | Path, hop: int = DEFAULT_HOP, gate_dbfs: float = SILENCE_DBFS
) -> tuple[np.ndarray, int, float]:
    """The whole pipeline for one file: (kept grains [n, 1024], grains dropped as silent, seconds).

    Raises AudioReadError for a file that cannot be used.
    """
    x = load_mono(path)
    grains = cut_grains(peak_normalise(x), hop)
    loud = rms_dbfs(grains) > gate_dbfs
    return grains[loud], int((~loud).sum()), len(x) / SAMPLE_RATE
