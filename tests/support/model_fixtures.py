"""Small model artifacts for the runtime's tests, valid and deliberately broken, built without the trainer.

The valid one follows docs/model-format.md exactly with the smallest decoder that can: linear + tanh.
Each broken one breaks a single promise, so a test can check the loader names that promise.
`python tests/support/model_fixtures.py OUT.ts` writes a valid one (for benches and trying the CLI by hand).
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

# How a broken decode misbehaves; "" is a healthy model. TorchScript compiles the branch on a str attribute.
FAILURES = ("", "nan", "shape", "range", "float64", "raise", "nan_far")


class TinyGrainModel(nn.Module):
    """A linear+tanh decoder (Z -> G) and a linear encoder (G -> 2Z) with the navigation buffers."""

    def __init__(
        self,
        latent_dim: int = 16,
        grain_size: int = 1024,
        num_axes: int = 8,
        num_anchors: int = 4,
        seed: int = 0,
        failure: str = "",
        far: float = 1.0,
    ) -> None:
        super().__init__()
        assert failure in FAILURES, failure
        self.far = far  # "nan_far": how far up both axes must be for NaN
        gen = torch.Generator().manual_seed(seed)
        self.latent_dim = latent_dim
        self.failure = failure
        self.decoder = nn.Linear(latent_dim, grain_size)
        self.encoder = nn.Linear(grain_size, 2 * latent_dim)
        with torch.no_grad():
            # Grains with a little structure (sines of several frequencies) so checksums differ per point.
            t = torch.arange(grain_size, dtype=torch.float32) / grain_size
            freqs = torch.arange(1, latent_dim + 1, dtype=torch.float32)[:, None] * 3
            self.decoder.weight.copy_((torch.sin(2 * torch.pi * freqs * t) * 0.4).T)
            self.decoder.bias.zero_()
            self.encoder.weight.copy_(torch.randn(2 * latent_dim, grain_size, generator=gen) * 0.01)
            self.encoder.bias.zero_()
        axes, _ = torch.linalg.qr(torch.randn(latent_dim, latent_dim, generator=gen))
        self.register_buffer("center", torch.randn(latent_dim, generator=gen) * 0.1)
        self.register_buffer("axes", axes.T[:num_axes].contiguous())
        self.register_buffer("scales", torch.linspace(1.0, 0.3, num_axes))
        self.register_buffer("anchors", torch.randn(num_anchors, latent_dim, generator=gen) * 0.5)

    @torch.jit.export
    def decode(self, z: Tensor) -> Tensor:
        x = torch.tanh(self.decoder(z))
        if self.failure == "nan":
            x = x * torch.where(z[:, :1] > -1e9, float("nan"), 1.0)
        elif self.failure == "nan_far":  # NaN only where two axis knobs are both far up: a corner
            far = ((z @ self.axes[0]) > self.far) & ((z @ self.axes[1]) > self.far)
            x = x * torch.where(far, float("nan"), 1.0)[:, None]
        elif self.failure == "shape":
            x = x[:, : x.shape[1] // 2]
        elif self.failure == "range":
            x = x * 3.0
        elif self.failure == "float64":
            x = x.double()
        elif self.failure == "raise":
            x = x @ torch.ones(3, 3)
        return x

    @torch.jit.export
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return h[:, : self.latent_dim], h[:, self.latent_dim :]

    def forward(self, z: Tensor) -> Tensor:
        return self.decode(z)


class DecodeOnlyModel(TinyGrainModel):
    """Has decode but no encode: a "missing method" artifact."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    @torch.jit.ignore
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:  # not exported: the archive lacks it
        raise NotImplementedError


def state_hash(module: nn.Module) -> str:
    """docs/model-format.md's content_hash, computed independently of runtime.artifact."""
    digest = hashlib.sha256()
    for _, tensor in sorted(module.state_dict().items()):
        digest.update(tensor.detach().float().contiguous().numpy().astype("<f4").tobytes())
    return digest.hexdigest()


def metadata_for(model: TinyGrainModel, name: str = "tiny-test") -> dict[str, Any]:
    return {
        "schema_version": 1,
        "name": name,
        "sample_rate": 22050,
        "grain_size": model.decoder.out_features,
        "latent_dim": model.latent_dim,
        "num_axes": int(model.axes.shape[0]),
        "anchor_names": [f"sound {i + 1}" for i in range(model.anchors.shape[0])],
        "decoder": "linear",
        "dataset": {"source": "fixture", "train_grains": 0, "val_grains": 0, "fingerprint": "none"},
        "training": {"steps": 0, "minutes": 0.0, "device": "cpu", "beta_max": 1.0, "config": {}},
        "metrics": {
            "val": {"sc": 0.5, "lsd_db": 9.0, "snr_db": 3.0},
            "pca": {"k": 16, "sc": 0.6, "lsd_db": 10.0, "snr_db": 2.0},
        },
        "created_at": "2026-11-24T12:00:00Z",
        "trainer_version": "fixture",
        "content_hash": state_hash(model),
    }


def save(module: nn.Module, path: Path, metadata: dict[str, Any] | None) -> Path:
    extra = {} if metadata is None else {"grainbox.json": json.dumps(metadata)}
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # torch 2.13 steers to torch.export; TS is the format
        scripted = torch.jit.script(module.eval())
        torch.jit.save(scripted, str(path), _extra_files=extra)
    return path


def write_valid(path: Path, seed: int = 0, name: str = "tiny-test", **model_kwargs: Any) -> Path:
    model = TinyGrainModel(seed=seed, **model_kwargs)
    return save(model, Path(path), metadata_for(model, name))


def write_broken(path: Path, problem: str) -> Path:
    """A model file with one problem; `problem` is one of BROKEN (the keys below)."""
    path = Path(path)
    return BROKEN[problem](path)


def _not_archive(path: Path) -> Path:
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(200))  # someone flashed a WAV file
    return path


def _truncated(path: Path) -> Path:
    write_valid(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _with_metadata(path: Path, **changes: Any) -> Path:
    model = TinyGrainModel()
    meta = metadata_for(model)
    meta.update(changes)
    return save(model, path, meta)


def _failing(failure: str):
    def build(path: Path) -> Path:
        model = TinyGrainModel(failure=failure)
        return save(model, path, metadata_for(model))

    return build


def _missing_buffer(path: Path) -> Path:
    model = TinyGrainModel()
    meta = metadata_for(model)
    del model._buffers["anchors"]
    return save(model, path, meta)


def _missing_method(path: Path) -> Path:
    model = DecodeOnlyModel()
    return save(model, path, metadata_for(model))


def _float64_buffer(path: Path) -> Path:
    model = TinyGrainModel()
    meta = metadata_for(model)
    model.scales = model.scales.double()
    return save(model, path, meta)


BROKEN = {
    "not_archive": _not_archive,
    "truncated": _truncated,
    "empty": lambda p: (p.write_bytes(b""), p)[1],
    "no_metadata": lambda p: save(TinyGrainModel(), p, None),
    "missing_method": _missing_method,
    "missing_buffer": _missing_buffer,
    "float64_buffer": _float64_buffer,
    "unknown_schema": lambda p: _with_metadata(p, schema_version=99),
    "latent_mismatch": lambda p: _with_metadata(p, latent_dim=32),
    "anchor_names_mismatch": lambda p: _with_metadata(p, anchor_names=["only one"]),
    "grain_size_mismatch": lambda p: _with_metadata(p, grain_size=2048),
    "decode_nan": _failing("nan"),
    "decode_wrong_shape": _failing("shape"),
    "decode_out_of_range": _failing("range"),
    "decode_float64": _failing("float64"),
    "decode_raises": _failing("raise"),
}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/support/model_fixtures.py OUT.ts")
    print(write_valid(Path(sys.argv[1])))
