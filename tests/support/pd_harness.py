"""Render harness for the Pd patch: play a timed score of OSC messages into the real pd/main.pd, get a WAV.

The batch driver itself is runtime/pd_batch.py (`python -m runtime render` plays models through the same
code); its docstring says how it works: OSC packets serialised by liblo, fed to main.pd's parser through
the `gb_osc_bytes` bus by a [qlist], main.pd's two outlets recorded with [tabwrite~] and written by
[soundfiler], `pd -nogui -noaudio -batch` running logical time as fast as the CPU allows. This module
keeps the names the tests and bench/pd_render.py import, plus test-only helpers (`sine`).

Example::

    score = Score()
    score.add(0, "/model", 22050, 1024, 8, 8)
    score.add(0, "/grain", 0, *sine(1024, 441.0))
    score.add(0, "/param", "density", 50.0)
    audio = render(score, seconds=1.0, workdir=tmp_path).audio   # (frames, 2) float32
"""

from __future__ import annotations

import numpy as np

from runtime.pd_batch import (
    HOST,
    PD_BINARY,
    PD_DIR,
    RENDER_TABLES,
    REPO,
    SAMPLE_RATE,
    Render,
    Score,
    driver_patch,
    free_port,
    osc_bytes,
    pd_command,
    recorded_frames,
    render,
)

__all__ = [
    "HOST", "PD_BINARY", "PD_DIR", "RENDER_TABLES", "REPO", "SAMPLE_RATE", "Render", "Score", "driver_patch",
    "free_port", "osc_bytes", "pd_command", "recorded_frames", "render", "sine",
]


def sine(n: int, cycles: float, amplitude: float = 1.0) -> list[float]:
    """n samples holding exactly `cycles` periods of a sine (a grain that loops without a seam)."""
    t = np.arange(n) / n
    return [float(v) for v in amplitude * np.sin(2 * np.pi * cycles * t)]
