"""The MIDI map: which controller (channel, CC number) moves which control of the patch, kept with the box's
state in state/midi.json.

The patch learns a mapping ([grainbox-midi]: touch a control, move a CC) and tells the runtime (/midimap);
the runtime keeps the map and gives it back whenever Pd (re)starts, so a mapping survives a restart of Pd,
of the runtime, or of the whole box. The MIDI itself never passes through here: Pd's [ctlin] hears the
controller and moves the control, as a hand on the slider would (one path on a desktop and on the box).

    >>> import tempfile
    >>> midi = MidiMap(Path(tempfile.mkdtemp()) / "midi.json")
    >>> midi.learn(1, 7, "knob3")
    >>> midi.entries()
    [(1, 7, 'knob3')]
    >>> control_range("density")
    (0.5, 500.0, True, False)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from runtime.atomic import write_json_atomic
from runtime.contract import KNOB_NAMES
from runtime.params import PARAMS

log = logging.getLogger(__name__)

FORMAT = 1
# What a controller may move: the knobs, and every parameter but `listen` (the runtime's own mode: a CC
# would fight the runtime's answer; the LISTEN buttons and /listen set it).
CONTROLS: tuple[str, ...] = KNOB_NAMES + tuple(name for name in PARAMS if name != "listen")


def control_range(control: str) -> tuple[float, float, bool, bool]:
    """(low, high, log curve, integer) of a control: what a CC's 0..127 sweeps, as the slider does."""
    if control in KNOB_NAMES:
        return 0.0, 1.0, False, False
    p = PARAMS[control]
    return p.low, p.high, p.exponential, p.integer


class MidiMap:
    """(channel, cc) -> control, saved atomically after every change; a broken file is set aside, not lost."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._map: dict[tuple[int, int], str] = {}
        self.skipped: list[str] = []
        self._load()

    def entries(self) -> list[tuple[int, int, str]]:
        return [(channel, cc, control) for (channel, cc), control in sorted(self._map.items())]

    def learn(self, channel: int, cc: int, control: str) -> None:
        """Map the controller to `control` ("-" forgets the controller); a controller moves one control."""
        if control == "-":
            self._map.pop((channel, cc), None)
        elif control not in CONTROLS:
            raise ValueError(f"{control!r} is not a control MIDI can move (knob1..knob8 or a /param)")
        else:
            self._map[(channel, cc)] = control
        self._save()

    def clear(self) -> None:
        self._map.clear()
        self._save()

    def _save(self) -> None:
        entries = [{"channel": ch, "cc": cc, "control": control} for ch, cc, control in self.entries()]
        write_json_atomic(self.path, {"format": FORMAT, "map": entries})

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_bytes().decode("utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("map"),
                                                                                           list):
                raise ValueError(f"not a format-{FORMAT} MIDI map")
            for entry in data["map"]:
                fields = entry if isinstance(entry, dict) else {}  # one bad entry costs only itself
                channel, cc, control = fields.get("channel"), fields.get("cc"), fields.get("control")
                if (_is_int(channel) and 1 <= channel <= 256 and _is_int(cc) and 0 <= cc <= 127
                        and control in CONTROLS):
                    self._map[(channel, cc)] = control
                else:
                    self.skipped.append(f"{self.path}: entry {json.dumps(entry)[:80]} is not a mapping")
        except (ValueError, UnicodeDecodeError, AttributeError, RecursionError) as e:
            aside = self.path.with_name(self.path.name + ".broken")
            self.path.replace(aside)  # kept for whoever wants to look; the box starts with an empty map
            self._map.clear()
            self.skipped.append(f"{self.path} cannot be read ({e}); moved to {aside.name}, learn again")
        for why in self.skipped:
            log.warning("MIDI map: %s", why)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON's true is not channel 1
