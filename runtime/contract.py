"""The one contract between the trainer, the box's runtime, the Pd patch and the docs (runtime/contract.json).

It says what the box can play (sample rate, grain size, slots, latent size), what a model artifact holds
(schema versions, metadata file, methods, buffers, anchors, axes), how many knobs there are and what they
do out of the box, the LFO shapes and targets, the scales, and every /param the patch takes. Everything
that has to agree reads it from here:

    >>> from runtime.contract import KNOB_COUNT, LIMITS, SLOTS
    >>> KNOB_COUNT
    8
    >>> SLOTS.high
    16
    >>> LIMITS["slots"].refuses(32)
    'slots 32 is outside 1-16 grains (the patch holds 16 slot tables)'

`runtime check` and the model loader refuse a model outside LIMITS, box.toml cannot ask for more slots
than the patch holds, the trainer's export writes what the loader reads, and runtime.params maps knobs onto
the /params with the contract's ranges and curves. The patch and docs/osc.md are checked against the same
file by the tests, so a change is made here first and the tests say what else must follow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTRACT_FILE = Path(__file__).with_name("contract.json")
CONTRACT: dict[str, Any] = json.loads(CONTRACT_FILE.read_text())


@dataclass(frozen=True)
class Limit:
    """One range the box can play, with its unit and the reason for its bounds."""

    name: str
    low: int
    high: int
    unit: str
    why: str

    def refuses(self, value: int) -> str | None:
        """None when `value` is inside the limit, else what is wrong with it, in words."""
        if self.low <= value <= self.high:
            return None
        return f"{self.name} {value} is outside {self.low}-{self.high} {self.unit} ({self.why})"


LIMITS: dict[str, Limit] = {
    name: Limit(name, int(row["min"]), int(row["max"]), row["unit"], row["why"])
    for name, row in CONTRACT["limits"].items()
}
SAMPLE_RATE = LIMITS["sample_rate"]
GRAIN_SIZE = LIMITS["grain_size"]
SLOTS = LIMITS["slots"]
LATENT_DIM = LIMITS["latent_dim"]

_artifact = CONTRACT["artifact"]
ARTIFACT_SCHEMAS: tuple[int, ...] = tuple(_artifact["schema_versions"])
SCHEMA_VERSION: int = max(ARTIFACT_SCHEMAS)  # what the trainer writes: the newest the box reads
METADATA_FILE: str = _artifact["metadata_file"]
METHODS: tuple[str, ...] = tuple(_artifact["methods"])
BUFFERS: tuple[str, ...] = tuple(_artifact["buffers"])
MAX_ANCHORS: int = _artifact["max_anchors"]
MIN_AXES: int = _artifact["min_axes"]

_knobs = CONTRACT["knobs"]
KNOB_COUNT: int = _knobs["count"]
KNOB_OSC_FIRST_INDEX: int = _knobs["osc_first_index"]  # /knob's index of the first knob
KNOB_NAMES: tuple[str, ...] = tuple(_knobs["names"])
DEFAULT_KNOB_ACTIONS: tuple[str, ...] = tuple(_knobs["default_actions"])

LFO_SHAPES: tuple[str, ...] = tuple(CONTRACT["lfo"]["shapes"])
LFO_TARGETS: tuple[str, ...] = tuple(CONTRACT["lfo"]["targets"])
SCALE_NAMES: tuple[str, ...] = tuple(CONTRACT["scales"]["names"])
SCALE_PITCH_CLASSES: dict[str, tuple[int, ...]] = {
    name: tuple(classes) for name, classes in CONTRACT["scales"]["pitch_classes"].items()
}

# One dict per /param, in the patch's order: name, min, max, default, curve ("log" or "linear"),
# integer, unit, doc, control. runtime.params turns them into Param objects with the knob mapping.
PARAM_ROWS: tuple[dict[str, Any], ...] = tuple(CONTRACT["params"])
PARAM_NAMES: tuple[str, ...] = tuple(row["name"] for row in PARAM_ROWS)

# Names on the OSC bus (sounds, presets, models, controls) are one Pd word: Pd splits a symbol box's text at
# spaces, so the runtime sends "saw high warm" as saw_high_warm, and the patch sends it back that way.
MAX_NAME = 64  # bytes of such a name: the files' own limit


def pd_word(text: str) -> str:
    """`text` as the patch shows it and sends it back: spaces as `_`, at most MAX_NAME bytes, "-" for none.

    >>> pd_word("saw high  warm")
    'saw_high_warm'
    """
    word = "_".join(text.split()).encode()[:MAX_NAME].decode(errors="ignore")
    return word or "-"
