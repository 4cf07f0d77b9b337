"""/input as a hostile or broken Pd could send it, to the real runtime process: grains of the wrong
length, NaN, and a flood at ten times the grain rate are dropped and counted by reason; what is kept is
coalesced (the newest grain wins), so the runtime's CPU stays bounded and a knob still answers at once."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from tests.support.osc_peer import OscPeer
from tests.support.runtime_helpers import RuntimeProcess, wait_until

FACTORY = REPO / "models" / "factory.ts"
GRAIN_RATE = 22050 / 1024  # what Pd sends: one /input per grain period


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def tone(cycles: float) -> list[float]:
    return list(0.3 * np.sin(2 * np.pi * cycles * np.arange(1024) / 1024))


@pytest.fixture
def runtime_and_pd(tmp_path: Path):
    """The runtime following its input, virtual knobs on, and a peer playing Pd's side."""
    peer = OscPeer()
    runtime = RuntimeProcess(tmp_path, FACTORY, pd_port=peer.port, controls="virtual",
                             extra=("--listen", "follow"))
    peer.runtime_port = runtime.port
    try:
        peer.wait_for(lambda: peer.of("/model"), timeout=30)
        runtime.wait_status(lambda s: s["decodes"] >= 1, "the first decode")
        yield runtime, peer
    finally:
        runtime.stop()
        peer.close()


def send_inputs(peer: OscPeer, count: int, per_second: float) -> None:
    start = time.monotonic()
    for i in range(count):
        peer.send("/input", i, *tone(3 + i % 5))
        delay = start + (i + 1) / per_second - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def test_wrong_length_and_nan_are_dropped_and_counted(runtime_and_pd) -> None:
    runtime, peer = runtime_and_pd
    peer.send("/input", 1, *tone(3)[:1000])  # 1000 samples for a 1024-sample model
    peer.send("/input", 2, *([math.nan] + tone(3)[1:]))
    peer.send("/input", 3, *tone(3), 0.5)  # one too many: longer than any /input of this model
    status = runtime.wait_status(
        lambda s: s["osc_drops"].get("type_tags", 0) == 1 and s["osc_drops"].get("value", 0) == 1
        and s["osc_drops"].get("oversize", 0) == 1, "the three drops")
    assert status["input_received"] == 0, "nothing malformed reached the encoder"


def test_a_flood_is_rate_limited_coalesced_and_knobs_stay_responsive(runtime_and_pd) -> None:
    runtime, peer = runtime_and_pd
    seconds = 3.0
    # the baseline, in the same run: the grain rate Pd really sends
    before = cpu_seconds(runtime.proc.pid)
    send_inputs(peer, int(GRAIN_RATE * seconds), GRAIN_RATE)
    normal_cpu = cpu_seconds(runtime.proc.pid) - before
    normal = runtime.wait_status(lambda s: s["input_received"] >= int(GRAIN_RATE * seconds) - 2, "the inputs")
    # ten times that
    before = cpu_seconds(runtime.proc.pid)
    flooding = time.monotonic()
    sent = int(10 * GRAIN_RATE * seconds)
    grains_before = len(peer.of("/grain"))
    # a knob in the middle of the flood
    flood = threading.Thread(target=send_inputs, args=(peer, sent, 10 * GRAIN_RATE))
    flood.start()
    time.sleep(seconds / 2)
    slot0_before = sum(1 for g in peer.of("/grain") if g[0] == 0)
    knob_at = time.monotonic()
    peer.send("/knob", 1, 0.95)
    wait_until(lambda: sum(1 for g in peer.of("/grain") if g[0] == 0) >= slot0_before + 2, 5, "grains")
    knob_ms = (time.monotonic() - knob_at) * 1e3
    flood.join()
    flood_cpu = cpu_seconds(runtime.proc.pid) - before
    elapsed = time.monotonic() - flooding
    status = runtime.wait_status(
        lambda s: s["input_received"] + s["osc_drops"].get("input_rate", 0)
        >= normal["input_received"] + sent - 2, "every flooded datagram accounted for")
    accepted = status["input_received"] - normal["input_received"]
    dropped = status["osc_drops"].get("input_rate", 0)
    print(f"flood: {sent} sent, {accepted} accepted, {dropped} dropped for rate, "
          f"{status['input_coalesced']} coalesced; CPU {flood_cpu:.2f} s vs {normal_cpu:.2f} s at the "
          f"grain rate; knob answered in {knob_ms:.0f} ms; {len(peer.of('/grain')) - grains_before} grains")
    # Pd's own rate is let through (twice it, bursts of 4); everything beyond is dropped and counted
    assert accepted <= 2 * GRAIN_RATE * elapsed + 8
    assert dropped >= sent - accepted - 2 and dropped > sent / 2
    # bounded: at most what twice the grain rate costs, with room for parsing the dropped datagrams
    assert flood_cpu < 3 * normal_cpu + 0.5, (flood_cpu, normal_cpu)
    assert knob_ms < 250, knob_ms
