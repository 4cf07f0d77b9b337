"""The patch's OSC sockets as a hostile neighbour sees them, in real-time Pd: it listens on 127.0.0.1
alone, never binds the default ports when it was told others, and counts what arrives where nothing
should (the reply socket [netsend] cannot bind to loopback in Pd 0.53)."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net_helpers import neighbour, neighbour_unavailable, osc_bytes, udp_sockets
from tests.support.pd_live import Patch
from tests.support.runtime_helpers import wait_until

pytestmark = pytest.mark.skipif(shutil.which("pd") is None, reason="needs Pd (apt: puredata-core)")


@pytest.fixture
def patch(tmp_path: Path) -> Iterator[Patch]:
    running = Patch(tmp_path)
    yield running
    running.close()


def test_pd_never_binds_or_greets_the_default_ports_when_told_others(tmp_path: Path) -> None:
    held = []
    for port in (9001, 9000):  # Pd's defaults: held without SO_REUSEADDR, so Pd could not share them
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            pytest.skip(f"port {port} is in use on this machine")
        s.setblocking(False)
        held.append(s)
    try:
        running = Patch(tmp_path)
        try:
            running.answered(1)
            assert "listen failed" not in running.log() and "Address already in use" not in running.log()
            with pytest.raises(BlockingIOError):  # a /hello to the default runtime port came first
                held[1].recvfrom(64)
        finally:
            running.close()
    finally:
        for s in held:
            s.close()


def test_pd_listens_on_127_0_0_1_only_and_127_0_0_2_never_reaches_it(patch: Patch) -> None:
    listening = [s for s in udp_sockets(patch.proc.pid) if s[1] == patch.port]
    assert listening == [("127.0.0.1", patch.port)], udp_sockets(patch.proc.pid)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(osc_bytes("/ping", "i", 5), ("127.0.0.2", patch.port))
    patch.answered(6)
    assert [5] not in patch.runtime.of("/pong")


@pytest.mark.skipif(neighbour_unavailable() is not None, reason=str(neighbour_unavailable()))
def test_a_datagram_from_another_namespace_never_reaches_pd(patch: Patch) -> None:
    with neighbour(1) as other:
        other.send_udp(osc_bytes("/ping", "i", 5), patch.port)
    patch.answered(6)
    assert [5] not in patch.runtime.of("/pong")


def test_a_datagram_at_the_reply_socket_is_dropped_and_counted(patch: Patch) -> None:
    replies = [s for s in udp_sockets(patch.proc.pid) if s[1] != patch.port]
    assert len(replies) == 1, udp_sockets(patch.proc.pid)  # [netsend -u -b]: bound when it first sent
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(osc_bytes("/ping", "i", 5), ("127.0.0.1", replies[0][1]))
    wait_until(lambda: "dropped datagram at the reply socket 16 bytes" in patch.log(), what="the drop logged")
    patch.answered(6)
    assert [5] not in patch.runtime.of("/pong")


def test_bundles_random_bytes_and_truncated_packets_are_counted_by_reason(patch: Patch) -> None:
    ping = osc_bytes("/ping", "i", 5)
    bundle = b"#bundle\0" + bytes(8) + len(ping).to_bytes(4, "big") + ping
    sent = {
        f"bundle {len(bundle)} bytes": bundle,
        "not an OSC packet 12 bytes": b"hello world!",
        "truncated packet 15 bytes": ping[:-1],
        "unparsable packet 12 bytes": ping[:-4],  # whole words, but the argument is missing
    }
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for payload in sent.values():
            s.sendto(payload, ("127.0.0.1", patch.port))
    patch.answered(6)
    log = patch.log()
    for why in sent:
        assert log.count(f"grainbox: dropped {why}") == 1, log
    assert [5] not in patch.runtime.of("/pong"), "the bundle's /ping was played"
