"""What a test needs to look at the network the way an attacker on it would: the UDP sockets a process
holds (read from /proc, as `ss -lunp` does), raw OSC datagrams, and a network namespace of the test's own
joined to this one by a veth pair, so a datagram can arrive from "another machine" without leaving this
one."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def udp_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every IPv4 and IPv6 UDP socket process `pid` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, width in (("udp", 8), ("udp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] not in inodes:
                continue
            address_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(address_hex[:width])
            if table == "udp":
                address = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                address = socket.inet_ntop(socket.AF_INET6, words)
            found.append((address, int(port_hex, 16)))
    return found


def osc_bytes(path: str, types: str = "", *values: int | float) -> bytes:
    """One OSC message of int32 ('i') and float32 ('f') arguments, packed by hand."""

    def padded(raw: bytes) -> bytes:
        return raw + b"\0" * (4 - len(raw) % 4)

    packed = b"".join(struct.pack(">i" if t == "i" else ">f", v) for t, v in zip(types, values, strict=True))
    return padded(path.encode()) + padded(("," + types).encode()) + packed


@dataclass(frozen=True)
class Neighbour:
    """A network namespace with one veth link to this one: `host_address` is this side's address on it."""

    namespace: str
    host_address: str
    address: str

    def send_udp(self, payload: bytes, port: int, address: str | None = None) -> None:
        """Send one datagram from inside the namespace to `address` (default: this side) and `port`."""
        code = (
            "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], int(sys.argv[3])))"
        )
        subprocess.run(
            ["ip", "netns", "exec", self.namespace, "python3", "-c", code, payload.hex(),
             address or self.host_address, str(port)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip


def neighbour_unavailable() -> str | None:
    """Why this machine cannot make a namespace for a test, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    return None


@contextmanager
def neighbour(index: int = 0) -> Iterator[Neighbour]:
    """A namespace `gb-test-PID-N` joined by veth to this one, on 10.213.N.0/30; removed afterwards."""
    tag = f"{os.getpid() % 100000}x{index}"
    namespace, host_end, ns_end = f"gb-test-{tag}", f"gbh{tag}", f"gbn{tag}"
    host_address, address = f"10.213.{index}.1", f"10.213.{index}.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    ip("netns", "add", namespace)
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        ip("link", "set", ns_end, "netns", namespace)
        ip("addr", "add", f"{host_address}/30", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("netns", "exec", namespace, "ip", "addr", "add", f"{address}/30", "dev", ns_end)
        ip("netns", "exec", namespace, "ip", "link", "set", ns_end, "up")
        yield Neighbour(namespace, host_address, address)
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
