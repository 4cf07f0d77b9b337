"""The patch's OSC link over real UDP on 127.0.0.1, in real time: pyliblo3 and liblo-tools' oscsend/oscdump.

Pd is started the way the runtime starts it (`pd -nogui -noaudio -send "gb_ports P R" pd/main.pd`) on
free ports; every test has its own Pd, killed by the fixture's finalizer.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.conftest import REPO, free_udp_port
from tests.support.osc_peer import OscPeer
from tests.support.pd_live import start_pd, stop

pytestmark = pytest.mark.skipif(shutil.which("pd") is None, reason="needs Pd (apt: puredata-core)")
HOST = "127.0.0.1"
GRAIN = 1024


@pytest.fixture
def pd_link(tmp_path: Path) -> Iterator[OscPeer]:
    """A running patch on free ports and a runtime peer that has seen it answer a /ping."""
    pd_port, runtime_port = free_udp_port(), free_udp_port()
    runtime = OscPeer(runtime_port=pd_port, port=runtime_port)
    proc = start_pd(tmp_path, pd_port, runtime_port, f"gb_record_dir {tmp_path}")
    try:
        ready = None
        for attempt in range(60):  # poll: Pd takes a moment to load and bind
            runtime.send("/ping", 1000 + attempt)
            ready = runtime.wait_for(lambda: runtime.first("/pong"), timeout=0.5)
            if ready or proc.poll() is not None:
                break
        assert ready, f"Pd never answered /ping:\n{(tmp_path / 'pd.log').read_text()}"
        runtime.send("/model", 22050, GRAIN, 8, 8)
        yield runtime
    finally:
        stop(proc)
        runtime.close()


def test_ping_pong_with_pyliblo3(pd_link: OscPeer) -> None:
    pd_link.send("/ping", 4242)
    assert pd_link.wait_for(lambda: pd_link.first("/pong", [4242])) == [4242]


def test_grain_lands_in_its_slot_with_pyliblo3(pd_link: OscPeer) -> None:
    samples = np.random.default_rng(3).uniform(-1, 1, GRAIN).astype(np.float32)
    pd_link.send("/grain", 5, *[float(v) for v in samples])
    ack = pd_link.wait_for(lambda: pd_link.first("/ack", [5]))
    assert ack is not None, "no /ack for slot 5"
    assert math.isclose(ack[1], float(samples.sum()), abs_tol=1e-3 * GRAIN)


def wait_for_text(path: Path, needle: str, timeout: float = 15.0,
                  poke: Callable[[], None] | None = None) -> str:
    """Poll a file until it contains needle (calling poke, if given, between polls); returns the text."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text()
        if needle in text:
            break
        if poke:
            poke()
        time.sleep(0.2)
    return text


@pytest.mark.skipif(not (shutil.which("oscsend") and shutil.which("oscdump")),
                    reason="needs liblo-tools (oscsend, oscdump)")
def test_oscsend_and_oscdump_round_trips(tmp_path: Path) -> None:
    """The independent client: oscsend sends /ping and a 1024-float /grain; oscdump is the runtime port."""
    pd_port, dump_port = free_udp_port(), free_udp_port()
    dump_file = tmp_path / "dump.txt"
    with dump_file.open("w") as out:
        dump = subprocess.Popen(["oscdump", "-L", str(dump_port)], stdout=out, stderr=subprocess.STDOUT)
    proc = start_pd(tmp_path, pd_port, dump_port)
    try:
        def oscsend(*args: str) -> None:
            subprocess.run(["oscsend", HOST, str(pd_port), *args], check=True, timeout=10)

        text = wait_for_text(dump_file, "/pong i 77", timeout=30, poke=lambda: oscsend("/ping", "i", "77"))
        assert "/pong i 77" in text, f"{text}\n{(tmp_path / 'pd.log').read_text()}"
        oscsend("/model", "iiii", "22050", str(GRAIN), "8", "8")
        samples = [round(math.sin(k * 0.05) * 0.7 + 0.1, 6) for k in range(GRAIN)]
        oscsend("/grain", "i" + "f" * GRAIN, "6", *map(str, samples))
        text = wait_for_text(dump_file, "/ack")
        line = next((x for x in text.splitlines() if "/ack" in x), "")
        fields = line.split()
        assert fields[fields.index("/ack") + 1 :][:2] == ["if", "6"], line
        assert math.isclose(float(fields[-1]), sum(samples), abs_tol=1e-3 * GRAIN), line
    finally:
        stop(proc)
        stop(dump)


def test_malformed_messages_over_udp_are_dropped_and_pd_plays_on(pd_link: OscPeer, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for slot in range(8):
        pd_link.send("/grain", slot, *[float(v) for v in rng.uniform(-0.5, 0.5, GRAIN)])
    pd_link.send("/param", "density", 60.0)
    pd_link.send("/param", "reverb", 0.0)
    assert pd_link.wait_for(lambda: len([m for m in pd_link.messages if m[0] == "/ack"]) == 8)
    for path, args in [("/grain", (0, 0.5, 0.5)), ("/grain", ("x",) + (0.1,) * GRAIN), ("/model", (1, 2)),
                       ("/param", (1.0, "gain")), ("/param", ("gain", float("nan"))), ("/nope", (1,)),
                       ("/ping", ("id",)), ("/record", (1,)), ("/trigger", ("now",))]:
        pd_link.send(path, *args)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:  # not OSC at all
        raw.sendto(b"\xff\x00 garbage", (HOST, pd_link.runtime_port))
    pd_link.send("/ping", 99)
    assert pd_link.wait_for(lambda: pd_link.first("/pong", [99])), "Pd stopped answering"
    wav = tmp_path / "after.wav"  # the recordings folder is tmp_path (gb_record_dir, see pd_link)
    pd_link.send("/record", 1, wav.name)
    time.sleep(1.0)  # real time: Pd records one second of what it plays
    pd_link.send("/record", 0, "")
    pd_link.send("/ping", 100)
    assert pd_link.wait_for(lambda: pd_link.first("/pong", [100]))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (wav.exists() and wav.stat().st_size > 10000):
        time.sleep(0.1)
    audio, _ = soundfile.read(wav, dtype="float32")
    assert np.isfinite(audio).all()
    assert np.sqrt(np.mean(audio**2)) > 0.01, "Pd went silent after malformed messages"


def test_record_writes_plain_names_into_the_recordings_folder_only(pd_link: OscPeer, tmp_path: Path) -> None:
    """Any local sender can say /record: it may only name a file in the folder Pd was given."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "sub").mkdir(parents=True)
    escape = f"escape-{tmp_path.name}.wav"  # "../" from the recordings folder would land beside tmp_path
    refused = [str(elsewhere / "absolute.wav"), f"../{escape}", "elsewhere/sub.wav", ".hidden.wav",
               "x" * 70 + ".wav", "tab\tname.wav", ""]
    for name in refused:
        pd_link.send("/record", 1, name)
        pd_link.send("/record", 0, "")
    pd_link.send("/record", 2, "two.wav")
    pd_link.send("/record", 1, "take.wav")
    time.sleep(0.5)  # real time: Pd records half a second
    pd_link.send("/record", 0, "")
    pd_link.send("/ping", 7)
    assert pd_link.wait_for(lambda: pd_link.first("/pong", [7]))
    take = tmp_path / "take.wav"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (take.exists() and soundfile.info(str(take)).frames > 0):
        time.sleep(0.05)
    assert soundfile.info(str(take)).frames > 0.3 * 44100
    written = sorted(q.relative_to(tmp_path).as_posix() for q in tmp_path.rglob("*.wav"))
    assert written == ["take.wav"], written
    assert not (tmp_path.parent / escape).exists()
    assert not list((REPO / "pd").glob("*.wav")) and not (REPO / escape).exists()  # relative to the patch
    log = (tmp_path / "pd.log").read_text()
    assert log.count("grainbox: dropped record name must be a plain file name") == len(refused), log
    assert log.count("grainbox: dropped record on must be 0 or 1") == 1, log


def test_hello_and_the_gui_s_knobs_and_keys_reach_the_runtime(tmp_path: Path) -> None:
    """On load Pd says /hello; a virtual knob (gb_knob 3 on Pd's bus does what dragging its slider does)
    and a key send /knob, /note."""
    pd_port, runtime_port = free_udp_port(), free_udp_port()
    runtime = OscPeer(runtime_port=pd_port, port=runtime_port)
    proc = start_pd(tmp_path, pd_port, runtime_port, "gb_knob 3 0.25", "gb_note_in 64 100",
                    "gb_note_in 64 0")
    try:
        assert runtime.wait_for(lambda: runtime.first("/hello") is not None, timeout=20), "no /hello"
        assert runtime.wait_for(lambda: runtime.first("/knob")) == [3, 0.25]
        assert runtime.wait_for(lambda: runtime.first("/note")) == [64, 100]
        assert runtime.wait_for(lambda: runtime.first("/note", [64, 0])) == [64, 0]
    finally:
        stop(proc)
        runtime.close()
