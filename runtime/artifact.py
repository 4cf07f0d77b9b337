"""Load a model artifact and check every promise of docs/model-format.md before the box plays it.

The box must never play a model that could crash it or blast noise: `load_model` reads the file once,
checks the schema, the methods, the buffers, the metadata against the tensors, and runs a probe decode
that must be finite and within [-1, 1]. Anything wrong raises `ModelError` with a message that names the
problem and what to do, so `python -m runtime check`, a reload and `flash.sh` all say the same thing.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import statistics
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from runtime.contract import (
    ARTIFACT_SCHEMAS,
    BUFFERS,
    GRAIN_SIZE,
    LATENT_DIM,
    MAX_ANCHORS,
    METADATA_FILE,
    METHODS,
    MIN_AXES,
    SAMPLE_RATE,
)

# A unit vector stored in float32 and re-exported may drift a little; more than this is a wrong export.
UNIT_TOLERANCE = 1e-3
# Grains are written by tanh or clamp; allow the rounding of a float32 at 1.0 and nothing more.
RANGE_TOLERANCE = 1e-6
# A tanh decoder whose weights blew up (diverged, or scaled by 1e30) still outputs [-1, 1], as a square
# wave: refuse grains at the probe points that sit at full scale for more than half their samples. The
# factory model has none there (0 %), and 18 % even at the corners of the knob box.
SATURATED_LEVEL, SATURATED_SHARE = 0.999, 0.5
PROBE_BATCH = 256  # decode the reachable points in batches: bounded memory on a Pi
SPRAY_PROBE = 1.0  # box.toml's default spray: the cloud around the knob box's extreme corners
SPRAY_DIRECTIONS = 15  # one per extra slot at the default 16 slots
MAX_CORNER_AXES = 10  # 2**10 corners per anchor at most (the knobs address 8 axes)

FIX_EXPORT = "re-export it with `python -m trainer export`"


class ModelError(Exception):
    """A model file the box must not play. The message names the problem and what to do about it."""


@dataclass(frozen=True, eq=False)
class Model:
    """A validated model: the TorchScript module plus what the runtime needs to navigate its latent space.

    `center`, `axes`, `scales` and `anchors` are float32 tensors read from the module; `metadata` is the
    parsed grainbox.json. `sha256` identifies the file's bytes (what deploy/flash.sh compares);
    `decode_ms` is the median batch-1 decode time measured by the probe, on the threads torch had.
    """

    path: Path
    sha256: str
    size_bytes: int
    name: str
    sample_rate: int
    grain_size: int
    latent_dim: int
    anchor_names: tuple[str, ...]
    center: Tensor
    axes: Tensor
    scales: Tensor
    anchors: Tensor
    module: torch.jit.ScriptModule = field(repr=False)
    metadata: dict[str, Any] = field(repr=False)
    decode_ms: float = 0.0
    warnings: tuple[str, ...] = ()

    @property
    def num_axes(self) -> int:
        return int(self.axes.shape[0])

    @property
    def num_anchors(self) -> int:
        return int(self.anchors.shape[0])

    @property
    def grain_seconds(self) -> float:
        return self.grain_size / self.sample_rate

    def decode(self, z: Tensor) -> Tensor:
        """Grains [B, G] for latent points z [B, Z], without autograd bookkeeping."""
        with torch.inference_mode():
            return self.module.decode(z)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance [B, Z] of grains x [B, G] (the model's rate and size)."""
        with torch.inference_mode():
            mean, logvar = self.module.encode(x)
            return mean, logvar


def load_model(path: str | Path, probe_repeats: int = 5) -> Model:
    """Read, validate and probe the artifact at `path`; raise ModelError naming the first problem found."""
    path = Path(path)
    data = _read_bytes(path)
    _check_archive_crcs(data, path)
    module, meta_text = _load_torchscript(data, path)
    meta = _parse_metadata(meta_text)
    _check_schema(meta)
    _check_methods(module)
    buffers = _read_buffers(module)
    _check_metadata_fields(meta)
    _check_consistency(meta, buffers)
    _check_navigation(buffers)
    warnings = _check_content_hash(module, meta)
    _check_weights_finite(module)
    decode_ms = _probe(module, buffers, meta, probe_repeats)
    return Model(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        name=meta["name"],
        sample_rate=meta["sample_rate"],
        grain_size=meta["grain_size"],
        latent_dim=meta["latent_dim"],
        anchor_names=tuple(meta["anchor_names"]),
        module=module,
        metadata=meta,
        decode_ms=decode_ms,
        warnings=tuple(warnings),
        **buffers,
    )


def content_hash(module: torch.nn.Module) -> str:
    """sha256 over the module's state tensors as float32 little-endian, in sorted name order, then over the
    tensor constants of `decode` and `encode` in graph order (a frozen module keeps its weights there)."""
    digest = hashlib.sha256()
    for _, tensor in _weight_tensors(module):
        digest.update(_float_bytes(tensor))
    return digest.hexdigest()


def _weight_tensors(module: torch.nn.Module) -> list[tuple[str, Tensor]]:
    """The module's state tensors in sorted name order, then the tensor constants of decode and encode
    in graph order (a frozen module keeps its weights there)."""
    tensors = sorted(module.state_dict().items())
    if isinstance(module, torch.jit.ScriptModule):
        for name in METHODS:
            method = getattr(module, name, None)
            graph = getattr(method, "graph", None)
            for index, node in enumerate(graph.findAllNodes("prim::Constant") if graph is not None else ()):
                if node.hasAttribute("value") and node.kindOf("value") == "t":
                    tensors.append((f"{name} constant {index}", node.t("value")))
    return tensors


def _float_bytes(tensor: Tensor) -> bytes:
    if tensor.is_complex():  # a frozen spectrum (the noise decoder's): real and imaginary parts
        tensor = torch.view_as_real(tensor)
    return tensor.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()


# ---------------------------------------------------------------------------------------------- reading


def _read_bytes(path: Path) -> bytes:
    # Read once and load from memory: the sha256 we report is then exactly what we validated, even if
    # flash.sh replaces the file while we work.
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(
            f"{path} does not exist; give the path of a .ts file written by `python -m trainer export`"
        ) from None
    except IsADirectoryError:
        raise ModelError(f"{path} is a directory, not a model file; give the path of a .ts file") from None
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror}; check its permissions") from None
    if not data:
        raise ModelError(f"{path} is empty (0 bytes): an interrupted copy? copy the model again")
    return data


def _load_torchscript(data: bytes, path: Path) -> tuple[torch.jit.ScriptModule, str]:
    if not data.startswith(b"PK\x03\x04"):
        raise ModelError(
            f"{path} is not a TorchScript archive (it does not start like a zip file); "
            f"a Grainbox model is written by `python -m trainer export`"
        )
    extra = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():
            # torch 2.13 calls TorchScript deprecated; it is still the format the box runs (no Python model
            # code needed on the Pi), so the warning would only fill the journal.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
    except Exception as e:  # torch raises RuntimeError, ValueError or its own types for broken archives
        reason = _short_reason(e).split(". ")[0]
        hint = (
            "the file is truncated or damaged (an interrupted copy?); copy it again"
            if _looks_truncated(reason)
            else f"torch.jit.load failed; {FIX_EXPORT}"
        )
        raise ModelError(f"{path} is not a loadable TorchScript archive: {reason}; {hint}") from None
    module.eval()
    text = extra[METADATA_FILE]
    return module, text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def _check_archive_crcs(data: bytes, path: Path) -> None:
    """Every member of the archive must match the CRC-32 its zip header records. torch.jit.load does not
    look (a TorchScript archive stores its members uncompressed), so a few zeroed KiB inside a weight
    file load fine and play garbage: bit rot on a card, a bad copy."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError):
        return  # not a readable zip at all: _load_torchscript names that problem
    if damaged is not None:
        raise ModelError(
            f"{path} is damaged: its member {damaged} fails the archive's CRC-32 check (bit rot or a bad "
            f"copy); copy the model again, or re-export it"
        )


def _looks_truncated(message: str) -> bool:
    words = ("central directory", "zip archive", "truncated", "unexpected end", "invalid header")
    return any(w in message.lower() for w in words)


def _parse_metadata(text: str) -> dict[str, Any]:
    if not text:
        raise ModelError(f"the archive has no {METADATA_FILE} (the metadata the box needs); {FIX_EXPORT}")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelError(f"{METADATA_FILE} is not valid JSON ({e}); {FIX_EXPORT}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{METADATA_FILE} must be a JSON object, found {type(meta).__name__}; {FIX_EXPORT}")
    return meta


# ---------------------------------------------------------------------------------------------- checks


def _check_schema(meta: dict[str, Any]) -> None:
    version = meta.get("schema_version")
    supported = ", ".join(str(v) for v in ARTIFACT_SCHEMAS)
    if version is None:
        raise ModelError(
            f"{METADATA_FILE} has no schema_version (this runtime supports {supported}); {FIX_EXPORT}"
        )
    if version not in ARTIFACT_SCHEMAS or isinstance(version, bool):
        raise ModelError(
            f"schema_version {version!r} is not one this runtime knows (supported: {supported}); "
            f"update the runtime on the box, or export with a matching trainer"
        )


def _check_methods(module: torch.jit.ScriptModule) -> None:
    for name in METHODS:
        if not hasattr(module, name) or not callable(getattr(module, name)):
            raise ModelError(
                f"the module has no `{name}` method (the format needs decode and encode); "
                f"mark it @torch.jit.export and {FIX_EXPORT}"
            )


def _read_buffers(module: torch.jit.ScriptModule) -> dict[str, Tensor]:
    buffers = {}
    for name in BUFFERS:
        value = getattr(module, name, None)
        if not isinstance(value, Tensor):
            raise ModelError(
                f"the module has no `{name}` buffer (the format needs {', '.join(BUFFERS)}); {FIX_EXPORT}"
            )
        if value.dtype != torch.float32:
            raise ModelError(
                f"buffer `{name}` is {value.dtype}, the format needs torch.float32; {FIX_EXPORT}"
            )
        if not torch.isfinite(value).all():
            raise ModelError(f"buffer `{name}` contains NaN or inf; the model did not train; retrain it")
        buffers[name] = value.detach().clone()
    return buffers


_FIELD_TYPES: dict[str, type] = {
    "name": str,
    "sample_rate": int,
    "grain_size": int,
    "latent_dim": int,
    "num_axes": int,
    "anchor_names": list,
}


def _check_metadata_fields(meta: dict[str, Any]) -> None:
    for key, kind in _FIELD_TYPES.items():
        if key not in meta:
            raise ModelError(f"{METADATA_FILE} has no `{key}`; {FIX_EXPORT}")
        value = meta[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ModelError(
                f"{METADATA_FILE} `{key}` must be {kind.__name__}, found {value!r}; {FIX_EXPORT}"
            )
        if kind is int and value <= 0:
            raise ModelError(f"{METADATA_FILE} `{key}` must be > 0, found {value}; {FIX_EXPORT}")
    for limit in (SAMPLE_RATE, GRAIN_SIZE, LATENT_DIM):
        if why := limit.refuses(meta[limit.name]):
            raise ModelError(f"the box cannot play this model: {why}; {FIX_EXPORT} (runtime/contract.json)")
    if not meta["name"].strip():
        raise ModelError(f"{METADATA_FILE} `name` is empty; {FIX_EXPORT} with --name")
    if not all(isinstance(n, str) for n in meta["anchor_names"]):
        raise ModelError(f"{METADATA_FILE} `anchor_names` must be a list of strings; {FIX_EXPORT}")


def _check_consistency(meta: dict[str, Any], b: dict[str, Tensor]) -> None:
    """Each size in the metadata must agree with every tensor that carries it (docs/model-format.md)."""
    z, k = meta["latent_dim"], meta["num_axes"]
    expected = {"center": (z,), "axes": (k, z), "scales": (k,)}
    for name, shape in expected.items():
        if tuple(b[name].shape) != shape:
            raise ModelError(
                f"inconsistent metadata: buffer `{name}` has shape {list(b[name].shape)} but "
                f"latent_dim={z}, num_axes={k} say {list(shape)}; {FIX_EXPORT}"
            )
    anchors = b["anchors"]
    if anchors.dim() != 2 or anchors.shape[1] != z:
        raise ModelError(
            f"inconsistent metadata: buffer `anchors` has shape {list(anchors.shape)}, expected "
            f"[A, {z}] for latent_dim={z}; {FIX_EXPORT}"
        )
    if len(meta["anchor_names"]) != anchors.shape[0]:
        raise ModelError(
            f"inconsistent metadata: {len(meta['anchor_names'])} anchor_names for "
            f"{anchors.shape[0]} anchors; {FIX_EXPORT}"
        )


def _check_navigation(b: dict[str, Tensor]) -> None:
    k, a = b["axes"].shape[0], b["anchors"].shape[0]
    if k < MIN_AXES:
        raise ModelError(
            f"the model has {k} axes, the box needs at least {MIN_AXES} (num_axes >= {MIN_AXES}); "
            f"{FIX_EXPORT} with a latent size of {MIN_AXES} or more"
        )
    if not 1 <= a <= MAX_ANCHORS:
        raise ModelError(f"the model has {a} anchors, the box accepts 1 to {MAX_ANCHORS}; {FIX_EXPORT}")
    norms = b["axes"].norm(dim=1)
    worst = int((norms - 1).abs().argmax())
    if abs(float(norms[worst]) - 1) > UNIT_TOLERANCE:
        raise ModelError(
            f"axes[{worst}] has length {float(norms[worst]):.4f}, the format needs unit vectors; {FIX_EXPORT}"
        )
    if not (b["scales"] > 0).all():
        raise ModelError(f"scales must all be > 0, found {b['scales'].min().item():.4g}; {FIX_EXPORT}")


def probe_points(b: dict[str, Tensor]) -> Tensor:
    """Latent points a knob can reach: every anchor, and the centre +-2 spreads along every axis."""
    reach = 2 * b["scales"][:, None] * b["axes"]
    return torch.cat([b["anchors"], b["center"] + reach, b["center"] - reach])


def reachable_points(b: dict[str, Tensor], spray: float = SPRAY_PROBE, seed: int = 0) -> Tensor:
    """Every latent point the knob box reaches at its extremes: each anchor with the axis knobs at every
    corner (each axis at -2 or +2 spreads, as runtime.engine maps a knob at 0 or 1), and the spray cloud
    (standard normal directions in axis units, as the engine draws them) around each anchor's two
    extreme corners at full spray."""
    anchors, axes, scales = b["anchors"], b["axes"], b["scales"]
    k = min(axes.shape[0], MAX_CORNER_AXES)
    signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=k)))
    offsets = (signs * 2 * scales[:k]) @ axes[:k]
    corners = (anchors[:, None, :] + offsets[None]).reshape(-1, anchors.shape[1])
    directions = torch.randn(SPRAY_DIRECTIONS, axes.shape[0], generator=torch.Generator().manual_seed(seed))
    cloud = (directions * scales) @ axes
    extremes = torch.cat([anchors + offsets[-1], anchors + offsets[0]])
    sprayed = (extremes[:, None, :] + spray * cloud[None]).reshape(-1, anchors.shape[1])
    return torch.cat([corners, sprayed])


def _check_weights_finite(module: torch.nn.Module) -> None:
    for name, tensor in _weight_tensors(module):
        if (tensor.is_floating_point() or tensor.is_complex()) and not torch.isfinite(tensor).all():
            raise ModelError(f"the weights hold NaN or inf ({name}): the model diverged; retrain it")


def _probe(module: torch.jit.ScriptModule, b: dict[str, Tensor], meta: dict[str, Any], repeats: int) -> float:
    z = probe_points(b)
    grains = _checked_decode(module, z, meta)
    saturated = float((grains.abs() >= SATURATED_LEVEL).float().mean())
    if saturated > SATURATED_SHARE:
        raise ModelError(
            f"decode is at full scale in {saturated:.0%} of the samples at the probe points (hard-clipped "
            f"noise, not sound): its weights blew up; retrain it"
        )
    reachable = reachable_points(b)
    for first in range(0, len(reachable), PROBE_BATCH):
        _checked_decode(module, reachable[first : first + PROBE_BATCH], meta)
    mu_logvar = _call(module.encode, grains[:2], "encode")
    if not (
        isinstance(mu_logvar, tuple)
        and len(mu_logvar) == 2
        and all(isinstance(t, Tensor) and tuple(t.shape) == (2, meta["latent_dim"]) for t in mu_logvar)
    ):
        raise ModelError(
            f"encode(x[2, {meta['grain_size']}]) must return (mu, logvar) of shape "
            f"[2, {meta['latent_dim']}] each; {FIX_EXPORT}"
        )
    times = []
    for _ in range(3):  # TorchScript's profiling executor optimises the graph on the first calls
        _checked_decode(module, z[:1], meta)
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        _checked_decode(module, z[:1], meta)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _checked_decode(module: torch.jit.ScriptModule, z: Tensor, meta: dict[str, Any]) -> Tensor:
    out = _call(module.decode, z, "decode")
    expected = (z.shape[0], meta["grain_size"])
    if not isinstance(out, Tensor):
        raise ModelError(f"decode returned {type(out).__name__}, not a Tensor; {FIX_EXPORT}")
    if tuple(out.shape) != expected:
        raise ModelError(
            f"decode(z[{z.shape[0]}, {z.shape[1]}]) returned shape {list(out.shape)}, expected "
            f"{list(expected)} (grain_size={meta['grain_size']}); {FIX_EXPORT}"
        )
    if out.dtype != torch.float32:
        raise ModelError(f"decode returned {out.dtype}, the format needs torch.float32; {FIX_EXPORT}")
    bad = ~torch.isfinite(out)
    if bad.any():
        raise ModelError(
            f"decode produced NaN or inf in {int(bad.sum())} of {out.numel()} samples at points "
            f"a knob can reach; the model is broken: retrain it"
        )
    peak = float(out.abs().max())
    if peak > 1 + RANGE_TOLERANCE:
        raise ModelError(
            f"decode produced samples up to {peak:.3f}, outside [-1, 1]; the decoder must end in "
            f"tanh or a clamp: {FIX_EXPORT}"
        )
    return out


def _call(method: Any, x: Tensor, name: str) -> Any:
    try:
        with torch.inference_mode():
            return method(x)
    except Exception as e:
        raise ModelError(
            f"{name}(tensor of shape {list(x.shape)}) failed: {_short_reason(e)}; {FIX_EXPORT}"
        ) from None


def _short_reason(e: Exception) -> str:
    """The informative line of a torch error: TorchScript puts the real cause last, after a traceback."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    return lines[-1] if "TorchScript interpreter" in lines[0] else lines[0]


def _check_content_hash(module: torch.jit.ScriptModule, meta: dict[str, Any]) -> list[str]:
    """The weights must hash to what the export recorded: anything else is a model changed or damaged
    after export, and the box refuses it. An export too old to record the hash only gets a warning."""
    expected = meta.get("content_hash")
    if not isinstance(expected, str) or not expected:
        return [f"{METADATA_FILE} has no content_hash, so damaged weights cannot be told apart"]
    actual = content_hash(module)
    if actual != expected:
        raise ModelError(
            f"the weights do not match the content_hash recorded at export ({expected[:12]}, the weights "
            f"hash to {actual[:12]}): the model was changed or damaged after export; copy it again, or "
            f"{FIX_EXPORT}"
        )
    return []
