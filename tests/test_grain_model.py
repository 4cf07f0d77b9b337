"""The Grain-VAE's shapes, output range, loss composition and the multi-resolution STFT loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from trainer.grain_model import GrainVAE, GrainVAEConfig, count_parameters
from trainer.spectral import MultiResolutionSTFTLoss
from trainer.vae import kl_divergence

torch.set_num_threads(1)


def _sines(n: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    f = 100 + 3000 * torch.rand(n, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g)
    t = torch.arange(1024) / 22050
    return 0.8 * torch.sin(2 * math.pi * f * t + phase)


@pytest.mark.parametrize("decoder", ["conv", "noise"])
def test_shapes_and_output_range(decoder):
    torch.manual_seed(0)
    model = GrainVAE(GrainVAEConfig(decoder=decoder, latent_dim=12))
    mu, logvar = model.encode(_sines(5))
    assert mu.shape == logvar.shape == (5, 12)
    x_hat = model.decode(10 * torch.randn(7, 12))  # far outside the prior: still a valid grain
    assert x_hat.shape == (7, 1024) and x_hat.dtype == torch.float32
    assert torch.isfinite(x_hat).all() and x_hat.abs().max() <= 1.0


@pytest.mark.parametrize("decoder", ["conv", "noise"])
def test_decoder_scripts_and_is_deterministic(decoder):
    model = GrainVAE(GrainVAEConfig(decoder=decoder)).eval()
    z = torch.randn(3, 16)
    scripted = torch.jit.script(model.decoder)
    torch.testing.assert_close(scripted(z), model.decode(z), rtol=0, atol=1e-6)
    torch.testing.assert_close(model.decode(z), model.decode(z), rtol=0, atol=0)


def test_decoder_is_small_enough_for_a_pi():
    # Decode time is measured by bench/grain_vae.py; here only the size that makes it possible.
    model = GrainVAE(GrainVAEConfig())
    assert count_parameters(model.decoder) < 1_000_000


def test_loss_is_gaussian_nll_plus_beta_kl_plus_spectral():
    """With a fixed sigma the reconstruction term is exactly -log N(x; x^, sigma^2 I), summed over samples."""
    cfg = GrainVAEConfig(sigma=0.2, spectral_weight=0.5)
    model = GrainVAE(cfg)
    x = _sines(4)
    torch.manual_seed(7)
    out = model.forward_loss(x, beta=0.3)
    torch.manual_seed(7)  # replay the same reparameterisation noise by hand
    mu, logvar = model.encode(x)
    x_hat = model.decode(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))
    nll = -Normal(x_hat, 0.2).log_prob(x).sum(-1).mean()
    kl = kl_divergence(mu, logvar).mean()
    spectral = model.spectral(x, x_hat)
    torch.testing.assert_close(out["recon"], nll, rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(out["kl"], kl, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["loss"], nll + 0.3 * kl + 0.5 * 1024 * spectral, rtol=1e-5, atol=1e-2)
    assert out["kl_per_dim"].shape == (16,)
    torch.testing.assert_close(out["kl_per_dim"].sum(), out["kl"])


def test_learned_sigma_is_a_parameter_and_fixed_sigma_is_not():
    learned = GrainVAE(GrainVAEConfig())
    assert any(p is learned.log_sigma for p in learned.parameters())
    fixed = GrainVAE(GrainVAEConfig(sigma=0.1))
    assert all(p is not fixed.log_sigma for p in fixed.parameters())
    assert GrainVAE(GrainVAEConfig(spectral_weight=0)).forward_loss(_sines(2), 1.0).keys() >= {
        "loss",
        "recon",
        "kl",
    }


def test_spectral_loss_ignores_phase_but_not_timbre():
    loss = MultiResolutionSTFTLoss()
    t = torch.arange(1024) / 22050
    a = torch.sin(2 * math.pi * 440 * t)[None]
    shifted = torch.sin(2 * math.pi * 440 * t + 1.0)[None]  # same sound, other phase
    octave = torch.sin(2 * math.pi * 880 * t)[None]  # another sound
    assert loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(a, shifted).item() < 0.5 * loss(a, octave).item()
    assert (a - shifted).pow(2).mean() > 0.3  # while the time-domain error is large


def test_bad_config_names_the_problem():
    with pytest.raises(ValueError, match="conv, noise"):
        GrainVAEConfig(decoder="wavenet")
    with pytest.raises(ValueError, match="not divisible"):
        GrainVAEConfig(grain_size=1000)
    with pytest.raises(ValueError, match="sigma"):
        GrainVAEConfig(sigma=-1.0)


def test_bottom_transposed_conv_equals_pytorchs_own() -> None:
    """The matrix-product form of the decoder's first upsampling layer is the same function, same weights."""
    from trainer.grain_model import BottomConvTranspose1d

    torch.manual_seed(0)
    reference = torch.nn.ConvTranspose1d(64, 32, 8, stride=4, padding=2)
    fast = BottomConvTranspose1d(64, 32, 8, stride=4, padding=2)
    fast.load_state_dict(reference.state_dict())
    for batch, length in ((1, 4), (8, 4), (3, 16)):
        x = torch.randn(batch, 64, length)
        torch.testing.assert_close(fast(x), reference(x), rtol=1e-5, atol=1e-5)
    scripted = torch.jit.script(fast)
    x = torch.randn(2, 64, 4)
    torch.testing.assert_close(scripted(x), reference(x), rtol=1e-5, atol=1e-5)
