"""Synthesis parameters the runtime sends to Pd as /param, and how a knob's 0..1 maps onto each.

Ranges and defaults follow docs/osc.md's /param table. Density and duration span three decades, so their
knobs are exponential: equal turns give equal ratios, as a musician hears them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Param:
    """One /param: its range, its default, and whether its knob is linear or exponential."""

    name: str
    low: float
    high: float
    default: float
    exponential: bool = False

    def from_knob(self, v: float) -> float:
        v = min(1.0, max(0.0, v))
        if self.exponential:
            return self.low * (self.high / self.low) ** v
        return self.low + (self.high - self.low) * v

    def to_knob(self, value: float) -> float:
        value = min(self.high, max(self.low, value))
        if self.exponential:
            return math.log(value / self.low) / math.log(self.high / self.low)
        return (value - self.low) / (self.high - self.low)


PARAMS = {
    p.name: p
    for p in (
        Param("density", 0.5, 500.0, 20.0, exponential=True),
        Param("duration", 5.0, 1000.0, 80.0, exponential=True),
        Param("transpose", -24.0, 24.0, 0.0),
        Param("gain", 0.0, 2.0, 0.7),
    )
}
