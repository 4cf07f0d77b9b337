"""Where the runtime runs: on the box (a Raspberry Pi, or any machine deploy/setup-pi.sh installed) or on
a desktop, and the advice that follows from it.

The same commands run in both places, but much of what they can say holds in only one: a desktop has no
knob box, no SPI and no grainbox-pd unit, so `systemctl status grainbox-pd` is no help there, while
`pd pd/main.pd` is. detect() decides once, from files any Linux has, without importing gpiozero.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

UNITS = ("grainbox-runtime.service", "grainbox-pd.service")  # what setup-pi.sh installs
PATCH = Path(__file__).resolve().parent.parent / "pd" / "main.pd"


@dataclass(frozen=True)
class Host:
    """The machine in one word (`kind`: "box" or "desktop") and the evidence, in words (`why`)."""

    kind: str
    why: str

    @property
    def is_box(self) -> bool:
        return self.kind == "box"


def detect(root: Path = Path("/")) -> Host:
    """The box when the device tree names a Raspberry Pi or setup-pi.sh's units are installed; else a
    desktop. `root` is the file system to look at (tests pass a folder laid out like one)."""
    try:
        model = (root / "proc/device-tree/model").read_bytes().rstrip(b"\0").decode(errors="replace")
    except OSError:
        model = ""
    if "Raspberry Pi" in model:
        return Host("box", model.strip())
    units = [u for u in UNITS if (root / "etc/systemd/system" / u).exists()]
    if units:
        return Host("box", f"{units[0]} is installed")
    return Host("desktop", "not a Raspberry Pi, and no grainbox units installed")


BOX_CONFIG = Path("etc/grainbox/box.toml")  # what setup-pi.sh writes and grainbox-runtime.service reads


def box_config(host: Host, root: Path = Path("/")) -> Path | None:
    """The box's own config file when this is the box and it is there: the doctor reads it unless told
    otherwise, so it checks the ports, state folder and model the running box uses."""
    path = root / BOX_CONFIG
    return path if host.is_box and path.is_file() else None


def pd_start_hint(host: Host, pd_port: int, runtime_port: int) -> str:
    """How to start Pd here so that it talks to a runtime on `runtime_port`."""
    if host.is_box:
        return "start it with `sudo systemctl start grainbox-pd` (`systemctl status grainbox-pd` says why)"
    patch = os.path.relpath(PATCH)
    if patch.startswith(".."):
        patch = str(PATCH)
    ports = "" if (pd_port, runtime_port) == (9001, 9000) else f' -send "gb_ports {pd_port} {runtime_port}"'
    return f"start it with `pd{ports} {patch}` (its window has the virtual knobs)"


def udp_port_holder(port: int, proc: Path = Path("/proc")) -> tuple[int, str] | None:
    """(pid, command line) of the process holding UDP `port`, from /proc; None when it cannot be told
    (not Linux, or the process belongs to another user)."""
    inodes = set()
    for table in ("net/udp", "net/udp6"):
        try:
            rows = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
            if any(os.readlink(fd) in inodes for fd in fds):
                argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
                return int(pid_dir.name), " ".join(a.decode(errors="replace") for a in argv if a)
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return None


def have(tool: str) -> bool:
    """Whether `tool` is on PATH, so advice names only commands that exist here."""
    return shutil.which(tool) is not None


PD_HINT_AFTER_S = 6.0  # the runtime pings every 2 s: three unanswered pings, longer than Pd takes to load


class PdHint:
    """One WARNING, with how to start Pd here, once Pd has not been heard for PD_HINT_AFTER_S; again only
    after Pd has answered and gone quiet once more (a log that repeats it every ping would bury the rest)."""

    def __init__(self, host: Host, pd_port: int, runtime_port: int, started: float) -> None:
        self.host, self.pd_port, self.runtime_port = host, pd_port, runtime_port
        self.started = started
        self.warned = False

    def check(self, last_heard: float | None, now: float) -> None:
        """`last_heard`: time.monotonic() of Pd's last message (None: never); `now`: the same clock."""
        silent = now - (last_heard if last_heard is not None else self.started)
        if silent < PD_HINT_AFTER_S:
            self.warned = False
        elif not self.warned:
            self.warned = True
            logging.getLogger("grainbox").warning(
                "Pd is not answering on 127.0.0.1:%d (nothing heard for %.0f s), so nothing plays; %s",
                self.pd_port,
                silent,
                pd_start_hint(self.host, self.pd_port, self.runtime_port),
            )
