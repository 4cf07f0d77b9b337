#!/usr/bin/env bash
# setup-pi.sh: turn a fresh Raspberry Pi OS Lite 64-bit (bookworm) into a Grainbox, and bring an existing
# box up to date. Idempotent: every step looks before it changes anything, so a second run changes nothing
# and says so. The box layout it creates is docs/box.md's; deploy/README.md tells the whole story.
#
#   on the Pi itself:          sudo deploy/setup-pi.sh [options]
#   from the workstation:      deploy/setup-pi.sh [options] [user@]host[:port]
#                              (sends this repository over ssh to a new mktemp -d directory on the Pi,
#                              runs this script there with sudo and removes it; your ssh login becomes the
#                              box's admin)
#   into a directory:          deploy/setup-pi.sh --root DIR [options]
#                              (writes only the file-system part below DIR: a mounted SD card's root
#                              partition, or a test; packages, users, pip and services are left for the Pi)
#
# Steps: apt packages, SPI on, the grainbox user (groups gpio, spi, audio), /opt/grainbox (this repository)
# with its virtual environment (the runtime's dependencies only), /etc/grainbox/{box.toml,audio.env} (the
# sound card by its ALSA id, never its number), /var/lib/grainbox/models with the factory model as
# `current` (a flashed model is kept), the systemd units enabled and (re)started, the CPU governor.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(dirname "$HERE")
# torch: a CPU-only build from PyTorch's CPU index. PyPI's torch 2.13.0 for aarch64 is the CUDA 13 build
# (2.7 GB of wheels, 4.6 GB installed, against the runtime's MemoryMax=1G and an SD card); the CPU index
# has CPU-only aarch64 wheels. Both are settings (--torch-index, --torch-version): `make pi-check`, which
# cannot reach PyTorch's index, points them at PyPI's torch 2.9.1, a CPU-only aarch64 wheel that runs on
# the Pi 4's cortex-a72 (PyPI's 2.10.0, also CPU-only, dies there of SIGILL: pytorch/pytorch#176993).
TORCH_VERSION=${GRAINBOX_TORCH_VERSION:-2.13.0}   # as pyproject.toml pins it on the workstation
TORCH_INDEX=${GRAINBOX_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

# What the box needs from Debian: Pd and its extra objects (rev3~), liblo's tools (oscsend/oscdump for
# diagnosis), Python's venv, PortAudio for sounddevice, ALSA's tools (aplay -l), lgpio for gpiozero's pin
# factory and Debian's liblo binding for the runtime's OSC link (the venv sees both through
# --system-site-packages). The binding is python3-liblo because PyPI's pyliblo3 has no aarch64 wheel or
# sdist from 0.17 on, and 0.16.3's sdist builds only with Cython < 3.1; python3-liblo (0.10, module
# `liblo`) has the same API, and runtime/liblo_binding.py imports either.
APT_PACKAGES=(puredata-core puredata-extra liblo-tools python3-liblo python3-venv libportaudio2 alsa-utils
    python3-lgpio rsync)
# Packages only Raspberry Pi OS's own archive has: on a plain Debian arm64 (`make pi-check`'s emulated
# root) they are reported missing and skipped. python3-lgpio: gpiozero's pin factory, the knobs.
PI_OS_ONLY=(python3-lgpio)
# What /opt/grainbox does not need from the repository (caches, the workstation's venv, training runs).
COPY_EXCLUDES=(.venv .git out runs .cache .pytest_cache .ruff_cache __pycache__ '*.egg-info' '*.pyc'
    models/.incoming-*)

usage() {
    cat <<EOF
usage: deploy/setup-pi.sh [options] [[user@]host[:port]]

Provision a Raspberry Pi OS Lite 64-bit (bookworm) as a Grainbox: on this machine (run it with sudo on the
Pi), on a Pi over ssh (give [user@]host[:port]), or below a directory (--root DIR). Safe to run again.

options:
  --root DIR            write the box's files below DIR instead of / (an SD card's root partition, a
                        test); apt, users, the venv and systemctl start are left for the first run on the Pi
  --dry-run             print what would change, change nothing
  --audio-card ID       the sound card's ALSA id, the name in [brackets] in /proc/asound/cards or after
                        "card N:" in aplay -l (default: the first USB card, else the first non-HDMI one;
                        an existing /etc/grainbox/audio.env is kept unless this is given)
  --audio-device PCM    the full ALSA device instead (default hw:CARD=ID,DEV=0)
  --audio-input PCM     the ALSA capture device Pd listens to (a microphone or line input; e.g.
                        hw:CARD=Device,DEV=0, often the same card), or none (default: none, Pd opens no
                        input; docs/osc.md /input)
  --sample-rate HZ      Pd's sample rate (default 48000)
  --audio-buffer MS     Pd's audio buffer in ms (default 20)
  --factory-model FILE  the model the box starts with (default models/factory.ts in this repository)
  --torch-index URL     the pip index torch comes from, a CPU-only build (default: PyTorch's CPU index,
                        $TORCH_INDEX; also GRAINBOX_TORCH_INDEX)
  --torch-version V     the torch version (default $TORCH_VERSION; also GRAINBOX_TORCH_VERSION)
  --admin USER          the login that flashes models (deploy/flash.sh): added to group grainbox, which
                        may write /var/lib/grainbox/models (default: \$SUDO_USER; over ssh: your login)
  -i, --identity FILE   ssh private key (remote mode)
  --known-hosts FILE    ssh known_hosts file (remote mode)
  --ssh-opt OPT         extra ssh -o option, repeatable (remote mode)
  -h, --help            this text
EOF
}

fail_usage() { echo "setup-pi.sh: $*" >&2; echo "try: deploy/setup-pi.sh --help" >&2; exit 2; }
die() { echo "setup-pi.sh: $*" >&2; exit 1; }

# ---- options ---------------------------------------------------------------------------------------
ROOT="" DRY_RUN=0 AUDIO_CARD="" AUDIO_DEVICE="" AUDIO_INPUT="" SAMPLE_RATE=48000 AUDIO_BUFFER_MS=20
FACTORY="" ADMIN=${SUDO_USER:-} TARGET=""
SSH_ARGS=(-o BatchMode=yes -o ConnectTimeout=8)
FORWARD=()   # the options a remote run passes on to the script on the Pi
while (($#)); do
    case $1 in
        --root) ROOT=${2:?--root needs a directory}; FORWARD+=("$1" "$2"); shift ;;
        --dry-run) DRY_RUN=1; FORWARD+=("$1") ;;
        --audio-card) AUDIO_CARD=${2:?--audio-card needs an ALSA card id}; FORWARD+=("$1" "$2"); shift ;;
        --audio-device) AUDIO_DEVICE=${2:?--audio-device needs an ALSA device}; FORWARD+=("$1" "$2"); shift ;;
        --audio-input) AUDIO_INPUT=${2:?--audio-input needs an ALSA device or none}; FORWARD+=("$1" "$2"); shift ;;
        --sample-rate) SAMPLE_RATE=${2:?--sample-rate needs Hz}; FORWARD+=("$1" "$2"); shift ;;
        --audio-buffer) AUDIO_BUFFER_MS=${2:?--audio-buffer needs ms}; FORWARD+=("$1" "$2"); shift ;;
        --factory-model) FACTORY=${2:?--factory-model needs a file}; shift ;;
        --torch-index) TORCH_INDEX=${2:?--torch-index needs a URL}; FORWARD+=("$1" "$2"); shift ;;
        --torch-version) TORCH_VERSION=${2:?--torch-version needs a version}; FORWARD+=("$1" "$2"); shift ;;
        --admin) ADMIN=${2:?--admin needs a user name}; shift ;;
        -i | --identity) SSH_ARGS+=(-i "${2:?--identity needs a key file}" -o IdentitiesOnly=yes); shift ;;
        --known-hosts) SSH_ARGS+=(-o "UserKnownHostsFile=${2:?--known-hosts needs a file}"); shift ;;
        --ssh-opt) SSH_ARGS+=(-o "${2:?--ssh-opt needs an option}"); shift ;;
        -h | --help) usage; exit 0 ;;
        -*) fail_usage "unknown option $1" ;;
        *) [[ -z $TARGET ]] || fail_usage "one box at a time: $TARGET and $1"; TARGET=$1 ;;
    esac
    shift
done
[[ -z $AUDIO_INPUT || $AUDIO_INPUT =~ ^[A-Za-z0-9:=,_.-]+$ ]] \
    || fail_usage "--audio-input must be an ALSA device name such as hw:CARD=Device,DEV=0, or none"
[[ $SAMPLE_RATE =~ ^[0-9]+$ ]] || fail_usage "--sample-rate must be a whole number of Hz, e.g. 48000"
[[ $AUDIO_BUFFER_MS =~ ^[0-9]+$ ]] || fail_usage "--audio-buffer must be a whole number of ms, e.g. 20"
[[ -z $AUDIO_CARD || $AUDIO_CARD =~ ^[A-Za-z0-9_-]+$ ]] ||
    fail_usage "--audio-card takes the card's ALSA id (letters, digits, _ and -), e.g. Headphones"
FACTORY=${FACTORY:-$SRC/models/factory.ts}

# ---- remote mode: send the repository to the Pi and run this script there ----------------------------
quote() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }

# What goes to the box is what git tracks (as it is in the work tree), never a model or scratch file lying
# untracked in the checkout. tracked_files prints those paths relative to SRC, NUL-separated, leaving out
# any deleted in the work tree; it fails when SRC is not the top of a git checkout (a release tarball, or
# the stage on the Pi, which holds only tracked files already): then every file but COPY_EXCLUDES goes.
tracked_files() {
    command -v git >/dev/null || return 1
    local top f
    top=$(git -C "$SRC" rev-parse --show-toplevel 2>/dev/null) || return 1
    [[ $(realpath "$top") == "$(realpath "$SRC")" ]] || return 1
    git -C "$SRC" ls-files -z >"$1" || return 1
    while IFS= read -r -d '' f; do
        if [[ -e $SRC/$f || -L $SRC/$f ]]; then printf '%s\0' "$f"; fi
    done <"$1" >"$1.kept"
    mv "$1.kept" "$1"
}

if [[ -n $TARGET ]]; then
    dest=$TARGET port=""
    if [[ $TARGET =~ ^(.*):([0-9]+)$ ]]; then dest=${BASH_REMATCH[1]} port=${BASH_REMATCH[2]}; fi
    SSH_ARGS+=(${port:+-p "$port"})
    excludes=()
    for e in "${COPY_EXCLUDES[@]}"; do excludes+=("--exclude=$e"); done
    # What is unpacked there runs with sudo, so it goes to a directory only this login can write: a new
    # one from mktemp -d (mode 0700, in the Pi's TMPDIR), never a fixed name in /tmp that another user of
    # the Pi could create first. Removed on the way out: here until the run starts, then by the Pi's shell.
    if ! stage=$(ssh "${SSH_ARGS[@]}" "$dest" 'mktemp -d "${TMPDIR:-/tmp}/grainbox-setup.XXXXXXXXXX"') ||
        [[ $stage != /*/grainbox-setup.* ]]; then
        die "could not make a directory on $dest over ssh (is the Pi on the network, is your key" \
            "installed with ssh-copy-id${port:+ -p $port} $dest?)"
    fi
    qstage=$(quote "$stage")
    # shellcheck disable=SC2029  # $qstage is quoted for the Pi's shell, meant to expand here
    remove_stage() { ssh "${SSH_ARGS[@]}" "$dest" "rm -rf -- $qstage" || true; }
    trap remove_stage EXIT
    echo "sending $SRC to $dest:$stage ..."
    files=$(mktemp)
    if tracked_files "$files"; then pack=(--null -T "$files"); else pack=(.); fi
    # shellcheck disable=SC2029  # as above
    if ! tar -C "$SRC" "${excludes[@]}" -czf - "${pack[@]}" | ssh "${SSH_ARGS[@]}" "$dest" "tar -xzf - -C $qstage"; then
        rm -f "$files"
        die "could not copy the repository to $dest:$stage over ssh"
    fi
    rm -f "$files"
    if [[ -f $FACTORY ]]; then
        # shellcheck disable=SC2029  # as above
        ssh "${SSH_ARGS[@]}" "$dest" "cat > $qstage/factory.ts" <"$FACTORY" ||
            die "could not copy the factory model $FACTORY to $dest"
        FORWARD+=(--factory-model "$stage/factory.ts")
    fi
    remote="bash $qstage/deploy/setup-pi.sh"
    for a in "${FORWARD[@]}"; do remote+=" $(quote "$a")"; done
    if [[ -n $ADMIN ]]; then
        remote+=" --admin $(quote "$ADMIN")"
    else
        # shellcheck disable=SC2016  # $(id -un) is for the Pi's shell: the ssh login, before sudo
        remote+=' --admin "$(id -un)"'
    fi
    # Root runs it directly; anyone else through sudo (with a terminal, so sudo can ask for a password).
    # The Pi's shell removes the stage when the run ends, however it ends.
    remote="trap \"rm -rf -- $qstage\" EXIT; if [ \"\$(id -u)\" = 0 ]; then $remote; else sudo $remote; fi"
    tty=(-T)
    [[ -t 0 ]] && tty=(-t)
    echo "running setup-pi.sh on $dest ..."
    trap - EXIT
    # shellcheck disable=SC2029  # expanding here is the point: every word is quoted for the Pi's shell
    exec ssh "${SSH_ARGS[@]}" "${tty[@]}" "$dest" "$remote"
fi

# ---- local mode: the steps ---------------------------------------------------------------------------
LIVE=1
[[ -n $ROOT ]] && LIVE=0
if ((LIVE)); then
    ((EUID == 0)) || die "run it as root: sudo $0 (or from the workstation: $0 [user@]host)"
else
    [[ -d $ROOT ]] || die "--root $ROOT is not a directory"
    ROOT=$(cd "$ROOT" && pwd)
fi
R=$ROOT   # "" on the Pi itself
OPT=$R/opt/grainbox ETC=$R/etc/grainbox BOX=$R/var/lib/grainbox UNITS=$R/etc/systemd/system
CHANGES=0 NOTES=()

step() { echo "== $*"; }
ok() { echo "  ok: $*"; }
skip() { echo "  skipped (--root): $*"; }
note() { NOTES+=("$*"); }
# act DESCRIPTION COMMAND...: run COMMAND, or only say what it would do under --dry-run.
act() {
    CHANGES=$((CHANGES + 1))
    if ((DRY_RUN)); then echo "  would: $1"; else echo "  change: $1"; "${@:2}"; fi
}

# put_file DEST MODE: write stdin to DEST only if DEST differs (so a second run leaves mtimes alone).
put_file() {
    local dest=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
        ok "$dest"
    else
        act "write $dest" install -D -m "$mode" "$tmp" "$dest"
    fi
    rm -f "$tmp"
}

# A symlink NAME -> TARGET made atomically (a fresh link renamed over the old name with mv -T).
set_link() {
    local name=$1 target=$2
    ln -s "$target" "$name.new.$$" && mv -T "$name.new.$$" "$name"
}

# append_line FILE LINE [new]: add LINE to FILE (or make FILE just that line, with "new").
append_line() {
    if [[ ${3:-} == new ]]; then printf '%s\n' "$2" >"$1"; else printf '%s\n' "$2" >>"$1"; fi
}

sync_code() { mkdir -p "$OPT" && rsync "$@"; }

fix_owners() {
    chown -R grainbox:grainbox "$BOX" && chmod 2775 "$BOX/models" && chmod 755 "$BOX/state"
}

check_platform() {
    step "platform"
    local codename="" arch
    arch=$(uname -m)
    if [[ -f $R/etc/os-release ]]; then codename=$(sed -n 's/^VERSION_CODENAME=//p' "$R/etc/os-release"); fi
    if ((LIVE)); then
        [[ $arch == aarch64 ]] || echo "  warning: this is $arch, not a 64-bit Pi OS (aarch64); carrying on"
        [[ $codename == bookworm ]] || echo "  warning: this is ${codename:-an unknown release}, not bookworm; carrying on"
    fi
    ok "${codename:-unknown release}, $arch"
}

install_packages() {
    step "apt packages"
    if ((!LIVE)); then skip "${APT_PACKAGES[*]}"; return; fi
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then ok "all ${#APT_PACKAGES[@]} installed"; return; fi
    act "apt-get install ${missing[*]}" apt_install "${missing[@]}"
}
apt_install() {
    apt-get update -qq
    local want=() p
    for p in "$@"; do
        if [[ " ${PI_OS_ONLY[*]} " == *" $p "* ]] && ! apt-cache show "$p" >/dev/null 2>&1; then
            echo "  warning: $p is not in this system's apt sources (Raspberry Pi OS's archive has it); skipped"
        else
            want+=("$p")
        fi
    done
    ((${#want[@]} == 0)) || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}"
}

# SPI carries the MCP3008's knob readings. raspi-config knows every Pi's boot layout; without it (--root,
# or a trimmed image) the dtparam line goes into config.txt directly, which is what raspi-config writes.
enable_spi() {
    step "SPI"
    if ((LIVE)) && command -v raspi-config >/dev/null; then
        if [[ $(raspi-config nonint get_spi) == 0 ]]; then ok "on"; return; fi
        act "raspi-config nonint do_spi 0 (takes effect after a reboot)" raspi-config nonint do_spi 0
        [[ -e /dev/spidev0.0 ]] || note "reboot the Pi once so that SPI (the knobs) comes up"
        return
    fi
    local config=""
    for c in "$R/boot/firmware/config.txt" "$R/boot/config.txt"; do [[ -f $c ]] && { config=$c; break; }; done
    if [[ -z $config ]]; then
        echo "  warning: no config.txt in $R/boot/firmware or $R/boot; enable SPI with raspi-config on the Pi"
        return
    fi
    if grep -Eq '^[[:space:]]*dtparam=spi=on[[:space:]]*$' "$config"; then ok "dtparam=spi=on in $config"; return; fi
    if grep -Eq '^[[:space:]#]*dtparam=spi=' "$config"; then
        act "set dtparam=spi=on in $config" sed -i -E 's/^[[:space:]#]*dtparam=spi=.*/dtparam=spi=on/' "$config"
    else
        act "add dtparam=spi=on to $config" append_line "$config" "dtparam=spi=on"
    fi
    note "reboot the Pi once so that SPI (the knobs) comes up"
}

create_user() {
    step "user grainbox"
    if ((!LIVE)); then skip "user grainbox in groups gpio, spi, audio; admin ${ADMIN:-(none)} in group grainbox"; return; fi
    if getent passwd grainbox >/dev/null; then
        ok "grainbox exists"
    else
        act "create system user grainbox" useradd --system --user-group --home-dir /var/lib/grainbox \
            --no-create-home --shell /usr/sbin/nologin grainbox
    fi
    local g
    for g in gpio spi audio; do
        if ! getent group "$g" >/dev/null; then
            echo "  warning: no group $g on this system (not a Raspberry Pi OS?); grainbox is not added to it"
        elif id -nG grainbox 2>/dev/null | tr ' ' '\n' | grep -qx "$g"; then
            ok "grainbox in $g"
        else
            act "add grainbox to group $g" usermod -aG "$g" grainbox
        fi
    done
    if [[ -z $ADMIN || $ADMIN == root ]]; then return; fi
    getent passwd "$ADMIN" >/dev/null || die "--admin $ADMIN: no such user on this Pi"  # (checked first)
    if id -nG "$ADMIN" | tr ' ' '\n' | grep -qx grainbox; then
        ok "$ADMIN in grainbox (may flash models)"
    else
        act "add $ADMIN to group grainbox (flash.sh logs in as $ADMIN)" usermod -aG grainbox "$ADMIN"
        note "$ADMIN's next login has group grainbox, which flash.sh needs"
    fi
}

# The home of USER on the box: from the box's passwd database, else /home/USER.
home_of() {
    local home=""
    if ((LIVE)); then home=$(getent passwd "$1" | cut -d: -f6 || true)
    elif [[ -f $R/etc/passwd ]]; then home=$(awk -F: -v u="$1" '$1 == u { print $6; exit }' "$R/etc/passwd"); fi
    printf '%s' "${home:-/home/$1}"
}

# Whether FILE (an authorized_keys file) holds a public key line, not just comments or blank lines.
holds_a_key() {
    [[ -f $1 ]] && awk '!/^[[:space:]]*#/ && /(^|[[:space:],])(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[[:alnum:].@-]+)[[:space:]]+AAAA/ { found = 1; exit }
        END { exit !found }' "$1"
}

# Once the admin logs in with a key, ssh password logins (a guessable way in) are turned off by a
# drop-in that Debian's sshd_config reads first (Include /etc/ssh/sshd_config.d/*.conf; the first value
# of a setting wins). Without a key it changes nothing, so nobody is locked out.
SSHD_DROPIN=/etc/ssh/sshd_config.d/10-grainbox-no-passwords.conf
ssh_key_only() {
    step "ssh: key logins only"
    local user=${ADMIN:-root} home keys before
    home=$(home_of "$user")
    keys=$home/.ssh/authorized_keys
    if ! holds_a_key "$R$keys" && ! holds_a_key "$R${keys}2"; then
        if [[ -f $R$SSHD_DROPIN ]]; then ok "password login off ($R$SSHD_DROPIN kept)"; return; fi
        echo "  password login stays on: no ssh key for $user in $keys; install one (ssh-copy-id" \
            "$user@BOX from your computer) and run setup-pi.sh again"
        return
    fi
    before=$CHANGES
    put_file "$R$SSHD_DROPIN" 0644 <<'EOF'
# Written by Grainbox's deploy/setup-pi.sh once the box's admin had an authorized ssh key: key logins
# only. To allow passwords again, delete this file and run: sudo systemctl reload ssh
PasswordAuthentication no
KbdInteractiveAuthentication no
EOF
    ((CHANGES > before)) || return 0
    note "ssh password login is off ($user logs in with the key in $keys)"
    if ((LIVE && !DRY_RUN)) && [[ -d /run/systemd/system ]]; then
        /usr/sbin/sshd -t || { rm -f "$SSHD_DROPIN"; die "sshd -t refused the new $SSHD_DROPIN; removed it"; }
        act "systemctl reload ssh" systemctl reload ssh
    fi
}

copy_code() {
    step "code in /opt/grainbox"
    if [[ $(realpath -m "$SRC") == $(realpath -m "$OPT") ]]; then ok "running from $OPT itself"; return; fi
    command -v rsync >/dev/null || die "rsync is missing here: apt-get install rsync"
    local args=(-a --delete) e pending from=$SRC/ files
    for e in "${COPY_EXCLUDES[@]}"; do args+=("--exclude=$e"); done
    files=$(mktemp)
    if tracked_files "$files"; then
        # the tracked files, staged as they are (mtimes and modes kept) so that --delete still clears
        # what left the repository; the stage's own mode and mtime are the checkout's
        STAGE=$(mktemp -d)
        rsync -a --from0 --files-from="$files" "$SRC/" "$STAGE/"
        chmod --reference="$SRC" "$STAGE" && touch -r "$SRC" "$STAGE"
        from=$STAGE/
        echo "  git's tracked files ($(tr -cd '\0' <"$files" | wc -c)); untracked files stay behind"
    else
        echo "  $SRC is not a git checkout: every file but ${COPY_EXCLUDES[*]}"
    fi
    rm -f "$files"
    # Excluded paths are also protected from --delete: the box's .venv and egg-info survive.
    pending=$(rsync "${args[@]}" --dry-run --itemize-changes "$from" "$OPT/" 2>/dev/null | grep -c . || true)
    if [[ -d $OPT && $pending == 0 ]]; then ok "$OPT matches $SRC"; return; fi
    act "copy $SRC to $OPT ($pending entries differ)" sync_code "${args[@]}" "$from" "$OPT/"
}

# The box's Python: a venv with --system-site-packages (for Debian's lgpio and liblo) and the runtime's
# dependencies only (pyproject's [project] dependencies, not the train extras). Editable, so the code
# rsynced into /opt/grainbox is the code that runs; pip runs again only when pyproject.toml or the torch
# setting changes. torch comes first, CPU-only, from TORCH_INDEX (PyPI's aarch64 2.13.0 is the CUDA build;
# its x86_64 one too), so the editable install finds it already there.
make_venv() {
    step "virtual environment $OPT/.venv"
    echo "  torch: torch==$TORCH_VERSION, CPU-only, from $TORCH_INDEX"
    echo "  liblo binding: Debian's python3-liblo (apt), module liblo, imported by runtime/liblo_binding.py"
    if ((!LIVE)); then skip "python3 -m venv, pip install torch==$TORCH_VERSION and the runtime's dependencies"; return; fi
    local stamp want
    stamp=$OPT/.venv/.grainbox-installed
    want="$(sha256sum "$SRC/pyproject.toml" | cut -d" " -f1) torch==$TORCH_VERSION $TORCH_INDEX"
    if [[ -x $OPT/.venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        ok "up to date ($want)"
    else
        [[ -x $OPT/.venv/bin/python ]] || act "python3 -m venv --system-site-packages $OPT/.venv" \
            python3 -m venv --system-site-packages "$OPT/.venv"
        act "pip install torch==$TORCH_VERSION from $TORCH_INDEX" "$OPT/.venv/bin/pip" install -q \
            --index-url "$TORCH_INDEX" "torch==$TORCH_VERSION"
        act "pip install -e $OPT (runtime dependencies, no train extras)" "$OPT/.venv/bin/pip" install -q -e "$OPT"
        act "record $stamp" append_line "$stamp" "$want" new
    fi
    ((DRY_RUN)) || check_venv
}

# The installed box must import what it runs: a CPU-only torch and a liblo binding (runtime/liblo_binding.py).
check_venv() {
    local out
    if ! out=$(cd / && "$OPT/.venv/bin/python" -c '
import torch
from runtime.liblo_binding import liblo
cuda = torch.version.cuda
assert cuda is None, f"torch {torch.__version__} is a CUDA build (CUDA {cuda}); the box needs a CPU-only one"
version = getattr(liblo, "__version__", "")
print(f"torch {torch.__version__} (CPU-only), liblo binding: {liblo.__name__} {version}")
' 2>&1); then
        die "the box's Python cannot run the runtime: $(tail -n 1 <<<"$out")"
    fi
    ok "$out"
}

# ALSA ids of the cards in /proc/asound/cards, USB ones first, HDMI outputs last (they need a screen).
list_cards() {
    local cards=$R/proc/asound/cards
    [[ -r $cards ]] || return 0
    sed -nE 's/^ *[0-9]+ \[([^] ]+) *\]: *([^ ]+).*/\1 \2/p' "$cards" |
        awk '{ rank = ($2 == "USB-Audio") ? 0 : ($1 ~ /^(vc4hdmi|HDMI|hdmi)/) ? 2 : 1; print rank, $1 }' |
        sort -s -k1,1n | cut -d' ' -f2
}

write_config() {
    step "configuration in /etc/grainbox"
    if [[ -f $ETC/box.toml ]]; then
        if cmp -s "$SRC/deploy/box.toml" "$ETC/box.toml"; then ok "$ETC/box.toml"
        else ok "$ETC/box.toml kept as edited on the box (the shipped example: $OPT/deploy/box.toml)"; fi
    else
        put_file "$ETC/box.toml" 0644 <"$SRC/deploy/box.toml"
    fi
    local env=$ETC/audio.env
    if [[ -z $ALSA_DEVICE ]]; then
        ok "$env kept: $(grep -m1 '^GRAINBOX_ALSA_DEVICE=' "$env" || echo '(no device line)')"
        return
    fi
    put_file "$env" 0644 <<EOF
# The box's sound card, chosen by setup-pi.sh by its ALSA id (card numbers move between boots when a USB
# interface is plugged in; ids do not). See the cards with: cat /proc/asound/cards, or aplay -l.
# Change the card: sudo deploy/setup-pi.sh --audio-card ID, then systemctl restart grainbox-pd.
GRAINBOX_ALSA_DEVICE=$ALSA_DEVICE
GRAINBOX_SAMPLE_RATE=$SAMPLE_RATE
GRAINBOX_AUDIO_BUFFER_MS=$AUDIO_BUFFER_MS
# The audio input Pd listens to (the LISTEN panel, box.toml [listen]): empty = none. Change it with
# sudo deploy/setup-pi.sh --audio-input hw:CARD=ID,DEV=0 (or none); the level is inputgain in the patch.
GRAINBOX_PD_INPUT="$(pd_input_flags)"
EOF
}

# Pd's flags for the audio input: after the unit's -noadc, these open the capture device instead.
pd_input_flags() {
    if [[ -n $AUDIO_INPUT && $AUDIO_INPUT != none ]]; then
        echo "-alsaadd $AUDIO_INPUT -audioaddindev $AUDIO_INPUT -inchannels 2"
    fi
}

# ALSA_DEVICE: the device audio.env will name, chosen (or refused) before anything is written; empty when
# an existing audio.env is kept (it is, unless --audio-card or --audio-device is given).
ALSA_DEVICE=""
choose_audio_device() {
    local cards
    if [[ -f $ETC/audio.env && -z $AUDIO_CARD && -z $AUDIO_DEVICE ]]; then
        [[ -z $AUDIO_INPUT ]] && return
        # only the input changes: keep the output card audio.env already names
        ALSA_DEVICE=$(sed -n 's/^GRAINBOX_ALSA_DEVICE=//p' "$ETC/audio.env" | head -1)
        [[ -n $ALSA_DEVICE ]] && return
    fi
    cards=$(list_cards | tr '\n' ' ')
    if [[ -n $AUDIO_DEVICE ]]; then
        ALSA_DEVICE=$AUDIO_DEVICE
    elif [[ -n $AUDIO_CARD ]]; then
        if [[ -n $cards && " $cards" != *" $AUDIO_CARD "* ]]; then
            die "--audio-card $AUDIO_CARD: no such sound card; the cards here are: $cards(ids from /proc/asound/cards)"
        fi
        ALSA_DEVICE="hw:CARD=$AUDIO_CARD,DEV=0"
    elif [[ -n $cards ]]; then
        ALSA_DEVICE="hw:CARD=${cards%% *},DEV=0"
    elif ((LIVE)); then
        die "no sound card found in /proc/asound/cards; plug one in, or pass --audio-card ID"
    else
        die "--root: which sound card? pass --audio-card ID (its ALSA id, e.g. Headphones or Device)"
    fi
}

# The factory model is needed when the box has no model yet (a flashed `current` is kept).
needs_factory() {
    local target
    target=$(readlink "$BOX/models/current" 2>/dev/null || true)
    [[ -z $target || ! -f $BOX/models/$target ]]
}
no_factory() { die "no factory model at $FACTORY; build it (make factory-model) or pass --factory-model FILE"; }

# Every option is checked before the first change, so a bad one leaves the box (or --root) untouched.
check_options() {
    choose_audio_device
    if needs_factory && [[ ! -f $FACTORY ]]; then no_factory; fi
    if ((LIVE)) && [[ -n $ADMIN && $ADMIN != root ]] && ! getent passwd "$ADMIN" >/dev/null; then
        die "--admin $ADMIN: no such user on this Pi"
    fi
    if ((!LIVE)) && ! command -v rsync >/dev/null; then die "rsync is missing here: apt-get install rsync"; fi
}

# The model's name from its metadata (docs/model-format.md), as flash.sh names it, else the file's name.
model_name() {
    local name
    name=$(python3 - "$1" 2>/dev/null <<'PY' || true
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = [n for n in z.namelist() if n.endswith("/extra/grainbox.json")]
    print(json.loads(z.read(meta[0]))["name"])
PY
)
    [[ -n $name ]] || name=$(basename "$1" .ts)
    printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '-' | cut -c1-48
}

install_models() {
    step "models in /var/lib/grainbox"
    local d
    for d in "$BOX" "$BOX/models" "$BOX/state" "$BOX/state/presets"; do
        [[ -d $d ]] && continue
        act "create $d" mkdir -p "$d"
    done
    if ((LIVE)); then set_owners; fi
    local current=$BOX/models/current
    if ! needs_factory; then
        ok "current -> $(readlink "$current") (kept: a flashed model stays)"
        return
    fi
    [[ -f $FACTORY ]] || no_factory
    local sha file
    sha=$(sha256sum "$FACTORY" | cut -d' ' -f1)
    file="${sha:0:12}-$(model_name "$FACTORY").ts"
    if [[ -f $OPT/.venv/bin/python ]] && ((LIVE)); then
        "$OPT/.venv/bin/python" -m runtime check "$FACTORY" >/dev/null ||
            die "the factory model $FACTORY is invalid: $OPT/.venv/bin/python -m runtime check $FACTORY says why"
    fi
    if [[ ! -f $BOX/models/$file ]]; then
        act "copy the factory model to $BOX/models/$file" install -m 0644 "$FACTORY" "$BOX/models/$file"
    fi
    act "current -> $file" set_link "$current" "$file"
    if ((LIVE && !DRY_RUN)); then chown -h grainbox:grainbox "$current" "$BOX/models/$file"; fi
}

# grainbox owns the box root; the models directory is group-writable and setgid, so the admin's flash.sh
# (group grainbox) can write models and swap links, and whatever it writes stays in group grainbox.
set_owners() {
    ((DRY_RUN)) && { echo "  would: chown grainbox:grainbox $BOX, chmod 2775 $BOX/models"; return; }
    local want have
    have=$(stat -c '%U:%G %a' "$BOX/models" "$BOX/state" 2>/dev/null | tr '\n' ' ')
    want="grainbox:grainbox 2775 grainbox:grainbox 755 "
    if [[ $have == "$want" ]]; then ok "owners and modes"; return; fi
    act "chown grainbox:grainbox, chmod 2775 models" fix_owners
}

UNIT_NAMES=(grainbox-cpu-governor.service grainbox-pd.service grainbox-runtime.service)
# Started by udev, not at boot: a USB MIDI controller plugged in is connected to Pd (deploy/midi-connect.sh).
TRIGGERED_UNITS=(grainbox-midi-connect.service)
UDEV_RULES=(90-grainbox-midi.rules)

install_units() {
    step "systemd units"
    local u before after rules_before
    before=$CHANGES
    for u in "${UNIT_NAMES[@]}" "${TRIGGERED_UNITS[@]}"; do
        put_file "$UNITS/$u" 0644 <"$SRC/deploy/systemd/$u"
    done
    after=$CHANGES
    rules_before=$CHANGES
    for u in "${UDEV_RULES[@]}"; do put_file "$R/etc/udev/rules.d/$u" 0644 <"$SRC/deploy/udev/$u"; done
    if ((LIVE && CHANGES > rules_before)) && command -v udevadm >/dev/null; then
        act "udevadm control --reload (the MIDI rule)" udevadm control --reload
    fi
    local not_enabled=()
    for u in "${UNIT_NAMES[@]}"; do
        [[ -L $UNITS/multi-user.target.wants/$u ]] || not_enabled+=("$u")
    done
    if ((${#not_enabled[@]})); then
        if ((LIVE)); then
            act "systemctl enable ${not_enabled[*]}" systemctl enable --quiet "${not_enabled[@]}"
        else
            act "systemctl --root enable ${not_enabled[*]}" systemctl --root="$R" enable --quiet "${not_enabled[@]}"
        fi
    else
        ok "enabled: ${UNIT_NAMES[*]}"
    fi
    if ((!LIVE)); then skip "systemctl daemon-reload and (re)start: the units start at the Pi's next boot"; return; fi
    if [[ ! -d /run/systemd/system ]]; then
        # sd_booted(3)'s test: a chroot or an image being prepared, where enabling is all there is to do
        echo "  skipped: systemd is not running here (a chroot?): the units start at the next boot"
        return
    fi
    ((after > before)) && act "systemctl daemon-reload" systemctl daemon-reload
    # Any change so far (units, code, venv, configuration, model) reaches the services by a restart.
    local changed=$CHANGES
    for u in "${UNIT_NAMES[@]}"; do
        if ((changed > 0)); then
            act "systemctl restart $u (to pick up the changes above)" systemctl restart "$u" || unit_failed "$u"
        elif systemctl is-active --quiet "$u"; then
            ok "$u running"
        else
            act "systemctl start $u" systemctl start "$u" || unit_failed "$u"
        fi
    done
}

# A unit that did not start stops the setup, except the CPU governor's: the box plays without it (with
# more risk of clicks), so that is a warning that says where to look.
unit_failed() {
    [[ $1 == grainbox-cpu-governor.service ]] || die "$1 did not start: systemctl status $1 says why"
    echo "  warning: $1 failed (a CPU refused the governor): systemctl status $1 says which"
    note "the CPU governor could not be set; see systemctl status $1"
}

check_governor() {
    step "CPU governor"
    if ((!LIVE)); then skip "grainbox-cpu-governor.service sets 'performance' at every boot"; return; fi
    local g=/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor
    if [[ ! -r $g ]]; then echo "  warning: no $g here; nothing to set"; return; fi
    if [[ $(cat "$g") == performance ]]; then ok "performance"
    elif [[ ! -d /run/systemd/system ]]; then echo "  skipped: systemd is not running here; the unit sets it at boot"
    else
        act "systemctl restart grainbox-cpu-governor (now $(cat "$g"))" systemctl restart grainbox-cpu-governor ||
            unit_failed grainbox-cpu-governor.service
    fi
}

STAGE=""
trap '[[ -z $STAGE ]] || rm -rf -- "$STAGE"' EXIT
check_options
((DRY_RUN)) && echo "dry run: nothing is changed"
echo "provisioning ${R:-this machine} as a Grainbox from $SRC"
check_platform
install_packages
enable_spi
create_user
ssh_key_only
copy_code
make_venv
write_config
install_models
install_units
check_governor
echo
if ((CHANGES == 0)); then echo "nothing to change: the box is set up"
elif ((DRY_RUN)); then echo "$CHANGES change(s) would be made"
else echo "$CHANGES change(s) made"; fi
for n in "${NOTES[@]}"; do echo "note: $n"; done
