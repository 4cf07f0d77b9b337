"""How fast the Pd patch renders: real-time factor in batch mode (`pd -batch`), 32 and 8 voices.

Each row renders SECONDS of audio through pd/main.pd with the render harness of
tests/support/pd_harness.py (OSC messages serialised by pyliblo3, injected at their times, main.pd's
output recorded by the harness) and divides the audio's length by the wall-clock time Pd took. The goal
for the Raspberry Pi is >= 20x (under 5% of one core). The idle row (no grains) is the baseline measured
in the same run: the cost of the patch's fixed parts (filter, reverb, limiter, recorder) without any
voice. The last row leaves the filter open (tone 1, resonance 0: the defaults), where the patch switches
it off.

    flock /tmp/grainbox-bench.lock .venv/bin/python -m bench.pd_render [--seconds 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from tests.support.pd_harness import Score, render

GRAIN, MODEL_SR = 1024, 22050


def score(voices: int, density: float, duration_ms: float, filtered: bool = True) -> Score:
    """8 slots of noise grains; filtered=False leaves tone and resonance at their defaults (filter open,
    so the patch switches it off)."""
    rng = np.random.default_rng(0)
    s = Score()
    s.add(0, "/model", MODEL_SR, GRAIN, 8, 8)
    for slot in range(8):
        s.add(0, "/grain", slot, *[float(v) for v in rng.uniform(-0.8, 0.8, GRAIN)])
    params = [("voices", voices), ("density", density), ("duration", duration_ms), ("reverb", 0.2),
              ("pan", 0.8)]
    for name, value in params + ([("tone", 0.8), ("resonance", 0.3)] if filtered else []):
        s.add(0, "/param", name, float(value))
    return s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="audio rendered per row")
    args = parser.parse_args()
    # duration 250 ms at 200 grains/s keeps 50 grains wanted at once: every voice busy, steals constant
    rows = [("idle (no grains)", score(1, 0.5, 5)), ("8 voices, density 200", score(8, 200, 250)),
            ("32 voices, density 200", score(32, 200, 250)),
            ("32 voices, filter open", score(32, 200, 250, filtered=False))]
    print(f"Pd batch render of {args.seconds:g} s at 44.1 kHz (pd/main.pd; reverb 0.2; filter on: tone 0.8,"
          " resonance 0.3, except 'filter open', where the patch bypasses it)")
    print(f"{'configuration':<26}{'wall s':>9}{'real-time x':>13}{'% of a core':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, sc) in enumerate(rows):
            out = render(sc, args.seconds, Path(tmp) / str(k), timeout=600)
            rtf = args.seconds / out.wall_seconds
            print(f"{name:<26}{out.wall_seconds:>9.2f}{rtf:>13.1f}{100 / rtf:>13.2f}")


if __name__ == "__main__":
    main()
