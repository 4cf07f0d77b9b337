"""Fixtures shared by every test module. Area-specific helpers live beside their tests."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


# Tests that need these skip with a reason on a developer's machine without them; in CI (`make test`
# installs them all) a missing one is an install bug, so the run fails at once instead of skipping quietly.
REQUIRED_IN_CI = ("pd", "oscsend", "oscdump", "shellcheck", "systemd-analyze", "/usr/sbin/sshd", "ssh")


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI"):
        missing = [tool for tool in REQUIRED_IN_CI if shutil.which(tool) is None]
        if missing:
            raise pytest.UsageError(
                f"CI: {', '.join(missing)} not installed; `make apt` installs them (Makefile: APT_PACKAGES)"
            )


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def shared_datasets() -> Path:
    """../shared/datasets, or a skip with the reason where the checkout has no shared/ beside it."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is absent (it exists only on Grainbox's own machines)")
    return SHARED_DATASETS


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is listening on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
