"""main.pd running in real time on free ports, started the way the runtime starts it
(`pd -nogui -noaudio -send "gb_ports P R" pd/main.pd`), and the runtime's side of its link."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import REPO, free_udp_port
from tests.support.osc_peer import OscPeer


def start_pd(workdir: Path, pd_port: int, runtime_port: int, *sends: str) -> subprocess.Popen[bytes]:
    """The patch as the runtime starts it: headless, no audio device, ports after load with -send.

    `sends` are more Pd messages delivered after load, as the GUI's objects would send them."""
    log = (workdir / "pd.log").open("w")
    extra = [arg for message in sends for arg in ("-send", message)]
    cmd = ["pd", "-nogui", "-noaudio", "-stderr", "-send", f"gb_ports {pd_port} {runtime_port}", *extra,
           str(REPO / "pd" / "main.pd")]
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    finally:
        log.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=10)


class Patch:
    """A running main.pd and the runtime's side of its link."""

    def __init__(self, workdir: Path) -> None:
        self.log_path = workdir / "pd.log"
        self.port, runtime_port = free_udp_port(), free_udp_port()
        self.runtime = OscPeer(runtime_port=self.port, port=runtime_port)
        self.proc: subprocess.Popen[bytes] = start_pd(workdir, self.port, runtime_port)
        assert self.runtime.wait_for(lambda: self.runtime.of("/hello"), timeout=30), self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def answered(self, ping_id: int) -> None:
        """Pd handles datagrams in order: its /pong means everything sent before the /ping was handled."""
        self.runtime.send("/ping", ping_id)
        assert self.runtime.wait_for(lambda: [ping_id] in self.runtime.of("/pong"), timeout=30), self.log()

    def close(self) -> None:
        stop(self.proc)
        self.runtime.close()
