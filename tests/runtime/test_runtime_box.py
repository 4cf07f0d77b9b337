"""The Box in-process with virtual knobs, talking real OSC to a liblo peer on Pd's port: what a /hello,
a /note, a /knob on a parameter pot and a preset recall send to Pd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime.box import Box
from runtime.params import PARAMS
from tests.support.model_fixtures import write_valid
from tests.support.osc_peer import OscPeer
from tests.support.runtime_helpers import make_config, wait_until


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Box, OscPeer]]:
    peer = OscPeer()
    config = make_config(tmp_path, write_valid(tmp_path / "m.ts"), controls="virtual", pd_port=peer.port)
    box = Box(config)
    peer.runtime_port = box.link.port
    box.start()
    try:
        wait_until(lambda: len(peer.of("/grain")) == 8, what="the starting grains")
        yield box, peer
    finally:
        box.close()
        peer.close()


def test_hello_resends_model_every_slot_and_every_parameter(rig: tuple[Box, OscPeer]) -> None:
    box, peer = rig
    before = np.array(peer.of("/grain"))
    peer.clear()
    peer.send("/hello")
    wait_until(
        lambda: len(peer.of("/grain")) == 8 and ["listen", 0.0] in peer.of("/param"), what="the resend"
    )
    assert peer.of("/model") == [[22050, 1024, 16, 8]]
    assert [g[0] for g in peer.of("/grain")] == list(range(8))
    assert np.array_equal(np.array(peer.of("/grain")), before), "the same grains, not a new decode"
    params = dict(peer.of("/param"))
    defaults = {"density": 20.0, "duration": 80.0, "transpose": 0.0, "freeze": 0.0, "listen": 0.0}
    assert params == pytest.approx(defaults, rel=1e-4)
    assert box.engine.decodes == 1 and box.hellos == 1


def test_virtual_knobs_notes_and_presets(rig: tuple[Box, OscPeer]) -> None:
    box, peer = rig
    peer.clear()
    peer.send("/knob", 6, 1.0)  # knob6: duration, to its top
    wait_until(lambda: peer.of("/param"), what="/param duration")
    assert peer.of("/param") == [["duration", pytest.approx(PARAMS["duration"].high)]]
    assert box.engine.decodes == 1, "a parameter pot needs no decode"
    peer.send("/note", 67, 100)  # G above middle C: +7 semitones, and a grain now
    wait_until(lambda: peer.of("/trigger"), what="/trigger")
    assert ["transpose", 7.0] in peer.of("/param")
    saved = box.performance.save()
    peer.send("/knob", 1, 0.0)
    wait_until(lambda: box.engine.decodes == 2, what="the decode for pot 1")
    assert saved == "preset-001" and box.performance.recall(saved)
    wait_until(lambda: box.engine.decodes == 3, what="the decode for the recalled preset")
    assert box.performance.state.knobs[0] == 0.5 and box.performance.state.knobs[5] == 1.0
    assert not box.performance.recall("nope")  # logged, the playing state left alone
    assert box.performance.state.knobs[5] == 1.0
