"""The box configuration: one TOML file, every key optional, every value checked against what it accepts.

deploy/box.toml is the commented example (and is kept in step with DEFAULTS by a test). A wrong key or
value raises ConfigError naming the section, the key, what was found and what is accepted, so a typo in
/etc/grainbox/box.toml shows up in `journalctl -u grainbox-runtime` as one readable line. A renamed key
(RENAMED: [mapping] pot1..pot8 are now knob1..knob8) is still read under its old name, with one warning.
"""

from __future__ import annotations

import argparse
import logging
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.contract import DEFAULT_KNOB_ACTIONS, KNOB_NAMES, MIN_AXES, SLOTS
from runtime.text import excerpt, shown_name

REPO = Path(__file__).resolve().parent.parent
FACTORY_MODEL = REPO / "models" / "factory.ts"
DEFAULT_STATE_DIR = Path("~/.local/state/grainbox")

log = logging.getLogger(__name__)

# Every model has at least MIN_AXES axes, so a knob can always be mapped to any of them.
KNOB_ACTIONS = tuple(f"axis{i}" for i in range(1, MIN_AXES + 1)) + (
    "density",
    "duration",
    "transpose",
    "gain",
    "spray",
    "none",
)
ENCODER_ACTIONS = ("anchor", "preset", "none")
BUTTON_ACTIONS = ("freeze", "save_preset", "recall_preset", "listen", "none")
LISTEN_MODES = ("off", "follow", "capture")  # the audio input: runtime/listen.py
CONTROL_KINDS = ("box", "virtual", "none")


class ConfigError(ValueError):
    """A configuration the runtime refuses; the message names the key and the accepted values."""


@dataclass(frozen=True)
class Config:
    """Every setting of the runtime, flat, with the defaults a musician gets out of the box."""

    model_path: Path = FACTORY_MODEL
    model_poll_s: float = 0.5
    state_dir: Path = DEFAULT_STATE_DIR
    listen_port: int = 9000
    pd_port: int = 9001
    slots: int = 8
    spray: float = 1.0
    seed: int = 0
    controls: str = "box"
    poll_ms: int = 40
    smoothing: float = 0.75
    dead_band: int = 2
    long_press_s: float = 1.0
    spi_port: int = 0
    spi_device: int = 0
    encoder_a: int = 17
    encoder_b: int = 27
    encoder_button: int = 22
    knob_actions: tuple[str, ...] = DEFAULT_KNOB_ACTIONS  # knob1..knob8's [mapping], in order
    encoder: str = "anchor"
    button_press: str = "freeze"
    button_long_press: str = "save_preset"
    listen: str = "off"  # the input's mode at start; a button mapped to "listen" steps through them
    listen_smoothing: float = 0.5
    capture_grains: int = 8

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"

    @property
    def presets_dir(self) -> Path:
        return self.state_dir / "presets"

    @property
    def anchors_dir(self) -> Path:
        return self.state_dir / "anchors"


# ------------------------------------------------------------------------------------------ validators


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise _Rejected(f"an integer from {low} to {high}")
        return v

    return check


def _number(low: float, high: float, low_open: bool = False) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        ok = (
            isinstance(v, int | float)
            and not isinstance(v, bool)
            and (low < v if low_open else low <= v)
            and v <= high
        )
        if not ok:
            raise _Rejected(
                f"a number > {low} and <= {high}" if low_open else f"a number from {low} to {high}"
            )
        return float(v)

    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in choices:
            raise _Rejected("one of " + ", ".join(repr(c) for c in choices))
        return v

    return check


def _path(v: Any) -> Path:
    if not isinstance(v, str) or not v:
        raise _Rejected("a non-empty path string")
    return Path(v)


class _Rejected(Exception):
    """Raised by a validator with the description of what it accepts."""


_PORT = _integer(1, 65535)
_GPIO = _integer(0, 27)  # BCM numbers of the Pi's 40-pin header

# section -> key -> (Config field, validator). The TOML layout is grouped for humans; Config is flat.
SCHEMA: dict[str, dict[str, tuple[str, Callable[[Any], Any]]]] = {
    "model": {"path": ("model_path", _path), "poll_interval": ("model_poll_s", _number(0.05, 60))},
    "state": {"dir": ("state_dir", _path)},
    "osc": {"listen_port": ("listen_port", _PORT), "pd_port": ("pd_port", _PORT)},
    "engine": {
        "slots": ("slots", _integer(SLOTS.low, SLOTS.high)),  # what the patch holds (runtime/contract.json)
        "spray": ("spray", _number(0, 8)),
        "seed": ("seed", _integer(0, 2**31 - 1)),
    },
    "controls": {
        "kind": ("controls", _one_of(CONTROL_KINDS)),
        "poll_ms": ("poll_ms", _integer(5, 1000)),
        "smoothing": ("smoothing", _number(0, 1, low_open=True)),
        "dead_band": ("dead_band", _integer(0, 64)),
        "long_press": ("long_press_s", _number(0.2, 10)),
    },
    "pins": {
        "spi_port": ("spi_port", _integer(0, 1)),
        "spi_device": ("spi_device", _integer(0, 1)),
        "encoder_a": ("encoder_a", _GPIO),
        "encoder_b": ("encoder_b", _GPIO),
        "encoder_button": ("encoder_button", _GPIO),
    },
    "listen": {
        "mode": ("listen", _one_of(LISTEN_MODES)),
        "smoothing": ("listen_smoothing", _number(0, 1, low_open=True)),
        "capture_grains": ("capture_grains", _integer(1, SLOTS.high)),
    },
    "mapping": {
        **{name: (name, _one_of(KNOB_ACTIONS)) for name in KNOB_NAMES},
        "encoder": ("encoder", _one_of(ENCODER_ACTIONS)),
        "button_press": ("button_press", _one_of(BUTTON_ACTIONS)),
        "button_long_press": ("button_long_press", _one_of(BUTTON_ACTIONS)),
    },
}

# Old spellings still read, section -> old key -> new key: [mapping] pot1..pot8 became knob1..knob8 (the
# names the patch, the docs and runtime/contract.json use), and a box.toml from before must keep playing.
RENAMED: dict[str, dict[str, str]] = {
    "mapping": {f"pot{i}": name for i, name in enumerate(KNOB_NAMES, start=1)},
}


def parse_config(data: dict[str, Any], where: str = "box.toml", base_dir: Path | None = None) -> Config:
    """A Config from parsed TOML; relative paths are taken from base_dir (the config file's folder)."""
    values: dict[str, Any] = {}
    knobs = list(Config.knob_actions)
    renamed: dict[str, list[str]] = {}  # section -> "old is now new", for the one warning
    for section, table in data.items():
        if section not in SCHEMA:
            raise ConfigError(
                f"{where}: unknown section [{shown_name(section)}]; accepted sections: "
                + ", ".join(f"[{s}]" for s in SCHEMA)
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: `{section}` must be a [{section}] table of keys")
        for key, raw in table.items():
            new = RENAMED.get(section, {}).get(key, key)
            if new != key:
                if new in table:
                    raise ConfigError(
                        f"{where}: [{section}] sets both {key} and {new}, the old and the new name of one "
                        f"control; keep {new} and delete {key}"
                    )
                renamed.setdefault(section, []).append(f"{key} is now {new}")
            if new not in SCHEMA[section]:
                raise ConfigError(
                    f"{where}: [{section}] has no key {_key(key)}; accepted keys: "
                    + ", ".join(SCHEMA[section])
                )
            name, check = SCHEMA[section][new]
            try:
                value = check(raw)
            except _Rejected as e:
                raise ConfigError(
                    f"{where}: [{section}] {key} = {excerpt(raw)} is not accepted; expected {e}"
                ) from None
            if name in KNOB_NAMES:
                knobs[KNOB_NAMES.index(name)] = value
            else:
                values[name] = value
    if renamed:  # one line per file, however many old keys it has; the file still works as it is
        moves = [f"[{section}] " + ", ".join(keys) for section, keys in renamed.items()]
        them = "it" if sum(map(len, renamed.values())) == 1 else "them"
        log.warning("%s: %s; rename %s", where, "; ".join(moves), them)
    values["knob_actions"] = tuple(knobs)
    config = Config(**values)
    _check_combination(config, where)
    return _resolve_paths(config, base_dir)


def load_config(path: Path | None, overrides: argparse.Namespace | None = None) -> Config:
    """Read `path` (None: built-in defaults) and apply command-line overrides."""
    if path is None:
        config = _resolve_paths(Config(), Path.cwd())
    else:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                f"config file {path} does not exist; copy deploy/box.toml there or drop "
                f"--config to use the defaults"
            ) from None
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        text = _utf8_text(raw, path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path} is not valid TOML: {e}") from None
        except RecursionError:  # tomllib parses nested arrays and inline tables recursively
            raise ConfigError(
                f"{path} nests arrays or tables too deeply to read; box.toml holds [sections] of plain "
                f"values: start again from deploy/box.toml"
            ) from None
        config = parse_config(data, str(path), path.parent)
    return _apply_overrides(config, overrides)


def _key(key: str) -> str:
    return f"`{key}`" if shown_name(key) == key else excerpt(key)


def _utf8_text(raw: bytes, path: Path) -> str:
    """The file's text; a binary or non-UTF-8 file is refused naming where it goes wrong."""
    if b"\0" in raw:
        raise ConfigError(
            f"{path} is not a text file (a NUL byte at offset {raw.index(0)}); box.toml is UTF-8 text: "
            f"copy deploy/box.toml there and edit that"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line}); TOML files are UTF-8: "
            f"save it as UTF-8 in your editor"
        ) from None


def _apply_overrides(config: Config, args: argparse.Namespace | None) -> Config:
    if args is None:
        return config
    changes: dict[str, Any] = {}
    for option, field, check in (
        ("model", "model_path", None),
        ("state_dir", "state_dir", None),
        ("osc_port", "listen_port", _PORT),
        ("pd_port", "pd_port", _PORT),
        ("controls", "controls", _one_of(CONTROL_KINDS)),
        ("listen", "listen", _one_of(LISTEN_MODES)),
    ):
        value = getattr(args, option, None)
        if value is None:
            continue
        if check is not None:
            try:
                value = check(value)
            except _Rejected as e:
                raise ConfigError(
                    f"--{option.replace('_', '-')} {value!r} is not accepted; expected {e}"
                ) from None
        changes[field] = value
    merged = {**config.__dict__, **changes}
    config = Config(**merged)
    _check_combination(config, "command line and config")
    return _resolve_paths(config, Path.cwd())


def _resolve_paths(config: Config, base_dir: Path | None) -> Config:
    base = base_dir or Path.cwd()

    def resolve(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else base / p

    # The model path is kept as given (not realpath'd): it is usually a symlink whose target changes.
    return Config(
        **{
            **config.__dict__,
            "model_path": resolve(config.model_path),
            "state_dir": resolve(config.state_dir),
        }
    )


def _check_combination(c: Config, where: str) -> None:
    if c.listen_port == c.pd_port:
        raise ConfigError(
            f"{where}: [osc] listen_port and pd_port are both {c.pd_port}; the runtime and Pd need "
            f"different ports (defaults 9000 and 9001)"
        )
    pins = {"encoder_a": c.encoder_a, "encoder_b": c.encoder_b, "encoder_button": c.encoder_button}
    spi_pins = {7, 8, 9, 10, 11}  # CE1, CE0, MISO, MOSI, SCLK of SPI0: the MCP3008 owns them
    seen: dict[int, str] = {}
    for name, pin in pins.items():
        if pin in seen:
            raise ConfigError(
                f"{where}: [pins] {name} and {seen[pin]} are both GPIO{pin}; each needs its own pin"
            )
        if c.controls == "box" and pin in spi_pins:
            raise ConfigError(
                f"{where}: [pins] {name} = {pin} is an SPI0 pin used by the MCP3008; "
                "choose a GPIO outside 7-11"
            )
        seen[pin] = name
