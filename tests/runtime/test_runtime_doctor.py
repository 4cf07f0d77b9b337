"""`python -m runtime doctor` knows where it runs: on a desktop it skips what only the box has and gives
fixes that work there; on the box it keeps the box's advice; a port held by another runtime is named as
such, not blamed on Pd."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from runtime.config import Config
from runtime.doctor import run_doctor
from runtime.host import Host, box_config, detect, have
from tests.conftest import free_udp_port
from tests.support.model_fixtures import write_valid
from tests.support.runtime_helpers import REPO, RuntimeProcess

DESKTOP = not detect().is_box


def _doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runtime", "doctor", "--timeout", "0.3", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_detect_reads_the_device_tree_and_setup_pis_units(tmp_path: Path) -> None:
    assert detect(tmp_path) == Host("desktop", "not a Raspberry Pi, and no grainbox units installed")
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\0")
    assert detect(tmp_path) == Host("box", "Raspberry Pi 4 Model B Rev 1.4")
    (tmp_path / "proc/device-tree/model").write_bytes(b"QEMU virt\0")  # an emulated Pi setup-pi installed
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/grainbox-pd.service").write_text("[Unit]\n")
    assert detect(tmp_path) == Host("box", "grainbox-pd.service is installed")


def test_on_the_box_the_doctor_reads_the_boxs_config_unless_told(tmp_path: Path) -> None:
    box, desktop = Host("box", "Raspberry Pi 5"), Host("desktop", "not a Raspberry Pi")
    assert box_config(box, tmp_path) is None  # setup-pi.sh has not written it
    (tmp_path / "etc/grainbox").mkdir(parents=True)
    (tmp_path / "etc/grainbox/box.toml").write_text("[state]\n")
    assert box_config(box, tmp_path) == tmp_path / "etc/grainbox/box.toml"
    assert box_config(desktop, tmp_path) is None


@pytest.mark.skipif(not DESKTOP, reason="this machine is set up as a box")
def test_on_a_desktop_the_doctor_says_so_and_gives_only_fixes_that_apply(tmp_path: Path) -> None:
    model = write_valid(tmp_path / "m.ts", name="desk-model")
    pd_port, osc_port = free_udp_port(), free_udp_port()
    result = _doctor("--model", str(model), "--state-dir", str(tmp_path / "state"),
                     "--osc-port", str(osc_port), "--pd-port", str(pd_port))  # fmt: skip
    print(result.stdout)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("INFO  here: a desktop (not a Raspberry Pi")
    assert [line.split()[1].rstrip(":") for line in lines] == ["here", "audio", "Pd", "SPI", "model"]
    assert lines[3].startswith("SKIP  SPI: a desktop has no knob box; `runtime run` plays virtual knobs")
    assert lines[2].startswith(f"FAIL  Pd: no /pong from 127.0.0.1:{pd_port}")
    assert f'`pd -send "gb_ports {pd_port} {osc_port}" pd/main.pd`' in lines[2]
    assert "systemctl" not in result.stdout  # no grainbox-pd unit on a desktop
    if not have("aplay"):
        assert "aplay" not in result.stdout
    assert lines[4] == f"OK    model: desk-model ({lines[4].split('(')[1].split(')')[0]}) from {model}"
    assert result.returncode == 1 and "Traceback" not in result.stderr  # Pd is not running: that is real


def test_on_the_box_the_doctor_keeps_the_boxs_advice(tmp_path: Path, capsys) -> None:
    config = replace(Config(), model_path=write_valid(tmp_path / "m.ts"), state_dir=tmp_path,
                     listen_port=free_udp_port(), pd_port=free_udp_port())  # fmt: skip
    assert run_doctor(config, timeout=0.2, host=Host("box", "Raspberry Pi 4 Model B Rev 1.4")) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "INFO  here: the box (Raspberry Pi 4 Model B Rev 1.4)"
    assert "systemctl start grainbox-pd" in lines[2]
    if not Path("/dev/spidev0.0").exists():
        assert lines[3].startswith("FAIL  SPI: /dev/spidev0.0 is missing; enable SPI")


def test_a_port_held_by_a_runtime_of_another_state_dir_is_named_not_blamed_on_pd(tmp_path: Path) -> None:
    model = write_valid(tmp_path / "m.ts")
    runtime = RuntimeProcess(tmp_path, model)
    try:
        runtime.wait_status(lambda s: s.get("pid") == runtime.proc.pid, "the runtime", timeout=60)
        result = _doctor("--model", str(model), "--controls", "virtual",
                         "--state-dir", str(tmp_path / "other"),
                         "--osc-port", str(runtime.port), "--pd-port", str(runtime.pd_port))  # fmt: skip
    finally:
        assert runtime.stop() == 0, runtime.log()
    print(result.stdout)
    line = next(line for line in result.stdout.splitlines() if "held by" in line)
    held = f"FAIL  OSC port: 127.0.0.1:{runtime.port} is held by a runtime (pid {runtime.proc.pid})"
    assert line.startswith(held)
    assert f"run the doctor with --state-dir {runtime.state_dir}" in line and str(tmp_path / "other") in line
    assert not any(x.startswith("FAIL  Pd") for x in result.stdout.splitlines())


def test_doctor_help_says_what_its_lines_mean() -> None:
    result = subprocess.run([sys.executable, "-m", "runtime", "doctor", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    text = " ".join(result.stdout.split())
    assert "(OK, WARN, SKIP or FAIL with what to do)" in text and "the box or a desktop" in text
