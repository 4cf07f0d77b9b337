"""`python -m desktop COMMAND`: Grainbox on a desktop, without the box.

    python -m desktop demo [--seconds S] [--gui] [--out out/] [--model FILE]
                                        the instrument played by a script (or by you, --gui), recorded, drawn

`make demo` and `make play` run it. `python -m desktop demo --help` lists the options.
"""

from __future__ import annotations

import sys

from desktop import demo

COMMANDS = {"demo": demo.main}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    return COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())
