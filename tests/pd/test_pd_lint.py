"""The patch linter measures boxes as Pd 0.53 draws them: it must see an overlap where Pd shows one and
none where boxes merely sit close, and tell a local `$0-` name from a global one."""

from __future__ import annotations

from pathlib import Path

from tests.support.pd_lint import global_names, overlaps, parse, text_size


def patch(tmp_path: Path, *records: str) -> Path:
    path = tmp_path / "fixture.pd"
    path.write_text("#N canvas 0 50 600 400 12;\n" + "\n".join(records) + "\n")
    return path


def test_an_object_drawn_over_another_is_an_overlap(tmp_path: Path) -> None:
    root = parse(patch(tmp_path, "#X obj 20 20 metro 100;", "#X obj 60 30 print;"))
    assert [(a.text, b.text) for a, b in overlaps(root)] == [("metro 100", "print")]


def test_boxes_side_by_side_or_below_do_not_overlap(tmp_path: Path) -> None:
    # [metro 100] is 9 characters: 9 * 7 + 4 = 67 px wide, 16 + 5 = 21 px high
    root = parse(patch(tmp_path, "#X obj 20 20 metro 100;", "#X obj 87 20 print;", "#X obj 20 41 print;"))
    assert overlaps(root) == []
    assert (root.boxes[0].width, root.boxes[0].height) == (67, 21)


def test_a_set_width_and_wrapping_at_60_characters(tmp_path: Path) -> None:
    root = parse(patch(tmp_path, "#X text 20 20 short, f 30;", "#X text 20 100 " + "word " * 30 + ";"))
    assert root.boxes[0].width == 30 * 7 + 4 and root.boxes[0].text == "short"
    assert root.boxes[1].width <= 60 * 7 + 4 and root.boxes[1].height == 3 * 16 + 5  # 150 chars: 3 lines
    assert text_size("a", 12, is_comment=True) == (1 * 7 + 4, 21) and text_size("a", 12) == (3 * 7 + 4, 21)


def test_a_background_canvas_and_a_subpatch_box(tmp_path: Path) -> None:
    root = parse(patch(tmp_path, "#X obj 10 10 cnv 15 300 200 empty empty empty 8 12 0 13 #eeeeee #404040 0;",
                       "#X obj 20 20 print;", "#N canvas 0 0 300 200 inner 0;", "#X obj 5 5 inlet;",
                       "#X restore 30 25 pd inner;"))  # fmt: skip
    assert [(a.text, b.text) for a, b in overlaps(root)] == [("print", "pd inner")]
    assert [c.name for c in root.walk()] == ["fixture.pd", "inner"]


def test_global_and_local_names(tmp_path: Path) -> None:
    abstraction = tmp_path / "grainbox-demo.pd"
    abstraction.write_text("#N canvas 0 50 600 400 12;\n" + "\n".join([
        "#X obj 20 20 s gb_level;", "#X obj 20 60 r \\$1-level;", "#X obj 20 100 table \\$1-buffer 64;",
        "#X obj 20 140 v gb_shared;", "#X obj 20 180 v density_\\$1;", "#X obj 20 220 r \\$0-mine;",
        "#X obj 20 240 r \\$2-other;",
        "#X obj 20 260 hsl 160 17 0 1 0 0 \\$1-out gb_in empty -2 -9 0 11 #e8e8e8 #303030 #000000 0 1;",
    ]) + "\n")
    # an abstraction's names carry the instrument it is given ($1), or its own $0 for state it keeps alone
    assert [name for _, name in global_names(abstraction)] == ["gb_level", "gb_shared", "$2-other", "gb_in"]
    main = tmp_path / "main.pd"
    main.write_text("#N canvas 0 50 600 400 12;\n#X obj 20 20 r gb_ports;\n#X obj 20 60 r gb_other;\n")
    assert [name for _, name in global_names(main, {"gb_ports"})] == ["gb_other"]


def test_a_semicolon_starts_a_new_line(tmp_path: Path) -> None:
    """[; pd dsp 1( and a comment with a semicolon are drawn on two lines, so they are taller."""
    root = parse(patch(tmp_path, "#X msg 20 20 \\; pd dsp 1;", "#X text 20 100 one \\; two;"))
    assert [b.height for b in root.boxes] == [2 * 16 + 5, 2 * 16 + 5]
