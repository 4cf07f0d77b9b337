"""The shared VAE core against torch.distributions: the closed forms must be exact."""

import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from trainer.vae import BetaSchedule, bernoulli_nll, gaussian_nll, reparameterize
from trainer.vae import kl_divergence as our_kl


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(64, 16, generator=g), torch.randn(64, 16, generator=g)
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(our_kl(mu, logvar), kl_divergence(q, p).sum(-1), rtol=1e-5, atol=1e-5)


def test_gaussian_nll_matches_normal_log_prob():
    g = torch.Generator().manual_seed(1)
    x, mean = torch.randn(8, 1024, generator=g), torch.randn(8, 1024, generator=g)
    for log_sigma in (-3.0, 0.0, 0.7):
        expected = -Normal(mean, torch.full_like(mean, log_sigma).exp()).log_prob(x).sum(-1)
        torch.testing.assert_close(gaussian_nll(x, mean, log_sigma), expected, rtol=1e-5, atol=1e-3)


def test_bernoulli_nll_matches_bernoulli_log_prob():
    g = torch.Generator().manual_seed(2)
    logits = 4 * torch.randn(8, 784, generator=g)
    x = (torch.rand(8, 784, generator=g) < 0.5).float()
    expected = -Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(bernoulli_nll(x, logits), expected, rtol=1e-5, atol=1e-3)


def test_reparameterize_has_the_posterior_moments():
    torch.manual_seed(3)
    mu, logvar = torch.full((200_000, 1), 1.5), torch.full((200_000, 1), 2 * torch.log(torch.tensor(0.5)))
    z = reparameterize(mu, logvar)
    assert abs(z.mean().item() - 1.5) < 0.01 and abs(z.std().item() - 0.5) < 0.01


def test_beta_schedule_warms_up_linearly():
    b = BetaSchedule(beta_max=0.5, warmup_steps=100)
    assert [b(0), b(50), b(100), b(1000)] == [0.0, 0.25, 0.5, 0.5]
    assert BetaSchedule(beta_max=1.0, warmup_steps=0)(0) == 1.0
