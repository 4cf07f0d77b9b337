"""One table of what the box can play (the limits in runtime/contract.json), applied alike by `runtime check`,
box.toml and the patch's own /model check, and Pd's answer (/model_ok) when it accepts a model."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.__main__ import main
from runtime.contract import LIMITS
from tests.conftest import REPO, free_udp_port
from tests.support import model_fixtures
from tests.support.pd_live import Patch
from tests.support.runtime_helpers import RuntimeProcess, write_checksum_model
from tests.support.runtime_pd import PdProcess

needs_pd = pytest.mark.skipif(shutil.which("pd") is None, reason="needs Pd (apt: puredata-core)")


@pytest.mark.parametrize(
    ("field", "value"),
    [("sample_rate", 500_000), ("sample_rate", 1), ("grain_size", 8), ("grain_size", 20_000),
     ("latent_dim", 2000)],
)  # fmt: skip
def test_check_refuses_a_model_outside_the_limits(
    tmp_path: Path, field: str, value: int, capsys: pytest.CaptureFixture[str]
) -> None:
    model = model_fixtures._with_metadata(tmp_path / "model.ts", **{field: value})
    assert main(["check", str(model)]) == 1
    err = capsys.readouterr().err
    limit = LIMITS[field]
    assert f"{field} {value} is outside {limit.low}-{limit.high}" in err and "contract.json" in err, err
    assert err.count("\n") == 1


def test_the_patchs_model_check_is_the_limits_table() -> None:
    text = (REPO / "pd" / "grainbox-osc.pd").read_text().replace("\\$", "$")
    check = re.search(r"expr \$f1 == int\(\$f1\) && \$f1 >= (\d+) && \$f1 <= (\d+) && \$f2 == int\(\$f2\) "
                      r"&& \$f2 >= (\d+) && \$f2 <= (\d+) && \$f3 >= 0 && \$f4 == int\(\$f4\) && "
                      r"\$f4 >= (\d+) && \$f4 <= (\d+)", text)  # fmt: skip
    assert check, "the /model range check is missing from grainbox-osc.pd"
    found = [int(v) for v in check.groups()]
    assert found == [LIMITS[n].low if k == 0 else LIMITS[n].high
                     for n in ("sample_rate", "grain_size", "slots") for k in (0, 1)]  # fmt: skip


@pytest.fixture
def patch(tmp_path: Path) -> Iterator[Patch]:
    running = Patch(tmp_path)
    yield running
    running.close()


@needs_pd
def test_pd_answers_a_model_it_accepts_and_drops_one_outside_the_limits(patch: Patch) -> None:
    runtime = patch.runtime
    runtime.send("/model", 384000, 65536, 16, 16)  # once accepted by any local sender: 23 -> 60 MB
    patch.answered(1)
    assert runtime.of("/model_ok") == [] and "dropped model out of range" in patch.log()
    runtime.send("/model", 22050, 1024, 16, 8)
    assert runtime.wait_for(lambda: runtime.of("/model_ok"), timeout=30) == [[22050.0, 1024.0, 16.0, 8.0]]


@needs_pd
def test_status_json_says_when_pd_has_accepted_the_model(tmp_path: Path) -> None:
    pd_port = free_udp_port()
    runtime = RuntimeProcess(tmp_path, write_checksum_model(tmp_path / "model.ts"), pd_port=pd_port)
    try:
        status = runtime.wait_status(lambda s: s["pid"] == runtime.proc.pid, "the runtime", timeout=60)
        assert status["pd_model_accepted"] is False  # no Pd yet
        pd = PdProcess(tmp_path / "pd", pd_port, runtime.port)
        pd.start()
        try:
            runtime.wait_status(lambda s: s["pd_model_accepted"] is True, "Pd's /model_ok", timeout=60)
        finally:
            pd.kill()
    finally:
        assert runtime.stop() == 0, runtime.log()


def test_a_grain_too_long_for_one_datagram_is_a_send_error_not_a_grain_sent() -> None:
    import numpy as np

    from runtime.link import Link

    class Ignore:
        def __getattr__(self, name: str):  # noqa: ANN204 (any LinkHandlers method)
            return lambda *args: None

    link = Link(0, free_udp_port(), Ignore())
    try:
        link.send_grains(np.zeros((1, 20_000), np.float32))  # 100,024 bytes: "Message too long"
        assert (link.grains_sent, link.send_errors) == (0, 1)
        link.send_grains(np.zeros((1, 1024), np.float32))
        assert (link.grains_sent, link.send_errors) == (1, 1)
    finally:
        link.close()
