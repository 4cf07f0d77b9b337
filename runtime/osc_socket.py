"""One UDP socket for OSC, bound to a loopback address only, with liblo as the OSC codec.

liblo's servers (and so both Python bindings) bind the wildcard address, 0.0.0.0, and their C code queues a
timetagged bundle for later before any callback can look at it: a neighbour on the network could reach the
box's OSC port, and a local one could fill its memory with bundles dated in the future. So the runtime owns
its socket: bound to 127.0.0.1, it reads each datagram itself and looks at its size, sender and kind
before liblo parses it (`lo_message_deserialise`, reached through ctypes because neither binding exposes
it). Messages going out are built by the binding's `Message` and sent by a liblo server whose file
descriptor *is* this socket, so Pd sees every reply come from the port it sends to, and no other socket
of the runtime ever exists.
"""

from __future__ import annotations

import ctypes
import os
import socket
from dataclasses import dataclass
from typing import Any

from runtime.liblo_binding import liblo

# liblo's error codes (lo_errors.h) for a datagram cut short; anything else it refuses is "not OSC".
_TRUNCATED_CODES = {9911, 9912, 9914}  # LO_ESIZE, LO_EINVALIDARG, LO_EPAD


class Dropped(Exception):
    """A datagram the runtime will not act on; `reason` is the short key it is counted under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class OscMessage:
    path: str
    types: str
    args: tuple[Any, ...]


def _load_liblo() -> ctypes.CDLL:
    """The liblo shared library the binding already loaded (the wheel bundles its own copy under a
    mangled name, Debian's python3-liblo links liblo.so.7), found in this process's own memory map."""
    try:
        with open("/proc/self/maps") as maps:
            loaded = sorted({line.split()[-1] for line in maps if "/liblo" in line and ".so" in line})
    except OSError:
        loaded = []
    lib = ctypes.CDLL(loaded[0] if loaded else "liblo.so.7")
    lib.lo_message_deserialise.restype = ctypes.c_void_p
    lib.lo_message_deserialise.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int)]
    lib.lo_message_get_types.restype = ctypes.c_char_p
    lib.lo_message_get_types.argtypes = [ctypes.c_void_p]
    lib.lo_message_get_argv.restype = ctypes.POINTER(ctypes.c_void_p)
    lib.lo_message_get_argv.argtypes = [ctypes.c_void_p]
    lib.lo_message_free.restype = None
    lib.lo_message_free.argtypes = [ctypes.c_void_p]
    return lib


_lib = _load_liblo()


def parse(data: bytes) -> OscMessage:
    """One OSC message from one datagram, or Dropped saying why not: bundles are refused (the box never
    schedules anything for later), and so are addresses and strings that are not UTF-8."""
    if not data:
        raise Dropped("not_osc", "an empty datagram")
    if data.startswith(b"#bundle"):
        raise Dropped("bundle", "an OSC bundle (the box takes single messages only)")
    error = ctypes.c_int(0)
    message = _lib.lo_message_deserialise(data, len(data), ctypes.byref(error))
    if not message:
        if error.value in _TRUNCATED_CODES:
            raise Dropped("truncated", f"a truncated OSC message ({len(data)} bytes)")
        raise Dropped("not_osc", f"not an OSC message ({len(data)} bytes, liblo error {error.value})")
    try:
        try:
            path = data[: data.index(b"\0")].decode("utf-8")
            types = (_lib.lo_message_get_types(message) or b"").decode("ascii")
        except UnicodeDecodeError:
            raise Dropped("not_utf8", "an OSC address that is not UTF-8") from None
        argv = _lib.lo_message_get_argv(message)
        args = tuple(_argument(tag, argv[i]) for i, tag in enumerate(types))
    finally:
        _lib.lo_message_free(message)
    return OscMessage(path, types, args)


def _argument(tag: str, address: int) -> Any:
    if tag == "i":
        return ctypes.c_int32.from_address(address).value
    if tag == "f":
        return ctypes.c_float.from_address(address).value
    if tag in "sS":
        try:
            return ctypes.string_at(address).decode("utf-8")
        except UnicodeDecodeError:
            raise Dropped("not_utf8", "an OSC string that is not UTF-8") from None
    return None  # a type the protocol never uses: the type-tag check drops the message


class OscSocket:
    """A UDP socket on `host`:`port` (port 0: any free one) that receives raw datagrams and sends liblo
    messages. Raises OSError when the address cannot be bound (usually: the port is taken)."""

    def __init__(self, host: str, port: int, max_datagram: int) -> None:
        self.host = host
        self.max_datagram = max_datagram
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._socket.bind((host, port))
        except OSError:
            self._socket.close()
            raise
        self.port: int = self._socket.getsockname()[1]
        self._buffer = bytearray(max_datagram + 1)
        # A liblo server only for sending: its own wildcard socket is replaced at once by this one.
        self._sender = liblo.Server(None, liblo.UDP)
        os.dup2(self._socket.fileno(), self._sender.fileno())

    def send(self, port: int, message: Any) -> None:
        """Send a liblo Message to `host`:`port`; raises OSError as sendto does."""
        self._sender.send(liblo.Address(self.host, port, liblo.UDP), message)

    def receive(self, timeout: float) -> tuple[bytes, str] | None:
        """The next datagram and its sender's address, or None after `timeout` seconds. A datagram longer
        than `max_datagram` raises Dropped without being copied further."""
        self._socket.settimeout(timeout)
        try:
            size, (sender, _port) = self._socket.recvfrom_into(self._buffer, flags=socket.MSG_TRUNC)
        except (TimeoutError, BlockingIOError):
            return None
        if size > self.max_datagram:
            raise Dropped("oversize", f"a {size}-byte datagram (at most {self.max_datagram} are read)")
        return bytes(self._buffer[:size]), sender

    def close(self) -> None:
        self._sender.free()  # closes liblo's copy of the descriptor
        self._socket.close()
