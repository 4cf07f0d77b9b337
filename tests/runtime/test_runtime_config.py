"""box.toml: defaults for everything, the example file matches them, a wrong key or value is named."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from runtime.config import FACTORY_MODEL, SCHEMA, Config, ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "box.toml"


def test_no_config_means_defaults_with_the_factory_model() -> None:
    config = load_config(None)
    assert config.model_path == FACTORY_MODEL
    assert config.state_dir == Path("~/.local/state/grainbox").expanduser()
    assert (config.listen_port, config.pd_port, config.controls) == (9000, 9001, "box")


def test_example_box_toml_sets_every_key_with_a_comment() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    assert set(data) == set(SCHEMA)
    for section, keys in SCHEMA.items():
        assert set(data[section]) == set(keys), section
    lines = [line for line in EXAMPLE.read_text().splitlines() if "=" in line and not line.startswith("#")]
    assert all("#" in line for line in lines), [line for line in lines if "#" not in line]


def test_example_box_toml_values_are_the_defaults_except_the_box_paths() -> None:
    config = load_config(EXAMPLE)
    defaults = Config()
    assert config.model_path == Path("/var/lib/grainbox/models/current")
    assert config.state_dir == Path("/var/lib/grainbox/state")
    for field in Config.__dataclass_fields__:
        if field not in ("model_path", "state_dir"):
            assert getattr(config, field) == getattr(defaults, field), field


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        (
            "[osc]\nlisten_prot = 9000",
            ["[osc] has no key `listen_prot`", "accepted keys: listen_port, pd_port"],
        ),
        ("[knobs]\nx = 1", ["unknown section [knobs]", "[mapping]"]),
        ("[osc]\npd_port = 70000", ["[osc] pd_port = 70000", "an integer from 1 to 65535"]),
        ("[osc]\npd_port = '9001'", ["pd_port = '9001'", "an integer"]),
        ("[controls]\nkind = 'knobs'", ["kind = 'knobs'", "'box', 'virtual', 'none'"]),
        ("[controls]\nsmoothing = 0", ["smoothing = 0", "a number > 0 and <= 1"]),
        ("[mapping]\nknob3 = 'pitch'", ["knob3 = 'pitch'", "'axis1'", "'transpose'", "'spray'"]),
        ("[mapping]\npot3 = 'pitch'", ["pot3 = 'pitch'", "'axis1'"]),  # quoted as the file has it
        ("[mapping]\nknob9 = 'axis1'", ["no key `knob9`", "knob1, knob2", "knob8, encoder"]),
        ("[mapping]\npot3 = 'axis1'\nknob3 = 'spray'", ["both pot3 and knob3", "keep knob3"]),
        ("[mapping]\nknob3 = 'spray'\npot3 = 'axis1'", ["both pot3 and knob3", "keep knob3"]),
        ("[mapping]\nbutton_press = true", ["button_press = True", "'freeze'"]),
        ("[engine]\nslots = 0", ["slots = 0", "from 1 to 16"]),
        ("[engine]\nslots = 17", ["slots = 17", "from 1 to 16"]),  # the patch holds 16
        ("[osc]\nlisten_port = 9001", ["both 9001"]),
        ("[pins]\nencoder_a = 22", ["encoder_button and encoder_a are both GPIO22"]),
        ("[pins]\nencoder_b = 10", ["encoder_b = 10 is an SPI0 pin"]),
        ("osc = 3", ["`osc` must be a [osc] table"]),
    ],
)
def test_a_wrong_key_or_value_is_named_with_what_is_accepted(toml: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(tomllib.loads(toml), "box.toml")
    message = str(raised.value)
    assert message.startswith("box.toml")
    for w in words:
        assert w in message, message


def test_mapping_and_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "box.toml"
    path.write_text('[model]\npath = "models/current"\n[mapping]\nknob8 = "gain"\n[controls]\nkind = "none"')
    config = load_config(path)
    assert config.model_path == tmp_path / "models" / "current"
    assert (config.knob_actions[0], config.knob_actions[7], config.controls) == ("axis1", "gain", "none")


def test_knob_keys_map_knob1_to_knob8_in_order_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    actions = ("spray", "none", "gain", "transpose", "duration", "density", "axis8", "axis1")
    mapping = {f"knob{i}": action for i, action in enumerate(actions, start=1)}
    with caplog.at_level(logging.WARNING, logger="runtime.config"):
        config = parse_config({"mapping": mapping})
    assert config.knob_actions == actions
    assert caplog.records == []


def test_the_old_pot_keys_still_work_with_one_warning_per_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "box.toml"
    path.write_text('[mapping]\npot3 = "gain"\npot8 = "none"\nknob1 = "axis2"\n')
    with caplog.at_level(logging.WARNING, logger="runtime.config"):
        config = load_config(path)
    assert config.knob_actions[:3] == ("axis2", "axis2", "gain") and config.knob_actions[7] == "none"
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"{path}: [mapping] pot3 is now knob3, pot8 is now knob8; rename them"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="runtime.config"):
        parse_config({"mapping": {"pot6": "spray"}})
    assert [r.getMessage() for r in caplog.records] == ["box.toml: [mapping] pot6 is now knob6; rename it"]


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    args = argparse.Namespace(
        model=Path("m.ts"), state_dir=tmp_path, osc_port=9100, pd_port=9101, controls="virtual"
    )
    config = load_config(EXAMPLE, args)
    assert config.model_path == Path.cwd() / "m.ts"
    assert (config.state_dir, config.listen_port, config.pd_port, config.controls) == (
        tmp_path,
        9100,
        9101,
        "virtual",
    )
    with pytest.raises(ConfigError, match="--osc-port 0 is not accepted"):
        load_config(None, argparse.Namespace(osc_port=0))


def test_missing_and_malformed_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[osc\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (bytes(range(256)), ["is not a text file", "UTF-8"]),
        ("[osc]\n# caf\xe9\n".encode("latin-1"), ["is not UTF-8 text", "line 2", "save it as UTF-8"]),
        (("x = " + "[" * 5000 + "]" * 5000).encode(), ["nests arrays or tables too deeply", "box.toml"]),
        (("x = " + "{a = " * 5000 + "1" + "}" * 5000).encode(), ["nests arrays or tables too deeply"]),
    ],
    ids=["binary", "latin-1", "deep-array", "deep-inline-table"],
)
def test_a_file_that_is_not_readable_toml_is_one_line_naming_it(
        tmp_path: Path, content: bytes, words: list[str]) -> None:
    path = tmp_path / "box.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    for w in words:
        assert w in message, message


@pytest.mark.parametrize(
    ("toml", "excerpt"),
    [
        ('[model]\npoll_interval = "' + "x" * 100_000 + '"', "poll_interval = 'xxxx"),
        ("[model]\npoll_interval = [" + "1, " * 30_000 + "1]", "poll_interval = [1, 1, 1"),
        ("[model]\n" + "k" * 100_000 + " = 1", "has no key 'kkkk"),
        ('[model]\n"two\\nlines" = 1', "has no key 'two\\nlines'"),
        ("[" + "s" * 100_000 + "]", "unknown section ['ssss"),
    ],
    ids=["long-string", "long-array", "long-key", "key-with-a-newline", "long-section"],
)
def test_a_bad_value_is_quoted_as_a_short_one_line_excerpt(tmp_path: Path, toml: str, excerpt: str) -> None:
    path = tmp_path / "box.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert excerpt in message, message[:300]
    assert "\n" not in message and len(message) < len(str(path)) + 250, f"{len(message)}: {message[:300]}"


def test_the_runtime_says_one_line_about_a_binary_config_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "box.toml"
    path.write_bytes(b"\x00\xff" * 5000)
    result = subprocess.run([sys.executable, "-m", "runtime", "run", "--config", str(path)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(path) in result.stderr and "is not a text file" in result.stderr
