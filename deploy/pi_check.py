"""pi-check's Python half (deploy/pi-check.sh): runs on the workstation and inside the emulated Pi.

    latents MODEL OUT.npy            the fixed latent batch: seed 0, 8 points of randn(8, Z) (spread 1),
                                     the knob map's centre and every anchor
    decode MODEL Z.npy OUT.npy       load MODEL as the runtime does (runtime.artifact) and decode Z,
                                     one torch thread (as the box's unit)
    compare REF.npy GOT.npy LIMIT    print the max abs difference; exit 1 if it is not below LIMIT
    ports N                          N free UDP ports on 127.0.0.1
    wait-acks STATUS.json MIN SECS   wait until the runtime's status.json says Pd acknowledged at least MIN
                                     grains, every slot confirmed and no checksum mismatch; print the acks

Nothing here is a reference number: the x86 decode is computed afresh on every run from the model that
is committed, and compared with the emulated Pi's decode of the same latents.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import numpy as np


def latents(model_path: str, out: str) -> None:
    import torch

    from runtime.artifact import load_model

    model = load_model(model_path)
    torch.manual_seed(0)
    z = torch.cat([torch.randn(8, model.latent_dim) * 1.0, model.center[None], model.anchors])
    np.save(out, z.numpy().astype(np.float32))
    print(f"{z.shape[0]} latent points of {model.latent_dim} dims")


def decode(model_path: str, z_path: str, out: str) -> None:
    import torch

    from runtime.artifact import load_model

    torch.set_num_threads(1)
    model = load_model(model_path)
    grains = model.decode(torch.from_numpy(np.load(z_path)))
    np.save(out, grains.numpy())
    print(f"decoded {tuple(grains.shape)} with torch {torch.__version__}")


def compare(ref_path: str, got_path: str, limit: str) -> int:
    ref, got = np.load(ref_path), np.load(got_path)
    if ref.shape != got.shape:
        print(f"FAIL: shapes differ: x86 {ref.shape}, emulated Pi {got.shape}")
        return 1
    diff = float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64))))
    ok = np.isfinite(diff) and diff < float(limit)
    print(f"max abs difference {diff:.3g} over {ref.size} samples (limit {limit}): {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


def ports(n: str) -> None:
    socks = []
    for _ in range(int(n)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def wait_acks(status_path: str, at_least: str, seconds: str) -> int:
    deadline = time.monotonic() + float(seconds)
    status: dict = {}
    while time.monotonic() < deadline:
        try:
            status = json.loads(Path(status_path).read_text())
        except (OSError, ValueError):
            status = {}
        if status.get("pd_ack_mismatches", 0):
            break
        confirmed = status.get("pd_slots_confirmed")
        if status.get("pd_acks", 0) >= int(at_least) and confirmed and confirmed == status.get("slots"):
            print(status["pd_acks"])
            return 0
        time.sleep(0.2)
    keys = ("pd_hellos", "pd_acks", "pd_ack_mismatches", "pd_slots_confirmed", "slots")
    print(f"FAIL: after {seconds} s status.json says {({k: status.get(k) for k in keys})}", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    commands = {"latents": (latents, 2), "decode": (decode, 3), "compare": (compare, 3), "ports": (ports, 1),
                "wait-acks": (wait_acks, 3)}
    if not argv or argv[0] not in commands or len(argv) - 1 != commands[argv[0]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]][0](*argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
