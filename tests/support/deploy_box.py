"""Helpers for the deploy tests: a box file system in a temporary directory, the real runtime on it,
and deploy/flash.sh run as a user would run it.

A box root here has the layout of docs/box.md (models/, state/); `BoxRuntime` is the real
`python -m runtime run` process watching that box's `current` link and writing its status.json, so a test
sees exactly what flash.sh sees on a Raspberry Pi.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, free_udp_port

FLASH = REPO / "deploy" / "flash.sh"
PYTHON = sys.executable


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def box_file_name(model: Path, name: str) -> str:
    """The name a model gets on the box: <sha256[:12]>-<name>.ts (docs/box.md)."""
    return f"{sha256_of(model)[:12]}-{name}.ts"


def install_directly(root: Path, model: Path, name: str) -> str:
    """Put `model` on a box root as `current` without flash.sh, as setup-pi.sh does for the factory model."""
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    (root / "state").mkdir(exist_ok=True)
    file_name = box_file_name(model, name)
    (models / file_name).write_bytes(Path(model).read_bytes())
    (models / "current").unlink(missing_ok=True)
    (models / "current").symlink_to(file_name)
    return file_name


def link(root: Path, name: str) -> str | None:
    path = root / "models" / name
    return os.readlink(path) if path.is_symlink() else None


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under a box root: link targets, file hashes and mtimes. Equal snapshots = untouched."""
    tree = {}
    for path in sorted(Path(root).rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            tree[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            tree[rel] = f"{sha256_of(path)} {path.stat().st_mtime_ns}"
        else:
            tree[rel] = "dir"
    return tree


def flash(*args: str | Path, timeout: float = 90,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run deploy/flash.sh; the result has returncode, stdout and stderr (text)."""
    full_env = {**os.environ, "GRAINBOX_PYTHON": PYTHON, **(env or {})}
    return subprocess.run([str(FLASH), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def read_status(root: Path) -> dict:
    try:
        return json.loads((root / "state" / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


class BoxRuntime:
    """The real runtime (`python -m runtime run --controls none`) playing a box root's `current`.

    No Pd runs unless a test starts one on `pd_port`: the runtime's UDP sends to a port nobody listens on
    are harmless. `wait_for(sha)` returns
    once status.json reports that model. `freeze()` / `thaw()` stop and continue the process (SIGSTOP /
    SIGCONT): a runtime that hangs and never reports a new model.
    """

    def __init__(self, root: Path, pd_port: int | None = None) -> None:
        self.root = Path(root)
        self.osc_port, self.pd_port = free_udp_port(), pd_port or free_udp_port()
        self.log_path = self.root.parent / f"runtime-{self.root.name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "runtime", "run", "--model", str(self.root / "models" / "current"),
             "--state-dir", str(self.root / "state"), "--controls", "none",
             "--osc-port", str(self.osc_port), "--pd-port", str(self.pd_port)],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_for(self, sha: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the runtime exited ({self.proc.returncode}): {self.log()}")
            status = read_status(self.root)
            if status.get("model_sha256") == sha:
                return status
            time.sleep(0.1)
        raise AssertionError(f"the runtime did not report {sha[:12]} in {timeout} s; status "
                             f"{read_status(self.root)}; log: {self.log()}")

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
