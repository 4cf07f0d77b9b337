"""The one table of what the box can play (runtime/limits.json): sample rate, grain size, slots, latent
size. `runtime check` and the model loader refuse a model outside it, box.toml cannot ask for more slots
than the patch holds, and the patch's own /model check is generated from the same file, so no model
passes the check only for Pd to drop it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

LIMITS_FILE = Path(__file__).with_name("limits.json")


@dataclass(frozen=True)
class Limit:
    name: str
    low: int
    high: int
    unit: str
    why: str

    def refuses(self, value: int) -> str | None:
        """None when `value` is inside the limit, else what is wrong with it, in words."""
        if self.low <= value <= self.high:
            return None
        return f"{self.name} {value} is outside {self.low}-{self.high} {self.unit} ({self.why})"


def _load() -> dict[str, Limit]:
    table = json.loads(LIMITS_FILE.read_text())
    return {
        name: Limit(name, int(row["min"]), int(row["max"]), row["unit"], row["why"])
        for name, row in table.items()
        if not name.startswith("_")
    }


LIMITS = _load()
SAMPLE_RATE = LIMITS["sample_rate"]
GRAIN_SIZE = LIMITS["grain_size"]
SLOTS = LIMITS["slots"]
LATENT_DIM = LIMITS["latent_dim"]
