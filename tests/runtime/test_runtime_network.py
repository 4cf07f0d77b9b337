"""The runtime's OSC port as a hostile neighbour sees it: bound to 127.0.0.1 alone, so nothing sent to
another address (another loopback address, or this machine's address on a link from another namespace)
reaches it; no bundle is ever queued; every dropped datagram is counted by reason; nothing cheap to send
makes it do much work (/hello, /reload coalesced) and /ping is never a reflector."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pyliblo3 as liblo
import pytest

from tests.support.model_fixtures import write_valid
from tests.support.net_helpers import neighbour, neighbour_unavailable, osc_bytes, udp_sockets
from tests.support.osc_peer import OscPeer
from tests.support.runtime_helpers import RuntimeProcess


@pytest.fixture
def pd_peer() -> Iterator[OscPeer]:
    """Listens where Pd would: the runtime's replies and grains come here."""
    peer = OscPeer()
    yield peer
    peer.close()


@pytest.fixture
def runtime(tmp_path: Path, pd_peer: OscPeer) -> Iterator[RuntimeProcess]:
    process = RuntimeProcess(tmp_path, write_valid(tmp_path / "model.ts"), pd_port=pd_peer.port)
    process.wait_status(lambda s: s["pid"] == process.proc.pid, "the runtime to start", timeout=60)
    pd_peer.wait_for(lambda: pd_peer.of("/grain"), timeout=30)  # started up: the first grains are out
    yield process
    assert process.stop() == 0, process.log()


def raw_send(payload: bytes, port: int, address: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(payload, (address, port))


def handled_up_to(runtime: RuntimeProcess, pd_peer: OscPeer, ping_id: int) -> None:
    """The runtime handles datagrams in order: once Pd's port has this /pong, everything sent before the
    /ping has been handled."""
    raw_send(osc_bytes("/ping", "i", ping_id), runtime.port)
    assert pd_peer.wait_for(lambda: [ping_id] in pd_peer.of("/pong"), timeout=30), runtime.log()


def test_every_socket_of_the_runtime_is_bound_to_127_0_0_1(runtime: RuntimeProcess) -> None:
    sockets = udp_sockets(runtime.proc.pid)
    assert sockets == [("127.0.0.1", runtime.port)], sockets


def test_a_datagram_to_another_loopback_address_never_reaches_the_runtime(
    runtime: RuntimeProcess, pd_peer: OscPeer
) -> None:
    raw_send(osc_bytes("/ping", "i", 1), runtime.port, address="127.0.0.2")
    handled_up_to(runtime, pd_peer, 2)
    status = runtime.wait_status(lambda s: s["osc_received"] >= 1, "the control /ping counted")
    assert [1] not in pd_peer.of("/pong")
    assert status["osc_received"] == 1 and status["osc_malformed"] == 0, status


@pytest.mark.skipif(neighbour_unavailable() is not None, reason=str(neighbour_unavailable()))
def test_a_datagram_from_another_namespace_never_reaches_the_runtime(
    runtime: RuntimeProcess, pd_peer: OscPeer
) -> None:
    with neighbour() as other:
        # The control: the same datagram reaches a socket of this test's bound to the link's address.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
            control.bind((other.host_address, 0))
            control.settimeout(10)
            other.send_udp(osc_bytes("/ping", "i", 1), control.getsockname()[1])
            assert control.recvfrom(64)[0] == osc_bytes("/ping", "i", 1)
        other.send_udp(osc_bytes("/ping", "i", 1), runtime.port)
    handled_up_to(runtime, pd_peer, 2)
    status = runtime.wait_status(lambda s: s["osc_received"] >= 1, "the control /ping counted")
    assert [1] not in pd_peer.of("/pong") and status["osc_received"] == 1, status


def test_a_timetagged_bundle_is_dropped_not_queued(runtime: RuntimeProcess, pd_peer: OscPeer) -> None:
    client = OscPeer(runtime.port)
    try:
        due = liblo.time() + 0.3
        client.server.send(
            liblo.Address("127.0.0.1", runtime.port, liblo.UDP), liblo.Bundle(due, liblo.Message("/ping", 5))
        )
        while liblo.time() < due + 0.5:  # past its time: a queued bundle would have been answered by now
            time.sleep(0.05)
        handled_up_to(runtime, pd_peer, 6)
    finally:
        client.close()
    status = runtime.wait_status(lambda s: s["osc_drops"].get("bundle") == 1, "the bundle counted")
    assert [5] not in pd_peer.of("/pong"), status


def test_random_bytes_truncated_oversize_and_non_utf8_datagrams_are_counted_by_reason(
    runtime: RuntimeProcess, pd_peer: OscPeer
) -> None:
    knob = osc_bytes("/knob", "if", 1, 0.5)
    sent = {
        "not_osc": [b"", b"hello world!", b"\x00\x01\x02\x03garbage!"],
        "truncated": [knob[:-4], knob[:-1]],
        "oversize": [b"/knob\0\0\0,if\0" + bytes(60000)],
        # an address, and a string (where numbers belong), that are not UTF-8
        "not_utf8": [b"/kn\xffob\0\0" + knob[8:], b"/knob\0\0\0,s\0\0\xff\xfe\0\0"],
        "type_tags": [osc_bytes("/knob", "ii", 1, 1)],
    }  # fmt: skip
    for payloads in sent.values():
        for payload in payloads:
            raw_send(payload, runtime.port)
    handled_up_to(runtime, pd_peer, 9)
    total = sum(len(p) for p in sent.values())
    status = runtime.wait_status(lambda s: s["osc_malformed"] == total, f"{total} drops counted")
    assert status["osc_drops"] == {reason: len(p) for reason, p in sent.items()}
    assert "Traceback" not in runtime.log()


def test_ping_is_answered_to_pds_port_only(runtime: RuntimeProcess, pd_peer: OscPeer) -> None:
    asker = OscPeer(runtime.port)
    try:
        asker.send("/ping", 77)
        assert pd_peer.wait_for(lambda: [77] in pd_peer.of("/pong"), timeout=30), runtime.log()
        handled_up_to(runtime, pd_peer, 78)
        assert asker.of("/pong") == []
    finally:
        asker.close()


def test_a_hello_flood_is_coalesced_and_the_last_one_is_answered(
    runtime: RuntimeProcess, pd_peer: OscPeer
) -> None:
    before = runtime.status()["pd_hellos"]
    pd_peer.clear()
    started = time.monotonic()
    for batch in range(6):  # in batches, so the socket buffer never overflows and the count is exact
        for _ in range(50):
            raw_send(osc_bytes("/hello"), runtime.port)
        handled_up_to(runtime, pd_peer, 100 + batch)
    flood_s = time.monotonic() - started
    # the last /hello of the flood is folded into a run at the end of its interval: its /model comes
    status = runtime.wait_status(lambda s: s["pd_hellos_received"] >= 300, "every /hello counted")
    answered = runtime.wait_status(
        lambda s: s["pd_hellos"] - before >= 2, "the coalesced /hello answered", timeout=10
    )["pd_hellos"] - before
    assert answered <= 2 + flood_s / 0.5, (answered, flood_s, status)
    assert pd_peer.wait_for(lambda: len(pd_peer.of("/model")) == answered, timeout=10)


def test_a_reload_flood_is_one_reload_a_second(runtime: RuntimeProcess, pd_peer: OscPeer) -> None:
    started = time.monotonic()
    for _ in range(60):  # 20 a second for 3 s
        raw_send(osc_bytes("/reload"), runtime.port)
        time.sleep(0.05)
    flood_s = time.monotonic() - started
    status = runtime.wait_status(lambda s: s["reload_requests"] == 60, "every /reload counted")
    time.sleep(1.2)  # the last request waits for the end of its interval
    status = runtime.wait_status(lambda s: s["reloads"] >= 2, "the coalesced reloads")
    assert status["reloads"] <= 2 + flood_s, status
    assert status["reload_failures"] == 0, status
