"""A small folder of the audio a musician really has, synthesized here (nothing is downloaded): four
formats (wav, flac, ogg, mp3) plus aiff, three sample rates (16, 44.1, 48 kHz), stereo, a non-ASCII name,
and the files that must be reported rather than trained on: a corrupt one, a silent one, one shorter than a
grain and a text file.

    python -m tests.support.mixed_audio DIR      builds it in DIR (the README walk-through uses this)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

# file name -> what it is; the trainable ones first
SOUNDS = {
    "drone 48k stereo.wav": "a stereo drone, 48 kHz, 4 s",
    "pluck_44k.flac": "decaying plucks, 44.1 kHz, 4 s",
    "voice_16k.ogg": "a vowel-like buzz, 16 kHz, Vorbis, 4 s",
    "bells.mp3": "inharmonic bells, 44.1 kHz, MP3, 4 s",
    "noise_sweep.aiff": "a filtered noise sweep, 22.05 kHz, AIFF, 3 s",
    "café_naïve.wav": "a chord, 44.1 kHz, non-ASCII name, 3 s",
    "tiny.wav": "20 ms: shorter than one grain, zero-padded",
    "silent.flac": "two seconds of digital silence",
    "broken.wav": "a RIFF header and garbage: unreadable",
    "notes.txt": "not audio",
}
TRAINABLE = ["drone 48k stereo.wav", "pluck_44k.flac", "voice_16k.ogg", "bells.mp3", "noise_sweep.aiff",
             "café_naïve.wav", "tiny.wav"]  # fmt: skip


def _t(seconds: float, rate: int) -> np.ndarray:
    return np.arange(int(seconds * rate)) / rate


def build(folder: Path, seed: int = 0) -> Path:
    """Write the folder's files into `folder` (created); returns it."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t = _t(4, 48000)
    drone = np.stack([np.sin(2 * np.pi * 55 * t) + 0.3 * np.sin(2 * np.pi * 110.5 * t),
                      np.sin(2 * np.pi * 55.3 * t) + 0.3 * np.sin(2 * np.pi * 164 * t)], axis=1)  # fmt: skip
    sf.write(folder / "drone 48k stereo.wav", 0.4 * drone, 48000, subtype="PCM_24")
    t = _t(4, 44100)
    env = np.exp(-6 * (t % 0.5))
    pitch = np.repeat([196.0, 247.0, 294.0, 392.0, 330.0, 262.0, 220.0, 175.0], len(t) // 8 + 1)[: len(t)]
    sf.write(folder / "pluck_44k.flac", 0.6 * env * np.sign(np.sin(2 * np.pi * np.cumsum(pitch) / 44100)),
             44100, subtype="PCM_16")  # fmt: skip
    t = _t(4, 16000)
    buzz = sum(np.sin(2 * np.pi * 140 * k * t) / k * (1.0 if k in (3, 4, 8) else 0.3) for k in range(1, 20))
    sf.write(folder / "voice_16k.ogg", 0.2 * buzz, 16000, format="OGG", subtype="VORBIS")
    t = _t(4, 44100)
    partials = ((523, 2), (1307, 4), (2211, 6))
    bells = sum(np.sin(2 * np.pi * f * t) * np.exp(-d * (t % 1.0)) for f, d in partials)
    sf.write(folder / "bells.mp3", 0.3 * bells, 44100, format="MP3", subtype="MPEG_LAYER_III")
    t = _t(3, 22050)
    noise = rng.standard_normal(len(t))
    kernel = np.hanning(31) / np.hanning(31).sum()
    sweep = np.convolve(noise, kernel, mode="same") * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    sf.write(folder / "noise_sweep.aiff", 0.5 * sweep, 22050, format="AIFF", subtype="PCM_16")
    t = _t(3, 44100)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 3
    sf.write(folder / "café_naïve.wav", 0.5 * chord, 44100)
    sf.write(folder / "tiny.wav", 0.5 * np.sin(2 * np.pi * 440 * _t(0.02, 44100)), 44100)
    sf.write(folder / "silent.flac", np.zeros(2 * 44100), 44100)
    garbage = bytes(rng.integers(0, 256, 200, np.uint8))
    (folder / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + garbage)
    (folder / "notes.txt").write_text("recorded on the balcony, 3 am\n")
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.support.mixed_audio DIR")
    print(build(Path(sys.argv[1])))
