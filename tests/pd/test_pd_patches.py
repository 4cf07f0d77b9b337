"""The committed .pd files are the source a Pd user owns: they load in vanilla Pd without an error, Pd
saves them back byte for byte, and the linter (tests/support/pd_lint.py) finds no overlapping boxes, no global
name outside Pd's documented bus, a [pd reference] in every help patch, and the contract's parameters."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support import pd_lint

PD_DIR = REPO / "pd"
PATCHES = sorted(p.name for p in PD_DIR.glob("*.pd"))
ABSTRACTIONS = sorted(p.stem for p in PD_DIR.glob("grainbox-*.pd") if not p.stem.endswith("-help"))
CONTRACT = json.loads((REPO / "runtime" / "contract.json").read_text())
needs_pd = pytest.mark.skipif(shutil.which("pd") is None, reason="needs Pd (apt: puredata-core)")
# a socket that another program holds is the machine's business, not the patch's
ENVIRONMENT = re.compile(r"Address already in use|listen:|bind:")


def saved_by_pd(patch: Path, tmp_path: Path) -> bytes:
    """The file as Pd writes it after opening `patch` (a copy, beside copies of its abstractions)."""
    work = tmp_path / "copy"
    work.mkdir(exist_ok=True)
    for path in PD_DIR.glob("*.pd"):
        shutil.copy(path, work)
    copy = work / patch.name
    shutil.copy(patch, copy)
    cmd = ["pd", "-nogui", "-noaudio", "-nomidi", "-stderr", "-nrt", "-path", str(work),
           "-send", f"pd-{copy.name} menusave; pd quit", str(copy)]
    subprocess.run(cmd, capture_output=True, timeout=60, cwd=work, check=True)
    return copy.read_bytes()


@needs_pd
@pytest.mark.parametrize("name", PATCHES)
def test_every_patch_loads_in_pd_without_an_error(name: str) -> None:
    """main.pd as [main] on free ports, each abstraction through its help patch, each help patch itself:
    no error line, no failed creation, no "multiply defined"."""
    assert pd_lint.load_errors(PD_DIR / name) == []


@needs_pd
@pytest.mark.parametrize("name", PATCHES)
def test_opening_and_saving_in_pd_changes_nothing(name: str, tmp_path: Path) -> None:
    """The files are in Pd's own saved form: a Pd user's save is a diff of what they changed only."""
    assert saved_by_pd(PD_DIR / name, tmp_path) == (PD_DIR / name).read_bytes()


@needs_pd
def test_a_file_from_another_writer_is_caught(tmp_path: Path) -> None:
    """The check must be able to fail: the old generator escaped [expr]'s $f1 and ordered connections
    its own way; Pd rewrites both on save."""
    fixture = REPO / "tests" / "pd" / "fixtures" / "old-writer.pd"
    assert saved_by_pd(fixture, tmp_path) != fixture.read_bytes()


@pytest.mark.parametrize("name", PATCHES)
def test_no_two_boxes_overlap(name: str) -> None:
    root = pd_lint.parse(PD_DIR / name, pd_lint.gop_sizes(PD_DIR))
    stacked = [(c.name, a.text[:30], b.text[:30]) for c in root.walk() for a, b in pd_lint.overlaps(c)]
    assert stacked == []


@pytest.mark.parametrize("name", PATCHES)
def test_every_name_is_local_or_on_the_documented_bus(name: str) -> None:
    bus = pd_lint.documented_bus(REPO / "docs" / "osc.md")
    assert pd_lint.global_names(PD_DIR / name, bus) == []


def test_the_bus_is_documented_and_main_hears_all_of_it() -> None:
    bus = pd_lint.documented_bus(REPO / "docs" / "osc.md")
    assert {"gb_ports", "gb_record_dir", "gb_osc_bytes", "gb_note_in", "gb_knob", "gb_listen"} <= bus
    received = {n for _, n in pd_lint.named(pd_lint.parse(PD_DIR / "main.pd")) if n.startswith("gb_")}
    assert received == bus


@pytest.mark.parametrize("name", ABSTRACTIONS)
def test_every_abstraction_has_a_help_patch_with_a_reference(name: str) -> None:
    help_patch = PD_DIR / f"{name}-help.pd"
    assert help_patch.exists()
    assert pd_lint.has_reference(help_patch)


def test_windows_fit_a_1280_by_900_screen() -> None:
    for name in PATCHES:
        for line in (PD_DIR / name).read_text().splitlines():
            match = re.match(r"#N canvas (-?\d+) (-?\d+) (\d+) (\d+)", line)
            if match:
                x, y, w, h = map(int, match.groups())
                assert x + w <= 1280 and y + h <= 900, f"{name}: {line}"


def test_the_patch_parameters_are_the_contract() -> None:
    in_patch = pd_lint.params_in_patch(PD_DIR / "grainbox-params.pd")
    expected = {p["name"]: (float(p["min"]), float(p["max"]), float(p["default"]), p["curve"], p["integer"])
                for p in CONTRACT["params"]}
    assert in_patch == expected
    # the names [grainbox-osc] accepts as /param, in the contract's order
    listed = re.search(r"text define -k \S+param_names;\n#A set (.*?);\n", (PD_DIR / "grainbox-params.pd")
                       .read_text(), re.S).group(1)
    assert [n.strip() for n in listed.split("\\;") if n.strip()] == [p["name"] for p in CONTRACT["params"]]


def test_the_sliders_of_main_have_the_contract_ranges() -> None:
    sliders = {}
    for _, record in pd_lint.records((PD_DIR / "main.pd").read_text()):
        atoms = record.split()
        if len(atoms) > 12 and atoms[4] == "hsl":
            name = pd_lint.shown([atoms[11]]).removeprefix("$0-").removesuffix("_in")
            sliders[name] = (float(atoms[7]), float(atoms[8]), "log" if atoms[9] == "1" else "linear")
    contract = {p["name"]: (float(p["min"]), float(p["max"]), p["curve"]) for p in CONTRACT["params"]}
    assert sliders and {n: contract[n] for n in sliders} == sliders


def test_the_model_check_applies_the_contract_limits() -> None:
    """Pd refuses a /model outside the same limits `runtime check` applies (no model passes the check
    only for Pd to drop it)."""
    text = (PD_DIR / "grainbox-osc.pd").read_text()
    check = re.search(r"expr \$f1 == int\(\$f1\) && \$f1 >= (\d+) && \$f1 <= (\d+) && \$f2 == int\(\$f2\) "
                      r"&& \$f2 >= (\d+) && \$f2 <= (\d+) .* \$f4 >= (\d+) && \$f4 <= (\d+);", text)
    assert check, "grainbox-osc.pd: the /model check [expr] is not where the test expects it"
    limits = CONTRACT["limits"]
    expected = [limits[k][end] for k in ("sample_rate", "grain_size", "slots") for end in ("min", "max")]
    assert [int(v) for v in check.groups()] == expected


@pytest.mark.parametrize("name", ["main", *ABSTRACTIONS])
def test_every_patch_has_a_picture_of_its_inside(name: str) -> None:
    """docs/pd/ holds what the real Pd GUI draws (`make pd-pictures`), linked from pd/README.md."""
    picture = REPO / "docs" / "pd" / f"{name}.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.stat().st_size > 5000, "a near-empty picture: the window was not drawn when taken"
    assert "../docs/pd/" in (PD_DIR / "README.md").read_text()


def test_the_virtual_knobs_are_the_contract_knobs() -> None:
    """One name and one numbering per knob: slider knobK sends $0-knobK_moved and listens on $0-knobK_in,
    labelled as runtime/contract.json names it, and /knob's number for it is K (osc_first_index 1)."""
    labels = []
    for _, record in pd_lint.records((PD_DIR / "main.pd").read_text()):
        atoms = record.split()
        if len(atoms) > 12 and atoms[4] == "vsl" and pd_lint.shown([atoms[11]]).startswith("$0-knob"):
            send, receive, label = pd_lint.shown([atoms[11]]), pd_lint.shown([atoms[12]]), atoms[13]
            assert (send, receive) == (f"$0-{label}_moved", f"$0-{label}_in")
            labels.append(label)
    assert labels == CONTRACT["knobs"]["names"]
    assert CONTRACT["knobs"]["osc_first_index"] == 1
    text = (PD_DIR / "main.pd").read_text()
    for number, name in enumerate(CONTRACT["knobs"]["names"], start=1):
        assert f"#X msg 250 {30 + 30 * number} {number} \\$1;" in text, f"{name} is not /knob {number}"
