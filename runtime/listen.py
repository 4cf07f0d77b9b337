"""Listening: the box's audio input, placed in the model's latent space.

Pd cuts the input into grains of the model's size and rate and sends each as /input. The follower keeps
only the newest one that has not been encoded yet (a grain that arrives while the decode thread is busy
replaces the waiting one: never a backlog), and the decode thread encodes it, smooths the posterior
means, and plays the smoothed point in place of the anchor.

Modes, as a musician uses them:

- off: the instrument as without input.
- follow: the latent point is the input's; the axis knobs offset it along the model's axes, spray still
  scatters the slots. A voice played into a drum model sounds like drums following the voice.
- capture: the last grains heard are frozen into the slots and kept as a new anchor (saved beside the
  presets, atomically), which stays in the encoder's list of sounds for this model.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from runtime.atomic import remove_stale_temps, write_json_atomic

MODES = ("off", "follow", "capture")
FORMAT = 1


class InputFollower:
    """The newest input grain, and where the input has been in the latent space.

    `smoothing` is the weight of the newest posterior mean in the running point (1: no smoothing; 0.5
    follows within about three grains, 140 ms at 22,050 Hz). Thread-safe: the OSC thread offers grains,
    the decode thread takes and encodes them."""

    def __init__(self, smoothing: float = 0.5, keep: int = 16) -> None:
        if not 0 < smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")
        self.smoothing = smoothing
        self._lock = threading.Lock()
        self._waiting: np.ndarray | None = None
        self.point: Tensor | None = None  # the smoothed latent point, [Z]
        self.recent: deque[Tensor] = deque(maxlen=keep)  # posterior means of the last grains, newest last
        self.received = 0
        self.coalesced = 0  # grains replaced by a newer one before they were encoded
        self.encoded = 0
        self.last_encode_ms = 0.0

    def offer(self, grain: np.ndarray) -> None:
        with self._lock:
            self.received += 1
            self.coalesced += self._waiting is not None
            self._waiting = grain

    def waiting(self) -> bool:
        with self._lock:
            return self._waiting is not None

    def take(self) -> np.ndarray | None:
        with self._lock:
            grain, self._waiting = self._waiting, None
            return grain

    def update(self, mean: Tensor) -> Tensor:
        """Fold one grain's posterior mean into the point (decode thread only)."""
        self.recent.append(mean)
        self.encoded += 1
        self.point = mean.clone() if self.point is None else self.point + self.smoothing * (mean - self.point)
        return self.point

    def forget(self) -> None:
        """A new model has another latent space: what was heard is no longer a place in it."""
        with self._lock:
            self._waiting = None
        self.point = None
        self.recent.clear()


@dataclass
class CapturedAnchor:
    name: str
    latent: Tensor  # [Z]
    model_hash: str


NAME = re.compile(r"^capture-\d{8}-\d{6}(-\d+)?$")


class AnchorStore:
    """Captured anchors, one JSON file each under state/anchors/, for the model they were heard with.

    Written atomically (runtime.atomic), like presets: a power cut while saving leaves the earlier file or
    the new one. A file that cannot be read is skipped with a reason, never fatal."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.skipped: list[str] = []

    def save(self, latent: Tensor, model_hash: str) -> CapturedAnchor:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        name, n = f"capture-{stamp}", 1
        while (self.folder / f"{name}.json").exists():
            n += 1
            name = f"capture-{stamp}-{n}"
        values = [float(v) for v in latent.tolist()]
        if not all(math.isfinite(v) for v in values):
            raise ValueError("the captured point is not finite")
        write_json_atomic(self.folder / f"{name}.json",
                          {"format": FORMAT, "name": name, "model_hash": model_hash, "latent": values})
        return CapturedAnchor(name, latent.clone(), model_hash)

    def load(self, model_hash: str, latent_dim: int) -> list[CapturedAnchor]:
        """The anchors captured with this model, oldest first."""
        if not self.folder.is_dir():
            return []
        remove_stale_temps(self.folder)
        found, self.skipped = [], []
        for path in sorted(self.folder.glob("capture-*.json")):
            try:
                data: Any = json.loads(path.read_text())
                latent = data["latent"]
                ok = (data.get("format") == FORMAT and NAME.match(str(data.get("name", "")))
                      and isinstance(latent, list) and len(latent) == latent_dim
                      and all(isinstance(v, int | float) and math.isfinite(v) for v in latent))
                if not ok:
                    raise ValueError(f"not a format-{FORMAT} anchor of {latent_dim} finite numbers")
            except (OSError, ValueError, KeyError, TypeError) as e:
                self.skipped.append(f"{path.name}: {e}")
                continue
            if data["model_hash"] == model_hash:
                found.append(CapturedAnchor(data["name"], torch.tensor(latent, dtype=torch.float32),
                                            model_hash))
        return found
