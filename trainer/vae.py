"""The VAE core shared by the Grain-VAE and the MNIST VAE: one implementation, two encoder/decoder pairs.

A VAE maximises the evidence lower bound (ELBO) of each example x:

    ELBO(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)),   q(z|x) = N(mu, diag(exp(logvar))), p(z) = N(0, I)

We minimise  -E[log p(x|z)] + beta * KL  with one reparameterised sample z = mu + exp(logvar/2) * eps.
beta rises linearly from 0 to beta_max during warm-up (Bowman et al. 2016; the seed's "beta from 0 to 1"),
so the decoder learns to use z before the KL term pulls the posterior onto the prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I): a sample whose gradient flows into mu and logvar."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) in closed form, per example and latent dimension, in nats.

    KL = 0.5 * (mu^2 + exp(logvar) - 1 - logvar). Shape [B, Z].
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(q(z|x) || N(0, I)) summed over latent dimensions: shape [B]."""
    return kl_per_dim(mu, logvar).sum(dim=-1)


def gaussian_nll(x: Tensor, mean: Tensor, log_sigma: Tensor | float) -> Tensor:
    """Negative log-likelihood of x under N(mean, sigma^2 I), summed over all but the batch dimension.

    -log p(x|z) = sum_i [ (x_i - mean_i)^2 / (2 sigma^2) + log sigma + 0.5 log(2 pi) ].
    log_sigma is a scalar (fixed, or a learned global parameter); shape [B].
    """
    log_sigma = torch.as_tensor(log_sigma, dtype=x.dtype, device=x.device)
    per_element = 0.5 * (x - mean).pow(2) * torch.exp(-2.0 * log_sigma) + log_sigma + 0.5 * LOG_2PI
    return per_element.flatten(1).sum(dim=1)


def bernoulli_nll(x: Tensor, logits: Tensor) -> Tensor:
    """Negative log-likelihood of binary x under Bernoulli(sigmoid(logits)), summed per example: shape [B].

    log p(x|z) = sum_i x_i log p_i + (1 - x_i) log(1 - p_i), p_i = sigmoid(l_i); written on logits as
    x*l - softplus(l), which is exactly minus binary cross-entropy with logits and stays finite for any l.
    """
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def active_units(mu_over_data: Tensor, threshold: float = 1e-2) -> int:
    """Latent dimensions whose posterior mean varies across examples (Burda et al. 2016): Cov_x(E_q[z]) > t.

    A collapsed dimension has the same mean for every input: it carries no information.
    """
    return int((mu_over_data.var(dim=0) > threshold).sum().item())


@dataclass(frozen=True)
class BetaSchedule:
    """beta(step): linear warm-up from 0 to beta_max over warmup_steps, then constant."""

    beta_max: float = 1.0
    warmup_steps: int = 10_000

    def __call__(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return self.beta_max
        return self.beta_max * min(1.0, step / self.warmup_steps)
