"""deploy/ checked without a Raspberry Pi: shellcheck on every script, `systemd-analyze verify` on the units,
the Pd unit's command line run by the real Pd, and setup-pi.sh's file-system half run into a temporary
root (twice: the second run must change nothing), locally and over a real sshd on 127.0.0.1.

What only a real Pi can show (apt, the grainbox user, pip on aarch64, systemctl start, SPI after a reboot)
is listed in deploy/README.md under "Not verified without a Pi".
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.deploy_box import box_file_name, flash, link, sha256_of, snapshot
from tests.support.model_fixtures import write_valid
from tests.support.sshd import Sshd

DEPLOY = REPO / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
# The one path a unit names that exists only on a provisioned box (setup-pi.sh creates it).
BOX_PYTHON = "/opt/grainbox/.venv/bin/python"
# /proc/asound/cards of a Pi 4 with a USB interface: the USB card is number 2 here, another number after
# the next boot; its id "Device" stays.
CARDS = """\
 0 [vc4hdmi0       ]: vc4-hdmi - vc4-hdmi-0
                      vc4-hdmi-0
 1 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones
                      bcm2835 Headphones
 2 [Device         ]: USB-Audio - USB Audio Device
                      C-Media Electronics Inc. USB Audio Device at usb-0000:01:00.0-1.3, full speed
"""


def needs(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed here (make apt installs it; CI has it)")
    return path


def test_shellcheck_passes_on_every_deploy_script() -> None:
    scripts = sorted(DEPLOY.glob("*.sh"))
    assert {p.name for p in scripts} >= {"flash.sh", "boxside.sh", "setup-pi.sh"}
    result = subprocess.run([needs("shellcheck"), "--severity=info", *map(str, scripts)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def unit_copies_for_this_machine(dest: Path) -> list[Path]:
    """The units as shipped, except that the box's venv python (absent here) becomes this test's python.

    systemd-analyze verify fails on an ExecStart= binary that does not exist, and /opt/grainbox/.venv
    exists only on a provisioned box; putting it on the test machine would mean writing outside the test's
    temporary directory. Everything else the units name (/usr/bin/pd, /bin/sh, targets) is checked as it
    is written; test_only_the_box_python_is_missing_here proves that this one path is all that differs.
    """
    dest.mkdir()
    copies = []
    for unit in UNITS:
        text = unit.read_text()
        (dest / unit.name).write_text(text.replace(BOX_PYTHON, sys.executable))
        copies.append(dest / unit.name)
    return copies


def verify(units: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run([needs("systemd-analyze"), "verify", "--man=no", *map(str, units)],
                          capture_output=True, text=True, cwd=units[0].parent, timeout=60)


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    result = verify(unit_copies_for_this_machine(tmp_path / "units"))
    assert result.returncode == 0 and not result.stderr.strip(), result.stdout + result.stderr


def test_only_the_box_python_is_missing_here(tmp_path: Path) -> None:
    """The shipped units, unchanged: verify's only complaint is the box's venv python."""
    if not Path(BOX_PYTHON).exists():
        result = verify([shutil.copy(u, tmp_path / u.name) for u in UNITS])
        complaints = [line for line in result.stderr.splitlines() if line.strip()]
        assert complaints, "verify accepted a missing ExecStart binary: this test's premise is wrong"
        assert all(BOX_PYTHON in line for line in complaints), result.stderr
    assert sum(BOX_PYTHON in u.read_text() for u in UNITS) == 1


def unit_settings(unit: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_units_restart_are_ordered_hardened_and_can_write_the_box_state() -> None:
    pd = unit_settings(DEPLOY / "systemd" / "grainbox-pd.service")
    runtime = unit_settings(DEPLOY / "systemd" / "grainbox-runtime.service")
    for unit in (pd, runtime):
        assert unit["Restart"] == ["always"]
        assert unit["NoNewPrivileges"] == ["yes"] and unit["PrivateTmp"] == ["yes"]
        assert unit["ProtectSystem"] == ["strict"]
        assert unit["User"] == ["grainbox"]
    assert "grainbox-pd.service" in runtime["After"][0]
    assert pd["LimitRTPRIO"] and pd["LimitMEMLOCK"] == ["infinity"]
    assert re.search(r"/usr/bin/pd -nogui .*-rt .*-alsa .*main\.pd$", pd["ExecStart"][0])
    # Under ProtectSystem=strict the runtime writes only its state; the models it reads are read-only.
    config = tomllib.loads((DEPLOY / "box.toml").read_text())
    assert runtime["ReadWritePaths"][0].split() == [config["state"]["dir"]]
    assert runtime["ReadOnlyPaths"][0].split() == [str(Path(config["model"]["path"]).parent)]


def test_runtime_and_pd_units_take_udp_from_loopback_only_and_keep_no_capabilities() -> None:
    for name in ("grainbox-pd.service", "grainbox-runtime.service"):
        unit = unit_settings(DEPLOY / "systemd" / name)
        assert unit["IPAddressDeny"] == ["any"] and unit["IPAddressAllow"] == ["localhost"], name
        assert unit["CapabilityBoundingSet"] == [""], name
        # -rt (Pd) and the knobs (runtime) need the sound card, SPI and GPIO: no device allow-list,
        # which ProtectClock= or PrivateDevices= would impose.
        assert not {"ProtectClock", "PrivateDevices", "DeviceAllow", "DevicePolicy"} & set(unit), name


GOVERNOR = DEPLOY / "systemd" / "grainbox-cpu-governor.service"


def test_cpu_governor_unit_is_sandboxed_to_the_cpufreq_files() -> None:
    unit = unit_settings(GOVERNOR)
    assert "User" not in unit, "the governor files are root's: the unit runs as root, with no capability"
    assert unit["CapabilityBoundingSet"] == [""] and unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"] and unit["ProtectKernelTunables"] == ["yes"]
    assert unit["ReadWritePaths"] == ["/sys/devices/system/cpu"]
    assert re.search(r"/sys/devices/system/cpu/cpu\*/cpufreq/scaling_governor", unit["ExecStart"][0])
    for key in ("PrivateNetwork", "PrivateDevices", "PrivateTmp", "ProtectHome", "RestrictNamespaces"):
        assert unit[key] == ["yes"], key
    assert unit["IPAddressDeny"] == ["any"] and unit["RestrictAddressFamilies"] == ["none"]


def governor_argv() -> list[str]:
    """The governor unit's ExecStart as systemd hands it to execve: "$$" is a literal "$"; any other
    variable reference would be substituted by systemd (and must not be there)."""
    words = shlex.split(unit_settings(GOVERNOR)["ExecStart"][0])
    for word in words:
        assert not re.search(r"(?<!\$)\$\{", word.replace("$$", "")), f"systemd would substitute in {word!r}"
    return [word.replace("$$", "$") for word in words]


@pytest.mark.parametrize("read_only", [False, True], ids=["writable", "read-only"])
def test_cpu_governor_command_sets_every_cpu_and_fails_when_one_refuses(read_only: bool) -> None:
    """The unit's command runs in a mount namespace of its own, with a tmpfs of two CPUs' cpufreq files
    over /sys/devices/system/cpu (the host's stay untouched). Read-only, it must fail, not pass silently."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private mount namespace")
    cpu = "/sys/devices/system/cpu"
    prepare = (f"mount -t tmpfs grainbox-test {cpu} && for c in 0 1; do mkdir -p {cpu}/cpu$c/cpufreq && "
               f"echo ondemand >{cpu}/cpu$c/cpufreq/scaling_governor; done"
               + (f" && mount -o remount,ro {cpu}" if read_only else ""))
    script = f'{prepare} && "$@"; rc=$?; cat {cpu}/cpu*/cpufreq/scaling_governor; exit $rc'
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                             *governor_argv()], capture_output=True, text=True, timeout=30)
    if read_only:
        assert result.returncode != 0, result.stdout + result.stderr
        assert "0 CPUs set, 2 refused" in result.stdout and "Read-only file system" in result.stderr
        assert result.stdout.splitlines()[-2:] == ["ondemand", "ondemand"]
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines() == ["governor performance: 2 CPUs set, 0 refused",
                                              "performance", "performance"]


# systemd-analyze security --offline=yes: 9.6 (governor), 7.4 (Pd), 7.3 (runtime) before the hardening.
EXPOSURE_AT_MOST = {"grainbox-cpu-governor.service": 1.5, "grainbox-pd.service": 4.0,
                    "grainbox-runtime.service": 4.0, "grainbox-midi-connect.service": 1.5}


def test_systemd_analyze_security_scores_the_units_safe_or_ok() -> None:
    analyze = needs("systemd-analyze")
    for unit in UNITS:
        result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(unit)],
                                capture_output=True, text=True, timeout=60)
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
        assert found, result.stdout[-500:] + result.stderr
        assert float(found.group(1)) <= EXPOSURE_AT_MOST[unit.name], f"{unit.name}: {found.group(0)}"


def pd_unit_argv(root: Path) -> list[str]:
    """The Pd unit's ExecStart as systemd expands it with audio.env: ${VAR} is one word, $VAR is split
    at spaces (and an empty one is no word at all)."""
    env = {k: v.strip('"') for k, v in (line.split("=", 1) for line in
           (root / "etc/grainbox/audio.env").read_text().splitlines() if line and not line.startswith("#"))}
    exec_start = unit_settings(DEPLOY / "systemd" / "grainbox-pd.service")["ExecStart"][0]
    argv: list[str] = []
    for word in shlex.split(exec_start):
        split = re.fullmatch(r"\$(\w+)", word)
        argv += env.get(split.group(1), "").split() if split else [
            re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word)]
    return argv


def test_pd_unit_opens_the_audio_input_only_when_asked(
        tmp_path: Path, repo_copy: Path, factory: Path) -> None:
    root = fresh_root(tmp_path)
    setup(root, "--audio-device", "null", "--factory-model", factory, script_dir=repo_copy)
    argv = pd_unit_argv(root)
    assert "-noadc" in argv and "-audioaddindev" not in argv
    setup(root, "--audio-input", "hw:CARD=Device,DEV=0", "--factory-model", factory, script_dir=repo_copy)
    argv = pd_unit_argv(root)
    # -noadc first, then the input opened again after it: the later flags win in Pd
    tail = argv[argv.index("-noadc") + 1:]
    assert tail[:6] == ["-alsaadd", "hw:CARD=Device,DEV=0", "-audioaddindev", "hw:CARD=Device,DEV=0",
                        "-inchannels", "2"]
    assert "GRAINBOX_ALSA_DEVICE=null" in (root / "etc/grainbox/audio.env").read_text(), "output kept"
    bad = subprocess.run(["bash", str(repo_copy / "deploy/setup-pi.sh"), "--root", str(root),
                          "--audio-input", "hw:0; rm -rf /"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--audio-input must be an ALSA device name" in bad.stderr


def test_pd_unit_command_line_opens_the_sound_card_by_name(
        tmp_path: Path, repo_copy: Path, factory: Path) -> None:
    """The real Pd runs the unit's ExecStart (with audio.env as setup-pi.sh writes it) on ALSA's "null"
    device, named exactly as a card id would be: Pd accepts every flag and opens the device by name."""
    needs("pd")
    root = fresh_root(tmp_path)
    setup(root, "--audio-device", "null", "--factory-model", factory, script_dir=repo_copy)
    argv = pd_unit_argv(root)
    patch = tmp_path / "tone.pd"
    patch.write_text("#N canvas 0 0 450 300 12;\n#X obj 10 10 osc~ 440;\n#X obj 10 40 dac~;\n"
                     "#X connect 0 0 1 0;\n#X connect 0 0 1 1;\n")
    assert argv[-1] == "/opt/grainbox/pd/main.pd"
    argv[-1:] = ["-verbose", "-send", "pd dsp 1", "-send", "pd quit", str(patch)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "ALSA output error" not in out and "Sample width set" in out, out


# ---- setup-pi.sh into a directory ------------------------------------------------------------------
SETUP = "deploy/setup-pi.sh"


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository as setup-pi.sh would ship it, frozen: the test compares two runs' copies, which
    edits in the working tree between them must not disturb."""
    dest = tmp_path_factory.mktemp("checkout") / "grainbox"
    shutil.copytree(REPO, dest, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "out", "runs", ".cache", "*_cache", "__pycache__", "*.egg-info"))
    return dest


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_valid(tmp_path_factory.mktemp("factory") / "factory.ts", seed=7, name="factory-synth")


def fresh_root(tmp_path: Path) -> Path:
    """A Pi's root file system, as far as setup-pi.sh's file half reads it: config.txt and the sound cards."""
    root = tmp_path / "pi"
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text("[all]\n#dtparam=spi=on\ndtparam=audio=on\n")
    (root / "proc/asound").mkdir(parents=True)
    (root / "proc/asound/cards").write_text(CARDS)
    return root


def setup(root: Path, *args: str | Path, script_dir: Path = REPO, check: bool = True,
          ) -> subprocess.CompletedProcess:
    result = subprocess.run([str(script_dir / SETUP), "--root", str(root), *map(str, args)],
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


TRIGGERED_BY_UDEV = ("grainbox-midi-connect.service",)


def assert_is_a_box(root: Path, factory: Path) -> None:
    box = root / "var/lib/grainbox"
    assert link(box, "current") == box_file_name(factory, "factory-synth")
    assert sha256_of(box / "models" / link(box, "current")) == sha256_of(factory)
    assert (root / "opt/grainbox/pd/main.pd").is_file()
    assert (root / "opt/grainbox/runtime/__main__.py").is_file()
    assert not (root / "opt/grainbox/.venv").exists(), "the workstation's venv was copied to the box"
    assert (root / "etc/grainbox/box.toml").read_text() == (DEPLOY / "box.toml").read_text()
    assert "GRAINBOX_ALSA_DEVICE=hw:CARD=Device,DEV=0\n" in (root / "etc/grainbox/audio.env").read_text()
    assert "\ndtparam=spi=on\n" in (root / "boot/firmware/config.txt").read_text()
    assert "#dtparam=spi" not in (root / "boot/firmware/config.txt").read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants"
    for unit in UNITS:
        assert (root / "etc/systemd/system" / unit.name).read_text() == unit.read_text()
        if unit.name in TRIGGERED_BY_UDEV:  # started when a MIDI controller is plugged in, not at boot
            assert not (wants / unit.name).exists()
        else:
            assert os.readlink(wants / unit.name) == f"/etc/systemd/system/{unit.name}"
    rule = DEPLOY / "udev" / "90-grainbox-midi.rules"
    assert (root / "etc/udev/rules.d" / rule.name).read_text() == rule.read_text()
    assert 'ENV{SYSTEMD_WANTS}+="grainbox-midi-connect.service"' in rule.read_text()


def test_setup_pi_builds_the_box_layout_and_a_second_run_changes_nothing(
        tmp_path: Path, repo_copy: Path, factory: Path) -> None:
    root = fresh_root(tmp_path)
    first = setup(root, "--factory-model", factory, script_dir=repo_copy)
    assert_is_a_box(root, factory)
    assert "audio.env" in first.stdout and "change(s) made" in first.stdout
    before = snapshot(root)
    second = setup(root, "--factory-model", factory, script_dir=repo_copy)
    assert "nothing to change: the box is set up" in second.stdout, second.stdout
    assert "  change: " not in second.stdout
    assert snapshot(root) == before


def test_setup_pi_keeps_a_flashed_model_and_the_box_config_edited_on_the_box(
        tmp_path: Path, repo_copy: Path, factory: Path) -> None:
    root = fresh_root(tmp_path)
    setup(root, "--factory-model", factory, script_dir=repo_copy)
    box = root / "var/lib/grainbox"
    newer = write_valid(tmp_path / "newer.ts", seed=8, name="newer")
    flashed = flash(newer, root)   # the SD-card target: root is the card's root partition
    assert flashed.returncode == 0, flashed.stdout + flashed.stderr
    config = root / "etc/grainbox/box.toml"
    config.write_text(config.read_text().replace("slots = 8", "slots = 4"))

    again = setup(root, "--factory-model", factory, script_dir=repo_copy)
    assert link(box, "current") == box_file_name(newer, "newer"), again.stdout
    assert "slots = 4" in config.read_text()
    assert "kept as edited on the box" in again.stdout


def test_setup_pi_dry_run_shows_the_plan_and_writes_nothing(tmp_path: Path, factory: Path) -> None:
    root = fresh_root(tmp_path)
    before = snapshot(root)
    result = setup(root, "--dry-run", "--factory-model", factory)
    assert "would: copy" in result.stdout and "would: current ->" in result.stdout
    assert "would: set dtparam=spi=on" in result.stdout
    assert snapshot(root) == before


def test_setup_pi_refuses_an_unknown_sound_card_and_names_the_ones_there(tmp_path: Path) -> None:
    root = fresh_root(tmp_path)
    result = setup(root, "--audio-card", "Focusrite", check=False)
    assert result.returncode != 0
    assert "--audio-card Focusrite: no such sound card" in result.stderr
    assert "Device Headphones vc4hdmi0" in result.stderr
    assert not (root / "etc/grainbox/audio.env").exists()


def test_setup_pi_over_ssh_provisions_the_box(tmp_path: Path, repo_copy: Path, factory: Path) -> None:
    """Remote mode: the repository goes over a real ssh to a mktemp -d directory on the "Pi" (this machine),
    and setup-pi.sh runs there; --root keeps it to the temporary root."""
    root = fresh_root(tmp_path)
    with Sshd(tmp_path / "sshd") as server:
        result = subprocess.run(
            [str(repo_copy / SETUP), "--root", str(root), "--factory-model", str(factory), *server.flash_args,
             server.target], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        logins = server.logins()
    assert result.returncode == 0, result.stdout + result.stderr
    assert logins >= 2
    assert_is_a_box(root, factory)


@pytest.mark.parametrize("outcome", ["provisioned", "failed"])
def test_setup_pi_over_ssh_stages_in_a_fresh_private_directory_and_removes_it(
        tmp_path: Path, repo_copy: Path, factory: Path, outcome: str) -> None:
    """What is unpacked on the Pi runs with sudo: it goes to a new directory of mktemp -d (in the Pi's
    TMPDIR, here the test's own), never a fixed /tmp name another user could prepare, and is removed
    when the run ends, well or not."""
    root, pi_tmp = fresh_root(tmp_path), tmp_path / "pi-tmp"
    pi_tmp.mkdir()
    card = ["--audio-card", "Focusrite"] if outcome == "failed" else []
    with Sshd(tmp_path / "sshd", session_env={"TMPDIR": str(pi_tmp)}) as server:
        result = subprocess.run(
            [str(repo_copy / SETUP), "--root", str(root), "--factory-model", str(factory), *card,
             *server.flash_args, server.target], capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL)
    out = result.stdout + result.stderr
    assert (result.returncode == 0) == (outcome == "provisioned"), out
    staged = re.search(rf"to \S+:({re.escape(str(pi_tmp))}/grainbox-setup\.\w{{10}}) \.\.\.", out)
    assert staged, out
    if outcome == "provisioned":
        assert_is_a_box(root, factory)
    else:
        assert "--audio-card Focusrite: no such sound card" in out
    assert list(pi_tmp.iterdir()) == [], f"{staged.group(1)} was left behind"


def authorized_key(tmp_path: Path) -> str:
    key = tmp_path / "admin_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pi@laptop", "-f", str(key)],
                   check=True)
    return Path(f"{key}.pub").read_text()


def with_admin_pi(root: Path, authorized_keys: str | None) -> Path:
    """The box's user pi (home /home/pi in the box's /etc/passwd) with this authorized_keys file, if any."""
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                     "pi:x:1000:1000:,,,:/home/pi:/bin/bash\n")
    ssh = root / "home/pi/.ssh"
    ssh.mkdir(parents=True)
    if authorized_keys is not None:
        (ssh / "authorized_keys").write_text(authorized_keys)
    return ssh


def effective_sshd_settings(root: Path, tmp_path: Path) -> dict[str, str]:
    """What the real sshd makes of the box's drop-ins, read first as Debian's sshd_config does (its
    first line is `Include /etc/ssh/sshd_config.d/*.conf`; the first value of a key wins), before a
    main file that allows passwords."""
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = tmp_path / "sshd_config"
    config.write_text(f"Include {root}/etc/ssh/sshd_config.d/*.conf\nHostKey {key}\n"
                      "PasswordAuthentication yes\nKbdInteractiveAuthentication yes\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    result = subprocess.run([needs("/usr/sbin/sshd"), "-T", "-f", str(config)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)


def test_setup_pi_turns_ssh_password_login_off_once_the_admin_has_a_key(
        tmp_path: Path, repo_copy: Path, factory: Path) -> None:
    root = fresh_root(tmp_path)
    with_admin_pi(root, "# the admin's keys\n" + authorized_key(tmp_path))
    first = setup(root, "--admin", "pi", "--factory-model", factory, script_dir=repo_copy)
    dropin = root / "etc/ssh/sshd_config.d/10-grainbox-no-passwords.conf"
    assert f"change: write {dropin}" in first.stdout, first.stdout
    settings = effective_sshd_settings(root, tmp_path)
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["pubkeyauthentication"] == "yes"
    second = setup(root, "--admin", "pi", "--factory-model", factory, script_dir=repo_copy)
    assert "nothing to change: the box is set up" in second.stdout, second.stdout


@pytest.mark.parametrize("authorized_keys", [None, "", "# ssh-ed25519 AAAAC3Nz... a key commented out\n"],
                         ids=["no-file", "empty", "only-a-comment"])
def test_setup_pi_leaves_password_login_on_while_the_admin_has_no_key(
        tmp_path: Path, factory: Path, authorized_keys: str | None) -> None:
    root = fresh_root(tmp_path)
    with_admin_pi(root, authorized_keys)
    result = setup(root, "--admin", "pi", "--factory-model", factory)
    assert not (root / "etc/ssh/sshd_config.d").exists()
    assert "password login stays on: no ssh key for pi in /home/pi/.ssh/authorized_keys" in result.stdout
    assert "ssh-copy-id" in result.stdout
    assert effective_sshd_settings(root, tmp_path)["passwordauthentication"] == "yes"


def test_setup_pi_dry_run_names_the_cpu_only_torch_source_and_the_liblo_binding(
        tmp_path: Path, factory: Path) -> None:
    default = setup(fresh_root(tmp_path / "a"), "--dry-run", "--factory-model", factory)
    assert "torch: torch==2.13.0, CPU-only, from https://download.pytorch.org/whl/cpu" in default.stdout
    assert "liblo binding: Debian's python3-liblo (apt)" in default.stdout
    elsewhere = setup(fresh_root(tmp_path / "b"), "--dry-run", "--factory-model", factory,
                      "--torch-index", "https://mirror.example/simple", "--torch-version", "2.9.1")
    assert "torch: torch==2.9.1, CPU-only, from https://mirror.example/simple" in elsewhere.stdout


def test_the_box_installs_python3_liblo_and_no_compiler() -> None:
    text = (DEPLOY / "setup-pi.sh").read_text()
    packages = re.search(r"^APT_PACKAGES=\(([^)]*)\)", text, re.M)
    assert packages is not None
    names = packages.group(1).split()
    assert "python3-liblo" in names and "python3-lgpio" in names
    assert not {"liblo-dev", "python3-dev", "build-essential"} & set(names)


def test_pyproject_keeps_the_workstation_pins_and_asks_aarch64_for_no_pyliblo3_nor_a_cuda_torch() -> None:
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = [Requirement(d) for d in project["dependencies"]]

    def wanted(machine: str) -> dict[str, Requirement]:
        env = {"platform_machine": machine}
        return {r.name: r for r in deps if r.marker is None or r.marker.evaluate(env)}

    x86, arm = wanted("x86_64"), wanted("aarch64")
    assert str(x86["torch"].specifier) == "==2.13.0" and "pyliblo3" in x86
    assert "pyliblo3" not in arm
    # the stand-in pi-check installs (PyPI's CPU-only 2.9.1) and PyTorch's CPU index's build both fit;
    # 2.10.0's aarch64 build dies of SIGILL on the Pi 4's cortex-a72
    assert arm["torch"].specifier.contains("2.9.1") and arm["torch"].specifier.contains("2.13.0+cpu")
    assert not arm["torch"].specifier.contains("2.10.0")


def test_without_either_liblo_binding_the_runtime_says_which_packages_to_install() -> None:
    hide = "import sys; sys.modules['pyliblo3'] = None; sys.modules['liblo'] = None; import runtime.link"
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    assert result.returncode != 0
    assert "no liblo binding for Python" in result.stderr
    assert "pyliblo3" in result.stderr and "python3-liblo" in result.stderr


@pytest.mark.parametrize("problem", ["no-card-named", "unknown-card", "missing-factory-model"])
def test_setup_pi_checks_every_option_before_it_changes_anything(
        tmp_path: Path, factory: Path, problem: str) -> None:
    root = fresh_root(tmp_path)
    args: list[str | Path] = ["--factory-model", factory]
    if problem == "no-card-named":  # an SD card's root: no /proc/asound/cards to choose from
        (root / "proc/asound/cards").unlink()
    elif problem == "unknown-card":
        args += ["--audio-card", "Focusrite"]
    else:
        args = ["--factory-model", tmp_path / "nowhere.ts"]
    before = snapshot(root)
    result = setup(root, *args, check=False)
    print(result.stdout + result.stderr)
    assert result.returncode == 1
    assert snapshot(root) == before, "files were written before the bad option was found"
    assert "change:" not in result.stdout and "provisioning" not in result.stdout
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("setup-pi.sh: ")
    assert {"no-card-named": "--root: which sound card? pass --audio-card ID",
            "unknown-card": "--audio-card Focusrite: no such sound card; the cards here are: Device",
            "missing-factory-model": f"no factory model at {tmp_path / 'nowhere.ts'}"}[problem] in error[0]


def test_setup_pi_copies_only_the_files_git_tracks(tmp_path: Path, repo_copy: Path, factory: Path) -> None:
    """A model or scratch file lying untracked in the checkout stays on the workstation."""
    checkout = tmp_path / "checkout"
    shutil.copytree(repo_copy, checkout, symlinks=True)
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "ship"], check=True)
    (checkout / "mine.ts").write_bytes(b"my own model, not for the box")
    (checkout / "models/scratch.ts").write_bytes(b"another")
    (checkout / "pd/README.md").unlink()  # tracked but deleted here: nothing to copy, no error
    root = fresh_root(tmp_path)
    result = setup(root, "--factory-model", factory, script_dir=checkout)
    print(result.stdout)
    opt = root / "opt/grainbox"
    assert not (opt / "mine.ts").exists() and not (opt / "models/scratch.ts").exists()
    assert not (opt / "pd/README.md").exists() and (opt / "pd/main.pd").is_file()
    assert (opt / "deploy/setup-pi.sh").read_bytes() == (checkout / "deploy/setup-pi.sh").read_bytes()
    assert oct((opt).stat().st_mode & 0o777) == oct(checkout.stat().st_mode & 0o777)
    assert "git's tracked files" in result.stdout and "untracked files stay behind" in result.stdout
    again = setup(root, "--factory-model", factory, script_dir=checkout)
    assert "nothing to change: the box is set up" in again.stdout, again.stdout
