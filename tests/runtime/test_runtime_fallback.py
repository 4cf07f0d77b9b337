"""A box whose `current` model is broken at start-up plays `previous` instead of exiting (and being
restarted by systemd forever), says so in its log and status.json, and takes `current` again once a good
model is flashed there."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.model_fixtures import write_broken, write_valid
from tests.support.osc_peer import OscPeer
from tests.support.runtime_helpers import RuntimeProcess


def box_models(tmp_path: Path, current_broken: bool, previous_broken: bool) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    if previous_broken:
        write_broken(models / "old.ts", "truncated")
    else:
        write_valid(models / "old.ts", seed=1, name="old-sound")
    if current_broken:
        write_broken(models / "new.ts", "truncated")
    else:
        write_valid(models / "new.ts", seed=2, name="new-sound")
    (models / "previous").symlink_to("old.ts")
    (models / "current").symlink_to("new.ts")
    return models


def test_a_broken_current_plays_previous_and_a_good_flash_takes_over(tmp_path: Path) -> None:
    models = box_models(tmp_path, current_broken=True, previous_broken=False)
    pd = OscPeer()
    runtime = RuntimeProcess(tmp_path, models / "current", pd_port=pd.port)
    try:
        status = runtime.wait_status(lambda s: s["pid"] == runtime.proc.pid, "the runtime", timeout=60)
        assert status["model_name"] == "old-sound"
        assert status["model_fallback"]["refused"] == str(models / "new.ts")
        assert status["model_fallback"]["playing"] == str(models / "old.ts")
        assert "truncated or damaged" in status["model_fallback"]["reason"]
        assert status["last_error"].startswith(str(models / "new.ts"))
        assert "playing the previous one" in runtime.log()
        write_valid(models / "fixed.ts", seed=3, name="fixed-sound")  # what flash.sh does: a new current
        (models / "current.new").symlink_to("fixed.ts")
        os.replace(models / "current.new", models / "current")
        status = runtime.wait_status(lambda s: s["model_name"] == "fixed-sound", "the flashed model")
        assert status["model_fallback"] is None
    finally:
        assert runtime.stop() == 0, runtime.log()
        pd.close()


def test_both_broken_is_one_error_naming_both(tmp_path: Path) -> None:
    models = box_models(tmp_path, current_broken=True, previous_broken=True)
    runtime = RuntimeProcess(tmp_path, models / "current")
    assert runtime.proc.wait(timeout=60) == 1
    runtime.stop()
    errors = [line for line in runtime.log().splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "new.ts" in errors[0] and "fallback" in errors[0] and "old.ts" in errors[0]
    assert "Traceback" not in runtime.log()
