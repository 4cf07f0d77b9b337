"""Synthesis parameters the runtime sends to Pd as /param, and how a knob's 0..1 maps onto each.

Every /param of the patch is here, with the range, default and curve of runtime/contract.json:

    >>> from runtime.params import PARAMS
    >>> PARAMS["density"].from_knob(0.5)   # a log curve: half a turn is the geometric middle
    15.811388300841896
    >>> PARAMS["transpose"].from_knob(0.75)
    12.0

Density and duration span three decades, so their knobs follow a log curve: equal turns give equal
ratios, as a musician hears them. Integer parameters (toggles, counts, indices) are rounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from runtime.contract import PARAM_ROWS


@dataclass(frozen=True)
class Param:
    """One /param: its range, its default, its knob curve, and what it means."""

    name: str
    low: float
    high: float
    default: float
    curve: str = "linear"  # "log": equal knob turns give equal ratios
    integer: bool = False
    unit: str = ""
    doc: str = ""
    control: str = "slider"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Param:
        """A Param from one entry of the contract's "params" list."""
        return cls(
            name=row["name"],
            low=float(row["min"]),
            high=float(row["max"]),
            default=float(row["default"]),
            curve=row["curve"],
            integer=bool(row["integer"]),
            unit=row["unit"],
            doc=row["doc"],
            control=row["control"],
        )

    @property
    def exponential(self) -> bool:
        return self.curve == "log"

    def from_knob(self, v: float) -> float:
        """The value a knob at `v` (clipped to 0..1) sets."""
        v = min(1.0, max(0.0, v))
        if self.exponential:
            value = self.low * (self.high / self.low) ** v
        else:
            value = self.low + (self.high - self.low) * v
        return float(round(value)) if self.integer else value

    def to_knob(self, value: float) -> float:
        """Where the knob sits for `value` (clipped to the range)."""
        value = min(self.high, max(self.low, value))
        if self.exponential:
            return math.log(value / self.low) / math.log(self.high / self.low)
        return (value - self.low) / (self.high - self.low)


PARAMS: dict[str, Param] = {row["name"]: Param.from_row(row) for row in PARAM_ROWS}
