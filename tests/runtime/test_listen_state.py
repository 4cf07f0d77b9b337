"""The pieces of listening on their own: the follower keeps only the newest grain and smooths where the
input is; captured anchors are saved atomically, read back only for their own model, and a broken file
is skipped with its reason; box.toml's [listen] and a button mapped to "listen" work as documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.config import ConfigError, parse_config
from runtime.listen import AnchorStore, InputFollower


def test_the_newest_grain_wins_and_the_point_is_smoothed() -> None:
    follower = InputFollower(smoothing=0.5)
    for value in (0.1, 0.2, 0.3):
        follower.offer(np.full(4, value, dtype=np.float32))
    assert (follower.received, follower.coalesced) == (3, 2)
    assert float(follower.take()[0]) == pytest.approx(0.3) and follower.take() is None
    follower.update(torch.tensor([0.0, 0.0]))
    point = follower.update(torch.tensor([2.0, -2.0]))
    assert point.tolist() == [1.0, -1.0]  # halfway: smoothing 0.5
    assert len(follower.recent) == 2
    follower.forget()
    assert follower.point is None and not follower.recent


def test_captured_anchors_belong_to_their_model_and_broken_files_are_skipped(tmp_path: Path) -> None:
    store = AnchorStore(tmp_path / "anchors")
    mine = store.save(torch.tensor([0.5, -0.25, 1.0]), "hash-a")
    store.save(torch.tensor([1.0, 2.0, 3.0]), "hash-b")
    (tmp_path / "anchors" / "capture-20260101-000000.json").write_text("{not json")
    (tmp_path / "anchors" / ".tmp-capture-x.json").write_text("half a file")  # a save cut short
    found = store.load("hash-a", latent_dim=3)
    assert [a.name for a in found] == [mine.name]
    assert found[0].latent.tolist() == [0.5, -0.25, 1.0]
    assert len(store.skipped) == 1 and "capture-20260101-000000.json" in store.skipped[0]
    assert store.load("hash-a", latent_dim=4) == []  # a model with another latent size
    with pytest.raises(ValueError, match="not finite"):
        store.save(torch.tensor([float("nan"), 0.0, 0.0]), "hash-a")


def test_box_toml_listen_section() -> None:
    config = parse_config({"listen": {"mode": "follow", "smoothing": 0.8, "capture_grains": 4},
                           "mapping": {"button_long_press": "listen"}})
    assert (config.listen, config.listen_smoothing, config.capture_grains) == ("follow", 0.8, 4)
    assert config.button_long_press == "listen"
    with pytest.raises(ConfigError, match="listen"):
        parse_config({"listen": {"mode": "loud"}})
    with pytest.raises(ConfigError, match="capture_grains"):
        parse_config({"listen": {"capture_grains": 99}})
