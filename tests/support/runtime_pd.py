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


# A FUDI back door for the test, as Pd's own GUI talks to Pd: each datagram `receiver message...;` goes to
# that receiver (`pd-main.pd mouse 40 600 1 0` clicks in main.pd's window). Bound to 127.0.0.1 only.
REMOTE_CONTROL = """#X obj 10 40 loadbang;
#X msg 10 70 listen {port} 127.0.0.1;
#X obj 10 100 netreceive -u;
#X obj 10 130 t a a;
#X obj 120 160 symbol;
#X obj 10 160 list split 1;
#X obj 10 190 list trim;
#X obj 10 220 s;
#X connect 1 0 2 0;
#X connect 2 0 3 0;
#X connect 3 0 4 0;
#X connect 4 0 6 0;
#X connect 4 1 5 0;
#X connect 5 0 8 1;
#X connect 6 1 7 0;
#X connect 7 0 8 0;
"""


class PdProcess:
    """`pd -nogui -noaudio` with main.pd listening on pd_port and sending to runtime_port."""

    def __init__(self, workdir: Path, pd_port: int, runtime_port: int, flags: tuple[str, ...] = (),
                 remote_port: int | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.driver = workdir / "driver.pd"
        driver = f"#N canvas 0 0 300 200 12;\n#X obj 10 10 main {pd_port} {runtime_port};\n"
        if remote_port is not None:  # the test's hands: tests/support/pd_remote.py
            driver += REMOTE_CONTROL.format(port=remote_port)
        self.driver.write_text(driver)
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
