"""A model artifact for the demo's end-to-end test whose first latent axis is, by construction, brightness.

The decoder is tests/model_fixtures.TinyGrainModel's: latent dimension i adds a sine of 3(i+1) cycles per
1024-sample grain (65 Hz for i = 0 up to 1034 Hz for i = 15 at 22,050 Hz), then tanh. Here the navigation
buffers are chosen rather than random:

- every anchor sits at z0 = z15 = 1 (equal parts of the lowest and the highest sine), the others adding a
  little of dimensions 1..7 so that the encoder audibly changes the sound;
- axes[0] = (e15 - e0) / sqrt(2) with scale 1/sqrt(2), so knob1, on axis1 (docs/model-format.md: offset
  (2v - 1) * 2 * scale * axis) moves from pure low sine (v = 0: z0 = 2, z15 = 0) to pure high sine
  (v = 1: z0 = 0, z15 = 2). The spectral centroid therefore rises monotonically with the knob;
- axes 1..7 are e1..e7 (orthonormal to axis 0), so the other axis knobs change the timbre but not
  along it.

The result is a valid schema-1 artifact (it passes `python -m runtime check`), built without the trainer.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from tests.support.model_fixtures import TinyGrainModel, metadata_for, save

LATENT = 16


def brightness_model() -> TinyGrainModel:
    model = TinyGrainModel(latent_dim=LATENT, num_axes=8, num_anchors=4)
    eye = torch.eye(LATENT)
    axes = torch.cat([((eye[15] - eye[0]) / math.sqrt(2))[None], eye[1:8]])
    scales = torch.tensor([1 / math.sqrt(2)] + [0.3] * 7)
    base = eye[0] + eye[15]
    anchors = torch.stack([base, base + 0.4 * eye[2], base + 0.4 * eye[4], base + 0.4 * eye[6]])
    with torch.no_grad():
        model.axes.copy_(axes)
        model.scales.copy_(scales)
        model.anchors.copy_(anchors)
        model.center.copy_(base)
    return model


def write_brightness_model(path: Path) -> Path:
    """Write the artifact to `path` and return it."""
    model = brightness_model()
    meta = metadata_for(model, name="demo-brightness")
    meta["anchor_names"] = ["two sines", "plus dim 2", "plus dim 4", "plus dim 6"]
    return save(model, Path(path), meta)


if __name__ == "__main__":
    import sys

    print(write_brightness_model(Path(sys.argv[1])))
