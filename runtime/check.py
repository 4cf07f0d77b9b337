"""`python -m runtime check FILE`: validate a model artifact and describe it for a human.

Exit 0 with a summary when the box can play the file; exit 1 with one line naming the problem when not.
deploy/flash.sh runs this on the workstation before copying, and again on the box before swapping.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from runtime.artifact import Model, ModelError, load_model
from runtime.threads import limit_torch_threads

EXIT_OK, EXIT_INVALID = 0, 1


def run_check(path: Path) -> int:
    limit_torch_threads()
    try:
        model = load_model(path, probe_repeats=20)
    except ModelError as e:
        print(f"grainbox: {path}: invalid model: {e}", file=sys.stderr)
        return EXIT_INVALID
    print(summary(model))
    return EXIT_OK


def summary(model: Model) -> str:
    """A few aligned lines: what the model is, how big, what it sounds like, how good, how fast."""
    meta = model.metadata
    anchors = ", ".join(model.anchor_names)
    per_second = model.grain_seconds / (model.decode_ms / 1e3) if model.decode_ms > 0 else float("inf")
    rows = [
        ("model", f"{model.name}  (schema {meta['schema_version']}, decoder {meta.get('decoder', '?')})"),
        ("file", f"{model.path}  {model.size_bytes / 1e6:.2f} MB  sha256 {model.sha256[:12]}"),
        (
            "sizes",
            f"grain {model.grain_size} samples @ {model.sample_rate} Hz "
            f"({model.grain_seconds * 1e3:.1f} ms), latent {model.latent_dim}, axes {model.num_axes}",
        ),
        ("anchors", f"{model.num_anchors}: {anchors}"),
        ("metrics", _metrics(meta.get("metrics"))),
        ("dataset", _dataset(meta.get("dataset"))),
        ("training", _training(meta.get("training"))),
        ("created", f"{meta.get('created_at', '?')} by trainer {meta.get('trainer_version', '?')}"),
        (
            "decode",
            f"{model.decode_ms:.3f} ms per grain at batch 1, one thread (real-time factor {per_second:.0f}x)",
        ),
    ]
    rows += [("warning", w) for w in model.warnings]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows) + "\nOK: the box can play this model"


def _metrics(metrics: Any) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return "none recorded"
    parts = []
    for split, values in metrics.items():
        if isinstance(values, dict):
            shown = " ".join(
                f"{k} {v:.3g}" if isinstance(v, int | float) else f"{k} {v}" for k, v in values.items()
            )
            parts.append(f"{split}: {shown}")
    return " | ".join(parts) or "none recorded"


def _dataset(d: Any) -> str:
    if not isinstance(d, dict):
        return "not recorded"
    return (
        f"{d.get('source', '?')}, {d.get('train_grains', '?')} train / {d.get('val_grains', '?')} val grains"
        f", fingerprint {str(d.get('fingerprint', '?'))[:12]}"
    )


def _training(t: Any) -> str:
    if not isinstance(t, dict):
        return "not recorded"
    minutes = t.get("minutes")
    minutes = f"{minutes:.1f}" if isinstance(minutes, int | float) else "?"
    steps, device, beta = t.get("steps", "?"), t.get("device", "?"), t.get("beta_max", "?")
    return f"{steps} steps, {minutes} min on {device}, beta_max {beta}"
