"""The PCA baseline: the best *linear* k-dimensional code of grains, the floor a VAE with latent k must beat.

    pca = PCA.fit(gs.train, k=64)                  # one fit serves every k <= 64
    x_hat = pca.truncate(16).reconstruct(gs.val)   # project onto the top 16 components and back
    pca_baseline(gs.train, gs.val, k=16)           # {"sc": .., "lsd_db": .., "snr_db": ..}

The fit accumulates the 1024 x 1024 covariance in float64 over chunks of grains, so it takes any number
of grains (memory-mapped ones included) in bounded memory, then keeps the top eigenvectors. Like a VAE
decoder (docs/model-format.md), reconstructions are clipped to [-1, 1].
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from trainer.metrics import evaluate

_CHUNK = 4096  # grains per covariance update: 32 MB of float64


@dataclass(frozen=True)
class PCA:
    """mean [G], components [k, G] (orthonormal rows, by decreasing variance), their variances [k]."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    total_variance: float  # sum of all G variances: explained_variance / total_variance is the share kept

    @classmethod
    def fit(cls, grains: np.ndarray, k: int) -> PCA:
        """Principal components of grains [N, G] (N >= 2), top k kept."""
        n, g = grains.shape
        if not 1 <= k <= g:
            raise ValueError(f"k must be between 1 and the grain size {g}, got {k}")
        if n < 2:
            raise ValueError(f"PCA needs at least 2 training grains, got {n}")
        mean = np.zeros(g)
        for i in range(0, n, _CHUNK):
            mean += grains[i : i + _CHUNK].sum(axis=0, dtype=np.float64)
        mean /= n
        cov = np.zeros((g, g))
        for i in range(0, n, _CHUNK):
            centred = grains[i : i + _CHUNK].astype(np.float64) - mean
            cov += centred.T @ centred
        cov /= n - 1
        # torch's eigh: numpy's (OpenBLAS) can take 30x longer on a busy machine with threads fighting
        variances, vectors = (t.numpy() for t in torch.linalg.eigh(torch.from_numpy(cov)))  # ascending
        top = np.argsort(variances)[::-1][:k]
        return cls(
            mean=mean,
            components=np.ascontiguousarray(vectors[:, top].T),
            explained_variance=np.maximum(variances[top], 0.0),
            total_variance=float(np.trace(cov)),
        )

    @property
    def k(self) -> int:
        return len(self.components)

    def truncate(self, k: int) -> PCA:
        """The same fit with only its top k components (the optimal rank-k code is a prefix)."""
        if not 1 <= k <= self.k:
            raise ValueError(f"can truncate to 1..{self.k} components, not {k}")
        return PCA(self.mean, self.components[:k], self.explained_variance[:k], self.total_variance)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Grains [N, G] -> coordinates [N, k]."""
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Coordinates [N, k] -> float32 grains [N, G], clipped to [-1, 1]."""
        x = np.asarray(z, dtype=np.float64) @ self.components + self.mean
        return np.clip(x, -1.0, 1.0).astype(np.float32)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """Project grains onto the k components and back, in chunks: float32 [N, G]."""
        return np.concatenate([self.decode(self.encode(x[i : i + _CHUNK])) for i in range(0, len(x), _CHUNK)])


def pca_baseline(train: np.ndarray, val: np.ndarray, k: int, pitch_midi=None) -> dict:
    """Fit PCA with k components on train, reconstruct val: every metric of trainer.metrics.evaluate
    (pitch_midi [len(val)]: each validation grain's true pitch, for the synth set)."""
    pca = PCA.fit(train, k)
    return evaluate(val, pca.reconstruct(val), pitch_midi)


def pca_baseline_table(train: np.ndarray, val: np.ndarray, ks: Iterable[int], pitch_midi=None) -> list[dict]:
    """pca_baseline for several k from one fit: [{"k": k, "sc": .., "lsd_db": .., ..., "variance_kept":
    share of the training variance in the top k components}, ...]."""
    ks = sorted(set(ks))
    full = PCA.fit(train, ks[-1])
    rows = []
    for k in ks:
        pca = full.truncate(k)
        kept = float(pca.explained_variance.sum() / full.total_variance) if full.total_variance > 0 else 1.0
        rows.append({"k": k, **evaluate(val, pca.reconstruct(val), pitch_midi), "variance_kept": kept})
    return rows
