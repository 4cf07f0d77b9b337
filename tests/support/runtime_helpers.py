"""Helpers for the runtime's tests: configs on temporary directories, waiting, and the real runtime process.

`RuntimeProcess` starts `python -m runtime run` exactly as systemd does (minus the config file), with its
own ports and state directory, and reads its status.json; tests talk to it over real OSC (tests/osc_peer).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from runtime.config import Config
from tests.conftest import free_udp_port
from tests.support.model_fixtures import TinyGrainModel, metadata_for, save

REPO = Path(__file__).resolve().parents[2]


def write_checksum_model(path: Path, seed: int = 0) -> Path:
    """A valid tiny model whose grains carry a DC offset that follows the latent point.

    Pd confirms a grain by the *sum* of its samples (docs/osc.md /ack); the plain fixture's grains are
    sines whose sums are all about 0, so they could not tell two grains apart. Here every latent
    dimension also adds a constant to every sample, so moving the point moves the sum.
    """
    model = TinyGrainModel(seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        model.decoder.weight += torch.randn(1, model.latent_dim, generator=gen) * 0.15
    return save(model, Path(path), metadata_for(model, "checksum-test"))


def make_config(tmp_path: Path, model: Path, **changes: Any) -> Config:
    """Defaults, with the model and state in tmp_path and free ports, so tests never collide."""
    settings: dict[str, Any] = {
        "model_path": model,
        "state_dir": tmp_path / "state",
        "listen_port": free_udp_port(),
        "pd_port": free_udp_port(),
        "controls": "none",
    }
    return replace(Config(), **{**settings, **changes})


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "the condition") -> Any:
    """Poll predicate() every 20 ms until it returns something truthy; fail naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class RuntimeProcess:
    """`python -m runtime run` (controls none unless asked) in a subprocess, logging to a file."""

    def __init__(
        self, tmp_path: Path, model: Path, pd_port: int | None = None, controls: str = "none",
        extra: tuple[str, ...] = (), osc_port: int | None = None,
    ) -> None:
        self.port = osc_port or free_udp_port()
        self.pd_port = pd_port or free_udp_port()
        self.state_dir = tmp_path / "state"
        self.log_path = tmp_path / "runtime.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "run", "--model", str(model), "--state-dir",
             str(self.state_dir), "--controls", controls, "--osc-port", str(self.port),
             "--pd-port", str(self.pd_port), *extra],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"the runtime exited ({self.proc.returncode}); log:\n{self.log()}")
            status = self.status()
            return status if status and predicate(status) else None

        try:
            return wait_until(check, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}; status {self.status()}; log:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
