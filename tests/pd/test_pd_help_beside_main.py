"""A help patch opened next to a playing main.pd, in the same Pd, is a separate instrument: no
"multiply defined" warning, and what the help patch does never reaches the one that plays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.pd_harness import PD_DIR, Score, render, sine
from tests.support.runtime_pd import pd_available

pytestmark = pytest.mark.skipif(not pd_available(), reason="needs Pd (apt: puredata-core)")
HELP_PATCHES = tuple(sorted(PD_DIR.glob("grainbox-*-help.pd")))
POKE_MS, SECOND_GRAIN_MS, SECONDS = 300.0, 400.0, 0.8


def playing(score: Score) -> Score:
    """main.pd playing a sine grain, then given a second grain of the same size later on."""
    score.add(0, "/model", 22050, 1024, 8, 8)
    score.add(0, "/param", "density", 80.0)
    score.add(0, "/param", "gain", 0.7)
    for slot in range(8):
        score.add(5, "/grain", slot, *sine(1024, 8.0, 0.5))
    score.add(SECOND_GRAIN_MS, "/grain", 0, *sine(1024, 4.0, 0.5))
    return score


def what_the_help_patches_do(score: Score) -> Score:
    """Every state-changing message the help patches send when clicked, on their own names."""
    score.add_pd(POKE_MS, "help_slots-model_in", 22050, 64, 8, 8)  # would make main drop 1024-sample grains
    score.add_pd(POKE_MS, "help_slots-freeze_in", 1)
    score.add_pd(POKE_MS, "gain_help_out", 0)  # would silence main
    score.add_pd(POKE_MS, "help_lfo-lfo1target_in", 15)  # LFO 1 onto gain
    score.add_pd(POKE_MS, "help_lfo-lfo1depth_in", 1)
    score.add_pd(POKE_MS, "help_scheduler-density_in", 0.5)
    score.add_pd(POKE_MS, "help_param-demo_in", 3)
    return score


def rms(audio: np.ndarray, start_s: float, end_s: float, sample_rate: int) -> float:
    part = audio[int(start_s * sample_rate):int(end_s * sample_rate)]
    return float(np.sqrt(np.mean(part**2)))


def test_help_patches_beside_a_playing_main_share_nothing(tmp_path: Path) -> None:
    result = render(what_the_help_patches_do(playing(Score())), SECONDS, tmp_path / "beside",
                    also_open=HELP_PATCHES)
    assert "multiply defined" not in result.log
    assert "error" not in result.log.lower(), result.log[-2000:]
    assert "dropped" not in result.log, result.log[-2000:]  # the second 1024-sample grain was taken
    before = rms(result.audio, 0.1, POKE_MS / 1000, result.sample_rate)
    after = rms(result.audio, SECOND_GRAIN_MS / 1000 + 0.05, SECONDS, result.sample_rate)
    assert before > 0.01 and 0.5 < after / before < 2.0, (before, after)


def test_the_same_change_on_main_itself_is_heard(tmp_path: Path) -> None:
    """Control: the observation sees a change of state when it does reach main (gain 0 over OSC)."""
    score = playing(Score())
    score.add(POKE_MS, "/param", "gain", 0.0)
    result = render(score, SECONDS, tmp_path / "control")
    before = rms(result.audio, 0.1, POKE_MS / 1000, result.sample_rate)
    after = rms(result.audio, SECOND_GRAIN_MS / 1000 + 0.05, SECONDS, result.sample_rate)
    assert before > 0.01 and after < 0.1 * before, (before, after)
