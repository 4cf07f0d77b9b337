"""`python -m runtime doctor`: one line per thing the box needs, OK or FAIL, and for each FAIL the fix.

    INFO  here: the box (Raspberry Pi 4 Model B Rev 1.4)
    OK    audio: 2 output devices (default: bcm2835 Headphones)
    FAIL  Pd: no /pong from 127.0.0.1:9001 in 1 s; is Pd running main.pd with ports 9001 9000? start it
          with `sudo systemctl start grainbox-pd` (`systemctl status grainbox-pd` says why)
    OK    SPI: /dev/spidev0.0 present (MCP3008 on SPI0 CE0)
    OK    model: factory-synth (3f2a9c1b0e4d) from /var/lib/grainbox/models/current

Pd answers /ping on its port with /pong sent to the runtime's port (docs/osc.md), so the doctor listens on
the runtime's port. When the runtime is running that port is taken: the doctor then pings the runtime
(which answers the sender) and reads how long ago it last heard Pd from status.json instead.
It first says where it runs (runtime/host.py): on a desktop there is no knob box, SPI or grainbox-pd unit,
so those checks are skipped or their fixes are the desktop's (`pd pd/main.pd`, not systemctl), and a
missing sound card is a WARN (Pd runs with -noaudio; nothing to hear, but nothing broken).
Exit status: 0 when no line is FAIL (OK, SKIP, WARN and INFO are fine), 1 otherwise.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime.config import Config
from runtime.host import Host, detect, have, pd_start_hint, udp_port_holder

PD_FRESH_S = 10.0  # the runtime pings Pd every 2 s; older than this and Pd is not answering


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report."""

    verdict: str  # "OK", "FAIL", "WARN" (works, but worth knowing), "SKIP" (does not apply) or "INFO"
    what: str
    detail: str

    def line(self) -> str:
        return f"{self.verdict:<5} {self.what}: {self.detail}"


def check_here(host: Host) -> Finding:
    """Where the doctor runs, and so which of the lines below apply (on the box it reads box.toml too)."""
    if host.is_box:
        return Finding("INFO", "here", f"the box ({host.why})")
    return Finding("INFO", "here", f"a desktop ({host.why}): box-only checks are skipped")


def check_audio(host: Host | None = None) -> Finding:
    try:
        import sounddevice
    except (ImportError, OSError) as e:  # OSError: the PortAudio library itself is missing
        return Finding("FAIL", "audio", f"cannot use PortAudio ({e}); fix: sudo apt install libportaudio2")
    try:
        devices = [d for d in sounddevice.query_devices() if d["max_output_channels"] > 0]
    except Exception as e:  # PortAudio errors are plain Exceptions in sounddevice
        return Finding("FAIL", "audio", f"PortAudio cannot list devices: {e}")
    if not devices:
        if host is not None and not host.is_box:
            return Finding(
                "WARN",
                "audio",
                "no output device PortAudio can see: Pd can only run with -noaudio here, so nothing will be "
                "heard (`make demo` still records out/demo.wav)",
            )
        cards = "check `aplay -l`" if have("aplay") else "list the cards with `aplay -l` (package alsa-utils)"
        return Finding(
            "FAIL",
            "audio",
            f"no output device; plug in the sound card, {cards}, and that the user is in group audio",
        )
    names = ", ".join(d["name"] for d in devices[:4])
    return Finding("OK", "audio", f"{len(devices)} output device(s): {names}")


def check_spi(config: Config, dev_root: Path = Path("/dev"), host: Host | None = None) -> Finding:
    node = dev_root / f"spidev{config.spi_port}.{config.spi_device}"
    if config.controls != "box":
        return Finding("SKIP", "SPI", f"not needed with controls = {config.controls}")
    if host is not None and not host.is_box:
        return Finding(
            "SKIP", "SPI", "a desktop has no knob box; `runtime run` plays virtual knobs from Pd here"
        )
    if node.exists():
        return Finding("OK", "SPI", f"{node} present (MCP3008 on SPI{config.spi_port} CE{config.spi_device})")
    return Finding(
        "FAIL",
        "SPI",
        f"{node} is missing; enable SPI (`sudo raspi-config nonint do_spi 0`, or dtparam=spi=on in "
        "/boot/firmware/config.txt) and reboot",
    )


def check_model(config: Config) -> Finding:
    from runtime.artifact import ModelError, load_model

    try:
        model = load_model(config.model_path)
    except ModelError as e:
        message = str(e)
        named = str(config.model_path) in message
        return Finding("FAIL", "model", message if named else f"{config.model_path}: {message}")
    return Finding("OK", "model", f"{model.name} ({model.sha256[:12]}) from {config.model_path}")


def check_pd(config: Config, timeout: float, host: Host | None = None) -> Finding:
    from runtime.liblo_binding import liblo

    host = host or detect()
    heard = threading.Event()
    try:
        server = liblo.ServerThread(config.listen_port, liblo.UDP)
    except liblo.ServerError:
        return _check_pd_through_runtime(config, host)
    server.add_method("/pong", "i", lambda path, args: heard.set())
    server.add_method("/hello", "", lambda path, args: heard.set())  # a Pd with no model yet says hello
    server.start()
    try:
        target = liblo.Address("127.0.0.1", config.pd_port, liblo.UDP)
        server.send(target, liblo.Message("/ping", 1))
        answered = heard.wait(timeout)
    finally:
        server.stop()
        server.free()
    if answered:
        return Finding("OK", "Pd", f"answered on 127.0.0.1:{config.pd_port}")
    return Finding(
        "FAIL",
        "Pd",
        f"no /pong from 127.0.0.1:{config.pd_port} in {timeout:g} s; is Pd running main.pd with ports "
        f"{config.pd_port} {config.listen_port}? {pd_start_hint(host, config.pd_port, config.listen_port)}",
    )


def _check_pd_through_runtime(config: Config, host: Host) -> Finding:
    """The runtime holds the port: ask it whether it hears Pd (status.json's pd_last_heard_s)."""
    if not _runtime_answers(config.listen_port, config.status_path):
        return _port_taken(config)
    try:
        status = json.loads(config.status_path.read_text())
    except (OSError, ValueError) as e:
        return Finding("FAIL", "Pd", f"the runtime is running but {config.status_path} is unreadable: {e}")
    ago = status.get("pd_last_heard_s")
    if isinstance(ago, int | float) and ago <= PD_FRESH_S:
        return Finding("OK", "Pd", f"the running runtime heard Pd {ago:.1f} s ago")
    return Finding(
        "FAIL",
        "Pd",
        f"the running runtime has not heard Pd for {ago if ago is not None else 'ever'} s; "
        f"{pd_start_hint(host, config.pd_port, config.listen_port)}",
    )


def _port_taken(config: Config) -> Finding:
    """The runtime's port is held by something that does not report in our status.json: name it (a
    runtime started with another --state-dir, most often) rather than blame Pd."""
    port, where = config.listen_port, f"127.0.0.1:{config.listen_port}"
    holder = udp_port_holder(port)
    if holder is None:
        find = "find it with `ss -ulpn`" if have("ss") else "find it in /proc/net/udp"
        return Finding(
            "FAIL", "OSC port", f"{where} is held by another process; {find}, or use another --osc-port"
        )
    pid, command = holder
    argv = command.split()
    if "runtime" in argv and "run" in argv:
        same = next((f"{flag} {argv[argv.index(flag) + 1]}" for flag in ("--state-dir", "--config")
                     if flag in argv[:-1]), "the --config or --state-dir it was started with")  # fmt: skip
        return Finding(
            "FAIL",
            "OSC port",
            f"{where} is held by a runtime (pid {pid}) that does not report in {config.status_path}; "
            f"run the doctor with {same} to check Pd through it",
        )
    what = f"{where} is held by pid {pid} ({command[:80]})"
    return Finding("FAIL", "OSC port", f"{what}; stop it, or use another --osc-port")


def _runtime_answers(port: int, status_path: Path) -> bool:
    """Whether a live runtime says (in its status.json) that it holds `port`. The runtime answers /ping
    only to Pd's port, so asking it over OSC would need the doctor to pose as Pd."""
    try:
        status = json.loads(status_path.read_text())
        pid = int(status["pid"])
        os.kill(pid, 0)  # raises when no such process
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return status.get("osc_port") == port


def run_doctor(config: Config, timeout: float = 1.0, host: Host | None = None) -> int:
    """Print one line per check; 0 when nothing failed. `host`: where this runs (default: detected)."""
    host = host or detect()
    checks: list[tuple[str, Callable[[], Finding]]] = [
        ("here", lambda: check_here(host)),
        ("audio", lambda: check_audio(host)),
        ("Pd", lambda: check_pd(config, timeout, host)),
        ("SPI", lambda: check_spi(config, host=host)),
        ("model", lambda: check_model(config)),
    ]
    failed = 0
    for what, check in checks:
        started = time.monotonic()
        try:
            finding = check()
        except Exception as e:  # the doctor must finish its list whatever one check runs into
            finding = Finding("FAIL", what, f"the check itself failed: {e!r}")
        failed += finding.verdict == "FAIL"
        print(finding.line() + ("" if time.monotonic() - started < 5 else " (slow check)"), flush=True)
    return 1 if failed else 0
