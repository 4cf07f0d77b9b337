"""What `make demo` sounds like, in figures: loudness, brightness and how much of it has a pitch.

    .venv/bin/python -m bench.demo_sound [out/demo.wav]

Reads the demo's recording (Pd's own /record, 44.1 kHz stereo float) and prints, for its left channel:
  - loudness: RMS of the whole take and of its sounding frames (above -60 dBFS), and the peak, in dBFS;
  - brightness: the median spectral centroid (the white line of out/demo.png, desktop/demo_plot.py) and
    its 10th-90th percentile range over the sounding frames,
    and the share of the energy above 1 kHz (the old noise decoder's demo was a dark buzz: median 180 Hz,
    under 1 % above 1 kHz);
  - pitch: the share of sounding 46 ms frames (2048 samples) that are voiced (normalised autocorrelation
    peak >= 0.8, the metrics' definition, trainer/pitch.py) and the median f0 of those.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch

from desktop.demo_plot import spectral_centroid, spectrogram
from trainer.pitch import VOICED_PEAK, grain_pitch

FRAME = 2048
SOUNDING_DBFS = -60.0


def db(x: float) -> float:
    return 20 * np.log10(max(x, 1e-12))


def analyse(path: Path) -> dict[str, float]:
    audio, sr = soundfile.read(path, dtype="float32", always_2d=True)
    mono = audio[:, 0].astype(np.float64)
    frames = mono[: len(mono) // FRAME * FRAME].reshape(-1, FRAME)
    rms = np.sqrt((frames**2).mean(axis=1))
    sounding = frames[20 * np.log10(np.maximum(rms, 1e-12)) > SOUNDING_DBFS]
    if len(sounding) == 0:
        raise SystemExit(f"{path}: no frame above {SOUNDING_DBFS:g} dBFS: the demo is silent")
    # The centroid exactly as out/demo.png draws it (desktop/demo_plot.py), over its sounding frames.
    _, centroid, frame_rms = spectral_centroid(mono, sr)
    centroid = centroid[20 * np.log10(np.maximum(frame_rms, 1e-12)) > SOUNDING_DBFS]
    power = spectrogram(mono) ** 2
    freqs = np.fft.rfftfreq(2 * (power.shape[1] - 1), 1 / sr)
    f0, peak = grain_pitch(torch.from_numpy(sounding), sample_rate=float(sr))
    voiced = (peak >= VOICED_PEAK).numpy()
    return {
        "seconds": len(mono) / sr,
        "rms_dbfs": db(float(np.sqrt((mono**2).mean()))),
        "sounding_rms_dbfs": db(float(np.sqrt((sounding**2).mean()))),
        "peak_dbfs": db(float(np.abs(audio).max())),
        "centroid_median_hz": float(np.nanmedian(centroid)),
        "centroid_p10_hz": float(np.nanpercentile(centroid, 10)),
        "centroid_p90_hz": float(np.nanpercentile(centroid, 90)),
        "energy_above_1khz": float(power[:, freqs >= 1000].sum() / power.sum()),
        "voiced_share": float(voiced.mean()),
        "voiced_f0_median_hz": float(np.median(f0.numpy()[voiced])) if voiced.any() else float("nan"),
        "sounding_share": len(sounding) / len(frames),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("wav", nargs="?", type=Path, default=Path("out/demo.wav"), help="recording (out/demo.wav)")
    args = p.parse_args(argv)
    if not args.wav.is_file():
        print(f"error: {args.wav} does not exist: run `make demo` first", file=sys.stderr)
        return 1
    m = analyse(args.wav)
    print(f"{args.wav}: {m['seconds']:.1f} s, {m['sounding_share']:.0%} of it sounding")
    print(f"loudness   RMS {m['rms_dbfs']:.1f} dBFS (sounding frames {m['sounding_rms_dbfs']:.1f} dBFS), "
          f"peak {m['peak_dbfs']:.1f} dBFS")  # fmt: skip
    print(f"brightness centroid median {m['centroid_median_hz']:.0f} Hz, 10-90 % range "
          f"{m['centroid_p10_hz']:.0f}-{m['centroid_p90_hz']:.0f} Hz; "
          f"{m['energy_above_1khz']:.1%} of the energy above 1 kHz")  # fmt: skip
    print(f"pitch      {m['voiced_share']:.0%} of the sounding frames voiced (peak >= {VOICED_PEAK}), "
          f"median f0 {m['voiced_f0_median_hz']:.0f} Hz")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
