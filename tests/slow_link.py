"""A slow network link for ssh: `ProxyCommand=python tests/slow_link.py HOST PORT BYTES_PER_S`.

ssh hands its connection to this program's stdin/stdout; the program relays it to HOST:PORT, holding the
upload to BYTES_PER_S like a weak Wi-Fi link to a box. On loopback a model copies in milliseconds, too
fast for a test to interrupt it half-way; through this link it takes seconds, and a test can kill
flash.sh while the box has received part of the file.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

CHUNK = 16 * 1024


def upload(sock: socket.socket, rate: float) -> None:
    """stdin -> socket, at most `rate` bytes per second."""
    start, sent = time.monotonic(), 0
    while data := os.read(0, CHUNK):
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
    sock = socket.create_connection((host, port))
    threading.Thread(target=upload, args=(sock, rate), daemon=True).start()
    download(sock)


if __name__ == "__main__":
    main()
