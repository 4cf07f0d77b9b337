"""What a datagram flood costs Pd: its CPU share while 64 KiB junk datagrams arrive at 95 a second.

Pd runs pd/main.pd in real time (-nogui -noaudio, as the box's tests run it) on free loopback ports; for
SECONDS each row sends one kind of datagram at RATE a second to Pd's port and reads Pd's own CPU time
(utime + stime of /proc/PID/stat). Rows, all in one Pd and one run:

- idle: nothing sent (the baseline: the clock, DSP with no voices);
- grains: valid 1024-float /grain messages (5,136 bytes), what the runtime really sends;
- oversize: 65,000-byte datagrams of zeros, longer than any message the model allows;
- oversize /grain: 60 KB /grain messages with 12,000 floats (OSC that parses, but far too long).

Oversize packets are dropped by their length before the patch scans their bytes or [oscparse] reads
them, so their rows should cost about what a valid grain does. --pd-dir runs another copy of the patch
(a checkout of an older commit) for comparison.

    flock /tmp/grainbox-bench.lock .venv/bin/python -m bench.pd_flood [--seconds 10] [--rate 95]
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def grain_packet(n: int, slot: int = 0) -> bytes:
    """An OSC /grain with n floats, packed here (liblo refuses to build one longer than its own limit)."""
    tags = (",i" + "f" * n).encode() + b"\0"
    return b"/grain\0\0" + tags + bytes(-len(tags) % 4) + struct.pack(f">i{n}f", slot, *([0.1] * n))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=95.0, help="datagrams a second")
    ap.add_argument("--pd-dir", type=Path, default=REPO / "pd", help="folder holding main.pd")
    args = ap.parse_args()
    pd_port, runtime_port = free_port(), free_port()
    command = ["pd", "-nogui", "-noaudio", "-stderr", "-send", f"gb_ports {pd_port} {runtime_port}",
               str(args.pd_dir / "main.pd")]
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "pd.log", "w") as log:
        pd = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(2.0)  # load, bind; nothing is measured yet
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            model = b"/model\0\0,iiii\0\0\0" + struct.pack(">iiii", 22050, 1024, 8, 8)
            sock.sendto(model, (HOST, pd_port))
            time.sleep(0.5)
            rows = [("idle", None), ("grains (5,136 B)", grain_packet(1024)),
                    ("oversize zeros (65,000 B)", bytes(65000)),
                    ("oversize /grain (60,016 B)", grain_packet(12000))]
            base = None
            print(f"Pd {args.pd_dir}: {args.rate:g} datagrams/s for {args.seconds:g} s a row")
            print(f"{'row':28s} {'Pd CPU %':>9s} {'x idle':>7s}")
            for name, packet in rows:
                start_cpu, start = cpu_seconds(pd.pid), time.monotonic()
                k = 0
                while (now := time.monotonic()) - start < args.seconds:
                    if packet is not None and k < (now - start) * args.rate:
                        sock.sendto(packet, (HOST, pd_port))
                        k += 1
                    time.sleep(0.001)
                share = 100 * (cpu_seconds(pd.pid) - start_cpu) / (time.monotonic() - start)
                base = base or max(share, 1e-3)
                print(f"{name:28s} {share:9.1f} {share / base:7.1f}")
        finally:
            pd.kill()
            pd.wait()


if __name__ == "__main__":
    main()
