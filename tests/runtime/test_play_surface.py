"""The patch as the box's play surface (issue 16), end to end: the real runtime, the real Pd with main.pd.

The test's hands are Pd's own mouse and keyboard messages (tests/support/pd_remote.py): a click on a
slider, a bang or an atom box runs the same code as a click in Pd's window. What the runtime decodes is
read from Pd's side, by the sums of the grains Pd stored (/ack, as in test_runtime_pd.py); what Pd holds
of its parameters, by what the patch reports (/param, the runtime's status `pd_params`). MIDI enters
where Pd's MIDI backends deliver it, the `#ctlin` binding that every [ctlin] listens to.

Coordinates are main.pd's own (canvas coordinates, as the file stores them); a layout change that moves a
control must move it here too, which the first assertion of each test makes plain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyliblo3 as liblo
import pytest
import torch

from runtime.artifact import load_model
from runtime.midimap import MidiMap
from runtime.params import PARAMS
from tests.conftest import free_udp_port
from tests.support.model_fixtures import write_broken, write_valid
from tests.support.osc_peer import OscPeer
from tests.support.pd_remote import PdRemote, Window
from tests.support.runtime_helpers import RuntimeProcess, wait_until, write_checksum_model
from tests.support.runtime_pd import PdProcess, pd_available

pytestmark = pytest.mark.skipif(not pd_available(), reason="needs Pd (apt: puredata-core) and pd/main.pd")

SLOTS = 8
SLIDER_STEP = 1 / 99  # a 100-pixel vsl moves 1/(100 - 1) of its range per pixel: the drag's resolution
TOLERANCE = 1e-3 * 1024  # grain sums as in test_runtime_pd.py


def knob_centre(number: int) -> tuple[int, int]:
    """Where to grab knob `number`'s slider: main.pd's vsl 22x100 at (24 + 40 (number - 1), 550)."""
    return 24 + 40 * (number - 1) + 11, 600


SOUND_NEXT = (68, 764)  # the SOUND panel's + bang at (60, 756), 17 px
SOUND_NAME = (60, 798)  # its name box, a symbol atom at (20, 790)
PRESET_SAVE = (328, 764)
PRESET_RECALL = (398, 764)
MIDI_LEARN = (928, 764)


class Rig:
    """The runtime (virtual controls) and Pd on main.pd, restartable, sharing one state directory."""

    def __init__(self, tmp_path: Path, model: Path) -> None:
        self.tmp_path = tmp_path
        self.model = model
        self.pd_port = free_udp_port()
        self.remote_port = free_udp_port()
        self.runtime = self._runtime()
        self.pd = self._pd()
        self.remote = PdRemote(self.remote_port)

    def _runtime(self) -> RuntimeProcess:
        runtime = RuntimeProcess(self.tmp_path, self.model, pd_port=self.pd_port, controls="virtual")
        # its own status (after a restart the file holds the last runtime's until this one writes it)
        runtime.wait_status(lambda s: s.get("pid") == runtime.proc.pid, "the runtime to start and listen")
        return runtime

    def _pd(self) -> PdProcess:
        return PdProcess(self.tmp_path / "pd", self.pd_port, self.runtime.port, remote_port=self.remote_port)

    def start_pd(self, hellos_before: int = 0) -> dict:
        self.pd.start()
        return self.runtime.wait_status(
            lambda s: s.get("pd_hellos", 0) > hellos_before and in_sync(s), "Pd to start and hold the grains",
            timeout=60)  # fmt: skip

    def restart_everything(self) -> dict:
        """The box reboots: the runtime and Pd stop and start again, on the same state directory."""
        self.pd.kill()
        self.runtime.stop()
        self.runtime = self._runtime()
        self.pd = self._pd()
        return self.start_pd()

    def window(self) -> Window:
        return Window(self.remote, "main.pd")

    def to_pd(self, path: str, *args: object) -> None:
        """An OSC message to the patch, as any OSC controller on the bus can send it (docs/osc.md)."""
        liblo.send(liblo.Address("127.0.0.1", self.pd_port, liblo.UDP), liblo.Message(path, *args))

    def to_runtime(self, path: str, *args: object) -> None:
        liblo.send(liblo.Address("127.0.0.1", self.runtime.port, liblo.UDP), liblo.Message(path, *args))

    def close(self) -> None:
        self.remote.close()
        self.pd.kill()
        self.runtime.stop()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path, write_checksum_model(tmp_path / "model.ts"))
    try:
        yield rig
    finally:
        rig.close()


def in_sync(status: dict) -> bool:
    return status.get("pd_slots_confirmed") == SLOTS and status.get("pd_ack_mismatches") == 0


def grain_sum(model_path: Path, anchor: int, knob1: float) -> float:
    """The sum of the grain at anchor `anchor` with knob1 (axis1) at `knob1`, the other axes centred and
    spray 0: what every slot holds."""
    model = load_model(model_path)
    point = model.anchors[anchor] + (2 * knob1 - 1) * 2 * model.scales[0] * model.axes[0]
    with torch.no_grad():
        return float(model.decode(point[None]).double().sum())


def holds(status: dict, expected: float) -> bool:
    return in_sync(status) and all(abs(s - expected) < TOLERANCE for s in status["pd_slot_sums"])


def test_the_patch_shows_the_runtimes_knobs_and_a_drag_moves_on_from_there(rig: Rig) -> None:
    # the runtime plays knob1 at 0.8 and knob5 (density) at 0.3 before the patch is opened
    for number, value in ((1, 0.8), (5, 0.3)):
        rig.to_runtime("/knob", number, value)
    rig.runtime.wait_status(lambda s: s.get("knobs", [])[:5:4] == [0.8, 0.3], "the runtime to take the knobs")
    rig.start_pd()
    window = rig.window()
    for number, start in ((1, 0.8), (5, 0.3)):
        x, y = knob_centre(number)
        window.press(x, y)  # a steady-on-click slider outputs what it shows: the runtime's value, no jump
        seen = [start]
        for pixel in range(1, 6):
            window.move(x, y - pixel)  # up one pixel: one slider step
            status = rig.runtime.wait_status(
                lambda s, n=number, last=seen[-1]: s["knobs"][n - 1] != last,
                f"knob{number} to follow the drag to pixel {pixel} above {start}")  # fmt: skip
            seen.append(status["knobs"][number - 1])
            # the slider snaps to whole pixels, so the first step may be shorter: never longer than one
            assert abs(seen[-1] - (start + pixel * SLIDER_STEP)) < SLIDER_STEP, (number, seen)
        window.release(x, y - 5)
        steps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
        assert all(0 < step <= SLIDER_STEP + 1e-4 for step in steps), (number, seen)
    # the latent point followed knob1 there: Pd holds the grains of anchor 0 with knob1 five steps up
    expected = grain_sum(rig.model, 0, rig.runtime.status()["knobs"][0])
    assert abs(expected - grain_sum(rig.model, 0, 0.8)) > 10 * TOLERANCE, "the fixture must tell them apart"
    rig.runtime.wait_status(lambda s: holds(s, expected), "Pd to hold the grains of the dragged point")
    # and knob5 moved Pd's density to where the knob is (the patch reports what it set)
    density = PARAMS["density"].from_knob(rig.runtime.status()["knobs"][4])
    rig.runtime.wait_status(lambda s: s["pd_params"].get("density") == pytest.approx(density, rel=1e-4),
                            f"Pd to report density {density:.3f}")  # fmt: skip


def test_a_patch_opened_before_the_runtime_gets_its_knobs_and_midi_map_when_it_starts(tmp_path: Path) -> None:
    # the box's boot order: Pd is up first, saying /hello to a runtime that is not listening yet. The
    # runtime, starting, sends it everything (/model and the grains, the knobs, the MIDI map the box learned
    # before this boot), and again when the patch takes the model (/model_ok): no /hello is needed
    model = write_checksum_model(tmp_path / "model.ts")
    MidiMap(tmp_path / "state" / "midi.json").learn(1, 21, "knob3")
    pd_port, runtime_port, remote_port = free_udp_port(), free_udp_port(), free_udp_port()
    pd = PdProcess(tmp_path / "pd", pd_port, runtime_port, remote_port=remote_port)
    remote = PdRemote(remote_port)
    runtime = None
    try:
        pd.start()
        early = OscPeer(port=runtime_port)  # stands where the runtime will listen, to hear Pd is up
        try:
            assert early.wait_for(lambda: early.of("/hello"), timeout=30), f"Pd said no /hello; {pd.log()}"
        finally:
            early.close()
        runtime = RuntimeProcess(tmp_path, model, pd_port=pd_port, controls="virtual", osc_port=runtime_port)
        status = runtime.wait_status(in_sync, "the runtime to give the running Pd its grains", timeout=60)
        assert status["knobs"][0] == 0.5  # and the patch's sliders, as saved in main.pd, stand at 0
        window = Window(remote, "main.pd")
        x, y = knob_centre(1)
        window.press(x, y)  # the slider outputs what it shows: the runtime's 0.5 (0 had it missed the knobs)
        window.move(x, y - 1)
        status = runtime.wait_status(lambda s: s["knobs"][0] != 0.5, "knob1 to follow a one-pixel drag")
        window.release(x, y - 1)
        assert 0.5 < status["knobs"][0] <= 0.5 + SLIDER_STEP + 1e-4, status["knobs"]
        control_change_to(remote, 1, 21, 127)
        runtime.wait_status(lambda s: s["knobs"][2] == 1.0, "the learned CC 21 to turn knob3 to its top")
    finally:
        remote.close()
        pd.kill()
        if runtime is not None:
            runtime.stop()


def type_into(window: Window, x: int, y: int, text: str) -> None:
    """Click an atom box and type `text` and Return, as the keyboard does in Pd's window."""
    window.click(x, y)
    for char in text:
        window.remote.send(window.target, "key", 1, ord(char), 0)
    window.remote.send(window.target, "key", 1, 10, 0)


def test_a_sound_chosen_in_the_patch_is_what_the_runtime_decodes(rig: Rig) -> None:
    rig.start_pd()
    rig.runtime.wait_status(lambda s: holds(s, grain_sum(rig.model, 0, 0.5)), "the first sound's grains")
    window = rig.window()
    window.click(*SOUND_NEXT)
    status = rig.runtime.wait_status(lambda s: s["anchor"] == 1, "the + bang to step to the second sound")
    assert status["anchor_name"] == "sound 2"
    second = grain_sum(rig.model, 1, 0.5)
    assert abs(second - grain_sum(rig.model, 0, 0.5)) > 10 * TOLERANCE, "the fixture's anchors must differ"
    rig.runtime.wait_status(lambda s: holds(s, second), "Pd to hold the second sound's grains")
    type_into(window, *SOUND_NAME, "sound_4")  # Pd shows the name "sound 4" with an underscore
    status = rig.runtime.wait_status(lambda s: s["anchor"] == 3, "the name typed in the patch to choose")
    rig.runtime.wait_status(lambda s: holds(s, grain_sum(rig.model, 3, 0.5)), "Pd to hold sound 4's grains")
    type_into(window, *SOUND_NAME, "no_such_sound")  # refused, with the names there are; sound 4 plays on
    wait_until(lambda: "the patch chose sound no_such_sound" in rig.runtime.log(), what="the refusal")
    assert "sound 1, sound 2, sound 3, sound 4" in rig.runtime.log()
    assert rig.runtime.status()["anchor"] == 3


def reported(rig: Rig, values: dict[str, float], what: str) -> dict:
    """Wait until the patch has reported every parameter in `values` (Pd sets, then reports: /param)."""
    return rig.runtime.wait_status(
        lambda s: all(s["pd_params"].get(k) == pytest.approx(v, abs=1e-4) for k, v in values.items()), what)


def test_a_preset_saved_in_the_patch_recalls_the_filter_and_the_reverb_in_pd(rig: Rig) -> None:
    rig.start_pd()
    dark = {"tone": 0.3, "resonance": 0.6, "reverb": 0.7}  # the defaults are 1, 0 and 0.15
    assert all(PARAMS[name].default != value for name, value in dark.items())
    for name, value in dark.items():
        rig.to_pd("/param", name, value)  # any OSC controller, or the patch's own sliders
    reported(rig, dark, "Pd to report the dark filter and the long reverb")
    window = rig.window()
    window.click(*PRESET_SAVE)  # nothing typed: the next free name
    status = rig.runtime.wait_status(lambda s: s["preset"] == "preset-001", "the save bang to save a preset")
    saved = json.loads((rig.runtime.state_dir / "presets" / "preset-001.json").read_text())
    assert {name: saved["params"][name] for name in dark} == pytest.approx(dark, abs=1e-4)
    assert saved["params"]["density"] == pytest.approx(status["pd_params"]["density"], rel=1e-4)

    bright = {"tone": 0.9, "resonance": 0.0, "reverb": 0.05}
    for name, value in bright.items():
        rig.to_pd("/param", name, value)
    reported(rig, bright, "Pd to report the bright settings")
    window.click(*PRESET_RECALL)  # nothing typed: the preset last saved
    reported(rig, dark, "Pd to take the preset's filter and reverb back and report them")

    # Pd restarts (a crash, or the patch closed and opened): the runtime gives it the preset's settings back
    hellos = rig.runtime.status()["pd_hellos"]
    rig.pd.kill()
    rig.start_pd(hellos_before=hellos)
    # ask the new Pd for every parameter it holds (/report), so what the runtime shows is what this Pd has
    received = rig.runtime.status()["osc_received"]
    rig.to_pd("/report")
    rig.runtime.wait_status(lambda s: s["osc_received"] >= received + len(PARAMS), "Pd's full report")
    reported(rig, dark, "the restarted Pd to hold the filter and reverb of the preset")


TONE_SLIDER = (690, 123)  # OUTPUT's tone slider, inside [grainbox-params] on main.pd


def control_change_to(remote: PdRemote, channel: int, cc: int, value: int) -> None:
    """A MIDI CC as Pd's MIDI input delivers it to every [ctlin]: the list `cc value channel` on #ctlin."""
    remote.send("#ctlin", cc, value, channel)


def control_change(rig: Rig, channel: int, cc: int, value: int) -> None:
    control_change_to(rig.remote, channel, cc, value)


def test_a_cc_learned_in_the_patch_moves_its_control_and_the_map_survives_a_restart(rig: Rig) -> None:
    rig.start_pd()
    window = rig.window()
    window.click(*MIDI_LEARN)
    window.click(*knob_centre(3))  # touch knob3 (a click on a steady slider leaves it where it is)
    control_change(rig, 1, 21, 90)
    rig.runtime.wait_status(lambda s: [1, 21, "knob3"] in s["midi_map"], "CC 21 to be learned for knob3")
    window.click(*TONE_SLIDER)  # touch the filter's tone, a Pd parameter
    control_change(rig, 1, 22, 90)
    rig.runtime.wait_status(lambda s: [1, 22, "tone"] in s["midi_map"], "CC 22 to be learned for tone")
    window.click(*MIDI_LEARN)  # learn off: the CCs play their controls

    control_change(rig, 1, 21, 127)
    rig.runtime.wait_status(lambda s: s["knobs"][2] == 1.0, "CC 21 at 127 to turn knob3 to its top")
    control_change(rig, 1, 21, 0)
    rig.runtime.wait_status(lambda s: s["knobs"][2] == 0.0, "CC 21 at 0 to turn knob3 to its bottom")
    control_change(rig, 1, 22, 0)
    reported(rig, {"tone": 0.0}, "CC 22 at 0 to close the filter")
    control_change(rig, 2, 21, 127)  # another channel is another controller: not mapped
    control_change(rig, 1, 22, 127)
    reported(rig, {"tone": 1.0}, "CC 22 at 127 to open it")
    assert rig.runtime.status()["knobs"][2] == 0.0
    saved = json.loads((rig.runtime.state_dir / "midi.json").read_text())
    assert len(saved["map"]) == 2, saved

    rig.restart_everything()  # the box reboots: the runtime gives the new Pd the map it keeps
    assert sorted(rig.runtime.status()["midi_map"]) == [[1, 21, "knob3"], [1, 22, "tone"]]
    control_change(rig, 1, 21, 127)
    rig.runtime.wait_status(lambda s: s["knobs"][2] == 1.0, "CC 21 to move knob3 after the restart")
    control_change(rig, 1, 22, 0)
    reported(rig, {"tone": 0.0}, "CC 22 to move the tone after the restart")


MODEL_NEXT = (668, 764)  # the MODEL panel's + bang at (660, 756)
MODEL_LOAD = (818, 764)  # its load_it bang at (810, 756)


def test_a_model_chosen_in_the_patch_plays_once_checked_and_a_broken_one_is_refused(rig: Rig) -> None:
    # the models beside the one playing, by name: a-broken.ts, b-other.ts, model.ts (playing)
    write_broken(rig.tmp_path / "a-broken.ts", "decode_nan")
    other = write_valid(rig.tmp_path / "b-other.ts", seed=7, name="other-sound")
    rig.start_pd()
    window = rig.window()
    window.click(*MODEL_NEXT)  # from model.ts, the last, round to the first: a-broken.ts
    window.click(*MODEL_LOAD)
    status = rig.runtime.wait_status(lambda s: s["reload_failures"] == 1, "the broken model to be refused")
    assert "a-broken.ts" in status["last_error"] and status["model_name"] == "checksum-test"
    assert in_sync(status), "the old model plays on"
    window.click(*MODEL_NEXT)
    window.click(*MODEL_LOAD)
    status = rig.runtime.wait_status(lambda s: s["model_name"] == "other-sound", "b-other.ts to play")
    assert status["model_file"] == str(other.resolve()) and status["last_error"] is None
    rig.runtime.wait_status(lambda s: holds(s, grain_sum(other, 0, 0.5)), "Pd to hold the new model's grains")
