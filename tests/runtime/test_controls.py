"""The knob box on gpiozero's MockFactory: the real MCP3008, RotaryEncoder and Button classes, driven by an
emulated MCP3008 on the mock SPI pins (tests/support/gpio_fixtures.py) and by edges on the mock GPIO pins."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from runtime.box import Box
from runtime.config import Config
from runtime.controls import KnobBox
from runtime.knob_filter import KnobFilter
from runtime.params import PARAMS
from tests.support.gpio_fixtures import EmulatedMCP3008, turn_clockwise, turn_counter_clockwise
from tests.support.model_fixtures import write_valid
from tests.support.osc_peer import OscPeer
from tests.support.runtime_helpers import make_config, wait_until

ENC_A, ENC_B, ENC_BUTTON = Config.encoder_a, Config.encoder_b, Config.encoder_button


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    """gpiozero's MockFactory as the default pin factory (its software SPI bus asks the default one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SPISoftwareFallback: expected, there is no hardware SPI here
        mock = MockFactory()
        saved, Device.pin_factory = Device.pin_factory, mock
        try:
            yield mock
        finally:
            mock.reset()
            Device.pin_factory = saved


class Recorder:
    """A ControlSink that writes down every gesture, to test a control source on its own."""

    def __init__(self) -> None:
        self.gestures: list[tuple] = []

    def knob(self, index: int, value: float) -> None:
        self.gestures.append(("knob", index, value))

    def encoder(self, steps: int) -> None:
        self.gestures.append(("encoder", steps))

    def press(self) -> None:
        self.gestures.append(("press",))

    def long_press(self) -> None:
        self.gestures.append(("long_press",))

    def note(self, pitch: int, velocity: int) -> None:
        self.gestures.append(("note", pitch, velocity))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_valid(tmp_path / "model.ts")


def test_gpiozero_mcp3008_reads_the_emulated_chip_on_every_channel(factory: MockFactory) -> None:
    from gpiozero import MCP3008

    chip = EmulatedMCP3008(factory)
    chip.codes = [0, 1, 100, 511, 512, 700, 1022, 1023]
    pots = [MCP3008(channel=i) for i in range(8)]
    assert [p.raw_value for p in pots] == chip.codes
    assert chip.reads == 8


def test_a_noisy_resting_knob_sends_nothing(factory: MockFactory) -> None:
    chip = EmulatedMCP3008(factory, noise_lsb=2, seed=7)  # +-2 LSB on every read, as the ADC wanders
    chip.codes = [100, 200, 300, 400, 500, 600, 700, 800]
    sink = Recorder()
    box = KnobBox(sink, Config())
    try:
        assert box.poll() == 8, "the first reading is every knob's starting position"
        for _ in range(20):  # settling: the window finds the middle of the noise (at most one step)
            box.poll()
        sink.gestures.clear()
        for _ in range(1000):  # 40 s of a resting knob box at the default 40 ms poll
            box.poll()
        assert sink.gestures == []
        assert chip.reads == 8 * 1021
    finally:
        box.close()


def test_a_turned_knob_sends_its_new_value_and_reaches_both_ends(factory: MockFactory) -> None:
    chip = EmulatedMCP3008(factory, noise_lsb=1, seed=1)
    chip.codes = [512] * 8
    sink = Recorder()
    box = KnobBox(sink, Config())
    try:
        box.poll()
        sink.gestures.clear()
        chip.codes[2] = 1023  # channel 2: knob3, index 2 to the sink
        for _ in range(30):
            box.poll()
        moves = [g for g in sink.gestures if g[0] == "knob"]
        assert {g[1] for g in moves} == {2}, "only the turned knob may send"
        values = [g[2] for g in moves]
        assert values == sorted(values) and values[-1] == 1.0
        chip.codes[2] = 0
        for _ in range(30):
            box.poll()
        assert sink.gestures[-1] == ("knob", 2, 0.0)
    finally:
        box.close()


def test_knob_filter_matches_organelle_smoothing_and_beats_its_flicker() -> None:
    knob = KnobFilter(smoothing=0.75, dead_band=2)
    assert knob.update(500) is not None
    assert knob.update(501) is None and knob.update(499) is None  # +-2 LSB: ignored
    moved = knob.update(520)  # 0.75 * 520 + 0.25 * 500 = 515: a real move
    assert moved is not None and abs(moved - (515 - 4) / 1019) < 1e-9
    with pytest.raises(ValueError, match="smoothing"):
        KnobFilter(smoothing=0)


def test_encoder_and_button_through_mock_pin_edges(factory: MockFactory) -> None:
    EmulatedMCP3008(factory)
    sink = Recorder()
    box = KnobBox(sink, replace(Config(), long_press_s=0.2))
    try:
        turn_clockwise(factory, ENC_A, ENC_B, detents=3)
        turn_counter_clockwise(factory, ENC_A, ENC_B, detents=1)
        assert sink.gestures == [("encoder", 1)] * 3 + [("encoder", -1)]
        sink.gestures.clear()
        button = factory.pin(ENC_BUTTON)
        button.drive_low()  # pressed: the button pulls the pin to ground
        button.drive_high()
        assert sink.gestures == [("press",)]
        sink.gestures.clear()
        button.drive_low()
        wait_until(lambda: sink.gestures, timeout=10, what="gpiozero's hold timer")
        button.drive_high()
        assert sink.gestures == [("long_press",)], "a long press must not also count as a press"
    finally:
        box.close()


@pytest.fixture
def box_on_mock_pins(tmp_path: Path, model: Path, factory: MockFactory) -> Iterator[tuple]:
    """The whole runtime (Box) with controls = box on the mock pins, and an OSC peer where Pd would be."""
    chip = EmulatedMCP3008(factory, noise_lsb=1)
    chip.codes = [512] * 8
    config = make_config(tmp_path, model, controls="box", poll_ms=5, long_press_s=0.2)
    peer = OscPeer()
    config = replace(config, pd_port=peer.port)
    box = Box(config, pin_factory=factory)
    box.start()
    try:
        wait_until(lambda: box.engine.decodes >= 1, what="the first decode")
        yield box, chip, peer, factory
    finally:
        box.close()
        peer.close()


def test_a_turned_knob_moves_the_latent_point_along_the_first_axis(box_on_mock_pins: tuple) -> None:
    box, chip, peer, _ = box_on_mock_pins
    model = box.model
    wait_until(lambda: box.engine.requests == box.engine.decodes + box.engine.coalesced, what="idle engine")
    before = box.engine.last_points[0].clone()
    decodes = box.engine.decodes
    chip.codes[0] = 1023  # channel 0 (knob1) to its stop: axis 1, +2 spreads
    wait_until(lambda: box.performance.state.knobs[0] == 1.0, what="knob1 to reach 1.0")
    wait_until(lambda: box.engine.decodes > decodes and box.engine.last_points[0][0] != before[0],
               what="a decode at the new point")  # fmt: skip
    wait_until(lambda: box.engine.requests == box.engine.decodes + box.engine.coalesced, what="idle engine")
    after = box.engine.last_points[0]
    moved = after - before
    along = torch.dot(moved, model.axes[0])
    start = box.performance.state  # the other knobs sit at their own (noisy) middle
    expected = (1.0 - 0.5) * 2 * 2 * model.scales[0]
    assert abs(along - expected) < 0.01 * abs(expected) + 4 * 2 * 2 * model.scales[0] / 1019
    assert torch.linalg.norm(moved - along * model.axes[0]) < 1e-4, "only axis 1 may move"
    assert start.anchor == 0
    assert len(peer.of("/grain")) >= 16  # the grains went out


def test_knob5_sets_density_and_encoder_and_button_drive_the_performance(box_on_mock_pins: tuple) -> None:
    box, chip, peer, factory = box_on_mock_pins
    chip.codes[4] = 1023  # channel 4 (knob5): density, exponential, to its top
    wait_until(lambda: ["density", pytest.approx(PARAMS["density"].high)] in peer.of("/param"),
               what="/param density 500")  # fmt: skip
    turn_clockwise(factory, ENC_A, ENC_B)
    wait_until(lambda: box.performance.state.anchor == 1, what="the encoder to step to anchor 2")
    turn_counter_clockwise(factory, ENC_A, ENC_B, detents=2)
    assert box.performance.state.anchor == box.model.num_anchors - 1  # wraps to the last sound
    button = factory.pin(ENC_BUTTON)
    button.drive_low(), button.drive_high()
    assert box.performance.state.freeze
    wait_until(lambda: ["freeze", 1.0] in peer.of("/param"), what="/param freeze 1")
    # the encoder's last step may still be decoding: count from an idle engine, or that decode counts
    engine = box.engine
    idle = lambda: engine.requests == engine.decodes + engine.coalesced + engine.errors  # noqa: E731
    wait_until(idle, what="idle engine")
    decodes = box.engine.decodes
    chip.codes[1] = 1023  # channel 1 (knob2): axis 2
    wait_until(lambda: box.performance.state.knobs[1] == 1.0, what="knob2 to reach 1.0")
    assert box.engine.decodes == decodes, "frozen: the slots keep their grains"
    button.drive_low()
    wait_until(lambda: box.presets.names(), timeout=10, what="a long press to save a preset")
    button.drive_high()
    assert box.presets.load("preset-001").knobs[1] == 1.0
    assert box.performance.state.freeze, "the long press must not also toggle freeze"


def test_the_patch_moves_a_knob_beside_the_knob_box_and_the_pot_takes_it_back(box_on_mock_pins) -> None:
    """On the box the patch (a slider, a MIDI CC learned there) plays beside the pots: the last move wins."""
    box, chip, peer, _ = box_on_mock_pins
    wait_until(lambda: box.performance.state.knobs[2] != 0.0, what="the pots' first reading")
    peer.runtime_port = box.link.port
    peer.send("/knob", 3, 0.2)  # knob3 from the patch, where the pot rests at its middle
    wait_until(lambda: box.performance.state.knobs[2] == pytest.approx(0.2), what="knob3 to follow the patch")
    time.sleep(0.2)  # 40 polls of the resting (noisy) pot: it must not take the knob back on its own
    assert box.performance.state.knobs[2] == pytest.approx(0.2)
    chip.codes[2] = 1023  # the hand turns the pot: it wins
    wait_until(lambda: box.performance.state.knobs[2] == 1.0, what="the pot to take knob3 back")
