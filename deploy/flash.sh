#!/usr/bin/env bash
# flash.sh: put a trained model on one or more Grainbox boxes without ever leaving one broken.
#
# For each target the model is checked here first (python -m runtime check), copied to a staging name on
# the box, verified by sha256 there, swapped in atomically (a new symlink renamed over `current`), and
# confirmed by the box's runtime reporting the new hash in its status.json; if it does not, the swap is
# undone. The box's half of the work is deploy/boxside.sh, sent along with every call (see its header).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
BOXSIDE_SCRIPT=$(cat "$HERE/boxside.sh")
DEFAULT_HOST=grainbox.local
DEFAULT_BOX_ROOT=/var/lib/grainbox

usage() {
    cat <<EOF
usage: deploy/flash.sh [options] MODEL.ts [TARGET...]
       deploy/flash.sh --rollback [options] [TARGET...]

Put MODEL.ts on each TARGET and make it the playing model; with --rollback, return each TARGET to the
model it played before. A TARGET is [user@]host[:port] (over ssh; default $DEFAULT_HOST) or a local
directory: a box's SD card mounted here (its box root is DIR$DEFAULT_BOX_ROOT).

options:
  --rollback           swap back to the previous model instead of flashing one
  --dry-run            check the model and each box, print what would happen, change nothing
  --box-root DIR       the box root (default: DIR$DEFAULT_BOX_ROOT for a directory target; on an
                       ssh box, its GRAINBOX_BOX_ROOT if set, else $DEFAULT_BOX_ROOT)
  --keep K             model files to keep on the box, current and previous included (default 3)
  --timeout S          seconds to wait for the runtime to report the new model (default 30)
  --no-wait            swap without waiting for the runtime (a box whose runtime is stopped)
  --min-free MB        space to leave free on the box after the copy (default 64)
  -i, --identity FILE  ssh private key
  --known-hosts FILE   ssh known_hosts file to use
  --ssh-opt OPT        extra ssh -o option, repeatable (also: GRAINBOX_SSH_OPTS="-o A=b -o C=d")
  -h, --help           this text

environment: GRAINBOX_PYTHON, the python that runs the model check (default: the repo's .venv).
exit status: 0 every box plays the model; 1 a box failed or was rolled back; 2 bad usage or bad model.
EOF
}

fail_usage() { echo "flash.sh: $*" >&2; echo "try: deploy/flash.sh --help" >&2; exit 2; }

# ---- options ---------------------------------------------------------------------------------------
ROLLBACK=0 DRY_RUN=0 BOX_ROOT="" KEEP=3 TIMEOUT=30 WAIT=auto MIN_FREE_MB=64
SSH_ARGS=(-o BatchMode=yes -o ConnectTimeout=8 -o ServerAliveInterval=5 -o ServerAliveCountMax=3)
if [[ -n ${GRAINBOX_SSH_OPTS:-} ]]; then
    read -r -a extra <<<"$GRAINBOX_SSH_OPTS"
    SSH_ARGS+=("${extra[@]}")
fi
POSITIONAL=()
while (($#)); do
    case $1 in
        --rollback) ROLLBACK=1 ;;
        --dry-run) DRY_RUN=1 ;;
        --box-root) BOX_ROOT=${2:?--box-root needs a directory}; shift ;;
        --keep) KEEP=${2:?--keep needs a number}; shift ;;
        --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift ;;
        --no-wait) WAIT=no ;;
        --min-free) MIN_FREE_MB=${2:?--min-free needs megabytes}; shift ;;
        -i | --identity) SSH_ARGS+=(-i "${2:?--identity needs a key file}" -o IdentitiesOnly=yes); shift ;;
        --known-hosts) SSH_ARGS+=(-o "UserKnownHostsFile=${2:?--known-hosts needs a file}"); shift ;;
        --ssh-opt) SSH_ARGS+=(-o "${2:?--ssh-opt needs an option}"); shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; POSITIONAL+=("$@"); break ;;
        -*) fail_usage "unknown option $1" ;;
        *) POSITIONAL+=("$1") ;;
    esac
    shift
done
if ! [[ $KEEP =~ ^[0-9]+$ ]] || ((KEEP < 2)); then fail_usage "--keep must be 2 or more (current and previous)"; fi
if ! [[ $TIMEOUT =~ ^[0-9]+$ ]] || ((TIMEOUT < 1)); then fail_usage "--timeout must be whole seconds, 1 or more"; fi
[[ $MIN_FREE_MB =~ ^[0-9]+$ ]] || fail_usage "--min-free must be a whole number of megabytes"

if ((ROLLBACK)); then
    MODEL="" TARGETS=("${POSITIONAL[@]}")
else
    ((${#POSITIONAL[@]})) || fail_usage "which model? give MODEL.ts"
    MODEL=${POSITIONAL[0]} TARGETS=("${POSITIONAL[@]:1}")
fi
((${#TARGETS[@]})) || TARGETS=("$DEFAULT_HOST")

is_dir_target() { [[ $1 == /* || $1 == ./* || $1 == ../* || -d $1 ]]; }

ndirs=0
for t in "${TARGETS[@]}"; do is_dir_target "$t" && ndirs=$((ndirs + 1)); done
if [[ -n $BOX_ROOT ]] && ((ndirs > 1)); then
    fail_usage "--box-root with several directory targets is ambiguous; flash them one at a time"
fi

# ---- the model, checked once, before anything is copied anywhere -----------------------------------
PYTHON=${GRAINBOX_PYTHON:-}
if [[ -z $PYTHON ]]; then
    if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi

human_size() { awk -v b="$1" 'BEGIN { if (b >= 1048576) printf "%.1f MB", b / 1048576; else printf "%.0f kB", b / 1024 }'; }

if [[ -n $MODEL ]]; then
    [[ -f $MODEL ]] || fail_usage "no model file at $MODEL"
    echo "checking $MODEL ..."
    if ! check_out=$(PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m runtime check "$MODEL" 2>&1); then
        echo "flash.sh: refusing $MODEL: the model is invalid; nothing was copied to any box." >&2
        printf '%s\n' "$check_out" | sed 's/^/  /' >&2
        exit 2
    fi
    printf '%s\n' "$check_out" | sed 's/^/  /'
    MODEL_SHA=$(sha256sum "$MODEL" | cut -d' ' -f1)
    MODEL_SIZE=$(stat -c %s "$MODEL")
    # The box's file name: <sha256[:12]>-<name>.ts (docs/box.md), the name from the model's metadata.
    model_name=$("$PYTHON" - "$MODEL" <<'EOF' 2>/dev/null || true
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = [n for n in z.namelist() if n.endswith("/extra/grainbox.json")]
    print(json.loads(z.read(meta[0]))["name"])
EOF
)
    [[ -n $model_name ]] || model_name=$(basename "$MODEL" .ts)
    model_name=$(printf '%s' "$model_name" | tr -c 'A-Za-z0-9._-' '-' | cut -c1-48)
    MODEL_FILE="${MODEL_SHA:0:12}-${model_name}.ts"
fi

# ---- talking to a box --------------------------------------------------------------------------------
quote() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }

# Split TARGET into globals KIND (ssh|dir), DEST ([user@]host), PORT, ROOT (the box root).
parse_target() {
    local t=$1
    if is_dir_target "$t"; then
        KIND=dir DEST="" PORT=""
        ROOT=${BOX_ROOT:-${t%/}$DEFAULT_BOX_ROOT}
    else
        KIND=ssh DEST=$t PORT=""
        if [[ $t =~ ^(.*):([0-9]+)$ ]]; then DEST=${BASH_REMATCH[1]} PORT=${BASH_REMATCH[2]}; fi
        [[ -n ${DEST#*@} ]] || DEST="${DEST}$DEFAULT_HOST"
        ROOT=$BOX_ROOT   # empty: the box's own default ($GRAINBOX_BOX_ROOT there, or /var/lib/grainbox)
    fi
}

SSH_ERR=$(mktemp)
trap 'rm -f "$SSH_ERR"' EXIT
trap 'echo; echo "flash.sh: interrupted; a box keeps its old model unless its swap had already started (then it finishes or rolls back by itself)." >&2; exit 130' INT TERM

# Run boxside.sh COMMAND ROOT ARGS... on the box; stdin goes to it. Exit status 255 means ssh itself
# failed, with its words in $SSH_ERR.
boxside() {
    if [[ $KIND == dir ]]; then
        sh -c "$BOXSIDE_SCRIPT" boxside "$@"
    else
        local remote a
        remote="sh -c $(quote "$BOXSIDE_SCRIPT") boxside"
        for a in "$@"; do remote+=" $(quote "$a")"; done
        # shellcheck disable=SC2029  # expanding here is the point: every word is quoted for the box's shell
        ssh "${SSH_ARGS[@]}" ${PORT:+-p "$PORT"} "$DEST" "$remote" 2>"$SSH_ERR"
    fi
}

# Turn ssh's failure into a one-word outcome and one sentence that says what to do.
record_ssh_problem() {
    local err host=${DEST#*@} port=${PORT:-22} outcome why
    err=$(grep -v '^Warning: Permanently added' "$SSH_ERR" | tail -n 3 | tr '\r\n' '  ' | sed 's/  */ /g; s/ $//')
    case $err in
        *"Permission denied"*)
            outcome="auth-refused"
            why="ssh authentication refused by $DEST: install your key with ssh-copy-id -p $port $DEST, or pass --identity KEY" ;;
        *"Host key verification failed"* | *"REMOTE HOST IDENTIFICATION HAS CHANGED"*)
            outcome="host-key"
            why="the host key of $host is unknown or has changed; check it, then update known_hosts (ssh-keygen -R $host)" ;;
        *"Could not resolve"* | *"Connection refused"* | *"timed out"* | *"No route"* | *"unreachable"* | *"Connection closed"* | *"Connection reset"*)
            outcome="unreachable"
            why="host unreachable: cannot connect to $host port $port ($err); is the box on, on this network, and running sshd?" ;;
        *) outcome="ssh-failed" why="ssh to $DEST failed: ${err:-no message}" ;;
    esac
    record "$1" "$outcome" "$why"
}

# Read boxside's "key value" lines into the assoc array FACT; print info lines as they come.
declare -A FACT
read_facts() {
    FACT=()
    local key value
    while IFS= read -r line; do
        key=${line%% *} value=${line#* }
        [[ $line == *" "* ]] || value=""
        case $key in
            info) echo "  $value" ;;
            result) FACT[$key]=$value; echo "  result: $value" ;;
            error) FACT[$key]=$value; echo "  error: ${value#* }" ;;   # the code word is boxside's, not the user's
            *) FACT[$key]=$value ;;
        esac
    done
}

RESULTS=()
record() { RESULTS+=("$1"$'\t'"$2"$'\t'"$3"); }   # target, outcome, detail

# ---- one box ---------------------------------------------------------------------------------------
plan_one() {
    local t=$1
    read_facts < <(boxside probe "$ROOT" </dev/null || echo "rc $?")
    if [[ ${FACT[rc]:-0} == 255 ]]; then record_ssh_problem "$t"; return; fi
    if [[ -n ${FACT[error]:-} ]]; then record "$t" refused "${FACT[error]#* }"; return; fi
    local age=${FACT[status_age]} running=no
    ((age >= 0 && age <= 6)) && running=yes
    echo "  box root ${FACT[root]}: current ${FACT[current]:-(none)}, previous ${FACT[previous]:-(none)}," \
        "runtime running: $running, $((FACT[free_kb] / 1024)) MB free"
    echo "  models on the box: ${FACT[models]:-(none)}"
    local wait=$WAIT why
    [[ $wait == auto && $KIND == ssh ]] && wait=yes
    why=$(refusal "$wait")
    if ((!ROLLBACK)) && [[ -z $why && ${FACT[current]:-} == "$MODEL_FILE" ]]; then
        echo "  would: nothing: $MODEL_FILE is already current"   # as the real run's "unchanged"
        record "$t" unchanged "dry run: $MODEL_FILE is already current"
        return
    fi
    if ((ROLLBACK)); then
        echo "  would: current -> ${FACT[previous]:-(nothing: no previous model)}, previous -> ${FACT[current]:-}"
    else
        echo "  would: copy $(human_size "$MODEL_SIZE") to models/.incoming-PID.part, verify sha256 ${MODEL_SHA:0:12}..," \
            "rename it to $MODEL_FILE,"
        echo "         previous -> ${FACT[current]:-(none)}, current -> $MODEL_FILE (mv -T), keep the newest $KEEP models"
    fi
    if [[ $WAIT == no || ($KIND == dir && $running == no) ]]; then
        echo "         and not wait (no running runtime to confirm)"
    else
        echo "         then wait up to $TIMEOUT s for the runtime to report it, else swap back"
    fi
    if [[ -n $why ]]; then record "$t" "${why%% *}" "dry run: would refuse: ${why#* }"; return; fi
    record "$t" planned "dry run: nothing changed"
}

# Why this box must not be touched, from its probe facts; empty when it may.
refusal() {
    local wait=$1 age=${FACT[status_age]:--1} free_kb=${FACT[free_kb]:-0}
    local need_kb=$((${MODEL_SIZE:-0} / 1024 + 1 + MIN_FREE_MB * 1024))
    if ((!ROLLBACK)) && [[ " ${FACT[models]:-} " != *" $MODEL_FILE "* ]] && ((free_kb < need_kb)); then
        echo "no-space not enough space on the box: $((free_kb / 1024)) MB free in ${FACT[root]}, the model" \
            "needs $((MODEL_SIZE / 1048576 + 1)) MB plus $MIN_FREE_MB MB kept free (--min-free);" \
            "remove old models (lower --keep) or free space on the box"
    elif [[ $wait == yes ]] && ! ((age >= 0 && age <= 6)); then
        echo "refused the runtime is not running (no fresh status.json in ${FACT[root]}/state), so it cannot" \
            "confirm the model; start it (systemctl start grainbox-runtime) or pass --no-wait"
    fi
}

flash_one() {
    local t=$1 wait=$WAIT why
    # An ssh box must confirm; an SD card (a directory) usually has no runtime running, and then the
    # model plays at the next boot.
    [[ $wait == auto && $KIND == ssh ]] && wait=yes
    read_facts < <(boxside probe "$ROOT" </dev/null || echo "rc $?")
    if [[ ${FACT[rc]:-0} == 255 ]]; then record_ssh_problem "$t"; return; fi
    if [[ -n ${FACT[error]:-} ]]; then record "$t" refused "${FACT[error]#* }"; return; fi
    why=$(refusal "$wait")
    if [[ -n $why ]]; then record "$t" "${why%% *}" "${why#* }"; return; fi

    if ((ROLLBACK)); then
        read_facts < <(boxside rollback "$ROOT" "$KEEP" "$wait" "$TIMEOUT" </dev/null || echo "rc $?")
    else
        local source=$MODEL
        if [[ " ${FACT[models]:-} " == *" $MODEL_FILE "* ]]; then
            source=/dev/null   # already on the box from an earlier flash: nothing to copy
        else
            echo "  copying $(human_size "$MODEL_SIZE") as $MODEL_FILE ..."
        fi
        read_facts < <(boxside install "$ROOT" "$MODEL_FILE" "$MODEL_SHA" "$MODEL_SIZE" "$KEEP" "$wait" \
            "$TIMEOUT" $((MIN_FREE_MB * 1024)) <"$source" || echo "rc $?")
    fi
    local rc=${FACT[rc]:-0}
    if [[ $rc == 255 ]]; then record_ssh_problem "$t"; return; fi
    if [[ -n ${FACT[result]:-} ]]; then
        record "$t" "${FACT[result]%% *}" "${FACT[result]#* }"
    elif [[ -n ${FACT[error]:-} ]]; then
        local code=${FACT[error]%% *} outcome=refused
        case $code in corrupt) outcome=failed ;; space) outcome=no-space ;; esac
        record "$t" "$outcome" "${FACT[error]#* }"
    else
        record "$t" failed "the box answered nothing we understand (exit $rc): $(tail -n 2 "$SSH_ERR" | tr '\n' ' ')"
    fi
}

# ---- all boxes -------------------------------------------------------------------------------------
for t in "${TARGETS[@]}"; do
    parse_target "$t"
    echo "== $t"
    if [[ $KIND == dir && ! -d $t ]]; then   # an SD card that is not mounted (or a typing slip)
        echo "  no folder $t"
        record "$t" refused "no folder $t: is the box's SD card mounted? Mount its root partition and give that folder"
        continue
    fi
    if ((DRY_RUN)); then plan_one "$t"; else flash_one "$t"; fi
done

# The per-box table, then the exit status: 0 only if every box ended well.
echo
width=3
for row in "${RESULTS[@]}"; do t=${row%%$'\t'*}; ((${#t} > width)) && width=${#t}; done
failed=0
printf '%-*s  %-12s %s\n' "$width" BOX RESULT DETAIL
for row in "${RESULTS[@]}"; do
    IFS=$'\t' read -r t outcome detail <<<"$row"
    printf '%-*s  %-12s %s\n' "$width" "$t" "$outcome" "$detail"
    case $outcome in ok | unchanged | installed | planned) ;; *) failed=1 ;; esac
done
exit "$failed"
