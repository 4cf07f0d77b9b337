#!/usr/bin/env bash
# Pictures for docs/pd/: main.pd, and the inside of every abstraction as its help patch runs it, drawn by
# the real Pd GUI on a virtual X display. Needs puredata-gui, xvfb, imagemagick (import) and xdotool:
#   make pd-pictures    (or: xvfb-run -a -s "-screen 0 1280x900x24" pd/screenshot.sh [out-folder])
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../docs/pd}"
mkdir -p "$out"

# shoot PATCH TITLE PNG [MESSAGE]: open PATCH (and send MESSAGE after it loaded), picture the window whose
# title starts with TITLE once Pd has drawn it, then quit that Pd.
shoot() {
    local patch=$1 title=$2 png=$3 message=${4:-}
    local args=(-noaudio -nomidi -nrt -path "$here")
    [ -n "$message" ] && args+=(-send "$message")
    pd "${args[@]}" "$patch" >/dev/null 2>&1 &
    local pid=$! window=""
    for _ in $(seq 1 150); do
        window="$(xdotool search --onlyvisible --name "^${title//./\\.} " 2>/dev/null | tail -1 || true)"  # the one on top
        [ -n "$window" ] && break
        sleep 0.2
    done
    [ -n "$window" ] || { echo "no window '$title' for $patch" >&2; kill "$pid"; return 1; }
    sleep "${GRAINBOX_SHOT_WAIT:-2}"  # Tk draws the boxes after the window maps
    import -window "$window" "$png"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "$png"
}

# main.pd with the runtime behind it (the factory model, virtual knobs, a throw-away state folder), so the
# picture shows the play surface as a player sees it: the knobs where the runtime has them, the sound and
# the model playing. Without the project's venv the picture shows the patch alone.
python="${GRAINBOX_PYTHON:-$here/../.venv/bin/python}"
runtime_pid=""
if [ -x "$python" ] && [ -f "$here/../models/factory.ts" ]; then
    state="$(mktemp -d)"
    (cd "$here/.." && exec "$python" -m runtime run --model models/factory.ts --state-dir "$state" \
        --controls virtual --osc-port 19000 --pd-port 19001) >"$state/runtime.log" 2>&1 &
    runtime_pid=$!
    shoot "$here/main.pd" "main.pd" "$out/main.png" "gb_ports 19001 19000"
    kill "$runtime_pid"
    wait "$runtime_pid" 2>/dev/null || true
    rm -rf "$state"
else
    echo "no $python: main.png without the runtime behind it" >&2
    shoot "$here/main.pd" "main.pd" "$out/main.png"
fi
for help in "$here"/grainbox-*-help.pd; do
    name="$(basename "$help" -help.pd)"
    # the abstraction as its help patch holds it: real arguments, so every box is created
    shoot "$help" "$name.pd" "$out/$name.png" "pd-$name.pd vis 1"
done
