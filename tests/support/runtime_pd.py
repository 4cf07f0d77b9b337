"""The real Pd, headless, playing the real pd/main.pd on chosen ports, for the runtime's end-to-end tests.

A throw-away driver patch holds `[main pd_port runtime_port]` (main.pd's creation arguments, docs/osc.md);
Pd runs with `-nogui -noaudio` in real time, so its sockets are live. `kill()` is a kill -9: Pd gets no
chance to say anything, as when it crashes on the box.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PD_DIR = REPO / "pd"
PD_BINARY = os.environ.get("GRAINBOX_PD", "pd")


def pd_available() -> bool:
    return shutil.which(PD_BINARY) is not None and (PD_DIR / "main.pd").is_file()


class PdProcess:
    """`pd -nogui -noaudio` with main.pd listening on pd_port and sending to runtime_port."""

    def __init__(self, workdir: Path, pd_port: int, runtime_port: int, flags: tuple[str, ...] = ()) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.driver = workdir / "driver.pd"
        self.driver.write_text(f"#N canvas 0 0 300 200 12;\n#X obj 10 10 main {pd_port} {runtime_port};\n")
        self.log_path = workdir / "pd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.flags = flags  # extra command-line flags, e.g. ("-sleepgrain", "0.5")

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child holds it; closed below)
        try:
            self.proc = subprocess.Popen(
                [PD_BINARY, "-nogui", "-noaudio", "-nomidi", "-noprefs", "-stderr", *self.flags,
                 "-path", str(PD_DIR), "-open", str(self.driver)],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.driver.parent,
            )  # fmt: skip
        finally:
            log.close()

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]
