"""The committed .pd files: they load in vanilla Pd without an error, match their generator, and the
/param table of docs/osc.md matches the patch's parameter list."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, free_udp_port

PD_DIR = REPO / "pd"
sys.path.insert(0, str(PD_DIR))
import make_patches  # noqa: E402

needs_pd = pytest.mark.skipif(shutil.which("pd") is None, reason="needs Pd (apt: puredata-core)")
# a socket that another program holds is the machine's business, not the patch's
ENVIRONMENT = re.compile(r"Address already in use|listen:|bind:")


def load_errors(patch: Path, cwd: Path) -> list[str]:
    """What Pd prints as an error while it opens `patch` (batch mode, then quit)."""
    cmd = ["pd", "-nogui", "-noaudio", "-nomidi", "-stderr", "-batch", "-path", str(PD_DIR),
           "-send", "pd quit", str(patch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)
    lines = (proc.stdout + proc.stderr).splitlines()
    bad = [ln for ln in lines if ("error" in ln or "couldn't create" in ln or "failed" in ln)
           and not ENVIRONMENT.search(ln)]
    return bad + ([f"exit status {proc.returncode}"] if proc.returncode else [])


@needs_pd
def test_main_patch_loads_without_errors(tmp_path: Path) -> None:
    # main.pd as an abstraction with free ports, so a busy 9001 on this machine cannot interfere
    wrapper = tmp_path / "wrapper.pd"
    wrapper.write_text(f"#N canvas 0 0 300 100 12;\n#X obj 10 10 main {free_udp_port()} {free_udp_port()};\n")
    assert load_errors(wrapper, tmp_path) == []


@needs_pd
@pytest.mark.parametrize("name", sorted(p.name for p in PD_DIR.glob("grainbox-*-help.pd")))
def test_every_help_patch_loads_without_errors(name: str, tmp_path: Path) -> None:
    """Help patches are what people open; each instantiates its abstraction with real arguments."""
    assert load_errors(PD_DIR / name, tmp_path) == []


def test_every_abstraction_has_a_help_patch() -> None:
    abstractions = {p.stem for p in PD_DIR.glob("grainbox-*.pd") if not p.stem.endswith("-help")}
    assert abstractions, "no abstractions in pd/"
    missing = [a for a in sorted(abstractions) if not (PD_DIR / f"{a}-help.pd").exists()]
    assert missing == []


def test_committed_patches_match_the_generator(tmp_path: Path) -> None:
    written = make_patches.write_all(tmp_path)
    stale = [p.name for p in written if (PD_DIR / p.name).read_text() != p.read_text()]
    assert stale == [], f"run `.venv/bin/python pd/make_patches.py` and commit: {stale} differ"


def test_osc_doc_lists_every_param_with_its_range_and_default() -> None:
    doc = (REPO / "docs" / "osc.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| [^|]* \| (\S+) – (\S+) \| (\S+) \|", doc, re.MULTILINE)
    documented = {name: (float(lo), float(hi), float(default)) for name, lo, hi, default in rows}
    expected = {p.name: (p.lo, p.hi, p.default) for p in make_patches.PARAMS}
    assert documented == expected
