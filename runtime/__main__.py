"""`python -m runtime COMMAND`: check a model, run the box, or diagnose it.

    python -m runtime check FILE          validate a model artifact, print a summary (exit 1 if invalid)
    python -m runtime run [options]       the program systemd runs all day on the box
    python -m runtime doctor [options]    one OK/FAIL line per thing the box needs, each with its fix

Usage errors exit 2. Each command imports only what it needs, so `check` never touches gpiozero or liblo.
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
    return parser


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


if __name__ == "__main__":
    sys.exit(main())
