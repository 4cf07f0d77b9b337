#!/usr/bin/env bash
# pi-check.sh (make pi-check): the box installed and played on an emulated Raspberry Pi.
#
# A Debian bookworm arm64 root (mmdebstrap --variant=minbase, plus systemd and python3, as Raspberry Pi OS
# Lite has them), run under qemu-user through binfmt_misc, gets the box installed by the path a Pi takes:
# this repository copied to /tmp/grainbox-setup in it and deploy/setup-pi.sh run there as root (what
# `deploy/setup-pi.sh user@pi` does over ssh). Then, under QEMU_CPU=cortex-a72 (Raspberry Pi 4) and again
# cortex-a76 (Pi 5): `runtime check` on the factory model, its decode of a fixed latent batch against this
# machine's (x86) decode (max abs difference below 1e-5), and `runtime run` against the root's own arm64
# Pd playing pd/main.pd until Pd has acknowledged the grains (and again after a knob move).
#
# The one difference from a Pi: PyTorch's CPU index (setup-pi.sh's default torch source) is unreachable
# here, so torch comes from the stand-in PI_CHECK_TORCH_INDEX / PI_CHECK_TORCH_VERSION, and the script says
# so: PyPI's 2.9.1, CPU-only for aarch64. (PyPI's 2.10.0, also CPU-only, dies of SIGILL at `import torch`
# under QEMU_CPU=cortex-a72, the Pi 4's ARMv8.0 core: pytorch/pytorch#176993; 2.11 on are CUDA builds.)
#
# The installed root is cached in $PI_CHECK_CACHE/pi-root-<key> (the key hashes this script, the apt
# mirror, setup-pi.sh's package list, pyproject.toml's dependencies and the torch setting); every run works
# on an overlay above it, so the cache is never changed by a run and the run leaves nothing behind.
#
#   PI_CHECK_HIDE_LIBLO=1   hide Debian's liblo binding in the run's root (the package stays "installed"):
#                           the box install must then fail, and so must pi-check (make pi-check-no-liblo)
#   PI_CHECK_CPUS="..."     the QEMU_CPU models to run (default: cortex-a72 cortex-a76)
#   PI_CHECK_MODEL=FILE     check and play FILE instead of the repository's models/factory.ts
#   PI_CHECK_KEEP=1         keep the run's directory (logs, status.json) instead of removing it
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(dirname "$HERE")
SCRIPT_VERSION=1
CACHE=${PI_CHECK_CACHE:-/var/cache/grainbox}
TORCH_INDEX=${PI_CHECK_TORCH_INDEX:-https://pypi.org/simple}
TORCH_VERSION=${PI_CHECK_TORCH_VERSION:-2.9.1}
read -r -a CPUS <<<"${PI_CHECK_CPUS:-cortex-a72 cortex-a76}"
HOST_PY=${PI_CHECK_HOST_PYTHON:-$SRC/.venv/bin/python}
HIDE_LIBLO=${PI_CHECK_HIDE_LIBLO:-0}
DECODE_LIMIT=1e-5
BASE_PACKAGES=systemd,python3   # Raspberry Pi OS Lite has these before setup-pi.sh runs
GUEST_SRC=/tmp/grainbox-setup   # the repository in the guest (a Pi gets a mktemp -d directory instead)
GUEST_RUN=/tmp/pi-check

die() { echo "pi-check: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
TIMES=()
# timed NAME COMMAND...: run COMMAND, print and keep its wall time.
timed() {
    local name=$1 t0 t1 rc=0
    shift
    echo "== $name"
    t0=$(now)
    "$@" || rc=$?
    t1=$(now)
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    echo "   $name: ${secs} s"
    TIMES+=("$(printf '%-66s %7s s' "$name" "$secs")")
    return "$rc"
}

((EUID == 0)) || die "run as root (mmdebstrap, chroot, mounts): sudo make pi-check"
for tool in mmdebstrap qemu-aarch64-static arch-test oscsend; do
    command -v "$tool" >/dev/null || die "$tool is missing: make pi-check installs it (apt), or apt-get install" \
        "mmdebstrap qemu-user-static binfmt-support arch-test liblo-tools"
done
[[ -x $HOST_PY ]] || die "no $HOST_PY for the x86 reference decode: make venv"

# ---- binfmt_misc: let the kernel run aarch64 binaries through qemu ------------------------------------
BINFMT=/proc/sys/fs/binfmt_misc
register_binfmt() {
    if [[ ! -e $BINFMT/register ]]; then
        mount -t binfmt_misc binfmt_misc "$BINFMT" || die "cannot mount binfmt_misc on $BINFMT"
    fi
    if [[ ! -e $BINFMT/qemu-aarch64 ]]; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || update-binfmts --import qemu-aarch64 || true
    fi
    if [[ ! -e $BINFMT/qemu-aarch64 ]]; then
        # binfmt-support could not: the handler qemu-user-static ships, with F (the interpreter is opened
        # now, so it need not exist inside the root)
        printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:FP' \
            >"$BINFMT/register" || die "cannot register the aarch64 handler in $BINFMT"
    fi
    grep -qx enabled "$BINFMT/qemu-aarch64" || echo 1 >"$BINFMT/qemu-aarch64"
    grep -qx enabled "$BINFMT/qemu-aarch64" || die "the aarch64 binfmt handler is registered but disabled"
    echo "   binfmt: $(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64") ($(qemu-aarch64-static --version | head -n 1))"
}

# ---- the cache key and the mirror -----------------------------------------------------------------------
apt_mirror() {
    local m=""
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        m=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
    fi
    if [[ -z $m && -f /etc/apt/sources.list ]]; then
        m=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list)
    fi
    echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=${PI_CHECK_MIRROR:-$(apt_mirror)}
KEY=$( {
    echo "$SCRIPT_VERSION $BASE_PACKAGES $MIRROR $TORCH_INDEX $TORCH_VERSION"
    sed -n '/^APT_PACKAGES=(/,/)/p; /^PI_OS_ONLY=/p' "$SRC/deploy/setup-pi.sh"
    sed -n '/^dependencies = \[/,/^\]/p' "$SRC/pyproject.toml"
} | sha256sum | cut -c1-16)
CACHED=$CACHE/pi-root-$KEY

# ---- mounts: everything mounted is unmounted on the way out ----------------------------------------------
MOUNTS=()
WORK=""
cleanup() {
    local i
    [[ -n ${RUN_PIDS:-} ]] && stop_guest_processes
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount -R "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true
    done
    MOUNTS=()
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ ${PI_CHECK_KEEP:-0} == 1 ]]; then echo "kept: $WORK"; else rm -rf "$WORK"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_guest() {
    local root=$1 d
    for d in proc sys dev dev/pts; do mkdir -p "$root/$d"; done
    mount -t proc proc "$root/proc" && MOUNTS+=("$root/proc")
    mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys" && MOUNTS+=("$root/sys")
    mount --bind /dev "$root/dev" && MOUNTS+=("$root/dev")
    mount --bind /dev/pts "$root/dev/pts" && MOUNTS+=("$root/dev/pts")
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    # pip in the root trusts what pip here trusts (this machine's CA bundle: a proxy's CA, where there is one)
    mkdir -p "$root/etc/ssl"
    cp -L "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$root/etc/ssl/host-ca-certificates.crt"
}
umount_guest() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -R "${MOUNTS[i]}" || umount -l "${MOUNTS[i]}"; done
    MOUNTS=()
}

# guest CPU COMMAND...: run COMMAND inside the root under QEMU_CPU=CPU, with the box unit's environment.
# chroot execs the guest's program in the same process, so $! of a `guest ... &` made by spawn is qemu's.
GUEST_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1 PIP_CERT=/etc/ssl/host-ca-certificates.crt
    PIP_DISABLE_PIP_VERSION_CHECK=1)
guest() {
    local cpu=$1
    shift
    chroot "$ROOT" /usr/bin/env -i "${GUEST_ENV[@]}" QEMU_CPU="$cpu" "$@"
}
# spawn LOG CPU COMMAND...: the same in the background; SPAWNED is its pid (the qemu-aarch64 process).
spawn() {
    local log=$1 cpu=$2
    shift 2
    chroot "$ROOT" /usr/bin/env -i "${GUEST_ENV[@]}" QEMU_CPU="$cpu" "$@" >"$log" 2>&1 &
    SPAWNED=$!
}

# The repository as setup-pi.sh's remote mode sends it (the same excludes), into the root.
send_repository() {
    rm -rf "${ROOT:?}$GUEST_SRC" && mkdir -p "$ROOT$GUEST_SRC"
    tar -C "$SRC" --exclude=.venv --exclude=.git --exclude=out --exclude=runs --exclude=.cache \
        --exclude=.pytest_cache --exclude=.ruff_cache --exclude=__pycache__ --exclude='*.egg-info' \
        --exclude='*.pyc' --exclude='models/.incoming-*' -cf - . | tar -C "$ROOT$GUEST_SRC" -xf -
}

# setup-pi.sh on the "Pi", as root, the way a box is installed. --audio-device null: no sound card here.
SETUP_ARGS=(--torch-index "$TORCH_INDEX" --torch-version "$TORCH_VERSION" --audio-device null --admin root)
setup_box() {
    send_repository
    guest cortex-a72 bash "$GUEST_SRC/deploy/setup-pi.sh" "${SETUP_ARGS[@]}"
}

build_root() {
    local partial=$CACHED.partial
    mkdir -p "$CACHE/pip"
    if [[ -f $partial/.pi-check-bootstrapped ]]; then
        # an earlier build got past mmdebstrap: setup-pi.sh is idempotent, so it carries on from there
        echo "== resuming the bootstrapped $partial"
    else
        rm -rf "$partial"
        timed "bootstrap bookworm arm64 (mmdebstrap minbase + $BASE_PACKAGES)" \
            nice -n 10 mmdebstrap --quiet --variant=minbase --architectures=arm64 --include="$BASE_PACKAGES" \
            bookworm "$partial" "$MIRROR" || die "mmdebstrap failed"
        touch "$partial/.pi-check-bootstrapped"
    fi
    ROOT=$partial
    mount_guest "$ROOT"
    mkdir -p "$ROOT/root/.cache/pip"
    mount --bind "$CACHE/pip" "$ROOT/root/.cache/pip" && MOUNTS+=("$ROOT/root/.cache/pip")
    echo "   torch on the emulated Pi: the stand-in torch==$TORCH_VERSION from $TORCH_INDEX, because PyTorch's" \
        "CPU index (setup-pi.sh's default, what a real Pi uses) is unreachable from here"
    timed "box install: setup-pi.sh in the root (first run: apt, pip)" setup_box ||
        die "setup-pi.sh failed installing the box into the emulated Pi (above)"
    umount_guest
    rm -rf "${partial:?}$GUEST_SRC" "$partial/root/.cache/pip"
    mv -T "$partial" "$CACHED"
    local old
    for old in "$CACHE"/pi-root-*; do
        [[ $old == "$CACHED" || ! -d $old ]] || { echo "   removing the outdated $old"; rm -rf "$old"; }
    done
}

# ---- the emulated box's runs ----------------------------------------------------------------------------
RUN_PIDS=""
stop_guest_processes() {
    local p
    for p in $RUN_PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $RUN_PIDS; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    RUN_PIDS=""
}
peak_rss() { awk '/^VmHWM:/ { printf "%.0f MB", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

RSS=()
BOX_PY=/opt/grainbox/.venv/bin/python
BOX_MODEL=/opt/grainbox/models/factory.ts   # the repository's factory model, as setup-pi.sh copied it
HOST_MODEL=$SRC/models/factory.ts
if [[ -n ${PI_CHECK_MODEL:-} ]]; then
    [[ -f $PI_CHECK_MODEL ]] || die "PI_CHECK_MODEL=$PI_CHECK_MODEL: no such file"
    HOST_MODEL=$(realpath "$PI_CHECK_MODEL") BOX_MODEL=$GUEST_RUN/model.ts
fi
# GNU time's %M (the host's): the peak RSS of the qemu-aarch64 process running the guest's python.
check_model() {
    local cpu=$1 rss
    /usr/bin/time -f "%M" -o "$WORK/check-$cpu.rss" \
        chroot "$ROOT" /usr/bin/env -i "${GUEST_ENV[@]}" QEMU_CPU="$cpu" "$BOX_PY" -m runtime check "$BOX_MODEL" ||
        return 1
    rss=$(awk '{ printf "%.0f MB", $1 / 1024 }' "$WORK/check-$cpu.rss")
    RSS+=("$(printf '%-28s %s' "runtime check ($cpu)" "$rss")")
}

reference_decode() {
    "$HOST_PY" "$SRC/deploy/pi_check.py" latents "$HOST_MODEL" "$ROOT$GUEST_RUN/z.npy" &&
        "$HOST_PY" "$SRC/deploy/pi_check.py" decode "$HOST_MODEL" "$ROOT$GUEST_RUN/z.npy" \
            "$ROOT$GUEST_RUN/x86.npy"
}

decode_numerics() {
    local cpu=$1
    guest "$cpu" "$BOX_PY" /opt/grainbox/deploy/pi_check.py decode \
        "$BOX_MODEL" "$GUEST_RUN/z.npy" "$GUEST_RUN/pi-$cpu.npy" || return 1
    local line
    line=$("$HOST_PY" "$SRC/deploy/pi_check.py" compare "$ROOT$GUEST_RUN/x86.npy" "$ROOT$GUEST_RUN/pi-$cpu.npy" \
        "$DECODE_LIMIT") || { echo "   $line"; return 1; }
    echo "   $cpu against x86: $line"
    DIFFS+=("$(printf '%-12s %s' "$cpu" "$line")")
}

run_with_pd() {
    local cpu=$1 pd_port rt_port dir pd_pid rt_pid acks
    dir=$ROOT$GUEST_RUN/$cpu
    read -r pd_port rt_port < <("$HOST_PY" "$SRC/deploy/pi_check.py" ports 2)
    mkdir -p "$dir"
    printf '#N canvas 0 0 300 200 12;\n#X obj 10 10 main %s %s;\n' "$pd_port" "$rt_port" >"$dir/driver.pd"
    # The Pd unit's flags, with -noaudio for ALSA (no sound card) and without -rt (no SCHED_FIFO on a
    # shared CI machine).
    spawn "$dir/pd.log" "$cpu" /usr/bin/pd -nogui -noprefs -noaudio -nomidi -sleepgrain 1 -r 48000 -stderr \
        -path /opt/grainbox/pd -open "$GUEST_RUN/$cpu/driver.pd"
    pd_pid=$SPAWNED
    spawn "$dir/runtime.log" "$cpu" "$BOX_PY" -m runtime run --model "$BOX_MODEL" \
        --state-dir "$GUEST_RUN/$cpu/state" --controls virtual --osc-port "$rt_port" --pd-port "$pd_port"
    rt_pid=$SPAWNED
    RUN_PIDS="$rt_pid $pd_pid"
    local fail=""
    if acks=$("$HOST_PY" "$SRC/deploy/pi_check.py" wait-acks "$dir/state/status.json" 8 240); then
        echo "   Pd acknowledged $acks grains after /hello (all 8 slots, checksums right)"
        oscsend 127.0.0.1 "$rt_port" /knob if 1 0.9  # knob1 (knobs are 1..8 on the wire)
        if acks=$("$HOST_PY" "$SRC/deploy/pi_check.py" wait-acks "$dir/state/status.json" $((acks + 8)) 120); then
            echo "   after a knob move: $acks grains acknowledged, no checksum mismatch"
        else fail="Pd did not acknowledge the grains of a knob move"; fi
    else
        fail="Pd did not acknowledge the runtime's grains"
    fi
    RSS+=("$(printf '%-28s %s' "runtime run ($cpu)" "$(peak_rss "$rt_pid")")")
    RSS+=("$(printf '%-28s %s' "pd ($cpu)" "$(peak_rss "$pd_pid")")")
    kill -0 "$pd_pid" 2>/dev/null || fail="${fail:-Pd exited}"
    kill -0 "$rt_pid" 2>/dev/null || fail="${fail:-the runtime exited}"
    stop_guest_processes
    if [[ -n $fail ]]; then
        echo "--- runtime.log"; tail -n 30 "$dir/runtime.log"; echo "--- pd.log"; tail -n 30 "$dir/pd.log"
        echo "   $fail"
        return 1
    fi
}

# ---- the whole check ---------------------------------------------------------------------------------------
T0=$(now)
DIFFS=()
echo "pi-check: the box on an emulated Raspberry Pi (Debian bookworm arm64 under qemu-user)"
timed "binfmt_misc aarch64 handler" register_binfmt
if [[ -d $CACHED ]]; then
    echo "== cached installed root: $CACHED"
else
    echo "== no cached root for key $KEY: building $CACHED"
    build_root
fi

mkdir -p /var/tmp
WORK=$(mktemp -d /var/tmp/grainbox-pi-check.XXXXXX)
mkdir -p "$WORK/upper" "$WORK/work" "$WORK/root"
mount -t overlay overlay -o "lowerdir=$CACHED,upperdir=$WORK/upper,workdir=$WORK/work" "$WORK/root" ||
    die "cannot mount an overlay above $CACHED"
MOUNTS+=("$WORK/root")
ROOT=$WORK/root
mount_guest "$ROOT"
mkdir -p "$ROOT$GUEST_RUN"
[[ $BOX_MODEL == "$GUEST_RUN/model.ts" ]] && cp "$HOST_MODEL" "$ROOT$BOX_MODEL"

if [[ $HIDE_LIBLO == 1 ]]; then
    echo "== PI_CHECK_HIDE_LIBLO=1: hiding Debian's liblo binding in this run's root (python3-liblo stays" \
        "registered as installed): the box install must now fail"
    hidden=("$ROOT"/usr/lib/python3/dist-packages/liblo*.so)
    [[ -e ${hidden[0]} ]] || die "PI_CHECK_HIDE_LIBLO=1: no liblo*.so in the root's dist-packages to hide"
    rm -v "${hidden[@]}"
fi
echo "   torch on the emulated Pi: the stand-in torch==$TORCH_VERSION from $TORCH_INDEX (PyTorch's CPU index," \
    "the Pi's default, is unreachable here)"
timed "box install: setup-pi.sh again on the installed root (cortex-a72)" setup_box ||
    die "the box install (setup-pi.sh) failed on the emulated Pi: see above"

timed "x86 reference decode (this machine, $(uname -m))" reference_decode || die "the x86 reference decode failed"

for cpu in "${CPUS[@]}"; do
    timed "runtime check $BOX_MODEL ($cpu)" check_model "$cpu" || die "runtime check failed under $cpu"
    timed "decode numerics against x86 ($cpu)" decode_numerics "$cpu" ||
        die "the emulated Pi's decode under $cpu differs from x86 by $DECODE_LIMIT or more"
    timed "runtime run against the guest's Pd, pd/main.pd ($cpu)" run_with_pd "$cpu" ||
        die "runtime run against Pd failed under $cpu"
done

TOTAL=$(awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
echo
echo "pi-check passed in ${TOTAL} s (torch stand-in: torch==$TORCH_VERSION from $TORCH_INDEX; root $CACHED)"
echo "step times:"
printf '  %s\n' "${TIMES[@]}"
echo "decode, max abs difference against x86 (fixed latent batch):"
printf '  %s\n' "${DIFFS[@]}"
echo "peak RSS (VmHWM of the qemu-aarch64 process: the guest program plus qemu's own memory and translation"
echo "cache, so not what a Pi would show; the same program on a Pi is not measured here):"
printf '  %s\n' "${RSS[@]}"
