"""The engine: from control state to latent points to grains, decoded in one worker thread.

The latent point is the current anchor plus one offset per axis knob, each `(2v - 1) * 2 * scales[k] *
axes[k]` (docs/model-format.md: a knob sweeps the centre +-2 spreads). Slot 0 plays the point and is
decoded and sent first, on its own; the other N - 1 slots follow as one batch, at the point plus fixed
random directions in the principal subspace scaled by the spray knob (a pitch coordinate, if the model has
one, stays put), so the grain cloud has variety and still moves smoothly with the knobs.

Requests coalesce: the worker always decodes the newest state, and states that arrived while it was busy
are dropped, never queued. A knob swept fast therefore costs at most one decode behind, not a backlog.
The worker is also the only sender of /model and /grain, so a model swap can never interleave its
/model with grains of the old size.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from runtime.artifact import Model
from runtime.listen import InputFollower
from runtime.presets import ControlState

log = logging.getLogger(__name__)


class GrainSender(Protocol):
    """Where decoded material goes (the OSC link)."""

    def send_model(self, model: Model, slots: int) -> None: ...
    def send_grains(self, grains: np.ndarray, first_slot: int = 0) -> None: ...


@dataclass(frozen=True)
class Layout:
    """Which knobs move which axis, and which knob is the spray."""

    axis_knobs: tuple[tuple[int, int], ...]  # (knob index, axis index)
    spray_knob: int | None

    @classmethod
    def from_pots(cls, pots: Sequence[str]) -> Layout:
        axes = tuple((i, int(p[4:]) - 1) for i, p in enumerate(pots) if p.startswith("axis"))
        spray = next((i for i, p in enumerate(pots) if p == "spray"), None)
        return cls(axes, spray)


def anchor_point(model: Model, anchor: int, captured: Sequence[Tensor] = ()) -> Tensor:
    """Anchor `anchor` of the model's own, then of the anchors captured from the input, in one list."""
    index = anchor % (model.num_anchors + len(captured))
    point = model.anchors[index] if index < model.num_anchors else captured[index - model.num_anchors]
    return point.clone()


def knob_offset(model: Model, state: ControlState, layout: Layout) -> Tensor:
    """Where the axis knobs move a point: each sweeps the centre +-2 spreads along its axis."""
    offset = torch.zeros(model.latent_dim)
    for knob, axis in layout.axis_knobs:
        if axis < model.num_axes:
            offset += (2 * state.knobs[knob] - 1) * 2 * model.scales[axis] * model.axes[axis]
    return offset


def latent_points(
    model: Model, state: ControlState, layout: Layout, spray_dirs: Tensor, spray_max: float,
    base: Tensor | None = None, captured: Sequence[Tensor] = (),
) -> Tensor:
    """The N latent points [N, Z] for a control state: the point itself, then the spray cloud around it.
    `base` (the input's point, when following it) takes the anchor's place."""
    point = (anchor_point(model, state.anchor, captured) if base is None else base.clone())
    point += knob_offset(model, state, layout)
    spray = state.knobs[layout.spray_knob] * spray_max if layout.spray_knob is not None else 0.0
    # spray_dirs are standard normal in axis units; scaling by the spreads keeps the cloud in the
    # region the model was trained on, whatever its latent size.
    offsets = (spray_dirs * model.scales) @ model.axes
    pitch = model.metadata.get("pitch") or {}
    if isinstance(pitch.get("latent"), int) and 0 <= pitch["latent"] < offsets.shape[1]:
        # A model with a pitch coordinate: spray scatters timbre, not tuning (Pd's pitchjitter does that).
        offsets[:, pitch["latent"]] = 0.0
    return torch.cat([point[None], point + spray * offsets])


def spray_directions(model: Model, slots: int, seed: int) -> Tensor:
    """Fixed random directions, one per extra slot, drawn once per model so the cloud is stable."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(slots - 1, model.num_axes, generator=generator)


class Engine:
    """Owns the playing model and the decode worker. Every public method is quick and thread-safe."""

    def __init__(
        self,
        model: Model,
        sender: GrainSender,
        slots: int = 8,
        spray_max: float = 1.0,
        seed: int = 0,
        layout: Layout | None = None,
    ) -> None:
        self.sender = sender
        self.slots = slots
        self.spray_max = spray_max
        self.seed = seed
        self.layout = layout or Layout.from_pots(
            ["axis1", "axis2", "axis3", "axis4", "none", "none", "none", "spray"]
        )
        self._cond = threading.Condition()
        self._model = model
        self._spray_dirs = spray_directions(model, slots, seed)
        self._latest = ControlState()
        self._pending: ControlState | None = None
        self._resend = False
        self._frozen = False
        self._closing = False
        self._sent_model: Model | None = None
        self._last_grains: np.ndarray | None = None
        self.last_points: Tensor | None = None  # [N, Z] latent points of the grains last sent; row 0 = point
        # listening: the input's follower, the mode, the anchors captured from it, the slots of a capture
        self.listener = InputFollower()
        self.listen_mode = "off"
        self.captured_anchors: list[Tensor] = []
        self.capture_slots: list[Tensor] = []  # while capturing: slot k plays these points
        self._input_pending = False
        self._thread = threading.Thread(target=self._work, name="decode", daemon=True)
        # figures for status.json and the benchmarks
        self.requests = 0
        self.coalesced = 0  # requests replaced by a newer one before the worker got to them
        self.decodes = 0
        self.errors = 0
        self.repaired_samples = 0
        self.nonfinite_decodes = 0  # decodes whose grains held NaN or inf (played as silence)
        self._nonfinite_since: int | None = None  # self.nonfinite_decodes when the current episode began
        self._decode_was_nonfinite = False  # in the decode being served now
        self.last_decode_ms = 0.0  # every slot of the last decode, sending excluded
        self.last_point_decode_ms = 0.0  # slot 0 alone: what a knob move waits for

    @property
    def model(self) -> Model:
        return self._model

    @property
    def last_grains(self) -> np.ndarray | None:
        return self._last_grains

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def request(self, state: ControlState) -> None:
        """Decode the cloud for this state (unless frozen); replaces any request still waiting."""
        with self._cond:
            self._latest = state.copy()
            if self._frozen:
                return
            self._submit(self._latest.copy())

    def set_frozen(self, frozen: bool) -> None:
        """While frozen the slots keep their grains; unfreezing decodes the state reached meanwhile."""
        with self._cond:
            was, self._frozen = self._frozen, frozen
        if was and not frozen:
            self.request(self._latest)

    def set_model(self, model: Model) -> None:
        """Play `model` from now on: the worker sends /model, then the slots decoded with it."""
        with self._cond:
            self._model = model
            self._spray_dirs = spray_directions(model, self.slots, self.seed)
            self._latest.anchor %= model.num_anchors
            self.listener.forget()
            self.capture_slots = []
            self._submit(self._latest.copy())

    def offer_input(self, grain: np.ndarray) -> None:
        """An input grain from Pd: kept as the newest (replacing one not yet encoded); followed only in
        follow mode, where the decode thread encodes it next."""
        self.listener.offer(grain)
        with self._cond:
            if self.listen_mode == "follow" and not self._frozen:
                self._input_pending = True
                self._cond.notify()

    def set_listen_mode(self, mode: str, capture_grains: int = 8) -> Tensor | None:
        """Off, follow or capture. Capture freezes the last grains heard into the slots and returns their
        mean, the point to keep as an anchor (None if nothing was heard yet)."""
        with self._cond:
            self.listen_mode = mode
            self.capture_slots = []
            captured = None
            if mode == "capture":
                heard = list(self.listener.recent)[-capture_grains:]
                if heard:
                    self.capture_slots = heard[::-1]  # newest in slot 0
                    captured = torch.stack(heard).mean(0)
            self._input_pending = False
            self._submit(self._latest.copy())
            return captured

    def _submit(self, state: ControlState) -> None:  # with self._cond held
        self.requests += 1
        self.coalesced += self._pending is not None
        self._pending = state
        self._cond.notify()

    def resend(self) -> None:
        """Pd restarted (/hello): send /model and every slot again, without decoding anew."""
        with self._cond:
            self._resend = True
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while (self._pending is None and not self._resend and not self._input_pending
                       and not self._closing):
                    self._cond.wait()
                if self._closing:
                    return
                state, resend, heard = self._pending, self._resend, self._input_pending
                self._pending, self._resend, self._input_pending = None, False, False
                model, spray_dirs = self._model, self._spray_dirs
                if heard and state is None:
                    state = self._latest.copy()  # the input moved the point: decode where it is now
            try:
                if heard:
                    self._encode_input(model)
                self._serve(model, spray_dirs, state, resend)
            except Exception:  # one bad decode or send must not end the box's only decode thread
                self.errors += state is not None
                log.exception("decoding or sending grains failed; the slots keep their last grains")

    def _encode_input(self, model: Model) -> None:
        grain = self.listener.take()
        if grain is None or grain.shape != (model.grain_size,):
            return  # a grain of the previous model's size, taken before the swap: not a place in this one
        start = time.perf_counter()
        mean, _ = model.encode(torch.from_numpy(grain)[None])
        self.listener.last_encode_ms = (time.perf_counter() - start) * 1e3
        if torch.isfinite(mean).all():
            self.listener.update(mean[0])

    def _points(self, model: Model, state: ControlState, spray_dirs: Tensor) -> Tensor:
        """The slots' latent points for the listening mode in force."""
        if self.listen_mode == "follow" and self.listener.point is not None:
            return latent_points(model, state, self.layout, spray_dirs, self.spray_max,
                                 base=self.listener.point)
        z = latent_points(model, state, self.layout, spray_dirs, self.spray_max,
                          captured=self.captured_anchors)
        if self.listen_mode == "capture" and self.capture_slots:
            offset = knob_offset(model, state, self.layout)
            for k, point in enumerate(self.capture_slots[: len(z)]):
                z[k] = point + offset
        return z

    def _serve(self, model: Model, spray_dirs: Tensor, state: ControlState | None, resend: bool) -> None:
        if resend or model is not self._sent_model:
            self.sender.send_model(model, self.slots)
            self._sent_model = model
            if state is None and self._last_grains is not None:
                self.sender.send_grains(self._last_grains)
            elif state is None:
                state = self._latest.copy()
        if state is None:
            return
        start = time.perf_counter()
        z = self._points(model, state, spray_dirs)
        # Slot 0, the point itself, is decoded and sent on its own before the spray cloud: the grain that
        # answers a knob move reaches Pd after one batch-1 decode instead of the whole batch (on this
        # machine about half the time; on a Pi core the difference is milliseconds).
        point = self._safe(model.decode(z[:1]).numpy())
        self.last_point_decode_ms = (time.perf_counter() - start) * 1e3
        self.sender.send_grains(point)
        grains = point
        if len(z) > 1:
            cloud_start = time.perf_counter()
            cloud = self._safe(model.decode(z[1:]).numpy())
            self.last_decode_ms = self.last_point_decode_ms + (time.perf_counter() - cloud_start) * 1e3
            self.sender.send_grains(cloud, first_slot=1)
            grains = np.concatenate([point, cloud])
        else:
            self.last_decode_ms = self.last_point_decode_ms
        self._last_grains = grains
        self.last_points = z
        self.decodes += 1
        self._report_nonfinite(state)

    def _report_nonfinite(self, state: ControlState) -> None:
        """One WARNING when decodes start giving NaN or inf, one INFO when they are finite again: a knob
        parked in a bad corner must not write a line per grain."""
        if self._decode_was_nonfinite:
            if self._nonfinite_since is None:
                self._nonfinite_since = self.nonfinite_decodes - 1
                log.warning(
                    "the model decodes NaN or inf at anchor %d, knobs %s: those grains play as silence "
                    "(status.json nonfinite_decodes); the model needs retraining or a smaller spray",
                    state.anchor, " ".join(f"{v:.2f}" for v in state.knobs),
                )
        elif self._nonfinite_since is not None:
            log.info("decodes are finite again after %d with NaN or inf",
                     self.nonfinite_decodes - self._nonfinite_since)
            self._nonfinite_since = None
        self._decode_was_nonfinite = False

    def _safe(self, grains: np.ndarray) -> np.ndarray:
        # The check probed the knob box's corners and spray; a larger spray in box.toml could still find a
        # NaN or an overshoot. Pd must never receive either: repair (NaN as silence), count, keep playing.
        nonfinite = ~np.isfinite(grains)
        if nonfinite.any() and not self._decode_was_nonfinite:
            self._decode_was_nonfinite = True
            self.nonfinite_decodes += 1
        bad = nonfinite | (np.abs(grains) > 1)
        if bad.any():
            self.repaired_samples += int(bad.sum())
            grains = np.clip(np.nan_to_num(grains, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        return np.ascontiguousarray(grains, dtype=np.float32)
