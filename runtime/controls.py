"""Where the player's gestures come from: the knob box, virtual knobs in the Pd patch, or nothing.

Every source speaks to a `ControlSink` with the same five gestures (a knob moved, the encoder turned, its
button pressed or held, a note played), so the rest of the runtime never knows which box it runs in.

    KnobBox       knob1..knob8, pots on MCP3008 channels 0..7 (hardware SPI), a rotary encoder and its push
                  button, via gpiozero
    VirtualKnobs  /knob and /note sent by the Pd patch's GUI (see docs/osc.md)
    NoControls    nothing: for tests and for driving the box over OSC only
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from typing import Protocol

from runtime.config import Config
from runtime.contract import KNOB_COUNT
from runtime.host import Host, detect
from runtime.knob_filter import KnobFilter

log = logging.getLogger(__name__)


class ControlSink(Protocol):
    """What a control source calls. Calls may come from any thread; the sink serialises them."""

    def knob(self, index: int, value: float) -> None: ...
    def encoder(self, steps: int) -> None: ...
    def press(self) -> None: ...
    def long_press(self) -> None: ...
    def note(self, pitch: int, velocity: int) -> None: ...


class Controls:
    """A source of gestures. start() begins delivering them to the sink, close() stops and frees pins."""

    kind = "none"

    def __init__(self, sink: ControlSink) -> None:
        self.sink = sink

    def start(self) -> None:
        """Begin delivering gestures."""

    def close(self) -> None:
        """Stop delivering gestures and release any hardware."""

    def virtual_knob(self, index: int, value: float) -> None:
        """A /knob from Pd: its slider, a MIDI CC learned in the patch, or gb_knob. The patch plays beside
        any source, the last move winning: a resting pot sends nothing (KnobFilter), so it never fights a
        slider; the next turn of the pot takes the knob back."""
        self.sink.knob(index, value)

    def virtual_note(self, pitch: int, velocity: int) -> None:
        """A /note from Pd: its keys or a MIDI keyboard ([notein])."""
        self.sink.note(pitch, velocity)


class NoControls(Controls):
    """No knob box: the box plays what it was last told, and the patch and OSC tools can still drive it."""


class VirtualKnobs(Controls):
    """The Pd patch's GUI knobs and keyboard, received as /knob and /note by the OSC link, are the box's
    only controls (a desktop, or a box without its knobs)."""

    kind = "virtual"


class KnobBox(Controls):
    """The hardware: knob1..knob8, pots on MCP3008 channels 0..7, and a rotary encoder with a push button,
    read through gpiozero. The sink gets knob N as index N - 1, the channel it is wired to.

    The pots are polled every `poll_ms` in one thread (the MCP3008 cannot interrupt) and each passes a
    KnobFilter, so a resting knob sends nothing. The encoder and button are edge-driven by gpiozero.
    A short press is reported on release, so a long press (held `long_press_s`) never also counts as one.
    `pin_factory` is gpiozero's (None: its default, the Pi's pins); tests pass a MockFactory.
    """

    kind = "box"

    def __init__(self, sink: ControlSink, config: Config, pin_factory: object | None = None) -> None:
        super().__init__(sink)
        # Imported here so that a desktop without gpiozero's pin libraries can still run virtual/none.
        from gpiozero import MCP3008, Button, RotaryEncoder

        self.poll_s = config.poll_ms / 1000
        self.filters = [KnobFilter(config.smoothing, config.dead_band) for _ in range(KNOB_COUNT)]
        spi = {"port": config.spi_port, "device": config.spi_device, "pin_factory": pin_factory}
        self.pots = [MCP3008(channel=i, **spi) for i in range(KNOB_COUNT)]
        self.encoder_device = RotaryEncoder(
            config.encoder_a, config.encoder_b, max_steps=0, pin_factory=pin_factory
        )
        self.button = Button(config.encoder_button, hold_time=config.long_press_s, pin_factory=pin_factory)
        self._held = False
        self.encoder_device.when_rotated_clockwise = lambda: self.sink.encoder(+1)
        self.encoder_device.when_rotated_counter_clockwise = lambda: self.sink.encoder(-1)
        self.button.when_pressed = self._pressed
        self.button.when_held = self._held_long
        self.button.when_released = self._released
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.poll()  # the knobs' positions at power-on are the starting state
        self._thread = threading.Thread(target=self._poll_forever, name="knob-poll", daemon=True)
        self._thread.start()

    def poll(self) -> int:
        """Read every pot once and send the ones that moved; returns how many moved."""
        moved = 0
        for index, (pot, knob) in enumerate(zip(self.pots, self.filters, strict=True)):
            value = knob.update(pot.raw_value)
            if value is not None:
                self.sink.knob(index, value)
                moved += 1
        return moved

    def _poll_forever(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except Exception:  # a flaky SPI read must not end the knobs for the rest of the day
                log.exception("reading the knobs failed; retrying")

    def _pressed(self) -> None:
        self._held = False

    def _held_long(self) -> None:
        self._held = True
        self.sink.long_press()

    def _released(self) -> None:
        if not self._held:
            self.sink.press()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for device in (*self.pots, self.encoder_device, self.button):
            device.close()


def make_controls(
    config: Config, sink: ControlSink, pin_factory: object | None = None, host: Host | None = None
) -> Controls:
    """The control source the config asks for. `controls = box` (the default) on a desktop, where there is
    no knob box to open, plays the virtual knobs and says so in one INFO line, unless gpiozero was given
    pins to use (`pin_factory`, GPIOZERO_PIN_FACTORY or a default factory already set: remote or mock pins).
    """
    if config.controls == "box":
        host = host or detect()
        if not host.is_box and not _pins_given(pin_factory):
            log.info(
                "this is a desktop (%s): no knob box to read, so playing with virtual knobs from Pd "
                "(--controls virtual says so; set GPIOZERO_PIN_FACTORY to use remote pins)",
                host.why,
            )
            return VirtualKnobs(sink)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return KnobBox(sink, config, pin_factory)
            except Exception as e:  # no GPIO/SPI here (SPI disabled, pin library missing): play on
                fallbacks = [str(w.message) for w in caught if _is_fallback(w)]
                tried = f" (gpiozero tried: {'; '.join(fallbacks)})" if fallbacks else ""
                log.error(
                    "cannot open the knob box (%s: %s)%s; playing with virtual knobs from Pd instead. "
                    "Run `python -m runtime doctor` for the fix",
                    type(e).__name__,
                    e,
                    tried,
                )
                return VirtualKnobs(sink)
            finally:  # gpiozero's pin-factory fallbacks are folded into the line above; others shown
                for w in caught:
                    if not _is_fallback(w):
                        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if config.controls == "virtual":
        return VirtualKnobs(sink)
    return NoControls(sink)


def _is_fallback(w: warnings.WarningMessage) -> bool:
    return type(w.message).__name__ == "PinFactoryFallback"  # gpiozero.exc's, without importing gpiozero


def _pins_given(pin_factory: object | None) -> bool:
    """Whether gpiozero has been told which pins to use, so a knob box may be there even off a Pi."""
    if pin_factory is not None or os.environ.get("GPIOZERO_PIN_FACTORY"):
        return True
    gpiozero = sys.modules.get("gpiozero")  # only when already imported: a desktop need not have it
    return gpiozero is not None and getattr(gpiozero.Device, "pin_factory", None) is not None
