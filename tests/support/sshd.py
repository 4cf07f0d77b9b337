"""A real OpenSSH server on 127.0.0.1 for deploy tests: throwaway host key, throwaway client key.

`Sshd(workdir)` writes its keys and config under workdir, starts `/usr/sbin/sshd -D -e -f CONFIG` on a free
port as the current user (root or not), and waits until it answers. `flash_args` are the options that make
deploy/flash.sh talk to it with the client key and check the host key for real (a known_hosts file that
holds exactly this server's key: no StrictHostKeyChecking=no). `log()` returns what sshd printed, so a
test can prove that nobody connected.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import free_tcp_port

SSHD = "/usr/sbin/sshd"
# sshd checks that its privilege-separation directory exists before it starts, even when it never
# chroots into it; Debian's service creates it at boot, a container has none.
PRIVSEP_DIR = Path("/run/sshd")


class Sshd:
    """One sshd process; use as a context manager or call stop()."""

    def __init__(self, workdir: Path, box_root: Path | None = None, client_key: Path | None = None,
                 session_env: dict[str, str] | None = None) -> None:
        """box_root: the box root this server's sessions see (GRAINBOX_BOX_ROOT, set by sshd's SetEnv), so
        two servers on one machine are two boxes. client_key: accept an existing key instead of a new one.
        session_env: more variables every session gets (e.g. TMPDIR, to keep a test's files in its own
        directory)."""
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_tcp_port()
        self.user = getpass.getuser()
        self.host_key = self._keygen("host_key")
        self.client_key = Path(client_key) if client_key else self._keygen("client_key")
        (self.dir / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        host_pub = " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",  # the test's temporary directory is not root-owned
                    "PermitRootLogin prohibit-password",  # CI runs as root
                    "PidFile none",
                    "LogLevel VERBOSE",
                    "MaxStartups 50",
                    f"SetEnv GRAINBOX_BOX_ROOT={box_root}" if box_root else "",
                    *(f"SetEnv {k}={v}" for k, v in (session_env or {}).items()),
                    "",
                ]
            )
        )
        self.log_path = self.dir / "sshd.log"
        if os.geteuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _keygen(self, name: str) -> Path:
        path = self.dir / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
                       check=True, stdout=subprocess.DEVNULL)
        return path

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not answer on port {self.port} within {timeout} s: {self.log()}")

    @property
    def target(self) -> str:
        """flash.sh's TARGET for this server: user@127.0.0.1:port."""
        return f"{self.user}@127.0.0.1:{self.port}"

    @property
    def flash_args(self) -> list[str]:
        return ["--identity", str(self.client_key), "--known-hosts", str(self.known_hosts),
                "--ssh-opt", "StrictHostKeyChecking=yes"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def logins(self) -> int:
        """How many sessions sshd has accepted so far."""
        return self.log().count("Accepted publickey")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> Sshd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
