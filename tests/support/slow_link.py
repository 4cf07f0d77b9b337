"""A slow network link for ssh:
`ProxyCommand=python tests/support/slow_link.py HOST PORT BYTES_PER_S [STALL_AT]`.

ssh hands its connection to this program's stdin/stdout; the program relays it to HOST:PORT, holding the
upload to BYTES_PER_S like a weak Wi-Fi link to a box. On loopback a model copies in milliseconds, too
fast for a test to interrupt it half-way; through this link it takes seconds. With STALL_AT the link
stops carrying the upload after that many bytes, as a link that drops mid-copy does, so a test can kill
flash.sh while the box holds part of the file however busy the machine is (a rate alone catches up in
one burst after the relay was starved of CPU, and the copy could finish before the test looked).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

CHUNK = 16 * 1024


def upload(sock: socket.socket, rate: float, stall_at: float) -> None:
    """stdin -> socket, at most `rate` bytes per second, and nothing more after `stall_at` bytes."""
    start, sent = time.monotonic(), 0
    while data := os.read(0, CHUNK):
        if sent + len(data) > stall_at:
            sock.sendall(data[: max(0, int(stall_at - sent))])
            while True:  # the link is gone: ssh waits until it is killed
                time.sleep(3600)
        sock.sendall(data)
        sent += len(data)
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    sock.shutdown(socket.SHUT_WR)


def download(sock: socket.socket) -> None:
    """socket -> stdout, unthrottled (the box's answers are small)."""
    while data := sock.recv(CHUNK):
        os.write(1, data)


def main() -> None:
    host, port, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    stall_at = float(sys.argv[4]) if len(sys.argv) > 4 else float("inf")
    sock = socket.create_connection((host, port))
    threading.Thread(target=upload, args=(sock, rate, stall_at), daemon=True).start()
    download(sock)


if __name__ == "__main__":
    main()
