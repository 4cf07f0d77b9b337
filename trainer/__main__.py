"""`python -m trainer COMMAND ...`: one entry point, one module per command.

Each command lives in trainer/commands/<name>.py and defines `HELP` (one line),
`add_arguments(parser)` and `run(args) -> int`. Commands are imported only when chosen,
so `--help` stays fast and a command's heavy imports cost nothing to the others.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import pkgutil
import sys

from trainer import commands


def _command_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    names = _command_names()
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name in names:
        if name == chosen:
            module = importlib.import_module(f"trainer.commands.{name}")
            p = sub.add_parser(name, help=module.HELP, description=module.HELP)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
        else:
            # Only the chosen command is imported; the others show their one-line help from a cheap read.
            sub.add_parser(name, help=_cheap_help(name), add_help=False)
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.error(f"unknown command {args.command!r}")
    return int(args._run(args) or 0)


def _cheap_help(name: str) -> str:
    """The HELP string of a command module, read from its source without importing it."""
    spec = importlib.util.find_spec(f"trainer.commands.{name}")
    if spec is None or spec.origin is None:
        return ""
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read(), spec.origin)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "HELP" for t in node.targets):
            try:
                return str(ast.literal_eval(node.value))
            except ValueError:
                return ""
    return ""


if __name__ == "__main__":
    sys.exit(main())
