"""`python -m runtime COMMAND`: check a model, run the box, diagnose it, or render a model to a WAV.

    python -m runtime check FILE          validate a model artifact, print a summary (exit 1 if invalid)
    python -m runtime run [options]       the program systemd runs all day on the box
    python -m runtime doctor [options]    one OK/FAIL line per thing the box needs, each with its fix
    python -m runtime render MODEL --out WAV [--seconds N] [--knobs ...] [--anchor S] [--param k=v ...]
                                          the model played by the real Pd patch in batch mode, to a WAV

Usage errors exit 2. Each command imports only what it needs, so `check` never touches gpiozero or liblo,
and only `render` needs soundfile (the workstation's; the box does not install it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONTROL_KINDS = ("box", "virtual", "none")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runtime", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = sub.add_parser(
        "check",
        help="validate a model artifact and print a summary",
        description="Validate a model file as the box would before playing it (exit 0 with a summary, "
        "1 with one line naming the problem).",
    )
    check.add_argument(
        "file", type=Path, metavar="FILE", help="a .ts model written by `python -m trainer export`"
    )

    run = sub.add_parser(
        "run",
        help="run the box: controls -> latent point -> grains -> Pd",
        description="Run the instrument: read the knobs, encoder and buttons (or virtual knobs from the "
        "Pd patch), decode grains at their latent point and send them to Pd over OSC, until SIGTERM. "
        "Pd must be running main.pd (see docs/osc.md); status goes to STATE_DIR/status.json.",
    )
    _add_box_options(run)

    doctor = sub.add_parser(
        "doctor",
        help="check audio devices, Pd, SPI and the model; one line each",
        description="Check what the box needs, one line each (OK, WARN, SKIP or FAIL with what to do), "
        "after a line saying whether this is the box or a desktop, where box-only checks are skipped. "
        "Exit 1 when a line is FAIL.",
    )
    _add_box_options(doctor)
    doctor.add_argument(
        "--timeout", type=float, default=1.0, help="seconds to wait for Pd's /pong (default 1)"
    )

    render = sub.add_parser(
        "render",
        help="render a model through the real Pd patch, headless and faster than real time, to a WAV",
        description="Hear a model without the box: its grains, decoded as the box's engine decodes them "
        "for the knobs and sound given, played by pd/main.pd in `pd -batch` into a 32-bit float stereo "
        "WAV whose metadata names the model and the settings. Exit 2 for a bad argument, 1 when the model "
        "is refused or Pd fails.",
    )
    _add_render_options(render)
    return parser


def _add_render_options(p: argparse.ArgumentParser) -> None:
    # declared here, not in runtime/render.py, so `render --help` answers without importing torch
    p.add_argument("model", type=Path, metavar="MODEL", help="a .ts model from `python -m trainer export`")
    p.add_argument("--seconds", default="10", metavar="N", help="length, 0 < N <= 600 s (default 10)")
    p.add_argument("--out", type=Path, required=True, metavar="WAV", help="the WAV to write")
    p.add_argument(
        "--knobs", metavar="K",
        help="knob positions 0..1: 8 comma-separated numbers (0.5,0.5,...) or knobN=value pairs "
        "(knob3=0.2,knob5=0.8); the others "
        "keep the box's starting positions (axes centred, density 20/s, 80 ms, no transposition, no spray)",
    )
    p.add_argument("--anchor", metavar="SOUND", help="the sound: its number (1 = first, as the box's log "
                   "says 'sound N') or its name")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="any /param of docs/osc.md in its range, e.g. reverb=0.4 (repeatable)")


def _add_box_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="box.toml (default: built-in defaults, see deploy/box.toml)")
    p.add_argument(
        "--model", type=Path, help="model file or symlink (default: the config's, or models/factory.ts)"
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        help="where status.json and presets/ live (default: the config's, or ~/.local/state/grainbox)",
    )
    p.add_argument("--osc-port", type=int, help="UDP port the runtime listens on (default 9000)")
    p.add_argument("--pd-port", type=int, help="UDP port Pd listens on (default 9001)")
    p.add_argument(
        "--controls",
        choices=CONTROL_KINDS,
        help="knob box (gpiozero), virtual knobs from Pd, or none (default: the config's, or box)",
    )
    p.add_argument(
        "--listen",
        choices=("off", "follow", "capture"),
        help="the audio input at start: off, follow (the grains follow it), capture (default: the config's)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        from runtime.check import run_check

        return run_check(args.file)
    if args.command == "render":
        return _render(args)
    from runtime.config import ConfigError, load_config

    if args.command == "doctor" and args.config is None:
        from runtime.host import box_config, detect

        args.config = box_config(detect())  # on the box: the config its runtime runs with
    try:
        config = load_config(args.config, args)
    except ConfigError as e:
        print(f"grainbox: {e}", file=sys.stderr)
        return 2
    if args.command == "run":
        from runtime.box import run_box

        return run_box(config)
    from runtime.doctor import run_doctor

    return run_doctor(config, timeout=args.timeout)


def _render(args: argparse.Namespace) -> int:
    try:
        from runtime.render import run_render
    except ModuleNotFoundError as e:
        if e.name != "soundfile":
            raise
        print("grainbox: render needs soundfile to write the WAV: pip install soundfile "
              "(the workstation's `pip install -e '.[train]'` has it)", file=sys.stderr)
        return 1
    return run_render(args)


if __name__ == "__main__":
    sys.exit(main())
