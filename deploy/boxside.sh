# shellcheck shell=sh
# The box's half of flash.sh. flash.sh sends this whole file as the argument of `sh -c` (over ssh, or
# locally for an SD-card directory), so the box needs nothing installed beyond POSIX sh, coreutils and
# sha256sum, and an old box is always driven by the workstation's current logic.
#
#   boxside probe    ROOT
#   boxside install  ROOT FILE SHA256 SIZE KEEP WAIT TIMEOUT MIN_FREE_KB   (the model's bytes on stdin)
#   boxside rollback ROOT KEEP WAIT TIMEOUT
#
# ROOT is the box root ("" for the box's default: $GRAINBOX_BOX_ROOT or /var/lib/grainbox); models live in ROOT/models, the runtime's status in
# ROOT/state/status.json (docs/box.md). WAIT is "auto" (wait for the runtime if it is running), "yes" or
# "no". Output is one "key value" line per fact, for flash.sh to read:
#   info TEXT            progress, shown to the user
#   result WORD TEXT     the outcome: ok, unchanged, installed (not confirmed), rolled-back
#   error CODE TEXT      why nothing changed: nobox, space, busy, corrupt, norunning, noprevious
# Exit status: 0 ok, 3 rolled back, 4 refused before any change, 5 transfer corrupt.
#
# Safety argument, step by step: the bytes land in a staging name (.incoming-PID.part) that no link
# points to; they are renamed to their final name only after their sha256 matches; `current` only ever
# changes by renaming a fresh symlink over it (mv -T: one rename(2), atomic), so a reader sees the old or
# the new target, never a missing or half-written one. Once the swap starts, hang-ups are ignored, so a
# workstation that goes away cannot stop the rollback half-way.

set -u
umask 022

PD_FRESH_S=6         # the runtime pings Pd every 2 s; not heard for longer means Pd is not running
STATUS_FRESH_S=6     # the runtime rewrites status.json at least every 2 s; older means it is not running
LOCK_WAIT_S=15       # how long a flash waits for another one on the same box to finish
# A live flash writes its pid in the command right after the lock's mkdir, microseconds later; 10 s is
# far beyond any stall of a loaded Pi's SD card there, and shorter than LOCK_WAIT_S, so a flash that
# meets a pid-less lock waits it out and proceeds instead of reporting busy.
LOCK_NOPID_S=10
WHITESPACE=$(printf ' \t\n_'); WHITESPACE=${WHITESPACE%_}

say() { printf 'info %s\n' "$*"; }
die() { code=$1; shift; printf 'error %s %s\n' "$code" "$*"; release_lock; exit 4; }

# The string or number value of "KEY" in a JSON file written by the runtime (first occurrence, any
# spacing); empty when absent or null. Plain sh, because the box promises nothing more than coreutils.
json_value() {
    [ -f "$1" ] || return 0
    _json=$(cat "$1" 2>/dev/null) || return 0
    _rest=${_json#*\""$2"\"}
    [ "$_rest" = "$_json" ] && return 0
    _rest=${_rest#*:}
    _rest=${_rest#"${_rest%%[!"$WHITESPACE"]*}"}
    case $_rest in
        \"*) _rest=${_rest#\"}; printf '%s\n' "${_rest%%\"*}" ;;
        null*) ;;
        true*) echo true ;;
        false*) echo false ;;
        *) printf '%s\n' "${_rest%%[!0-9.-]*}" ;;
    esac
}

sha_of() { [ -f "$1" ] && sha256sum "$1" | cut -d' ' -f1; }

# Seconds since status.json was written, or -1 if there is none.
status_age() {
    [ -f "$STATUS" ] || { echo -1; return; }
    echo $(( $(date +%s) - $(stat -c %Y "$STATUS") ))
}

runtime_running() {
    _age=$(status_age)
    [ "$_age" -ge 0 ] && [ "$_age" -le "$STATUS_FRESH_S" ]
}

free_kb() { df -Pk "$1" | tail -n 1 | { read -r _ _ _ avail _; echo "$avail"; }; }

# Point link NAME (current or previous) at TARGET, a file name inside models/, atomically.
set_link() {
    _tmp="$MODELS/.$1.new.$$"
    rm -f "$_tmp"
    ln -s "$2" "$_tmp" && mv -T "$_tmp" "$MODELS/$1"
}

restore_link() {  # restore_link NAME OLD_TARGET: as set_link, or remove NAME if it had no target
    if [ -n "$2" ]; then set_link "$1" "$2"; else rm -f "$MODELS/$1"; fi
}

# The kernel's id of this boot (empty where there is none): a pid is only meaningful within one boot.
boot_id() { cat /proc/sys/kernel/random/boot_id 2>/dev/null || true; }

# Whether the lock directory was left by a flash that can no longer be running: its owner's pid is dead,
# or was recorded in an earlier boot (after a power cut the number may belong to any live process), or
# the pid never reached the disk (power cut between mkdir and the pid write, or a pid file the crash
# left empty) and the lock is older than LOCK_NOPID_S or dated in the future (a Pi has no clock battery:
# it boots at the last saved time, earlier than the lock's, and steps later).
lock_is_stale() {
    _owner=$(cat "$LOCK/pid" 2>/dev/null || true)
    _boot=$(cat "$LOCK/boot" 2>/dev/null || true)
    if [ -n "$_owner" ]; then
        [ -n "$_boot" ] && [ "$_boot" != "$(boot_id)" ] && return 0
        ! kill -0 "$_owner" 2>/dev/null
        return
    fi
    _mtime=$(stat -c %Y "$LOCK" 2>/dev/null) || return 1   # gone meanwhile: just retry mkdir
    _age=$(( $(date +%s) - _mtime ))
    [ "$_age" -gt "$LOCK_NOPID_S" ] || [ "$_age" -lt 0 ]
}

# One flash at a time per box: a lock directory holding the owner's boot id and pid (written right
# after the mkdir). A lock left by an interrupted flash (lock_is_stale) is taken over.
take_lock() {
    LOCK="$MODELS/.flash.lock"
    _waited=0
    while ! mkdir "$LOCK" 2>/dev/null; do
        if lock_is_stale; then
            say "taking over a lock left by an interrupted flash (pid ${_owner:-none written})"
            rm -rf "$LOCK"; continue
        fi
        if [ "$_waited" -ge "$LOCK_WAIT_S" ]; then
            LOCK=""
            die busy "another flash is in progress on this box (pid ${_owner:-?}); try again when it ends"
        fi
        sleep 1; _waited=$((_waited + 1))
    done
    boot_id >"$LOCK/boot"
    echo $$ >"$LOCK/pid"
}

release_lock() { [ -n "${LOCK:-}" ] && rm -rf "$LOCK"; LOCK=""; }

# Keep the newest KEEP model files (by last activation), never current's or previous's target.
prune() {
    _keep=$1; _n=0
    _cur=$(readlink "$MODELS/current" 2>/dev/null || true)
    _prev=$(readlink "$MODELS/previous" 2>/dev/null || true)
    # shellcheck disable=SC2012  # names are ours: <12 hex>-<[A-Za-z0-9._-]>.ts, no newlines
    for _f in $(cd "$MODELS" && ls -t -- ????????????-*.ts 2>/dev/null); do
        _n=$((_n + 1))
        [ "$_f" = "$_cur" ] || [ "$_f" = "$_prev" ] && continue
        if [ "$_n" -gt "$_keep" ]; then rm -f "$MODELS/$_f" && say "removed old model $_f"; fi
    done
}

# Wait until the runtime reports SHA, at most TIMEOUT s. Fails early when the runtime counts a refused
# reload (its reload_failures grows past FAILURES0). Sets WAIT_WHY to the reason on failure.
wait_for_sha() {
    _want=$1; _timeout=$2; _fail0=$3; _start=$(date +%s); WAIT_WHY=""
    while :; do
        [ "$(json_value "$STATUS" model_sha256)" = "$_want" ] && return 0
        _fails=$(json_value "$STATUS" reload_failures)
        if [ -n "$_fails" ] && [ "$_fails" -gt "$_fail0" ]; then
            WAIT_WHY="the runtime refused it: $(json_value "$STATUS" last_error)"
            return 1
        fi
        if [ $(( $(date +%s) - _start )) -ge "$_timeout" ]; then
            WAIT_WHY="the runtime did not report it within ${_timeout} s (status.json is $(status_age) s old)"
            return 1
        fi
        sleep 0.2
    done
}

# Wait until Pd has accepted the runtime's /model for the current model (status.json pd_model_accepted,
# from Pd's /model_ok), at most TIMEOUT s. Returns 2 at once when Pd is not running (the runtime has not
# heard it for PD_FRESH_S): it gets the model when it starts. Sets WAIT_WHY on failure.
wait_for_pd() {
    _timeout=$1; _start=$(date +%s); WAIT_WHY=""
    while :; do
        [ "$(json_value "$STATUS" pd_model_accepted)" = true ] && return 0
        _heard=$(json_value "$STATUS" pd_last_heard_s)
        if [ -z "$_heard" ] || [ "${_heard%.*}" -ge "$PD_FRESH_S" ]; then return 2; fi
        if [ $(( $(date +%s) - _start )) -ge "$_timeout" ]; then
            WAIT_WHY="Pd did not accept the model's /model within ${_timeout} s (see its log: journalctl -u grainbox-pd)"
            return 1
        fi
        sleep 0.2
    done
}

# Make models/TARGET current (previous <- the old current), then confirm with the runtime; on failure
# swap both links back. CREATED=1 means TARGET was written by this flash and is removed on failure.
activate() {
    _target=$1; _sha=$2; _keep=$3; _wait=$4; _timeout=$5; _created=$6
    trap '' HUP INT TERM PIPE   # from here on, finish the transaction whatever the workstation does
    _old=$(readlink "$MODELS/current" 2>/dev/null || true)
    _oldprev=$(readlink "$MODELS/previous" 2>/dev/null || true)
    _running=no; runtime_running && _running=yes
    if [ "$_wait" = auto ]; then _wait=$_running; fi
    if [ "$_wait" = yes ] && [ "$_running" = no ]; then
        [ "$_created" = 1 ] && rm -f "$MODELS/$_target"
        die norunning "the runtime is not running (status.json age: $(status_age) s), so it cannot confirm" \
            "the model; start it (systemctl start grainbox-runtime) or pass --no-wait"
    fi
    if [ "$_old" = "$_target" ]; then
        touch "$MODELS/$_target"
        printf 'result unchanged %s is already current\n' "$_target"; release_lock; exit 0
    fi
    _fail0=$(json_value "$STATUS" reload_failures); _fail0=${_fail0:-0}
    touch "$MODELS/$_target"
    [ -n "$_old" ] && set_link previous "$_old"
    set_link current "$_target"
    sync
    say "current -> $_target"
    if [ "$_wait" != yes ]; then
        prune "$_keep"
        printf 'result installed %s is current; no runtime is running, it plays at the next start\n' "$_target"
        release_lock; exit 0
    fi
    if wait_for_sha "$_sha" "$_timeout" "$_fail0"; then
        _pd=0; wait_for_pd "$_timeout" || _pd=$?
        if [ "$_pd" != 1 ]; then
            prune "$_keep"
            if [ "$_pd" = 0 ]; then
                printf 'result ok the runtime and Pd play %s\n' "$_target"
            else
                printf 'result ok the runtime plays %s; Pd is not running and gets it when it starts\n' "$_target"
            fi
            release_lock; exit 0
        fi
    fi
    _why=$WAIT_WHY
    restore_link current "$_old"
    restore_link previous "$_oldprev"
    sync
    [ "$_created" = 1 ] && rm -f "$MODELS/$_target"
    _back="no model"
    if [ -n "$_old" ]; then
        _back=$_old
        if wait_for_sha "$(sha_of "$MODELS/$_old")" "$_timeout" 1000000000; then
            _back="$_old (the runtime's status reports it)"
        else
            _back="$_old (but $WAIT_WHY)"
        fi
    fi
    printf 'result rolled-back %s; current is back to %s\n' "$_why" "$_back"
    release_lock; exit 3
}

probe() {
    [ -d "$ROOT" ] || { printf 'error nobox no box at %s (run deploy/setup-pi.sh first, or pass --box-root)\n' "$ROOT"; exit 4; }
    _cur=$(readlink "$MODELS/current" 2>/dev/null || true)
    echo "root $ROOT"
    echo "current $_cur"
    echo "current_sha $(sha_of "$MODELS/$_cur")"
    echo "previous $(readlink "$MODELS/previous" 2>/dev/null || true)"
    if [ -d "$MODELS" ]; then echo "free_kb $(free_kb "$MODELS")"; else echo "free_kb $(free_kb "$ROOT")"; fi
    echo "status_age $(status_age)"
    echo "status_sha $(json_value "$STATUS" model_sha256)"
    # shellcheck disable=SC2012
    [ -d "$MODELS" ] && echo "models $(cd "$MODELS" && ls -t -- ????????????-*.ts 2>/dev/null | tr '\n' ' ')"
    return 0
}

install() {
    _file=$1; _sha=$2; _size=$3; _keep=$4; _wait=$5; _timeout=$6; _min_free_kb=$7
    [ -d "$ROOT" ] || die nobox "no box at $ROOT (run deploy/setup-pi.sh first, or pass --box-root)"
    mkdir -p "$MODELS" "$ROOT/state" || die nobox "cannot create $MODELS (permissions?)"
    take_lock
    rm -f "$MODELS"/.incoming-*.part   # left by an interrupted flash; we hold the lock, none is live
    _need_kb=$(( _size / 1024 + 1 + _min_free_kb ))
    _free=$(free_kb "$MODELS")
    if [ -f "$MODELS/$_file" ]; then
        if [ "$(sha_of "$MODELS/$_file")" = "$_sha" ]; then
            say "$_file is already on the box; not copying it again"
            activate "$_file" "$_sha" "$_keep" "$_wait" "$_timeout" 0   # does not return
        fi
        _cur=$(readlink "$MODELS/current" 2>/dev/null || true)
        _prev=$(readlink "$MODELS/previous" 2>/dev/null || true)
        if [ "$_file" = "$_cur" ] || [ "$_file" = "$_prev" ]; then
            die corrupt "$MODELS/$_file is damaged on the box (its sha256 does not match its name) and in use;" \
                "flash another model first"
        fi
        rm -f "$MODELS/$_file" && say "removed a damaged copy of $_file"
    fi
    [ "$_free" -ge "$_need_kb" ] || die space "not enough space on the box: $((_free / 1024)) MB free in" \
        "$MODELS, the model needs $((_size / 1048576 + 1)) MB plus $((_min_free_kb / 1024)) MB kept free;" \
        "remove old models or lower --keep"
    STAGING="$MODELS/.incoming-$$.part"
    trap 'rm -f "$STAGING"; release_lock; exit 130' HUP INT TERM PIPE
    cat >"$STAGING" || { rm -f "$STAGING"; die corrupt "writing $STAGING failed (disk full or read-only?)"; }
    _got=$(sha_of "$STAGING")
    if [ "$_got" != "$_sha" ]; then
        _bytes=$(stat -c %s "$STAGING")
        rm -f "$STAGING"
        printf 'error corrupt the copy arrived damaged (%s of %s bytes, sha256 %s); nothing changed\n' \
            "$_bytes" "$_size" "$_got"
        release_lock; exit 5
    fi
    sync "$STAGING" 2>/dev/null || sync
    mv -f "$STAGING" "$MODELS/$_file"
    say "received and verified $_file ($_size bytes)"
    activate "$_file" "$_sha" "$_keep" "$_wait" "$_timeout" 1
}

rollback() {
    _keep=$1; _wait=$2; _timeout=$3
    [ -d "$ROOT" ] || die nobox "no box at $ROOT (run deploy/setup-pi.sh first, or pass --box-root)"
    take_lock
    _prev=$(readlink "$MODELS/previous" 2>/dev/null || true)
    if [ -z "$_prev" ] || [ ! -f "$MODELS/$_prev" ]; then
        die noprevious "the box has no previous model to return to"
    fi
    activate "$_prev" "$(sha_of "$MODELS/$_prev")" "$_keep" "$_wait" "$_timeout" 0
}

LOCK=""
command=${1:?command}; ROOT=${2:-}; shift 2
# No root given: the box's own (GRAINBOX_BOX_ROOT, e.g. from sshd's SetEnv), else the standard place.
ROOT=${ROOT:-${GRAINBOX_BOX_ROOT:-/var/lib/grainbox}}
MODELS="$ROOT/models"
STATUS="$ROOT/state/status.json"
case $command in
    probe) probe ;;
    install) install "$@" ;;
    rollback) rollback "$@" ;;
    *) echo "error usage unknown command $command"; exit 4 ;;
esac
