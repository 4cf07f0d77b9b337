#!/usr/bin/env bash
# Render docs/patch.png: main.pd in the real Pd GUI on a virtual X display (Xvfb), cropped to its window.
# Needs: puredata-gui, xvfb (xvfb-run) and imagemagick (import, convert).
#   xvfb-run -a -s "-screen 0 1440x900x24" pd/screenshot.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../docs/patch.png}"
pd -noaudio -nomidi "$here/main.pd" >/dev/null 2>&1 &
pd_pid=$!
trap 'kill "$pd_pid" 2>/dev/null || true' EXIT
sleep "${GRAINBOX_SHOT_WAIT:-6}"
shot="$(mktemp --suffix=.png)"
import -window root "$shot"
# main.pd's canvas opens at (60, 60) with its size from the file's first line; keep that window only
read -r w h < <(head -1 "$here/main.pd" | awk '{print $5, $6}')
convert "$shot" -crop "${w}x$((h + 30))+60+60" +repage "$out"
rm -f "$shot"
echo "$out"
