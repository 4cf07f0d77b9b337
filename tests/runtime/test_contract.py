"""runtime/contract.json is the one source of the parameters, knobs, limits and artifact constants: it is
well formed, docs/osc.md's /param table says what it says, and the runtime and the trainer's export take
their values from it rather than keeping copies."""

from __future__ import annotations

import ast
import json
import math
import re

import pytest

import runtime.artifact
import trainer.export
from runtime import contract
from runtime.config import KNOB_ACTIONS, SCHEMA, Config
from runtime.params import PARAMS
from tests.conftest import REPO

RAW = json.loads((REPO / "runtime" / "contract.json").read_text())
ARTIFACT_NAMES = ("METADATA_FILE", "MAX_ANCHORS", "MIN_AXES", "SCHEMA_VERSION", "METHODS", "BUFFERS")


def _param(name: str) -> dict:
    return next(row for row in RAW["params"] if row["name"] == name)


# ------------------------------------------------------------------------------------------ well formed


@pytest.mark.parametrize("row", RAW["params"], ids=lambda row: row["name"])
def test_every_param_is_well_formed(row: dict) -> None:
    assert set(row) == {"name", "min", "max", "default", "curve", "integer", "unit", "doc", "control"}
    assert re.fullmatch(r"[a-z][a-z0-9]*", row["name"])
    assert row["min"] < row["max"] and row["min"] <= row["default"] <= row["max"]
    assert row["curve"] in ("log", "linear")
    if row["curve"] == "log":
        assert row["min"] > 0, "a log curve needs a positive range"
    assert isinstance(row["integer"], bool)
    if row["integer"]:
        assert all(float(row[k]).is_integer() for k in ("min", "max", "default"))
    assert re.fullmatch(r"slider|toggle|number|radio:\d+", row["control"])
    if row["control"] == "toggle":
        assert (row["min"], row["max"], row["integer"]) == (0, 1, True)
    if row["control"].startswith("radio:"):
        assert row["integer"] and row["min"] == 0 and row["max"] == int(row["control"][6:]) - 1
    assert row["doc"]


def test_param_names_are_unique() -> None:
    names = [row["name"] for row in RAW["params"]]
    assert len(names) == len(set(names)) == len(contract.PARAM_NAMES)


def test_limits_are_whole_ranges_with_a_reason() -> None:
    for name, row in RAW["limits"].items():
        assert isinstance(row["min"], int) and isinstance(row["max"], int), name
        assert 0 < row["min"] < row["max"], name
        assert row["unit"] and row["why"], name


def test_knobs_lfo_and_scales_agree_with_the_params() -> None:
    knobs = RAW["knobs"]
    assert len(knobs["names"]) == len(knobs["default_actions"]) == knobs["count"]
    lfo = RAW["lfo"]
    assert lfo["targets"][0] == "none" and all(t in contract.PARAM_NAMES for t in lfo["targets"][1:])
    for i in (1, 2):
        assert _param(f"lfo{i}target")["max"] == len(lfo["targets"]) - 1
        assert _param(f"lfo{i}shape")["max"] == len(lfo["shapes"]) - 1
    scales = RAW["scales"]
    assert _param("scale")["max"] == len(scales["names"]) - 1
    assert scales["names"][0] == "off" and list(scales["pitch_classes"]) == scales["names"][1:]
    for classes in scales["pitch_classes"].values():
        assert classes == sorted(set(classes)) and classes[0] == 0 and classes[-1] <= 11


def test_artifact_constants_are_consistent() -> None:
    artifact = RAW["artifact"]
    assert artifact["schema_versions"] and all(isinstance(v, int) for v in artifact["schema_versions"])
    assert artifact["metadata_file"].endswith(".json")
    assert 1 <= artifact["min_axes"] <= RAW["limits"]["latent_dim"]["max"] and artifact["max_anchors"] >= 1
    axes = [int(a[4:]) for a in RAW["knobs"]["default_actions"] if a.startswith("axis")]
    assert all(1 <= n <= artifact["min_axes"] for n in axes), "a default knob names an axis a model may lack"


# ------------------------------------------------------------------------------------------ the docs


def test_osc_doc_param_table_is_the_contract() -> None:
    doc = (REPO / "docs" / "osc.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| [^|]* \| (\S+) – (\S+) \| (\S+) \|", doc, re.MULTILINE)
    documented = [(name, float(lo), float(hi), float(default)) for name, lo, hi, default in rows]
    expected = [(r["name"], float(r["min"]), float(r["max"]), float(r["default"])) for r in RAW["params"]]
    assert documented == expected


# ------------------------------------------------------------------------------------------ the readers


def test_runtime_params_are_the_contracts() -> None:
    assert list(PARAMS) == [row["name"] for row in RAW["params"]]
    for row in RAW["params"]:
        p = PARAMS[row["name"]]
        assert (p.low, p.high, p.default) == (row["min"], row["max"], row["default"])
        assert (p.curve, p.integer, p.unit) == (row["curve"], row["integer"], row["unit"])
        assert p.to_knob(p.from_knob(0.0)) == 0.0 and math.isclose(p.to_knob(p.from_knob(1.0)), 1.0)
        if row["curve"] == "log":  # half a turn is the geometric middle of the range
            assert math.isclose(p.from_knob(0.5), math.sqrt(p.low * p.high))
        elif not row["integer"]:
            assert math.isclose(p.from_knob(0.5), (p.low + p.high) / 2)
        if row["integer"]:
            assert all(p.from_knob(v).is_integer() for v in (0.1, 0.33, 0.5, 0.77))


def test_the_box_knobs_are_the_contracts() -> None:
    assert Config().knob_actions == tuple(RAW["knobs"]["default_actions"])
    assert all(action in KNOB_ACTIONS for action in Config().knob_actions)
    knobs = RAW["knobs"]
    assert (knobs["count"], tuple(knobs["names"])) == (contract.KNOB_COUNT, contract.KNOB_NAMES)
    # box.toml's [mapping] keys are the contract's knob names, one per knob, in order
    assert [key for key in SCHEMA["mapping"] if key.startswith("knob")] == knobs["names"]


def test_the_loader_and_the_export_share_the_artifact_constants() -> None:
    artifact = RAW["artifact"]
    versions = artifact["schema_versions"]
    assert (tuple(versions), max(versions)) == (contract.ARTIFACT_SCHEMAS, contract.SCHEMA_VERSION)
    assert artifact["metadata_file"] == contract.METADATA_FILE
    assert (artifact["max_anchors"], artifact["min_axes"]) == (contract.MAX_ANCHORS, contract.MIN_AXES)
    assert (tuple(artifact["methods"]), tuple(artifact["buffers"])) == (contract.METHODS, contract.BUFFERS)
    for module in (runtime.artifact, trainer.export):
        for name in ARTIFACT_NAMES:
            if hasattr(module, name):
                assert getattr(module, name) is getattr(contract, name), f"{module.__name__}.{name}"


READERS = ["runtime/artifact.py", "runtime/config.py", "runtime/link.py", "runtime/params.py",
           "trainer/export.py"]  # fmt: skip
COPIED_NAMES = {*ARTIFACT_NAMES, "SUPPORTED_SCHEMAS", "NUM_KNOBS", "NUM_POTS", "LIMITS", "KNOB_COUNT"}


@pytest.mark.parametrize("path", READERS)
def test_no_reader_keeps_its_own_copy(path: str) -> None:
    """The constants are imported, never assigned again at module level under the contract's names."""
    tree = ast.parse((REPO / path).read_text())
    assigned = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    copies = assigned & COPIED_NAMES
    assert copies == set(), f"{path} defines {sorted(copies)}: import them from runtime.contract"
