"""deploy/flash.sh against real boxes in miniature: OpenSSH's sshd on 127.0.0.1, a temporary directory as
the box's file system, and the real runtime process reporting what it plays (tests/support/deploy_box.py).

Each test states one promise of flash.sh: a box is updated and confirms it, or it is left exactly as it was.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, free_tcp_port, free_udp_port
from tests.support.deploy_box import (
    FLASH,
    PYTHON,
    BoxRuntime,
    box_file_name,
    flash,
    install_directly,
    link,
    read_status,
    sha256_of,
    snapshot,
)
from tests.support.model_fixtures import write_broken, write_valid
from tests.support.runtime_pd import PdProcess, pd_available
from tests.support.sshd import Sshd


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small valid models (old, new), a 4 MB valid one (big) and a truncated one (corrupt)."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("models")
    return {
        "old": write_valid(d / "old.ts", seed=1, name="old-sound"),
        "new": write_valid(d / "new.ts", seed=2, name="new-sound"),
        "big": write_valid(d / "big.ts", seed=3, name="big-sound", latent_dim=512),
        "corrupt": write_broken(d / "corrupt.ts", "truncated"),
    }


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with Sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def box(tmp_path: Path, models: dict[str, Path]) -> Path:
    """A box root playing the old model (as setup-pi.sh leaves a box)."""
    root = tmp_path / "box"
    install_directly(root, models["old"], "old-sound")
    return root


@pytest.fixture
def runtime(box: Path, models: dict[str, Path]) -> Iterator[BoxRuntime]:
    """The real runtime playing the box, already reporting the old model."""
    rt = BoxRuntime(box)
    try:
        rt.wait_for(sha256_of(models["old"]))
        yield rt
    finally:
        rt.stop()


def over_ssh(sshd: Sshd, box: Path, *args: str | Path) -> list[str | Path]:
    return [*sshd.flash_args, "--box-root", box, *args]


def test_flash_over_ssh_updates_current_and_the_runtime_reports_the_new_hash(
        sshd: Sshd, box: Path, runtime: BoxRuntime, models: dict[str, Path]) -> None:
    old_file = link(box, "current")
    result = flash(*over_ssh(sshd, box, models["new"], sshd.target))
    assert result.returncode == 0, result.stdout + result.stderr
    new_file = box_file_name(models["new"], "new-sound")
    assert link(box, "current") == new_file
    assert link(box, "previous") == old_file
    assert sha256_of(box / "models" / new_file) == sha256_of(models["new"])
    assert read_status(box)["model_sha256"] == sha256_of(models["new"])
    assert f"{sshd.target}  ok" in result.stdout
    assert "Pd is not running and gets it when it starts" in result.stdout  # no Pd in this test
    assert not list((box / "models").glob(".incoming-*")), "the staging file was left behind"


@pytest.mark.skipif(not pd_available(), reason="needs Pd (apt: puredata-core)")
def test_flash_waits_until_pd_has_accepted_the_new_model(
        sshd: Sshd, box: Path, models: dict[str, Path], tmp_path: Path) -> None:
    pd_port = free_udp_port()
    runtime = BoxRuntime(box, pd_port=pd_port)
    pd = PdProcess(tmp_path / "pd", pd_port, runtime.osc_port)
    pd.start()
    try:
        runtime.wait_for(sha256_of(models["old"]))
        deadline = time.monotonic() + 60
        while not read_status(box).get("pd_model_accepted") and time.monotonic() < deadline:
            time.sleep(0.1)
        result = flash(*over_ssh(sshd, box, models["new"], sshd.target))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ok the runtime and Pd play" in result.stdout, result.stdout
        status = read_status(box)
        assert status["model_sha256"] == sha256_of(models["new"]) and status["pd_model_accepted"] is True
    finally:
        pd.kill()
        runtime.stop()


def test_corrupt_model_is_refused_before_any_copy(sshd: Sshd, box: Path, models: dict[str, Path]) -> None:
    before, logins = snapshot(box), sshd.logins()
    result = flash(*over_ssh(sshd, box, models["corrupt"], sshd.target))
    assert result.returncode == 2
    assert "invalid" in result.stderr and "truncated or damaged" in result.stderr
    assert "nothing was copied" in result.stderr
    assert snapshot(box) == before
    assert sshd.logins() == logins, "flash.sh connected to the box with a model it had refused"


def test_transfer_killed_half_way_leaves_the_old_model_and_a_later_flash_succeeds(
        sshd: Sshd, box: Path, runtime: BoxRuntime, models: dict[str, Path]) -> None:
    old_file, old_sha = link(box, "current"), sha256_of(box / "models" / link(box, "current"))
    models_before = snapshot(box / "models")
    big_size = models["big"].stat().st_size
    # 1 MB/s, and the link stalls half-way through the model: the copy cannot finish before the kill
    relay = REPO / "tests" / "support" / "slow_link.py"
    slow_link = f"ProxyCommand={PYTHON} {relay} 127.0.0.1 {sshd.port} 1000000 {big_size // 2}"
    proc = subprocess.Popen(
        [str(FLASH), *map(str, over_ssh(sshd, box, "--ssh-opt", slow_link, models["big"], sshd.target))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "GRAINBOX_PYTHON": PYTHON})
    try:
        # Wait until the box holds part of the file, then kill flash.sh with its ssh, as a dying laptop would.
        deadline, received = time.monotonic() + 60, 0
        while time.monotonic() < deadline and not big_size * 0.2 < received < big_size * 0.8:
            staging = list((box / "models").glob(".incoming-*.part"))
            received = staging[0].stat().st_size if staging else 0
            assert link(box, "current") == old_file
            time.sleep(0.02)
        assert big_size * 0.2 < received < big_size * 0.8, f"never caught the copy half-way ({received} B)"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    # The box side notices the cut (end of input or hang-up), deletes its partial copy and its lock:
    # the models directory returns to exactly what it was, with nobody left to clean up.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and snapshot(box / "models") != models_before:
        time.sleep(0.1)
    assert snapshot(box / "models") == models_before
    assert link(box, "current") == old_file
    assert sha256_of(box / "models" / old_file) == old_sha
    assert read_status(box)["model_sha256"] == old_sha, "the runtime stopped playing the old model"

    result = flash(*over_ssh(sshd, box, models["big"], sshd.target))
    assert result.returncode == 0, result.stdout + result.stderr
    assert link(box, "current") == box_file_name(models["big"], "big-sound")
    runtime.wait_for(sha256_of(models["big"]), timeout=5)
    assert not list((box / "models").glob(".incoming-*")), "the partial copy was never cleaned up"


def test_runtime_that_never_reports_the_new_hash_triggers_the_rollback(
        sshd: Sshd, box: Path, runtime: BoxRuntime, models: dict[str, Path]) -> None:
    old_file, old_sha = link(box, "current"), sha256_of(models["old"])
    runtime.freeze()  # hangs: status.json is fresh but will never change
    try:
        result = flash(*over_ssh(sshd, box, "--timeout", "2", models["new"], sshd.target))
    finally:
        runtime.thaw()
    assert result.returncode == 1
    assert "rolled-back" in result.stdout
    assert "did not report it within 2 s" in result.stdout
    assert link(box, "current") == old_file
    assert link(box, "previous") is None
    assert not (box / "models" / box_file_name(models["new"], "new-sound")).exists()
    time.sleep(1.5)  # the thawed runtime polls `current`, finds the old target, keeps playing it
    assert read_status(box)["model_sha256"] == old_sha


def test_rollback_returns_to_the_previous_model(
        sshd: Sshd, box: Path, runtime: BoxRuntime, models: dict[str, Path]) -> None:
    old_file = link(box, "current")
    assert flash(*over_ssh(sshd, box, models["new"], sshd.target)).returncode == 0
    new_file = link(box, "current")

    result = flash(*over_ssh(sshd, box, "--rollback", sshd.target))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (link(box, "current"), link(box, "previous")) == (old_file, new_file)
    assert read_status(box)["model_sha256"] == sha256_of(models["old"])


def leave_lock(box: Path, pid: str | None = None, boot: str | None = None, age_s: float = 0) -> Path:
    """The lock a flash leaves on the box when the power goes (models/.flash.lock), `age_s` seconds old."""
    lock = box / "models" / ".flash.lock"
    lock.mkdir()
    if boot is not None:
        (lock / "boot").write_text(boot + "\n")
    if pid is not None:
        (lock / "pid").write_text(pid + "\n")
    then = time.time() - age_s
    for path in [*lock.iterdir(), lock]:
        os.utime(path, (then, then))
    return lock


def this_boot() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@pytest.mark.parametrize("pid_file", ["missing", "empty"])
def test_old_lock_without_a_pid_is_taken_over(
        sshd: Sshd, box: Path, models: dict[str, Path], pid_file: str) -> None:
    # The power went between the lock's mkdir and its pid write (or before the pid reached the disk).
    lock = leave_lock(box, pid=None if pid_file == "missing" else "", age_s=3600)
    started = time.monotonic()
    result = flash(*over_ssh(sshd, box, "--no-wait", models["new"], sshd.target))
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 10, "the flash waited for a lock nobody holds"
    assert link(box, "current") == box_file_name(models["new"], "new-sound")
    assert not lock.exists(), "the taken-over lock was not released"


def test_lock_whose_pid_was_written_in_an_earlier_boot_is_taken_over(
        sshd: Sshd, box: Path, models: dict[str, Path]) -> None:
    # After a power cut the old pid can belong to a live, unrelated process: here, this test's own.
    lock = leave_lock(box, pid=str(os.getpid()), boot="00000000-0000-0000-0000-000000000000", age_s=60)
    result = flash(*over_ssh(sshd, box, "--no-wait", models["new"], sshd.target))
    assert result.returncode == 0, result.stdout + result.stderr
    assert link(box, "current") == box_file_name(models["new"], "new-sound")
    assert not lock.exists()


def test_lock_of_a_live_flash_is_respected(sshd: Sshd, box: Path, models: dict[str, Path]) -> None:
    # Its pid is alive in this boot: however old the lock, the flash waits and then says busy.
    leave_lock(box, pid=str(os.getpid()), boot=this_boot(), age_s=3600)
    before = snapshot(box)
    result = flash(*over_ssh(sshd, box, "--no-wait", models["new"], sshd.target))
    assert result.returncode == 1
    assert "another flash is in progress on this box" in result.stdout
    assert snapshot(box) == before


def test_fleet_flash_updates_two_boxes_and_prints_a_table(tmp_path: Path, models: dict[str, Path]) -> None:
    roots = [tmp_path / "box-a", tmp_path / "box-b"]
    for root in roots:
        install_directly(root, models["old"], "old-sound")
    runtimes = [BoxRuntime(root) for root in roots]
    # Two sshd instances are two boxes: each session sees its own box root (sshd's SetEnv), as each
    # Raspberry Pi has its own /var/lib/grainbox. One client key and one known_hosts serve the fleet.
    first = Sshd(tmp_path / "sshd-a", box_root=roots[0])
    second = Sshd(tmp_path / "sshd-b", box_root=roots[1], client_key=first.client_key)
    known_hosts = tmp_path / "fleet_known_hosts"
    known_hosts.write_text(first.known_hosts.read_text() + second.known_hosts.read_text())
    try:
        for rt in runtimes:
            rt.wait_for(sha256_of(models["old"]))
        result = flash("--identity", first.client_key, "--known-hosts", known_hosts,
                       models["new"], first.target, second.target)
    finally:
        for server in (first, second):
            server.stop()
        for rt in runtimes:
            rt.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    new_file, new_sha = box_file_name(models["new"], "new-sound"), sha256_of(models["new"])
    for root in roots:
        assert link(root, "current") == new_file
        assert read_status(root)["model_sha256"] == new_sha
    table = result.stdout[result.stdout.index("BOX "):].splitlines()
    assert table[0].split() == ["BOX", "RESULT", "DETAIL"]
    assert [row.split()[:2] for row in table[1:]] == [[first.target, "ok"], [second.target, "ok"]]


def test_sd_card_directory_target_works_without_ssh(tmp_path: Path, models: dict[str, Path]) -> None:
    card = tmp_path / "sdcard"
    root = card / "var" / "lib" / "grainbox"
    old_file = install_directly(root, models["old"], "old-sound")
    result = flash(models["new"], card)
    assert result.returncode == 0, result.stdout + result.stderr
    new_file = box_file_name(models["new"], "new-sound")
    assert (link(root, "current"), link(root, "previous")) == (new_file, old_file)
    assert sha256_of(root / "models" / new_file) == sha256_of(models["new"])
    assert "installed" in result.stdout and "plays at the next start" in result.stdout


def test_swaps_are_atomic_and_only_the_newest_k_models_are_kept(
        tmp_path: Path, models: dict[str, Path]) -> None:
    """While two flashes run (--keep 2), a reader polling `current` as the runtime does always finds a
    complete model file: the link is renamed over, never deleted and re-made (ln -sfn would open a gap)."""
    card = tmp_path / "sdcard"
    root = card / "var" / "lib" / "grainbox"
    install_directly(root, models["old"], "old-sound")
    valid_shas = {sha256_of(models[k]) for k in ("old", "new", "big")}
    seen: list[str] = []
    problems: list[str] = []
    done = threading.Event()

    def read_current() -> None:
        while not done.is_set():
            try:
                target = os.readlink(root / "models" / "current")
                with open(root / "models" / target, "rb") as f:
                    # Hash each target once (the names carry the content); afterwards it only must open.
                    if not seen or seen[-1] != target:
                        seen.append(target)
                        if hashlib.sha256(f.read()).hexdigest() not in valid_shas:
                            problems.append(f"{target}: incomplete or unknown content")
            except OSError as e:
                problems.append(repr(e))
            time.sleep(0.0005)

    reader = threading.Thread(target=read_current)
    reader.start()
    try:
        for name, meta in (("new", "new-sound"), ("big", "big-sound")):
            result = flash("--keep", "2", models[name], card)
            assert result.returncode == 0, result.stdout + result.stderr
            assert link(root, "current") == box_file_name(models[name], meta)
    finally:
        done.set()
        reader.join()
    assert problems == []
    assert len(seen) == 3, f"the reader saw {seen}"
    kept = sorted(p.name for p in (root / "models").glob("*.ts"))
    assert kept == sorted(box_file_name(models[k], f"{k}-sound") for k in ("new", "big"))
    assert link(root, "previous") == box_file_name(models["new"], "new-sound")


def test_unreachable_host_and_refused_authentication_are_named(
        sshd: Sshd, box: Path, models: dict[str, Path]) -> None:
    before = snapshot(box)
    nobody_listens = f"127.0.0.1:{free_tcp_port()}"
    stranger = f"grainbox-nobody@127.0.0.1:{sshd.port}"
    result = flash(*over_ssh(sshd, box, models["new"], nobody_listens, stranger))
    assert result.returncode == 1
    table = result.stdout[result.stdout.index("BOX "):].splitlines()[1:]
    rows = {row.split()[0]: row for row in table}
    assert "unreachable" in rows[nobody_listens] and "Connection refused" in rows[nobody_listens]
    assert "auth-refused" in rows[stranger] and "ssh-copy-id" in rows[stranger]
    assert snapshot(box) == before


def test_not_enough_space_is_refused_before_any_copy(sshd: Sshd, box: Path, models: dict[str, Path]) -> None:
    before = snapshot(box)
    # --min-free asks the box to keep more free space than any disk has: the real df answer falls short.
    result = flash(*over_ssh(sshd, box, "--min-free", "999999999", models["new"], sshd.target))
    assert result.returncode == 1
    assert "no-space" in result.stdout and "not enough space on the box" in result.stdout
    assert snapshot(box) == before


def test_dry_run_shows_the_plan_and_changes_nothing(sshd: Sshd, box: Path, models: dict[str, Path]) -> None:
    before = snapshot(box)
    result = flash(*over_ssh(sshd, box, "--dry-run", "--no-wait", models["new"], sshd.target))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"current -> {box_file_name(models['new'], 'new-sound')}" in result.stdout
    assert "planned" in result.stdout
    assert snapshot(box) == before


def test_dry_run_of_the_model_already_current_says_unchanged_as_the_real_run_does(
        tmp_path: Path, models: dict[str, Path]) -> None:
    card = tmp_path / "sdcard"
    install_directly(card / "var/lib/grainbox", models["old"], "old-sound")
    before = snapshot(card)
    dry = flash("--dry-run", models["old"], card)
    print(dry.stdout)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    current = box_file_name(models["old"], "old-sound")
    assert f"would: nothing: {current} is already current" in dry.stdout
    assert "would: copy" not in dry.stdout and "mv -T" not in dry.stdout
    assert dry.stdout.splitlines()[-1].split()[1:3] == ["unchanged", "dry"]
    assert snapshot(card) == before
    real = flash(models["old"], card)  # the real run says the same (and only touches the file's mtime)
    assert real.returncode == 0 and real.stdout.splitlines()[-1].split()[1] == "unchanged", real.stdout


def test_a_folder_that_is_not_a_box_says_so_without_internal_codes(
        tmp_path: Path, models: dict[str, Path]) -> None:
    empty = tmp_path / "not-a-box"
    empty.mkdir()
    result = flash(models["new"], empty)
    print(result.stdout)
    assert result.returncode == 1
    assert f"no box at {empty}/var/lib/grainbox (run deploy/setup-pi.sh first" in result.stdout
    assert "nobox" not in result.stdout + result.stderr


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_card_folder_that_does_not_exist_asks_whether_the_card_is_mounted(
        tmp_path: Path, models: dict[str, Path], dry_run: bool) -> None:
    card = tmp_path / "media" / "rootfs"  # the card's usual mount point, with no card in the reader
    result = flash(*(["--dry-run"] if dry_run else []), models["new"], card)
    print(result.stdout)
    assert result.returncode == 1
    assert f"no folder {card}: is the box's SD card mounted?" in result.stdout
    assert "setup-pi.sh" not in result.stdout and "nobox" not in result.stdout
    assert not card.exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
