"""`python -m runtime run` on a desktop with no flags (controls = box, the default): one INFO line that it
plays virtual knobs and why, none of gpiozero's pin-factory warnings and no ERROR; and while Pd does not
answer, one WARNING that says how to start it. On the box a knob box that cannot be opened stays an ERROR,
with gpiozero's fallbacks folded into it."""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from runtime.config import Config
from runtime.controls import VirtualKnobs, make_controls
from runtime.host import Host, PdHint, detect
from tests.support.model_fixtures import write_valid
from tests.support.runtime_helpers import RuntimeProcess, wait_until


class Sink:
    def knob(self, index: int, value: float) -> None: ...
    def encoder(self, steps: int) -> None: ...
    def press(self) -> None: ...
    def long_press(self) -> None: ...
    def note(self, pitch: int, velocity: int) -> None: ...


@pytest.mark.skipif(detect().is_box, reason="this machine is set up as a box")
def test_run_on_a_desktop_says_virtual_knobs_once_and_how_to_start_pd(tmp_path: Path) -> None:
    runtime = RuntimeProcess(tmp_path, write_valid(tmp_path / "m.ts"), controls="box")  # nothing on pd_port
    try:
        wait_until(lambda: "Pd is not answering" in runtime.log(), timeout=30, what="the Pd hint")
        runtime.wait_status(lambda s: s.get("pid") == runtime.proc.pid, "the runtime")
    finally:
        assert runtime.stop() == 0, runtime.log()
    log = runtime.log()
    print(log)
    lines = log.splitlines()
    knobs = [line for line in lines if "playing with virtual knobs" in line]
    assert len(knobs) == 1
    assert knobs[0].startswith("INFO runtime.controls: this is a desktop (not a Raspberry Pi")
    assert "PinFactoryFallback" not in log and "py.warnings" not in log
    assert not [line for line in lines if line.startswith("ERROR")]
    hint = [line for line in lines if "Pd is not answering" in line]
    assert len(hint) == 1
    assert hint[0].startswith(f"WARNING grainbox: Pd is not answering on 127.0.0.1:{runtime.pd_port}")
    assert f'`pd -send "gb_ports {runtime.pd_port} {runtime.port}" pd/main.pd`' in hint[0]
    assert "controls: virtual" in log


def test_on_the_box_a_knob_box_that_will_not_open_is_one_error_with_the_fallbacks_in_it(caplog) -> None:
    config = replace(Config(), controls="box")
    with warnings.catch_warnings(record=True) as shown, caplog.at_level(logging.INFO, "runtime.controls"):
        warnings.simplefilter("always")
        controls = make_controls(config, Sink(), host=Host("box", "Raspberry Pi 4 Model B Rev 1.4"))
    assert isinstance(controls, VirtualKnobs)
    assert not [w for w in shown if type(w.message).__name__ == "PinFactoryFallback"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "cannot open the knob box" in errors[0].getMessage()
    assert "gpiozero tried" in errors[0].getMessage() and "lgpio" in errors[0].getMessage()


def test_the_pd_hint_comes_once_per_silence(caplog) -> None:
    hint = PdHint(Host("box", "Raspberry Pi 5"), pd_port=9001, runtime_port=9000, started=0.0)
    with caplog.at_level(logging.WARNING, "grainbox"):
        for now in (1.0, 3.0, 5.0):
            hint.check(None, now)  # not yet: Pd may still be loading the patch
        assert not caplog.records
        for now in (7.0, 9.0, 11.0):
            hint.check(None, now)
        assert len(caplog.records) == 1 and "systemctl start grainbox-pd" in caplog.records[0].getMessage()
        hint.check(12.0, 13.0)  # Pd answered: a later silence warns again
        hint.check(12.0, 19.0)
    assert len(caplog.records) == 2 and "for 7 s" in caplog.records[1].getMessage()
