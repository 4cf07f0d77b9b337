"""The latent map: where the training set sits in latent space, and the directions the box's knobs follow.

The posterior means of the training grains form a cloud in R^Z. Its principal directions, ordered by
spread, are the axes a knob can be mapped to: a knob on axis{k + 1} (knob1..knob4 are on axis1..axis4 by
default) moves the latent point from the cloud's centre along axes[k] by up to 2 * scales[k] each way
(docs/model-format.md). The same map draws the 2-D latent plot and the traversals, so what the plots
show is what the axis knobs will do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@torch.no_grad()
def posterior_means(model: nn.Module, grains: Tensor | np.ndarray, batch_size: int = 1024) -> Tensor:
    """encode(x)[0] for every grain, batched, on the model's device: float32 CPU tensor [N, Z]."""
    device = next(model.parameters()).device
    x = torch.as_tensor(np.array(grains, dtype=np.float32))  # a copy: cache memmaps are read-only
    was_training = model.training
    model.eval()
    out = [
        model.encode(x[i : i + batch_size].to(device))[0].float().cpu() for i in range(0, len(x), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out)


@dataclass
class LatentMap:
    """center [Z], axes [K, Z] (unit rows, decreasing variance), scales [K] (std along each axis)."""

    center: Tensor
    axes: Tensor
    scales: Tensor

    def project(self, z: Tensor) -> Tensor:
        """Coordinates of latent points along the axes: [N, K]."""
        return (z - self.center) @ self.axes.T

    def point(self, k: int, spreads: float) -> Tensor:
        """The latent point `spreads` standard deviations from the centre along axis k: [Z]."""
        return self.center + spreads * self.scales[k] * self.axes[k]


def fit_latent_map(mu: Tensor, k: int) -> LatentMap:
    """PCA of posterior means mu [N, Z]: the k leading directions (k <= Z), each with its std (> 0).

    Signs are fixed so that each axis's largest component is positive: a re-export of the same model
    gives the same knobs, not mirrored ones.
    """
    mu = mu.double()
    n, z_dim = mu.shape
    if n < 2:
        raise ValueError(f"the latent map needs at least 2 grains, got {n}")
    k = min(k, z_dim)
    center = mu.mean(0)
    _, s, vh = torch.linalg.svd(mu - center, full_matrices=False)
    axes = vh[:k]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    axes = axes * signs
    scales = (s[:k] / max(n - 1, 1) ** 0.5).clamp_min(1e-6)  # a collapsed direction still gets a sane knob
    return LatentMap(center.float(), axes.float().contiguous(), scales.float())
