"""The test's hands on a running Pd: messages to any receiver, and the mouse in a patch's window.

Pd's GUI drives the core with plain messages to the canvas (`pd-main.pd mouse x y button modifiers`,
`motion`, `mouseup`), in the canvas's own coordinates, the ones the .pd file stores. Sending the same
messages exercises the real click and drag code of every GUI object (steady-on-click sliders, bangs, the
editor's hit test) with no X server: after `vis 1` the canvas has an editor even under -nogui.

The messages travel as FUDI over UDP to the driver patch's [netreceive] (tests/support/runtime_pd.py,
REMOTE_CONTROL) on 127.0.0.1. Loopback UDP keeps the order of the datagrams of one socket.
"""

from __future__ import annotations

import socket

Atom = str | int | float


def _atom(value: Atom) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    if not text or any(c in text for c in " ;,\\$\n"):
        raise ValueError(f"{value!r} is not one plain Pd atom")
    return text


class PdRemote:
    """FUDI messages to a Pd whose driver patch listens on 127.0.0.1:port."""

    def __init__(self, port: int) -> None:
        self.address = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, receiver: str, *atoms: Atom) -> None:
        """`receiver atoms...;` as one datagram: what [s receiver] would get."""
        self.sock.sendto((" ".join(_atom(a) for a in (receiver, *atoms)) + ";\n").encode(), self.address)

    def close(self) -> None:
        self.sock.close()


class Window:
    """The mouse in one patch's window (`canvas` is its file name: "main.pd" is bound to pd-main.pd)."""

    def __init__(self, remote: PdRemote, canvas: str) -> None:
        self.remote = remote
        self.target = f"pd-{canvas}"
        self.remote.send(self.target, "vis", 1)

    def press(self, x: int, y: int) -> None:
        self.remote.send(self.target, "mouse", x, y, 1, 0)

    def move(self, x: int, y: int) -> None:
        self.remote.send(self.target, "motion", x, y, 0)

    def release(self, x: int, y: int) -> None:
        self.remote.send(self.target, "mouseup", x, y, 1)

    def click(self, x: int, y: int) -> None:
        self.press(x, y)
        self.release(x, y)
