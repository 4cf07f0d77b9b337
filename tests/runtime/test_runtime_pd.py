"""End to end: the real runtime process and the real Pd (headless, pd/main.pd) over real OSC on 127.0.0.1.

What Pd stored is read from Pd's side: each /grain is answered by `/ack slot checksum`, the sum of the
samples as Pd wrote them into its table (docs/osc.md); the runtime reports those in status.json
(`pd_slot_sums`). The test computes the grains it expects from the model itself and compares.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyliblo3 as liblo
import pytest

from runtime.artifact import load_model
from tests.conftest import free_udp_port
from tests.support.runtime_helpers import REPO, RuntimeProcess, write_checksum_model
from tests.support.runtime_pd import PdProcess, pd_available

pytestmark = pytest.mark.skipif(not pd_available(), reason="needs Pd (apt: puredata-core) and pd/main.pd")

SLOTS = 8


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[RuntimeProcess, PdProcess, Path]]:
    model = write_checksum_model(tmp_path / "model.ts")
    pd_port = free_udp_port()
    runtime = RuntimeProcess(tmp_path, model, pd_port=pd_port, controls="virtual")
    pd = PdProcess(tmp_path / "pd", pd_port, runtime.port)
    pd.start()
    try:
        yield runtime, pd, model
    finally:
        pd.kill()
        runtime.stop()


def send_knob(port: int, index: int, value: float) -> None:
    """What main.pd's virtual knob sends: /knob number value (knob1 is 1), with types ,if (docs/osc.md)."""
    liblo.send(liblo.Address("127.0.0.1", port, liblo.UDP), liblo.Message("/knob", index, float(value)))


def expected_sum(model_path: Path, knob0: float) -> float:
    """The slot grain's sample sum for pot 1 at knob0, the other axes centred and spray 0 (the start)."""
    model = load_model(model_path)
    point = model.anchors[0] + (2 * knob0 - 1) * 2 * model.scales[0] * model.axes[0]
    return float(model.decode(point[None]).double().sum())


def in_sync(status: dict, acks_at_least: int = SLOTS) -> bool:
    return (
        status.get("pd_acks", 0) >= acks_at_least
        and status.get("pd_slots_confirmed") == SLOTS
        and status.get("pd_ack_mismatches") == 0
    )


def test_a_virtual_knob_move_puts_new_grains_in_pds_tables_and_a_pd_restart_gets_them_back(rig) -> None:
    runtime, pd, model = rig
    tolerance = 1e-3 * 1024
    start = runtime.wait_status(in_sync, "Pd to confirm every slot of the starting grains", timeout=60)
    centre = expected_sum(model, 0.5)
    assert all(abs(s - centre) < tolerance for s in start["pd_slot_sums"]), start["pd_slot_sums"]

    send_knob(runtime.port, 1, 0.9)  # knob1 of the virtual knob box: axis 1
    moved_to = expected_sum(model, 0.9)
    assert abs(moved_to - centre) > 100 * tolerance, "the fixture's point must change the grain"
    moved = runtime.wait_status(
        lambda s: in_sync(s, start["pd_acks"] + SLOTS)
        and all(abs(x - moved_to) < tolerance for x in s["pd_slot_sums"]),
        "Pd to hold the grains of the new point",
    )

    send_knob(runtime.port, 8, 1.0)  # knob8: spray, so every slot gets its own grain
    spread = runtime.wait_status(
        lambda s: in_sync(s, moved["pd_acks"] + SLOTS)
        and len({round(x, 1) for x in s["pd_slot_sums"]}) == SLOTS,
        "Pd to hold 8 different grains",
    )  # fmt: skip
    assert abs(spread["pd_slot_sums"][0] - moved_to) < tolerance, "slot 0 stays at the point itself"

    pd.kill()  # Pd crashes: its tables are gone
    pd.start()  # and systemd brings it back; it says /hello until a /model arrives
    restored = runtime.wait_status(
        lambda s: s["pd_hellos"] > spread["pd_hellos"] and in_sync(s, spread["pd_acks"] + SLOTS),
        "the restarted Pd to get every slot back",
        timeout=60,
    )
    assert restored["pd_slot_sums"] == pytest.approx(spread["pd_slot_sums"], abs=tolerance)
    assert restored["osc_malformed"] == 0, restored["osc_last_drop"]
    assert pd.alive(), pd.log()

    doctor = subprocess.run(
        [sys.executable, "-m", "runtime", "doctor", "--model", str(model), "--controls", "virtual",
         "--osc-port", str(runtime.port), "--pd-port", str(runtime.pd_port),
         "--state-dir", str(runtime.state_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "OK    Pd: the running runtime heard Pd" in doctor.stdout, doctor.stdout + doctor.stderr
    assert "OK    model: checksum-test" in doctor.stdout

    runtime.stop()  # with the runtime's port free, the doctor listens there and pings Pd itself
    doctor = subprocess.run(
        [sys.executable, "-m", "runtime", "doctor", "--model", str(model), "--controls", "virtual",
         "--osc-port", str(runtime.port), "--pd-port", str(runtime.pd_port), "--timeout", "5"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert f"OK    Pd: answered on 127.0.0.1:{runtime.pd_port}" in doctor.stdout, doctor.stdout
