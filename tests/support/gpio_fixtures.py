"""The knob box's hardware, emulated on gpiozero's MockFactory so the runtime's real gpiozero classes run.

gpiozero's MCP3008 reads 0 on a bare MockFactory: nothing answers on the SPI pins. `EmulatedMCP3008`
answers: it is the chip's side of the MCP3008 protocol (datasheet, "single-ended" conversion), driven by
gpiozero's MockSPIDevice on the mock clock/MOSI/MISO/select pins that the software SPI bit-bangs. The
encoder and button are driven by edges on their mock pins, as the real switches would.
"""

from __future__ import annotations

import random

from gpiozero.pins.mock import MockFactory, MockSPIDevice

# SPI0 on the Pi header (BCM): what MCP3008(port=0, device=0) asks the pin factory for.
SCLK, MOSI, MISO, CE0 = 11, 10, 9, 8


class EmulatedMCP3008(MockSPIDevice):
    """An MCP3008 on mock pins. Set `codes[channel]` (0..1023); `noise_lsb` adds +-that many LSB per read.

    Protocol (MCP3008 datasheet, figure 6-1): the master clocks a start bit (1), then SGL/DIFF and the
    3-bit channel; the chip samples for one clock, sends a null bit (0), then the 10-bit code, MSB first.
    """

    def __init__(
        self, factory: MockFactory, noise_lsb: int = 0, seed: int = 0, select_pin: int = CE0
    ) -> None:
        super().__init__(SCLK, MOSI, MISO, select_pin, pin_factory=factory)
        self.codes = [0] * 8
        self.noise_lsb = noise_lsb
        self.reads = 0
        self._rng = random.Random(seed)
        self._state = "wait_start"

    def on_start(self) -> None:  # chip select went active: a new conversion
        super().on_start()
        self._state = "wait_start"

    def on_bit(self) -> None:
        if self._state == "wait_start":
            if self.rx_buf[-1]:
                self._state, self.rx_buf = "header", []
        elif self._state == "header" and len(self.rx_buf) == 4:
            single_ended, channel = self.rx_buf[0], self.rx_word() & 0b111
            assert single_ended, "the knob box reads single-ended"
            # one clock to sample, the null bit, then 10 bits: 12 bits in all, the first two 0
            self.tx_word(self.conversion(channel), 12)
            self._state = "result"

    def conversion(self, channel: int) -> int:
        self.reads += 1
        noise = self._rng.randint(-self.noise_lsb, self.noise_lsb) if self.noise_lsb else 0
        return min(1023, max(0, self.codes[channel] + noise))


def turn_clockwise(factory: MockFactory, a: int, b: int, detents: int = 1) -> None:
    """Drive a quadrature encoder's pins (active low, idle high) through one full cycle per detent."""
    pin_a, pin_b = factory.pin(a), factory.pin(b)
    for _ in range(detents):
        pin_a.drive_low(), pin_b.drive_low(), pin_a.drive_high(), pin_b.drive_high()


def turn_counter_clockwise(factory: MockFactory, a: int, b: int, detents: int = 1) -> None:
    turn_clockwise(factory, b, a, detents)  # the same cycle with B leading
