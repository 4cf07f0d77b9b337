"""Read Pd patch files the way Pd lays them out, to check what a Pd user sees: boxes that lie on top of
one another, and send/receive names that are global where they should be local (`$0-`).

Box sizes follow Pd 0.53's own rules (src/g_rtext.c and the IEM GUI sizes): a text box is as wide as its
longest line (wrapped at 60 characters, or at its `, f N` width) times the font's character width, plus
2 + 2 pixels of margin, and as high as its lines times the font height plus 3 + 2. Font metrics are Pd's
sys_fontspec table (s_main.c). A [cnv] is a background and never counts as overlapping.

    python -m tests.support.pd_lint pd/*.pd     # one line per problem, and a summary

It also opens every patch in the real Pd (when `pd` is installed) and reports what Pd prints as an error.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

FONTS = {8: (5, 11), 10: (6, 13), 12: (7, 16), 16: (10, 19), 24: (14, 29), 36: (22, 44)}  # size: (w, h)
DEFAULT_WIDTH = 60  # characters: Pd wraps a box without a width at this column
LMARGIN, RMARGIN, TMARGIN, BMARGIN = 2, 2, 3, 2
# Objects whose first argument is a send/receive/storage name that is visible to every patch in Pd.
NAMED = {"s", "send", "r", "receive", "v", "value", "table", "array", "s~", "send~", "r~", "receive~",
         "throw~", "catch~", "delwrite~", "delread~", "delread4~", "vd~", "tabread", "tabwrite",
         "tabread4", "tabread~", "tabread4~", "tabwrite~", "tabplay~", "tabreceive~", "tabsend~",
         "soundfiler", "text", "qlist"}  # fmt: skip


@dataclass
class Box:
    kind: str  # obj, msg, text, floatatom, symbolatom, gui, cnv, subpatch
    x: int
    y: int
    width: int
    height: int
    text: str
    line: int  # 1-based line in the file, for messages

    def overlaps(self, other: Box) -> bool:
        """The two rectangles share some area (touching edges do not count)."""
        return (self.x < other.x + other.width and other.x < self.x + self.width
                and self.y < other.y + other.height and other.y < self.y + self.height)  # fmt: skip


@dataclass
class Canvas:
    name: str
    font: int
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)
    children: list[Canvas] = field(default_factory=list)

    def walk(self) -> list[Canvas]:
        return [self, *(c for child in self.children for c in child.walk())]


def records(text: str) -> list[tuple[int, str]]:
    """The patch's records (`#X obj ...;`), each with the line it starts on; escaped `\\;` stays inside."""
    out, start, line, buf = [], 1, 1, []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            buf.append(text[i : i + 2])
            i += 2
            continue
        if ch == ";":
            record = "".join(buf).strip()
            if record:
                out.append((start, record))
            buf = []
            i += 1
            # the next record starts after the newline that follows
            while i < len(text) and text[i] in " \n":
                if text[i] == "\n":
                    line += 1
                i += 1
            start = line
            continue
        if ch == "\n":
            line += 1
        buf.append(ch)
        i += 1
    return out


def shown(atoms: list[str]) -> str:
    """The text Pd shows for a box's atoms: escapes undone, one space between atoms."""
    return " ".join(re.sub(r"\\(.)", r"\1", a) for a in atoms)


def text_size(text: str, font: int, width_chars: int = 0, is_comment: bool = False) -> tuple[int, int]:
    fw, fh = FONTS.get(font, FONTS[12])
    limit = width_chars or DEFAULT_WIDTH
    lines, columns = 0, 0
    for paragraph in text.split("\n"):
        words, current = paragraph.split(" "), ""
        for word in words:
            candidate = f"{current} {word}" if current else word
            if len(candidate) <= limit:
                current = candidate
                continue
            while len(word) > limit:  # no space to break at: cut at the limit
                if current:
                    columns, lines, current = max(columns, len(current)), lines + 1, ""
                columns, lines, word = max(columns, limit), lines + 1, word[limit:]
            if current:
                columns, lines = max(columns, len(current)), lines + 1
            current = word
        columns, lines = max(columns, len(current)), lines + 1
    columns = width_chars or max(columns, 1 if is_comment else 3)
    return columns * fw + LMARGIN + RMARGIN, max(lines, 1) * fh + TMARGIN + BMARGIN


def gui_size(atoms: list[str], font: int) -> tuple[int, int] | None:
    """Width and height of an IEM GUI object from its creation arguments (labels not included)."""
    name, args = atoms[0], atoms[1:]
    try:
        if name in ("tgl", "bng"):
            return int(args[0]), int(args[0])
        if name in ("hsl", "vsl", "cnv", "vu"):
            w, h = (int(args[1]), int(args[2])) if name == "cnv" else (int(args[0]), int(args[1]))
            return w, h
        if name in ("hradio", "vradio"):
            size, count = int(args[0]), int(args[3])
            return (size * count, size) if name == "hradio" else (size, size * count)
        if name == "nbx":
            digits, height = int(args[0]), int(args[1])
            fw, _ = FONTS.get(font, FONTS[12])
            return digits * fw + height // 2 + 4, height
    except (IndexError, ValueError):
        return None
    return None


def parse(path: Path, abstractions: dict[str, tuple[int, int]] | None = None) -> Canvas:
    """The patch's canvases, each with its boxes sized as Pd draws them at zoom 1. `abstractions` gives
    the on-parent size of graph-on-parent abstractions by name."""
    abstractions = abstractions or {}
    stack: list[Canvas] = []
    root: Canvas | None = None
    for line, record in records(path.read_text(errors="replace")):
        atoms = record.split()
        head = atoms[:2]
        if head == ["#N", "canvas"]:
            inherited = stack[-1].font if stack else 12
            font = int(atoms[6]) if len(atoms) > 6 and atoms[6].isdigit() else inherited
            name = atoms[6] if len(atoms) > 6 and not atoms[6].isdigit() else path.name
            canvas = Canvas(name, font, int(atoms[4]), int(atoms[5]))
            if stack:
                stack[-1].children.append(canvas)
            else:
                root = canvas
            stack.append(canvas)
            continue
        if head == ["#X", "restore"] and len(stack) > 1:
            stack.pop()
            parent = stack[-1]
            label = shown(atoms[4:])
            w, h = text_size(label, parent.font)
            parent.boxes.append(Box("subpatch", int(atoms[2]), int(atoms[3]), w, h, label, line))
            continue
        if not stack or head[0] != "#X" or len(atoms) < 4:
            continue
        canvas = stack[-1]
        kind = atoms[1]
        if kind not in ("obj", "msg", "text", "floatatom", "symbolatom"):
            continue
        x, y = int(atoms[2]), int(atoms[3])
        body = atoms[4:]
        width_chars = 0
        # a box with a set width ends in ", f N", the comma written against the word before it
        if len(body) >= 3 and body[-2] == "f" and body[-1].isdigit() and body[-3].endswith(",") \
                and not body[-3].endswith("\\,"):
            width_chars = int(body[-1])
            body = body[:-2]
            body[-1] = body[-1][:-1]
            if not body[-1]:
                body = body[:-1]
        if kind in ("floatatom", "symbolatom"):
            chars = int(body[0]) or (5 if kind == "floatatom" else 10)
            fw, fh = FONTS.get(canvas.font, FONTS[12])
            canvas.boxes.append(Box(kind, x, y, chars * fw + 4, fh + 4, kind, line))
            continue
        if kind == "obj" and body:
            size = gui_size(body, canvas.font)
            if size is not None:
                box_kind = "cnv" if body[0] == "cnv" else "gui"
                canvas.boxes.append(Box(box_kind, x, y, size[0], size[1], body[0], line))
                continue
            if body[0] in abstractions:
                w, h = abstractions[body[0]]
                canvas.boxes.append(Box("obj", x, y, w, h, shown(body), line))
                continue
        text = shown(body)
        if kind in ("msg", "text"):
            text = text.replace("; ", ";\n")  # Pd starts a new line after a semicolon in a box
        w, h = text_size(text, canvas.font, width_chars, is_comment=(kind == "text"))
        canvas.boxes.append(Box(kind, x, y, w, h, text, line))
    if root is None:
        raise ValueError(f"{path}: no '#N canvas' record: not a Pd patch")
    return root


def gop_sizes(folder: Path) -> dict[str, tuple[int, int]]:
    """Graph-on-parent abstractions in `folder`: name -> the size their instances show on a parent."""
    sizes = {}
    for path in folder.glob("*.pd"):
        match = re.search(r"^#X coords \S+ \S+ \S+ \S+ (\d+) (\d+) ([12])", path.read_text(), re.M)
        if match:
            sizes[path.stem] = (int(match.group(1)), int(match.group(2)))
    return sizes


def overlaps(canvas: Canvas) -> list[tuple[Box, Box]]:
    """Pairs of boxes in one canvas that lie on top of each other ([cnv] backgrounds excluded)."""
    boxes = [b for b in canvas.boxes if b.kind != "cnv"]
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]


IEM_NAMES = {"tgl": (2, 3), "bng": (4, 5), "hsl": (6, 7), "vsl": (6, 7), "hradio": (4, 5), "vradio": (4, 5),
             "nbx": (6, 7), "cnv": (3, 4)}  # send and receive positions among each GUI's arguments


def instance_marker(path: Path) -> str:
    """What every shared name in this file must carry to stay local to one instrument: main.pd its own
    `$0`, an abstraction the instrument's name it is given (`$1`; `$2` in the [clone]d voice), a help
    patch its own fixed name (help_<abstraction>), so a help patch never reaches a playing instrument.
    State that only one abstraction instance keeps carries that instance's `$0`."""
    stem = path.stem
    if stem.endswith("-help"):
        return "help_" + stem.removeprefix("grainbox-").removesuffix("-help")
    if stem == "main":
        return "$0"
    return "$2" if stem == "grainbox-voice" else "$1"


def named(canvas: Canvas) -> list[tuple[Box, str]]:
    """Every send, receive, value, table, array, text and GUI name in the patch, with its box."""
    found = []
    for c in canvas.walk():
        for box in c.boxes:
            atoms = box.text.split()
            if box.kind in ("floatatom", "symbolatom"):
                continue  # their names are not in `text` (the linter sizes them only)
            if box.kind == "gui" or box.kind == "cnv":
                continue
            if box.kind != "obj" or not atoms:
                continue
            head, args = atoms[0], atoms[1:]
            if head in ("text", "array") and args and args[0] == "define":
                args = [a for a in args[1:] if not a.startswith("-")]
                found += [(box, args[0])] if args else []
            elif head in ("text", "array"):
                found += [(box, args[1])] if len(args) > 1 else []  # else the name comes by inlet
            elif args and ((head in NAMED and not args[0].startswith("-")) or head == "makefilename"):
                found.append((box, args[0]))
    return found


def gui_names(path: Path) -> list[tuple[int, str]]:
    """Send and receive names of the IEM GUIs and atom boxes, by line (they are not in a Box's text)."""
    found = []
    for line, record in records(path.read_text(errors="replace")):
        atoms = record.split()
        if len(atoms) > 4 and atoms[:2] == ["#X", "obj"] and atoms[4] in IEM_NAMES:
            for k in IEM_NAMES[atoms[4]]:
                if len(atoms) > 5 + k:
                    found.append((line, shown([atoms[5 + k]])))
        elif len(atoms) > 10 and atoms[1] in ("floatatom", "symbolatom"):
            found += [(line, shown([atoms[9]])), (line, shown([atoms[10]]))]
    return [(line, name) for line, name in found if name not in ("empty", "-", "nosndno")]


def is_local(name: str, marker: str) -> bool:
    """`name` belongs to one instrument (it carries `marker`), or to one instance of the abstraction
    (its own $0: state no other patch reads)."""
    return any(name.startswith(m + "-") or name.endswith("_" + m) for m in {marker, "$0"})


def global_names(path: Path, bus: set[str] | frozenset[str] = frozenset()) -> list[tuple[int, str]]:
    """Names in `path` that are not local to one instrument (see instance_marker), by line; the names
    in `bus` (Pd's documented bus, main.pd only) are allowed."""
    marker = instance_marker(path)
    root = parse(path)
    pairs = [(box.line, name) for box, name in named(root)] + gui_names(path)
    allowed = bus if path.stem == "main" else frozenset()
    return [(line, name) for line, name in pairs
            if not is_local(name, marker) and name not in allowed and name not in ("pd", "pd-dsp")]


def has_reference(path: Path) -> bool:
    """The help patch has a [pd reference] subpatch, as Pd vanilla's own help patches do."""
    return any(b.kind == "subpatch" and b.text == "pd reference" for b in parse(path).boxes)


def params_in_patch(path: Path) -> dict[str, tuple[float, float, float, str, bool]]:
    """The [grainbox-param] instances of grainbox-params.pd: name -> (min, max, default, curve, integer)."""
    found = {}
    for c in parse(path).walk():
        for box in c.boxes:
            atoms = box.text.split()
            if box.kind == "obj" and len(atoms) == 8 and atoms[0] == "grainbox-param":
                _, _, name, lo, hi, default, log, integer = atoms
                found[name] = (float(lo), float(hi), float(default), "log" if log == "1" else "linear",
                               integer == "1")
    return found


# a socket that another program holds is the machine's business, not the patch's
ENVIRONMENT = re.compile(r"Address already in use|listen:|bind:")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_errors(path: Path) -> list[str]:
    """What the real Pd prints as an error, a failed creation or a "multiply defined" warning while it
    opens `path` (batch mode, then quit). main.pd is opened as [main] on free ports, so a busy 9001 on
    this machine cannot interfere; an abstraction is opened through its help patch, which gives it real
    arguments."""
    folder = path.resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        opened = path.resolve()
        if path.stem == "main":
            opened = Path(tmp) / "wrapper.pd"
            opened.write_text(f"#N canvas 0 0 300 100 12;\n#X obj 10 10 main {_free_udp_port()} "
                              f"{_free_udp_port()};\n")
        elif not path.stem.endswith("-help"):
            opened = folder / f"{path.stem}-help.pd"
        cmd = ["pd", "-nogui", "-noaudio", "-nomidi", "-nrt", "-stderr", "-batch", "-path", str(folder),
               "-send", "pd quit", str(opened)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp)
    lines = (proc.stdout + proc.stderr).splitlines()
    bad = [ln for ln in lines if ("error" in ln or "couldn't create" in ln or "failed" in ln
                                  or "multiply defined" in ln) and not ENVIRONMENT.search(ln)]
    return bad + ([f"exit status {proc.returncode}"] if proc.returncode else [])


def documented_bus(osc_doc: Path) -> set[str]:
    """The global names docs/osc.md lists under "Pd's bus": the only ones a patch may share."""
    text = osc_doc.read_text()
    section = text.split("## Pd's bus", 1)[1].split("\n## ", 1)[0] if "## Pd's bus" in text else ""
    return set(re.findall(r"^\| `(gb_\w+)`", section, re.M))


def main(paths: list[str]) -> int:
    problems = 0
    for name in paths:
        path = Path(name)
        bus = documented_bus(path.resolve().parent.parent / "docs" / "osc.md")
        root = parse(path, gop_sizes(path.parent))
        stacked = [(c, pair) for c in root.walk() for pair in overlaps(c)]
        names = global_names(path, bus)
        for canvas, (a, b) in stacked:
            print(f"{path}:{a.line}: [{a.text[:30]}] overlaps [{b.text[:30]}] (line {b.line}) "
                  f"in {canvas.name}")
        for line, global_name in names:
            print(f"{path}:{line}: {global_name} is global: name it {instance_marker(path)}-... or ..._"
                  f"{instance_marker(path)}, or document it in docs/osc.md (Pd's bus)")
        loaded = load_errors(path) if shutil.which("pd") else []
        for line in loaded:
            print(f"{path}: Pd says: {line}")
        if path.stem.startswith("grainbox-") and path.stem.endswith("-help") and not has_reference(path):
            print(f"{path}: no [pd reference] subpatch (arguments, inlets, outlets)")
            problems += 1
        problems += len(stacked) + len(names) + len(loaded)
    print(f"{len(paths)} patches, {problems} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
