"""Decode speed of an exported model on one thread: what the box's decode worker can do.

    python -m bench.decode [MODEL ...] [--seconds 3]      (default MODEL: models/factory.ts)

Prints µs per grain at batch 1 (one knob move, one slot) and batch 8 (a knob move refreshes 8 slots),
the encoder's cost per input grain at batch 1 (what listening adds for every /input, runtime/listen.py),
the real-time factor (seconds of grain audio decoded per second of decode work), and the bar: one grain
at batch 1 in under 0.3 ms on one core of the workstation (a Raspberry Pi 4 core is several times slower;
docs/box.md has the Pi's budget). Several models are timed one after the other in the same run, so a
new decoder can be judged against an old one on the same machine at the same load. The model is loaded
with the box's own loader, so a model the box would refuse fails here.
Each figure is the median of timed blocks of repeated calls, after a warm-up.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from runtime.artifact import ModelError, load_model
from runtime.threads import limit_torch_threads

REPO = Path(__file__).resolve().parent.parent

BAR_MS = 0.3  # the floor for the box's default voice; the goal is 0.06 ms (800x real time)
BATCHES = (1, 8)


def time_decode(model, batch: int, seconds: float) -> float:
    """Median seconds per decode call of `batch` latent points around the model's centre."""
    g = torch.Generator().manual_seed(batch)
    z = model.center + torch.randn(batch, model.latent_dim, generator=g) * model.scales.mean()
    with torch.inference_mode():
        for _ in range(20):
            model.module.decode(z)
        start = time.perf_counter()
        calls = 0
        while time.perf_counter() - start < 0.2:
            model.module.decode(z)
            calls += 1
        per_block = max(1, calls // 2)  # blocks of ~0.1 s
        blocks = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(blocks) < 5:
            t0 = time.perf_counter()
            for _ in range(per_block):
                model.module.decode(z)
            blocks.append((time.perf_counter() - t0) / per_block)
    return statistics.median(blocks)


# sysbench cpu --threads=1, this machine's VM against a Pi (docs/box.md): operator overhead scales with it
PI_SLOWER = {"Pi 4 (Cortex-A72)": 2.4, "Pi 5 (Cortex-A76)": 1.3}


def time_encode(model, seconds: float) -> float:
    """Median seconds per encode call of one grain (a 440 Hz tone at -20 dBFS RMS, the model's rate)."""
    t = torch.arange(model.grain_size) / model.sample_rate
    x = (0.14 * torch.sin(2 * torch.pi * 440 * t))[None]
    with torch.inference_mode():
        for _ in range(20):
            model.module.encode(x)
        blocks = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(blocks) < 5:
            t0 = time.perf_counter()
            for _ in range(50):
                model.module.encode(x)
            blocks.append((time.perf_counter() - t0) / 50)
    return statistics.median(blocks)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", type=Path, default=[REPO / "models" / "factory.ts"],
        help="model files (default models/factory.ts); with several, each is timed in the same run and the "
        "first is the one judged, the others are its baselines",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per batch size (3)")
    args = parser.parse_args(argv)
    limit_torch_threads()
    print(f"machine {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} thread")
    per_grain_ms: dict[Path, dict[int, float]] = {}
    for path in args.models:
        try:
            model = load_model(path)
        except ModelError as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 1
        print(
            f"\nmodel   {model.name} ({model.metadata.get('decoder', '?')} decoder, latent "
            f"{model.latent_dim}, {model.size_bytes / 1e6:.2f} MB) {path}"
        )
        print(f"{'batch':>5}  {'µs per call':>11}  {'µs per grain':>12}  {'real-time factor':>16}")
        per_grain_ms[path] = {}
        for batch in BATCHES:
            call = time_decode(model, batch, args.seconds)
            per_grain = call / batch
            per_grain_ms[path][batch] = per_grain * 1e3
            rtf = model.grain_seconds / per_grain
            print(f"{batch:>5}  {call * 1e6:>11.1f}  {per_grain * 1e6:>12.1f}  {rtf:>15.0f}x")
        encode = time_encode(model, args.seconds)
        decode_1 = per_grain_ms[path][1] / 1e3
        both = encode + decode_1
        print(f"encode  {encode * 1e6:>11.1f} µs per input grain at batch 1 ({encode / decode_1:.1f}x a "
              f"batch-1 decode, same run); listening costs encode + decode per grain: "
              f"{100 * both / model.grain_seconds:.1f} % of one core here")
        for pi, slower in PI_SLOWER.items():
            share = 100 * both * slower / model.grain_seconds
            print(f"        {pi} estimate (sysbench {slower}x slower, not measured): encode "
                  f"{encode * slower * 1e3:.2f} ms, encode + decode {both * slower * 1e3:.2f} ms per grain, "
                  f"{share:.1f} % of one core")
    judged = per_grain_ms[args.models[0]]
    for other in args.models[1:]:
        ratios = ", ".join(f"batch {b}: {judged[b] / per_grain_ms[other][b]:.2f}x" for b in BATCHES)
        print(f"\n{args.models[0].name} against {other.name} (same run): {ratios} the time per grain")
    ok = judged[1] < BAR_MS
    verdict = "PASS" if ok else "FAIL"
    print(f"\nbar: one grain at batch 1 under {BAR_MS} ms: {judged[1]:.3f} ms -> {verdict}")
    print(f"a knob move (8 slots at batch 8) costs {judged[8] * 8:.2f} ms of one core")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
