#!/bin/sh
# Connect every MIDI controller on the box to Pd's MIDI input, so that its CCs reach the patch's MIDI
# learn ([ctlin] in pd/grainbox-midi.pd) and its keys [notein]: the one path MIDI takes into the box.
#
# Pd (grainbox-pd.service, -alsamidi -mididev 1) opens an ALSA sequencer port, "Pure Data Midi-In 1".
# A USB controller is a kernel sequencer client. This connects each one's ports to Pd's, with aconnect
# (alsa-utils). It runs after Pd starts (the Pd unit's ExecStartPost) and whenever a controller is plugged
# in (deploy/udev/90-grainbox-midi.rules starts grainbox-midi-connect.service). A connection that exists
# is kept; nothing is ever disconnected (unplugging does that). No Pd port after GRAINBOX_MIDI_WAIT_S
# seconds (10): nothing to connect to, which is not an error (Pd's unit connects when it starts).
set -u

wait_s=${GRAINBOX_MIDI_WAIT_S:-10}

# The first writable port of the client called "Pure Data" whose name has "Midi-In": client:port.
pd_input() {
    aconnect -o 2>/dev/null | awk '
        /^client [0-9]+:/ { split($2, c, ":"); client = c[1]; pd = ($0 ~ /^client [0-9]+: .Pure Data. /) }
        pd && /^ +[0-9]+ / && /Midi-In/ { print client ":" $1; exit }'
}

# Every readable port of a hardware (kernel) client, except the System client and Midi Through:
# client:port<TAB>client name.
controllers() {
    aconnect -i 2>/dev/null | awk '
        /^client [0-9]+:/ {
            split($2, c, ":"); client = c[1]
            name = $0; sub(/^client [0-9]+: ./, "", name); sub(/. \[.*$/, "", name)
            hardware = ($0 ~ /type=kernel/) && client != 0 && name != "Midi Through"
        }
        hardware && /^ +[0-9]+ / { print client ":" $1 "\t" name }'
}

pd=$(pd_input)
waited=0
while [ -z "$pd" ]; do
    if [ "$(awk -v w="$waited" -v m="$wait_s" 'BEGIN { print (w >= m) }')" = 1 ]; then
        echo "grainbox-midi: Pd has no MIDI input port (is grainbox-pd.service running with -alsamidi?);" \
             "nothing connected"
        exit 0
    fi
    sleep 0.5
    waited=$(awk -v w="$waited" 'BEGIN { print w + 0.5 }')
    pd=$(pd_input)
done

found=0
connected=0
tab=$(printf '\t')
while IFS="$tab" read -r port name; do
    [ -n "$port" ] || continue
    found=$((found + 1))
    if aconnect "$port" "$pd" 2>/dev/null; then
        connected=$((connected + 1))
        echo "grainbox-midi: $name ($port) -> Pd ($pd)"
    fi
done <<LIST
$(controllers)
LIST
echo "grainbox-midi: $found controller port(s), $connected newly connected to Pd ($pd)"
