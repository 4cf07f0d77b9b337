"""The decode engine: the latent point and its spray cloud, coalescing (never a backlog), freeze, and a
model swap that always sends /model before grains of the new size."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.artifact import Model, load_model
from runtime.engine import Engine, Layout, latent_points, spray_directions
from runtime.presets import ControlState
from tests.support.model_fixtures import write_valid
from tests.support.runtime_helpers import wait_until

LAYOUT = Layout.from_pots(["axis1", "axis2", "axis3", "axis4", "density", "duration", "transpose", "spray"])


class Recorder:
    """The engine's GrainSender: records what would go to Pd; `gate` can hold the worker inside a send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.inside = threading.Event()

    def send_model(self, model: Model, slots: int) -> None:
        self.sent.append(("model", (model.grain_size, slots)))

    def send_grains(self, grains: np.ndarray, first_slot: int = 0) -> None:
        self.inside.set()
        self.gate.wait(30)
        if first_slot:  # the rest of one decode's slots (slot 0 goes first): one record per decode
            kind, before = self.sent[-1]
            assert kind == "grains" and len(before) == first_slot, "slots must arrive in order"
            self.sent[-1] = ("grains", np.concatenate([before, grains]))
        else:
            self.sent.append(("grains", grains.copy()))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return load_model(write_valid(tmp_path_factory.mktemp("m") / "model.ts"))


@pytest.fixture
def engine(model: Model) -> Iterator[tuple[Engine, Recorder]]:
    sender = Recorder()
    engine = Engine(model, sender, slots=8, spray_max=1.0, seed=3, layout=LAYOUT)
    engine.start()
    yield engine, sender
    sender.gate.set()
    engine.close()


def idle(engine: Engine) -> bool:
    return engine.requests == engine.decodes + engine.coalesced + engine.errors


def test_knobs_move_the_point_along_the_axes_and_spray_opens_the_cloud(model: Model) -> None:
    dirs = spray_directions(model, 8, seed=3)
    centred = latent_points(model, ControlState([0.5] * 7 + [0.0]), LAYOUT, dirs, 1.0)
    assert torch.allclose(centred, model.anchors[0].expand(8, -1)), "centred axes, no spray: the anchor"
    turned = latent_points(model, ControlState([1.0, 0.0] + [0.5] * 5 + [0.0]), LAYOUT, dirs, 1.0)
    expected = model.anchors[0] + 2 * model.scales[0] * model.axes[0] - 2 * model.scales[1] * model.axes[1]
    assert torch.allclose(turned[0], expected, atol=1e-6)
    sprayed = latent_points(model, ControlState([0.5] * 7 + [1.0]), LAYOUT, dirs, 1.0)
    assert torch.equal(sprayed[0], centred[0]), "slot 0 is the point itself"
    spread = torch.linalg.norm(sprayed[1:] - sprayed[0], dim=1)
    assert (spread > 0.1).all() and len(set(spread.tolist())) == 7
    again = latent_points(model, ControlState([0.5] * 7 + [1.0]), LAYOUT, spray_directions(model, 8, 3), 1.0)
    assert torch.equal(again, sprayed), "the same seed gives the same cloud after a restart"


def test_spray_leaves_a_models_pitch_coordinate_alone(model: Model) -> None:
    """A model whose metadata names a pitch latent (the harmonic decoder's): the spray cloud scatters every
    other coordinate and keeps the point's tuning, so the 8 slots play one note, not a cluster."""
    import dataclasses

    pitched = dataclasses.replace(model, metadata={**model.metadata, "pitch": {"latent": 0}})
    dirs = spray_directions(model, 8, seed=3)
    sprayed = latent_points(pitched, ControlState([0.5] * 7 + [1.0]), LAYOUT, dirs, 1.0)
    assert torch.equal(sprayed[1:, 0], sprayed[0, 0].expand(7))
    assert (torch.linalg.norm(sprayed[1:, 1:] - sprayed[0, 1:], dim=1) > 0.1).all()
    plain = latent_points(model, ControlState([0.5] * 7 + [1.0]), LAYOUT, dirs, 1.0)
    assert not torch.equal(plain[1:, 0], plain[0, 0].expand(7)), "without a pitch latent, all of it moves"


def test_requests_coalesce_while_the_worker_is_busy(engine: tuple[Engine, Recorder], model: Model) -> None:
    engine_, sender = engine
    sender.gate.clear()
    engine_.request(ControlState([0.0] + [0.5] * 7))
    assert sender.inside.wait(30), "the worker never started decoding"
    for i in range(100):  # a knob swept while the worker is stuck in one send
        engine_.request(ControlState([i / 99] + [0.5] * 7))
    sender.gate.set()
    wait_until(lambda: idle(engine_), what="the engine to go idle")
    assert engine_.decodes == 2, "only the first and the newest state are decoded: no backlog"
    assert engine_.coalesced == 99
    newest = model.anchors[0] + 2 * model.scales[0] * model.axes[0]
    assert torch.allclose(engine_.last_points[0], newest, atol=1e-6)
    grains = [g for kind, g in sender.sent if kind == "grains"]
    assert [kind for kind, _ in sender.sent] == ["model", "grains", "grains"]
    assert grains[-1].shape == (8, 1024) and grains[-1].dtype == np.float32


def test_freeze_holds_the_grains_and_unfreezing_decodes_where_the_knobs_went(
    engine: tuple[Engine, Recorder],
) -> None:
    engine_, sender = engine
    engine_.request(ControlState())
    wait_until(lambda: engine_.decodes == 1 and idle(engine_), what="the first decode")
    engine_.set_frozen(True)
    for v in (0.1, 0.2, 0.3):
        engine_.request(ControlState([v] + [0.5] * 7))
    assert engine_.decodes == 1
    engine_.set_frozen(False)
    wait_until(lambda: engine_.decodes == 2 and idle(engine_), what="the decode after unfreezing")
    assert torch.allclose(
        engine_.last_points[0], latent_points(engine_.model, ControlState([0.3] + [0.5] * 7), LAYOUT,
                                              spray_directions(engine_.model, 8, 3), 1.0)[0]
    )  # fmt: skip


def test_a_new_model_sends_model_first_and_hello_resends_without_decoding(
    engine: tuple[Engine, Recorder], tmp_path: Path
) -> None:
    engine_, sender = engine
    engine_.request(ControlState(anchor=3))
    wait_until(lambda: engine_.decodes == 1 and idle(engine_), what="the first decode")
    smaller = load_model(write_valid(tmp_path / "small.ts", grain_size=512, num_anchors=2))
    engine_.set_model(smaller)
    wait_until(lambda: engine_.decodes == 2 and idle(engine_), what="the decode with the new model")
    kinds = [(kind, g if kind == "model" else g.shape) for kind, g in sender.sent]
    assert kinds == [("model", (1024, 8)), ("grains", (8, 1024)), ("model", (512, 8)), ("grains", (8, 512))]
    assert torch.allclose(engine_.last_points[0], smaller.anchors[1]), "anchor 3 of 4 wraps to 1 of 2"
    engine_.resend()
    wait_until(lambda: len(sender.sent) == 6, what="the resend")
    assert sender.sent[4] == ("model", (512, 8)) and np.array_equal(sender.sent[5][1], sender.sent[3][1])
    assert engine_.decodes == 2


def test_nan_beyond_the_checked_spray_is_counted_logged_once_per_episode_and_played_as_silence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.model_fixtures import TinyGrainModel, metadata_for, save

    # NaN only where both of the first two axes are far up: out of the check's reach (spray 1), inside a
    # box.toml spray of 8 with the knobs at their tops.
    broken = TinyGrainModel(failure="nan_far", far=5.0)
    model = load_model(save(broken, tmp_path / "far.ts", metadata_for(broken)))
    sender = Recorder()
    engine = Engine(model, sender, slots=16, spray_max=8.0, seed=3, layout=LAYOUT)
    engine.start()
    try:
        with caplog.at_level("INFO", logger="runtime.engine"):
            for k in range(3):  # the knob parked in the bad corner, three decodes
                engine.request(ControlState(knobs=[1.0] * 7 + [1.0 - k * 1e-3]))
                wait_until(lambda k=k: engine.decodes == k + 1 and idle(engine), what="the decode")
            assert engine.nonfinite_decodes == 3
            grains = sender.sent[-1][1]
            assert np.isfinite(grains).all() and (grains == 0).all(axis=1).any()  # silence, not NaN
            engine.request(ControlState(knobs=[0.5] * 8))  # back to the centre, no spray
            wait_until(lambda: engine.decodes == 4 and idle(engine), what="the decode")
        assert engine.nonfinite_decodes == 3
        warnings = [r for r in caplog.records if "decodes NaN or inf" in r.getMessage()]
        assert len(warnings) == 1 and "knobs 1.00" in warnings[0].getMessage()
        assert any("finite again after 3" in r.getMessage() for r in caplog.records)
    finally:
        engine.close()
