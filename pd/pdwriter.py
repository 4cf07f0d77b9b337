"""A tiny writer for Pd patch files, so the generator in make_patches.py reads like the patches it makes.

Objects are numbered in creation order (comments and GUIs count too), which is how Pd's `#X connect`
lines address them; every add method returns that number. Text is written the way you would type it in
a box ($1, commas and semicolons included) and escaped here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def escape(text: str) -> str:
    """Escape a box's text for the file: dollars, commas and semicolons are backslashed."""
    out = text.replace("$", "\\$").replace(",", " \\,").replace(";", " \\;")
    return " ".join(out.split())


@dataclass
class Patch:
    """One canvas: objects, comments, GUIs, connections, and subpatches (which are canvases too)."""

    width: int = 900
    height: int = 700
    font: int = 12
    lines: list[str] = field(default_factory=list)
    connections: list[str] = field(default_factory=list)
    coords: str | None = None
    count: int = 0

    def _add(self, line: str) -> int:
        self.lines.append(line)
        self.count += 1
        return self.count - 1

    def obj(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X obj {x} {y} {escape(text)};")

    def msg(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X msg {x} {y} {escape(text)};")

    def comment(self, x: int, y: int, text: str, width: int | None = None) -> int:
        tail = f", f {width}" if width else ""
        return self._add(f"#X text {x} {y} {escape(text)}{tail};")

    def floatatom(self, x: int, y: int, width: int = 6, receive: str = "-", send: str = "-",
                  label: str = "-") -> int:
        return self._add(f"#X floatatom {x} {y} {width} 0 0 0 {label} {receive} {send} 0;")

    def hslider(self, x: int, y: int, lo: float, hi: float, log: bool, send: str, receive: str,
                label: str, width: int = 160) -> int:
        return self._add(
            f"#X obj {x} {y} hsl {width} 17 {lo:g} {hi:g} {int(log)} 0 {send} {receive} {label} "
            f"-2 -9 0 11 #e8e8e8 #303030 #000000 0 1;")

    def vslider(self, x: int, y: int, send: str, receive: str, label: str, height: int = 100) -> int:
        return self._add(
            f"#X obj {x} {y} vsl 22 {height} 0 1 0 0 {send} {receive} {label} 0 -9 0 11 "
            f"#e8e8e8 #303030 #000000 0 1;")

    def toggle(self, x: int, y: int, send: str, receive: str, label: str) -> int:
        return self._add(
            f"#X obj {x} {y} tgl 17 0 {send} {receive} {label} 22 9 0 11 #e8e8e8 #303030 #000000 0 1;")

    def bang(self, x: int, y: int, send: str = "empty", receive: str = "empty", label: str = "empty",
             size: int = 17, color: str = "#e8e8e8") -> int:
        return self._add(
            f"#X obj {x} {y} bng {size} 150 50 0 {send} {receive} {label} 22 9 0 11 {color} #303030 #000000;")

    def hradio(self, x: int, y: int, n: int, send: str, receive: str, label: str) -> int:
        return self._add(
            f"#X obj {x} {y} hradio 17 1 0 {n} {send} {receive} {label} 0 -9 0 11 "
            f"#e8e8e8 #303030 #000000 0;")

    def numbox(self, x: int, y: int, lo: float, hi: float, send: str, receive: str, label: str,
               digits: int = 5) -> int:
        return self._add(
            f"#X obj {x} {y} nbx {digits} 17 {lo:g} {hi:g} 0 0 {send} {receive} {label} 0 -9 0 11 "
            f"#e8e8e8 #303030 #000000 0 256;")

    def canvas_rect(self, x: int, y: int, w: int, h: int, color: str = "#f0f0f0",
                    label: str = "empty") -> int:
        """A coloured background ([cnv]) that groups a section of the GUI."""
        return self._add(f"#X obj {x} {y} cnv 15 {w} {h} empty empty {label} 8 12 0 13 {color} #404040 0;")

    def subpatch(self, x: int, y: int, name: str, child: Patch) -> int:
        body = "\n".join(child.render_lines(header=f"#N canvas 80 80 {child.width} {child.height} {name} 0;"))
        return self._add(body + f"\n#X restore {x} {y} pd {name};")

    def connect(self, src: int, outlet: int, dst: int, inlet: int = 0) -> None:
        self.connections.append(f"#X connect {src} {outlet} {dst} {inlet};")

    def chain(self, *objs: int) -> None:
        """Connect outlet 0 of each object to inlet 0 of the next."""
        for a, b in zip(objs, objs[1:], strict=False):
            self.connect(a, 0, b, 0)

    def graph_on_parent(self, width: int, height: int, x: int = 0, y: int = 0) -> None:
        """Show the rectangle (x, y, width, height) of this canvas on its parent (GUI abstractions)."""
        self.coords = f"#X coords 0 -1 1 1 {width} {height} 2 {x} {y};"  # 2: on parent, name hidden

    def render_lines(self, header: str | None = None) -> list[str]:
        head = header or f"#N canvas 60 60 {self.width} {self.height} {self.font};"
        out = [head, *self.lines]
        if self.coords:
            out.append(self.coords)
        return out + self.connections

    def render(self) -> str:
        return "\n".join(self.render_lines()) + "\n"
