"""Presets: a saved control state (knobs, anchor, freeze) and every Pd parameter, one JSON file each under
state/presets/. Format 2 added `params` (name -> value, in each /param's own unit); a format-1 preset
still recalls, and leaves the Pd parameters as they are.

Files are written atomically (runtime.atomic), so pulling the plug while saving leaves the previous
preset or the new one, never half a file. A preset that cannot be read is refused with PresetError
naming the file and the problem; the playing state is left alone.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runtime.atomic import TEMP_PREFIX, remove_stale_temps, write_json_atomic
from runtime.contract import KNOB_COUNT
from runtime.params import PARAMS
from runtime.text import excerpt

FORMAT = 2
READS = (1, 2)  # formats this runtime recalls
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


class PresetError(Exception):
    """A preset that cannot be saved or recalled; the message names it and the problem."""


@dataclass
class ControlState:
    """What the player has set: the knob positions (0..1), the anchor (sound) index, freeze."""

    knobs: list[float] = field(default_factory=lambda: [0.5] * KNOB_COUNT)
    anchor: int = 0
    freeze: bool = False

    def copy(self) -> ControlState:
        return ControlState(list(self.knobs), self.anchor, self.freeze)

    def to_json(self) -> dict[str, Any]:
        return {"knobs": [round(v, 6) for v in self.knobs], "anchor": self.anchor, "freeze": self.freeze}

    @classmethod
    def from_json(cls, data: Any) -> ControlState:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        knobs, anchor, freeze = data.get("knobs"), data.get("anchor"), data.get("freeze")
        if not (isinstance(knobs, list) and len(knobs) == KNOB_COUNT and all(_unit(v) for v in knobs)):
            raise ValueError(f"`knobs` must be {KNOB_COUNT} numbers in 0..1")
        if not isinstance(anchor, int) or isinstance(anchor, bool) or anchor < 0:
            raise ValueError("`anchor` must be an integer >= 0")
        if not isinstance(freeze, bool):
            raise ValueError("`freeze` must be true or false")
        return cls([float(v) for v in knobs], anchor, freeze)


def _params(data: Any) -> dict[str, float]:
    """A preset's Pd parameters: each a known /param with a finite number, clipped to its range."""
    if not isinstance(data, dict):
        raise ValueError("`params` must be an object of parameter names and numbers")
    params = {}
    for name, value in data.items():
        if name not in PARAMS:
            raise ValueError(f"`params` names {excerpt(name)}, which is not a parameter of this patch")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"`params` {name} must be a finite number")
        params[name] = min(PARAMS[name].high, max(PARAMS[name].low, float(value)))
    return params


def _unit(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1


class PresetStore:
    """Named presets in one folder. Names are plain (letters, digits, space, _ . -); files are NAME.json."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.folder)  # left by a save that was killed: never a preset

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.json") if not p.name.startswith(TEMP_PREFIX))

    def latest(self) -> str | None:
        """The most recently saved preset's name."""
        files = [p for p in self.folder.glob("*.json") if not p.name.startswith(TEMP_PREFIX)]
        return max(files, key=lambda p: p.stat().st_mtime_ns).stem if files else None

    def next_name(self) -> str:
        """preset-001, preset-002, ...: the first free number after the highest in use."""
        numbers = [int(m.group(1)) for n in self.names() if (m := re.fullmatch(r"preset-(\d+)", n))]
        return f"preset-{max(numbers, default=0) + 1:03d}"

    def save(self, state: ControlState, name: str | None = None, model_name: str = "",
             params: dict[str, float] | None = None) -> str:
        name = name or self.next_name()
        if not NAME.match(name):
            raise PresetError(
                f"preset name {excerpt(name)} is not allowed; use up to 64 letters, digits, space, _ . -"
            )
        document = {
            "format": FORMAT,
            "name": name,
            "model_name": model_name,
            "saved_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **state.to_json(),
            "params": {k: round(float(v), 6) for k, v in sorted((params or {}).items())},
        }
        write_json_atomic(self.folder / f"{name}.json", document)
        return name

    def load(self, name: str) -> ControlState:
        return self.load_preset(name)[0]

    def load_preset(self, name: str) -> tuple[ControlState, dict[str, float]]:
        """The control state and the Pd parameters (empty for a format-1 preset) saved as `name`."""
        path = self.folder / f"{name}.json"
        if not NAME.match(name) or not path.is_file():
            known = ", ".join(self.names()) or "none saved yet"
            raise PresetError(f"no preset named {excerpt(name)} in {self.folder} (presets: {known})")
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
            if data.get("format") not in READS:
                raise ValueError(f"format {excerpt(data.get('format'))}, this runtime reads formats 1 and 2")
            return ControlState.from_json(data), _params(data.get("params", {}))
        except UnicodeDecodeError as e:
            problem = f"it is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})"
        except RecursionError:  # json parses nested arrays and objects recursively
            problem = "it nests JSON too deeply (a preset is one flat object)"
        except (ValueError, AttributeError, OSError) as e:
            problem = str(e)
        raise PresetError(f"preset {path} cannot be recalled: {problem}; save it again or delete it")
