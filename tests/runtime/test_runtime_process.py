"""The real `python -m runtime` process: the CLI with no config at all, 10,000 hostile OSC messages, and
model reloads (SIGHUP, OSC /reload, a swapped symlink) where a corrupt model keeps the old one playing."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_udp_port
from tests.support.model_fixtures import write_broken, write_valid
from tests.support.osc_peer import OscPeer
from tests.support.runtime_helpers import REPO, RuntimeProcess, wait_until

FUZZ_MESSAGES = 10_000


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def pd_peer() -> Iterator[OscPeer]:
    """A liblo server where Pd would listen, recording what the runtime sends (Pd itself: test_runtime_pd)."""
    peer = OscPeer()
    yield peer
    peer.close()


def test_run_with_no_config_file_uses_the_defaults_and_logs_to_stdout(tmp_path: Path) -> None:
    model = write_valid(tmp_path / "model.ts")
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", "--model", str(model), "--osc-port", str(free_udp_port()),
         "--pd-port", str(free_udp_port())],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    status = home / ".local" / "state" / "grainbox" / "status.json"  # the default state directory
    try:
        wait_until(status.exists, timeout=60, what="status.json in the default state directory")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert "loaded model tiny-test" in out and "listening on 127.0.0.1:" in out
    assert "stopped" in out.splitlines()[-1]
    assert (home / ".local" / "state" / "grainbox" / "presets").is_dir()
    assert json.loads(status.read_text())["torch_threads"] == 1


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["run", "--model", "/no/m.ts", "--controls", "none"], 1, "/no/m.ts does not exist"),
        (["run", "--config", "/nonexistent/box.toml"], 2, "copy deploy/box.toml"),
        (["run", "--controls", "knobs"], 2, "invalid choice: 'knobs'"),
        (["run", "--osc-port", "9001", "--pd-port", "9001"], 2, "both 9001"),
    ],
)
def test_bad_command_lines_say_what_is_wrong(tmp_path: Path, args: list[str], code: int, words: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runtime", *args, "--state-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stdout + result.stderr


def hostile_messages(rng: random.Random) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Endless OSC messages the protocol forbids: every one must be dropped and counted (docs/osc.md)."""
    nan, inf = math.nan, math.inf
    kinds = [
        lambda: (f"/{rng.choice(['knobs', 'grain', 'x', 'knob/0', 'KNOB'])}{rng.randrange(99)}", (1,)),
        lambda: ("/", ()),
        lambda: ("/knob", ()),  # empty
        lambda: ("/knob", (rng.randrange(1, 9),)),  # too few
        lambda: ("/knob", (1, 0.5, 0.5)),  # too many
        lambda: ("/knob", (0.5, 0.5)),  # index as a float
        lambda: ("/knob", (1, "loud")),  # a string value
        lambda: ("/knob", (rng.randrange(1, 9), rng.choice([nan, inf, -inf]))),
        lambda: ("/knob", (rng.choice([-1, 0, 9, 2**31 - 1, -(2**31)]), 0.5)),  # no such knob
        lambda: ("/knob", (("h", 1), ("d", 0.5))),  # 64-bit types
        lambda: ("/knob", (("b", b"\x00\xff" * 8), ("N", None))),  # blob and nil
        lambda: ("/knob", tuple(rng.random() for _ in range(rng.randrange(1000, 8000)))),  # huge
        lambda: ("/note", (rng.choice([-1, 128, 1000]), 100)),
        lambda: ("/note", (60, rng.choice([-5, 128]))),
        lambda: ("/note", (60.0, 100.0)),
        lambda: ("/ack", (0, nan)),
        lambda: ("/ack", (-1, 1.0)),
        lambda: ("/ack", (0, 1)),  # checksum as int
        lambda: ("/hello", (1,)),
        lambda: ("/reload", ("now",)),
        lambda: ("/ping", (1.5,)),
        lambda: ("/ping", ()),
        lambda: ("/pong", ("x",)),
        lambda: ("/grain", (0, *[0.0] * 1024)),  # runtime -> Pd only
        lambda: ("/knob", (("T", True), ("F", False))),
        lambda: ("/knob", (("S", "sym"), ("c", "c"))),
        lambda: ("/knob", (("m", (1, 2, 3, 4)), ("t", 1.5))),
        # the play surface's addresses (the patch's SOUND, PRESET, MODEL and MIDI panels)
        lambda: ("/midimap", (rng.choice([0, 257, -1]), 21, "knob1")),  # no such MIDI channel
        lambda: ("/midimap", (1, rng.choice([-1, 128, 2**31 - 1]), "knob1")),  # no such controller
        lambda: ("/midimap", (1, 21, rng.choice(["", "knob\n1", "k" * 65]))),  # not a name
        lambda: ("/midimap", (1.0, 21.0, "knob1")),
        lambda: ("/midimap_clear", (1,)),
        lambda: ("/model_load", (rng.choice(["", "../models/x.ts\x07", "m" * 65 + ".ts"]),)),
        lambda: ("/models", (rng.choice([1001, -1001, 2**31 - 1]),)),
        lambda: ("/anchor_select", (rng.choice([0, 1025, -(2**31)]),)),
        lambda: ("/anchor_select", (rng.choice(["", "\x1b[2J", "s" * 65]),)),
        lambda: ("/anchor_select", (1.5,)),
        lambda: ("/anchor_step", (rng.choice([1001, -(2**31)]),)),
        lambda: ("/preset_step", (rng.choice([1001, -1001]),)),
        lambda: ("/preset_save", (rng.choice(["a\tb", "p" * 65]),)),
        lambda: ("/preset_recall", (1,)),
        lambda: ("/param", (rng.choice(["no_such", "TONE", "listen "]), 0.5)),
        lambda: ("/param", ("tone", rng.choice([nan, inf]))),
    ]
    while True:
        yield rng.choice(kinds)()


def test_10000_hostile_messages_are_dropped_counted_and_the_runtime_keeps_serving(
    tmp_path: Path, pd_peer: OscPeer
) -> None:
    runtime = RuntimeProcess(tmp_path, write_valid(tmp_path / "model.ts"), pd_port=pd_peer.port)
    try:
        runtime.wait_status(lambda s: s["pid"] == runtime.proc.pid, "the runtime to start", timeout=60)
        client = OscPeer(runtime.port)
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rng = random.Random(7)
        messages = hostile_messages(rng)
        pings = 0
        for sent in range(1, FUZZ_MESSAGES + 1):
            path, args = next(messages)
            client.send(path, *args)
            # Flow control, so no datagram is lost to a full socket buffer and the count can be exact: the
            # runtime handles messages in order, so its /pong means everything before the /ping was handled.
            # The /pong goes to Pd's port only, whoever asked.
            if sent % 25 == 0 or len(args) > 500:
                raw.sendto(rng.randbytes(rng.randrange(0, 600)), ("127.0.0.1", runtime.port))  # not OSC
                pings += 1
                client.send("/ping", pings)
                assert pd_peer.wait_for(lambda n=pings: [n] in pd_peer.of("/pong"), timeout=60), runtime.log()
        raw.close()
        dropped = FUZZ_MESSAGES + pings  # every hostile message and every random datagram
        status = runtime.wait_status(lambda s: s["osc_malformed"] == dropped, f"{dropped} drops counted")
        assert status["osc_received"] == dropped + pings  # the pings were answered, not dropped
        assert client.of("/pong") == []
        reasons = status["osc_drops"]
        assert sum(reasons.values()) == dropped, reasons
        assert {"not_osc", "oversize", "type_tags", "value", "unknown_address"} <= set(reasons), reasons
        pd_peer.clear()
        client.send("/hello")  # and it still serves: the model and every slot again
        assert pd_peer.wait_for(lambda: len(pd_peer.of("/grain")) == 8, timeout=30)
        assert pd_peer.of("/model") == [[22050, 1024, 16, 8]]
        client.close()
    finally:
        assert runtime.stop() == 0, runtime.log()


def swap_symlink(link: Path, target: Path) -> None:
    """What deploy/flash.sh does: a new link beside the old, renamed over it in one step."""
    temp = link.with_name(link.name + ".new")
    temp.unlink(missing_ok=True)
    temp.symlink_to(target.name)
    os.replace(temp, link)


def test_reload_on_sighup_osc_and_symlink_swap_and_a_corrupt_model_keeps_the_old_one(
    tmp_path: Path, pd_peer: OscPeer
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    a = write_valid(models / "a.ts", seed=1, name="model-a")
    b = write_valid(models / "b.ts", seed=2, name="model-b", grain_size=512)
    c = write_valid(models / "c.ts", seed=3, name="model-c")
    corrupt = write_broken(models / "corrupt.ts", "truncated")
    nan = write_broken(models / "nan.ts", "decode_nan")
    current = models / "current"
    current.symlink_to(a.name)
    runtime = RuntimeProcess(tmp_path, current, pd_port=pd_peer.port)
    client = OscPeer(runtime.port)
    try:
        runtime.wait_status(lambda s: s["model_sha256"] == sha256(a), "model a", timeout=60)

        swap_symlink(current, corrupt)  # the watcher notices the new target
        status = runtime.wait_status(lambda s: s["reload_failures"] == 1, "the corrupt model to be refused")
        assert status["model_sha256"] == sha256(a) and status["model_name"] == "model-a"
        assert "corrupt.ts" in status["last_error"] and status["reloads"] == 0
        pd_peer.clear()
        client.send("/hello")  # still playing a: its /model and grains
        assert pd_peer.wait_for(lambda: len(pd_peer.of("/grain")) == 8)
        assert pd_peer.of("/model") == [[22050, 1024, 16, 8]]

        swap_symlink(current, nan)  # a model whose decode is NaN: refused on SIGHUP too
        runtime.signal(signal.SIGHUP)
        status = runtime.wait_status(lambda s: s["reload_failures"] >= 2, "the NaN model to be refused")
        assert "NaN" in status["last_error"] or "finite" in status["last_error"], status["last_error"]
        assert status["model_sha256"] == sha256(a)

        swap_symlink(current, b)
        pd_peer.clear()
        status = runtime.wait_status(lambda s: s["model_sha256"] == sha256(b), "model b after the swap")
        assert status["reloads"] == 1 and status["last_error"] is None
        assert pd_peer.wait_for(lambda: [22050, 512, 16, 8] in pd_peer.of("/model"))
        assert pd_peer.wait_for(lambda: any(len(g) == 513 for g in pd_peer.of("/grain")))

        c.replace(b)  # b's file rewritten in place (same path, new content): then an explicit /reload
        client.send("/reload")
        status = runtime.wait_status(lambda s: s["model_name"] == "model-c", "model c after /reload")
        assert status["reloads"] >= 2 and status["model_sha256"] == sha256(b)
        assert "reloading" in runtime.log()
    finally:
        client.close()
        assert runtime.stop() == 0, runtime.log()


def test_doctor_names_each_problem_and_its_fix(tmp_path: Path) -> None:
    broken = write_broken(tmp_path / "broken.ts", "decode_out_of_range")
    result = subprocess.run(
        [sys.executable, "-m", "runtime", "doctor", "--model", str(broken), "--controls", "virtual",
         "--osc-port", str(free_udp_port()), "--pd-port", str(pd_port := free_udp_port()),
         "--state-dir", str(tmp_path), "--timeout", "0.5"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = result.stdout.splitlines()[1:]  # after where it runs (tests/runtime/test_runtime_doctor.py)
    assert result.returncode == 1, result.stdout + result.stderr
    assert [line.split()[1].rstrip(":") for line in lines] == ["audio", "Pd", "SPI", "model"]
    assert lines[1].startswith(f"FAIL  Pd: no /pong from 127.0.0.1:{pd_port}") and "start it with" in lines[1]
    assert lines[2] == "SKIP  SPI: not needed with controls = virtual"
    assert lines[3].startswith("FAIL  model:") and "broken.ts" in lines[3] and "[-1, 1]" in lines[3]
