"""Turn raw ADC readings of a potentiometer into knob moves worth sending, and silence when it rests.

A pot on an MCP3008 never reads the same twice: supply ripple and the ADC's own noise make a resting knob
wander a couple of LSB. Sending that wander would re-decode grains all day. Two stages stop it:

1. smoothing: an exponential moving average, `smoothed = a * new + (1 - a) * smoothed` (Organelle uses
   a = 0.75, our default), which takes the edge off single-sample spikes;
2. a dead band with hysteresis ("backlash"): the knob's value is a window 2 * dead_band LSB wide that
   the smoothed reading must *push* to move. A knob that rests inside its window sends nothing, however
   long it jitters, as long as the jitter spans no more than the window (+-2 LSB with the default of 2).
   A knob just let go may take one more one-LSB step while the average settles; after that it is silent.

Organelle compares each reading with the last sent one, so a knob that comes to rest at the top of its
noise can still flicker; the window cannot, and it gives the full range: the window's low edge runs from
0 to full_scale - 2 * dead_band and is scaled to exactly 0..1, so a knob turned to its stop reads 0 or 1.
"""

from __future__ import annotations


class KnobFilter:
    """Smoothing + hysteresis for one knob. `update(raw)` returns the new value in [0, 1], or None."""

    def __init__(self, smoothing: float = 0.75, dead_band: int = 2, full_scale: int = 1023) -> None:
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be > 0 and <= 1, got {smoothing}")
        if not 0 <= 2 * dead_band < full_scale:
            raise ValueError(f"dead_band must be >= 0 and well below full scale, got {dead_band}")
        self.smoothing = smoothing
        self.dead_band = dead_band
        self.full_scale = full_scale
        self._smoothed: float | None = None
        self._low: int | None = None  # low edge of the window, in LSB

    @property
    def value(self) -> float | None:
        """The last value sent (None before the first reading)."""
        if self._low is None:
            return None
        return min(1.0, max(0.0, self._low / (self.full_scale - 2 * self.dead_band)))

    def update(self, raw: int) -> float | None:
        """Feed one reading (0..full_scale); the knob's new value if it moved, else None."""
        raw = min(self.full_scale, max(0, raw))
        if self._smoothed is None:
            self._smoothed = float(raw)
            self._low = min(max(0, raw - self.dead_band), self.full_scale - 2 * self.dead_band)
            return self.value
        self._smoothed = self.smoothing * raw + (1 - self.smoothing) * self._smoothed
        reading = round(self._smoothed)  # whole LSB: a settling average must not send endless tiny steps
        assert self._low is not None
        width = 2 * self.dead_band
        if reading > self._low + width:
            self._low = reading - width
        elif reading < self._low:
            self._low = reading
        else:
            return None
        return self.value
