"""The Grain-VAE: a convolutional VAE of 1024-sample audio grains.

    grain x [B, G] ──strided Conv1d encoder──► (mu, logvar) [B, Z] ──z──► decoder ──► x^ [B, G] in [-1, 1]

Encoder: `depth` strided convolutions (stride 4, channels doubling from `width`), then a linear layer to the
Gaussian posterior q(z|x) = N(mu, diag(exp(logvar))). Two decoders, a choice in the config:

  "conv"   a linear layer to a short feature map, then `depth` transposed convolutions (stride 4, kernel 8)
           back to G samples, tanh. Cheap: about 3 M multiply-adds per grain at the defaults.
  "noise"  Bitton, Esling & Harada (2020), Neural Granular Sound Synthesis: an MLP predicts a magnitude
           response per STFT frame; it shapes a noise excitation in the frequency domain, the result is
           overlap-added and passed through a short learned FIR post-filter. The noise is a fixed buffer
           (drawn once from the seed), so decoding is deterministic and exports to TorchScript as is.

Loss per grain (trainer/vae.py has the pieces):

    loss = -log N(x; x^, sigma^2 I) + spectral_weight * G * MRSTFT(x, x^) + beta * KL(q(z|x) || N(0, I))

with -log N(x; x^, sigma^2 I) = sum_i (x_i - x^_i)^2 / (2 sigma^2) + G log sigma + G/2 log(2 pi).
The variance is one *learned global* log sigma by default (sigma-VAE, Rybkin et al. 2021): at its optimum
sigma^2 equals the mean squared error, so the balance between reconstruction and KL tunes itself instead of
hiding in a hand-set weight. `sigma` in the config fixes it instead. The multi-resolution STFT term
(trainer/spectral.py) is scaled by G so that it is a per-sample quantity like the NLL; it is on by default
because the benchmark (bench/grain_vae.py) shows better spectral convergence and log-spectral distance.

The default decoder is "noise": on the synth set, 4 minutes of one CPU thread each, it reached SC 0.662 and
LSD 11.4 dB against the conv decoder's 0.873 and 17.2 dB (PCA with k = 16: 0.696 and 27.3 dB), took more
steps per minute, and decodes a grain in about 0.11 ms at batch 1 on one thread against 0.26 ms.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from trainer.spectral import DEFAULT_FFT_SIZES, MultiResolutionSTFTLoss
from trainer.vae import gaussian_nll, kl_divergence, kl_per_dim, reparameterize

DECODERS = ("conv", "noise")
STRIDE = 4
MIN_LOG_SIGMA = math.log(1e-4)  # the learned sigma cannot shrink past -80 dB: keeps the NLL finite


@dataclass
class GrainVAEConfig:
    """Everything that defines a Grain-VAE's shape and loss; stored in checkpoints and exported models."""

    grain_size: int = 1024
    latent_dim: int = 16
    width: int = 32  # channels of the outermost conv layers; doubles towards the latent
    depth: int = 4  # stride-4 layers: 1024 -> 256 -> 64 -> 16 -> 4
    max_width: int = 256
    decoder: str = "noise"  # "noise" or "conv": noise won the benchmark (see the module docstring)
    sigma: float | None = None  # fixed std of the Gaussian likelihood; None = learned global log sigma
    spectral_weight: float = 1.0  # 0 turns the multi-resolution STFT term off
    fft_sizes: tuple[int, ...] = field(default=DEFAULT_FFT_SIZES)
    noise_fft: int = 128  # "noise" decoder: frame size of the filtered-noise synthesis
    fir_taps: int = 31  # "noise" decoder: length of the learned post-filter

    def __post_init__(self):
        self.fft_sizes = tuple(self.fft_sizes)
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder {self.decoder!r} is unknown: choose one of {', '.join(DECODERS)}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.grain_size % STRIDE**self.depth:
            raise ValueError(
                f"grain_size {self.grain_size} is not divisible by {STRIDE}^depth = {STRIDE**self.depth}: "
                f"lower depth (now {self.depth}) or use a grain size that is a power of 4 times 4"
            )
        if self.sigma is not None and self.sigma <= 0:
            raise ValueError(f"sigma must be > 0 (or None for a learned sigma), got {self.sigma}")

    def channels(self) -> list[int]:
        """Channels after each strided encoder layer: width, 2*width, ... capped at max_width."""
        return [min(self.width * 2**i, self.max_width) for i in range(self.depth)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fft_sizes"] = list(self.fft_sizes)
        return d


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


class ConvEncoder(nn.Module):
    """x [B, G] -> (mu, logvar) [B, Z] through `depth` stride-4 convolutions (kernel 9, padding 4)."""

    def __init__(self, cfg: GrainVAEConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in cfg.channels():
            layers += [nn.Conv1d(c_in, c, kernel_size=2 * STRIDE + 1, stride=STRIDE, padding=STRIDE), _act()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        bottom = cfg.grain_size // STRIDE**cfg.depth
        self.to_posterior = nn.Linear(c_in * bottom, 2 * cfg.latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.convs(x.unsqueeze(1)).flatten(1)
        mu, logvar = self.to_posterior(h).chunk(2, dim=-1)
        return mu, logvar.clamp(-16.0, 8.0)


class BottomConvTranspose1d(nn.ConvTranspose1d):
    """nn.ConvTranspose1d computed as one matrix product and an overlap-add (fold): same weights, same result.

    At the decoder's bottom the input is only a few samples long and very wide (256 channels x 4), where
    PyTorch's CPU kernel for transposed convolutions is pathologically slow at batch 1 (~0.9 ms on this
    machine, 8x the matrix product). Each input sample i adds weight[:, :, k] * x[:, i] to output
    i * stride - padding + k; the product gives every such column at once and fold adds them in place.
    """

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        b, c_in, length = x.shape
        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        cols = torch.matmul(x.transpose(1, 2), self.weight.reshape(c_in, -1)).transpose(1, 2)
        full = (length - 1) * s + k
        y = torch.nn.functional.fold(cols, output_size=(1, full), kernel_size=(1, k), stride=(1, s))
        y = y.view(b, self.out_channels, full)[:, :, p : full - p]
        bias = self.bias
        if bias is not None:
            y = y + bias.unsqueeze(1)
        return y


class ConvDecoder(nn.Module):
    """z [B, Z] -> x^ [B, G] in [-1, 1]: linear to [C, G / 4^depth], then stride-4 transposed convolutions."""

    def __init__(self, cfg: GrainVAEConfig):
        super().__init__()
        chans = cfg.channels()[::-1]  # widest first
        self.bottom = cfg.grain_size // STRIDE**cfg.depth
        self.top_channels = chans[0]
        self.from_latent = nn.Linear(cfg.latent_dim, chans[0] * self.bottom)
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(chans, chans[1:] + [1], strict=True)):
            # kernel = 2 * stride: every output sample gets exactly two taps per channel, no uneven overlap.
            # The last layer writes the waveform itself: a full-rate conv after it would double decode time.
            kind = BottomConvTranspose1d if i == 0 else nn.ConvTranspose1d
            layers += [_act(), kind(c_in, c_out, 2 * STRIDE, stride=STRIDE, padding=STRIDE // 2)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.from_latent(z).view(z.shape[0], self.top_channels, self.bottom)
        return torch.tanh(self.net(h).squeeze(1))


class NoiseFilterDecoder(nn.Module):
    """z -> frequency responses per frame -> filtered fixed noise, overlap-added -> FIR post-filter -> tanh.

    After Bitton, Esling & Harada (2020). Frames of `noise_fft` samples with hop noise_fft / 2 and a Hann
    window (which sums to one at that hop), so the grain is sum_t w(n - t h) * IFFT(H_t * N_t).
    """

    def __init__(self, cfg: GrainVAEConfig, seed: int = 0):
        super().__init__()
        self.n_fft = cfg.noise_fft
        self.hop = cfg.noise_fft // 2
        self.grain_size = cfg.grain_size
        self.frames = cfg.grain_size // self.hop + 1
        self.bins = self.n_fft // 2 + 1
        hidden = max(4 * cfg.width, 128)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.latent_dim, hidden),
            _act(),
            nn.Linear(hidden, hidden * 2),
            _act(),
            nn.Linear(hidden * 2, self.frames * self.bins),
        )
        g = torch.Generator().manual_seed(seed)
        noise = torch.rand(self.frames, self.n_fft, generator=g) * 2 - 1
        self.register_buffer("noise_spectrum", torch.view_as_real(torch.fft.rfft(noise, dim=-1)))
        self.register_buffer("window", torch.hann_window(self.n_fft))
        self.post_filter = nn.Conv1d(1, 1, cfg.fir_taps, padding=cfg.fir_taps // 2, bias=False)
        with torch.no_grad():  # start as the identity filter
            self.post_filter.weight.zero_()
            self.post_filter.weight[0, 0, cfg.fir_taps // 2] = 1.0

    def forward(self, z: Tensor) -> Tensor:
        b = z.shape[0]
        # softplus-free magnitude: exp of a log-response spans the dynamic range of audio evenly.
        gain = torch.exp(self.mlp(z).view(b, self.frames, self.bins).clamp(max=6.0) - 4.0)
        noise = torch.view_as_complex(self.noise_spectrum)
        frames = torch.fft.irfft(noise.unsqueeze(0) * gain, n=self.n_fft, dim=-1) * self.window
        # Overlap-add with fold: frames [B, n_fft, T] -> signal [B, 1, (T - 1) * hop + n_fft].
        length = (self.frames - 1) * self.hop + self.n_fft
        y = torch.nn.functional.fold(
            frames.transpose(1, 2), output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop)
        )
        start = self.n_fft // 2  # centre the frames on the grain like a centred STFT
        y = y.view(b, 1, length)[:, :, start : start + self.grain_size]
        return torch.tanh(self.post_filter(y).squeeze(1))


class GrainVAE(nn.Module):
    """The Grain-VAE. `encode`, `decode` and `reconstruct` for use; `forward_loss` for trainer/loop.py."""

    def __init__(self, cfg: GrainVAEConfig | None = None):
        super().__init__()
        self.cfg = cfg or GrainVAEConfig()
        self.encoder = ConvEncoder(self.cfg)
        self.decoder = ConvDecoder(self.cfg) if self.cfg.decoder == "conv" else NoiseFilterDecoder(self.cfg)
        if self.cfg.sigma is None:
            self.log_sigma = nn.Parameter(torch.tensor(math.log(0.1)))
        else:
            self.register_buffer("log_sigma", torch.tensor(math.log(self.cfg.sigma)))
        self.spectral = MultiResolutionSTFTLoss(self.cfg.fft_sizes) if self.cfg.spectral_weight > 0 else None

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance, each [B, Z]."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """Grains [B, G] in [-1, 1] from latent points [B, Z]."""
        return self.decoder(z)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """decode(posterior mean): the deterministic reconstruction used for metrics and plots."""
        return self.decode(self.encode(x)[0])

    def forward_loss(self, x: Tensor, beta: float) -> dict[str, Tensor]:
        mu, logvar = self.encode(x)
        x_hat = self.decode(reparameterize(mu, logvar))
        log_sigma = self.log_sigma.clamp(min=MIN_LOG_SIGMA)
        recon = gaussian_nll(x, x_hat.float(), log_sigma).mean()
        kl = kl_divergence(mu.float(), logvar.float()).mean()
        loss = recon + beta * kl
        out = {"recon": recon, "kl": kl, "kl_per_dim": kl_per_dim(mu.float(), logvar.float()).mean(0)}
        if self.spectral is not None:
            spectral = self.spectral(x, x_hat)
            loss = loss + self.cfg.spectral_weight * self.cfg.grain_size * spectral
            out["spectral"] = spectral
        out["loss"] = loss
        out["sigma"] = log_sigma.detach().exp()
        out["mse"] = (x - x_hat.float()).pow(2).mean().detach()
        return out


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
