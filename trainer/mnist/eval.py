"""Scoring an MNIST VAE on binary test images: the ELBO, and the importance-weighted log-likelihood.

Both are in nats per image (summed over 784 pixels; higher is better; Kingma & Welling's Figure 2 and
Burda et al.'s tables use the same unit).

The ELBO is a lower bound on log p(x). The importance-weighted estimate (Burda, Grosse & Salakhutdinov
2016, "IWAE") uses the encoder as a proposal for k samples z_1..z_k ~ q(z|x):

    log p(x) >= L_k(x) = log (1/k) sum_j w_j,      w_j = p(x|z_j) p(z_j) / q(z_j|x)

L_1 is the ELBO, L_k grows with k and tends to log p(x) as k -> infinity, so with k = 1000 or more it is
the usual "test log-likelihood" of a VAE. We compute it in log space with logsumexp.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from trainer.mnist.model import MnistVAE, eval_mode
from trainer.vae import bernoulli_nll, kl_divergence


@torch.no_grad()
def elbo_per_image(model: MnistVAE, x: Tensor, *, samples: int = 1, batch_size: int = 1000,
                   generator: torch.Generator | None = None) -> Tensor:
    """ELBO of each binary image in x [N, 784], averaged over `samples` draws of z: shape [N], nats."""
    out = []
    with eval_mode(model):
        for batch in x.split(batch_size):
            mu, logvar = model.encode(batch)
            kl = kl_divergence(mu, logvar)
            recon = torch.zeros(len(batch))
            for _ in range(samples):
                eps = torch.randn(mu.shape, generator=generator)
                recon += bernoulli_nll(batch, model.decode(mu + torch.exp(0.5 * logvar) * eps))
            out.append(-(recon / samples + kl))
    return torch.cat(out)


def mean_elbo(model: MnistVAE, x: Tensor, *, samples: int = 1, seed: int = 0) -> float:
    """Mean ELBO over the binary images x, nats per image (a fixed seed makes it repeatable)."""
    generator = torch.Generator().manual_seed(seed)
    return elbo_per_image(model, x, samples=samples, generator=generator).mean().item()


@torch.no_grad()
def iw_log_likelihood(model: MnistVAE, x: Tensor, *, k: int = 1000, chunk: int = 20_000,
                      generator: torch.Generator | None = None) -> Tensor:
    """Importance-weighted estimate L_k of log p(x) for each binary image in x [N, 784]: shape [N], nats.

    log w = log p(x|z) + log p(z) - log q(z|x); with z = mu + sigma * eps the Gaussian terms reduce to
    log p(z) - log q(z|x) = sum_d 0.5 * (eps_d^2 - z_d^2 + logvar_d) (the log 2 pi terms cancel).
    `chunk` bounds the decoder's batch (images x samples) and so the memory: about chunk * 3 kB.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    images_per_pass = max(1, chunk // k)
    out = []
    with eval_mode(model):
        for batch in x.split(images_per_pass):
            mu, logvar = model.encode(batch)  # [B, Z]
            eps = torch.randn((k, *mu.shape), generator=generator)  # [k, B, Z]
            z = mu + torch.exp(0.5 * logvar) * eps
            log_prior_over_q = 0.5 * (eps.pow(2) - z.pow(2) + logvar).sum(-1)  # [k, B]
            logits = model.decode(z.reshape(-1, mu.shape[1]))  # [k*B, 784]
            log_lik = -bernoulli_nll(batch.repeat(k, 1), logits).reshape(k, len(batch))
            out.append(torch.logsumexp(log_lik + log_prior_over_q, dim=0) - math.log(k))
    return torch.cat(out)


def evaluate(model: MnistVAE, test_binary: Tensor, *, iw_k: int = 1000, iw_images: int | None = 1000,
             seed: int = 0) -> dict:
    """The figures of a results table: test ELBO on every image, L_k on the first iw_images (None = all).

    L_k costs k decoder passes per image, so by default it runs on the first 1000 test images; the ELBO on
    that same subset is reported beside it so the two compare like with like.
    """
    g = torch.Generator().manual_seed(seed)
    elbo = elbo_per_image(model, test_binary, generator=g)
    subset = test_binary if iw_images is None else test_binary[:iw_images]
    result = {"test_elbo": elbo.mean().item(), "test_elbo_stderr": (elbo.std() / math.sqrt(len(elbo))).item(),
              "test_images": len(test_binary)}
    if iw_k > 0:
        iw = iw_log_likelihood(model, subset, k=iw_k, generator=g)
        result.update({"iw_k": iw_k, "iw_images": len(subset), "test_iw_ll": iw.mean().item(),
                       "test_iw_ll_stderr": (iw.std() / math.sqrt(len(iw))).item(),
                       "test_elbo_on_iw_images": elbo[: len(subset)].mean().item()})
    return result
