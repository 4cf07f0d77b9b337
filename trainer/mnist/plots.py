"""Figures of an MNIST VAE run: ELBO curves, samples, reconstructions, and the 2-D latent manifold.

Each function writes one PNG and returns its path. Images show the decoder's *mean*, sigmoid(logits), i.e.
the probability of each pixel being on, as Kingma & Welling's figures do (a binary sample is noisier).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works headless, on a workstation over ssh, in CI
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from trainer.mnist.data import IMAGE_SIZE  # noqa: E402
from trainer.mnist.model import MnistVAE, eval_mode  # noqa: E402


def tile(images: Tensor, rows: int, cols: int, pad: int = 1) -> Tensor:
    """[rows*cols, 784] images as one [rows*(28+pad), cols*(28+pad)] picture with grey gutters."""
    s = IMAGE_SIZE + pad
    canvas = torch.full((rows * s, cols * s), 0.5)
    for i, image in enumerate(images[: rows * cols]):
        r, c = divmod(i, cols)
        canvas[r * s : r * s + IMAGE_SIZE, c * s : c * s + IMAGE_SIZE] = image.reshape(IMAGE_SIZE, IMAGE_SIZE)
    return canvas


def _save_picture(picture: Tensor, title: str, path: Path, inches: float = 6.0) -> Path:
    fig, ax = plt.subplots(figsize=(inches, inches * picture.shape[0] / picture.shape[1] + 0.4))
    ax.imshow(picture.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_elbo_curves(train: list[tuple[int, float]], test: list[tuple[int, float]], path: Path, *,
                     images_per_step: int, paper_level: float | None = None) -> Path:
    """ELBO (nats per image) against training images seen, for training batches and the test set.

    train and test are (step, elbo) pairs. The x axis counts images, like the paper's "# training samples
    evaluated", so runs with different batch sizes compare. The y axis is cut at the first test value so the
    interesting end is readable; warm-up's early values fall below it.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if train:
        steps, values = zip(*train, strict=True)
        ax.plot([s * images_per_step for s in steps], values, lw=1, alpha=0.7,
                label="train (mean batch ELBO since the last point)")
    if test:
        steps, values = zip(*test, strict=True)
        ax.plot([s * images_per_step for s in steps], values, "o-", ms=3, label="test (fixed binarisation)")
    if paper_level is not None:
        label = f"Kingma & Welling, read from Fig. 2: {paper_level:g}"
        ax.axhline(paper_level, color="gray", ls="--", lw=1, label=label)
    everything = [v for _, v in train + test]
    if everything:
        top = max(everything)
        bottom = test[0][1] if test else min(everything)
        ax.set_ylim(min(bottom, top - 10) - 2, top + 3)
    ax.set_xscale("log")
    ax.set_xlabel("training images seen")
    ax.set_ylabel("ELBO (nats per image, higher is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@torch.no_grad()
def plot_samples(model: MnistVAE, path: Path, *, n: int = 100, seed: int = 0) -> Path:
    """A 10x10 grid of decoded prior samples z ~ N(0, I): what the model thinks digits look like."""
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    with eval_mode(model):
        images = torch.sigmoid(model.decode(z))
    side = int(n**0.5)
    return _save_picture(tile(images, side, side), "samples from the prior", path)


@torch.no_grad()
def plot_reconstructions(model: MnistVAE, test_binary: Tensor, path: Path, *, n: int = 16) -> Path:
    """Rows in pairs: binary test images, then their reconstructions (decoder mean at z = mu)."""
    x = test_binary[:n]
    with eval_mode(model):
        recon = torch.sigmoid(model.decode(model.encode(x)[0]))
    cols = 8
    rows = []
    for start in range(0, n, cols):
        rows += [x[start : start + cols], recon[start : start + cols]]
    return _save_picture(tile(torch.cat(rows), len(rows), cols),
                         "test images (odd rows) and reconstructions (even rows)", path)


@torch.no_grad()
def plot_manifold(model: MnistVAE, path: Path, *, n: int = 20) -> Path:
    """The learned 2-D manifold, as Kingma & Welling's Figure 4: decode an n x n grid over the latent plane.

    As in the paper, linearly spaced points of the unit square go through the inverse Gaussian CDF, so the
    grid covers the prior evenly in probability rather than in distance.
    """
    if model.latent_dim != 2:
        raise ValueError(f"the manifold plot needs a 2-D latent space, this model has {model.latent_dim}")
    u = torch.linspace(0.5 / n, 1 - 0.5 / n, n)
    coords = torch.special.ndtri(u)
    z1 = coords.repeat(n)
    z2 = coords.flip(0).repeat_interleave(n)  # top row = largest z2, as on a plot's y axis
    with eval_mode(model):
        images = torch.sigmoid(model.decode(torch.stack([z1, z2], dim=1)))
    return _save_picture(tile(images, n, n, pad=0), "learned MNIST manifold (2-D latent)", path, inches=8)


@torch.no_grad()
def plot_latent_scatter(model: MnistVAE, test_binary: Tensor, labels: Tensor, path: Path) -> Path:
    """Posterior means of the test images in a 2-D latent space, coloured by digit."""
    if model.latent_dim != 2:
        raise ValueError(f"the latent scatter needs a 2-D latent space, this model has {model.latent_dim}")
    with eval_mode(model):
        mu, _ = model.encode(test_binary)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    points = ax.scatter(mu[:, 0], mu[:, 1], c=labels, cmap="tab10", s=2, alpha=0.6)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title("posterior means of the test set")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
