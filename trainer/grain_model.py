"""The Grain-VAE: a VAE of 1024-sample audio grains whose default voice keeps the pitch of its sounds.

    grain x [B, G] ──encoder──► (mu, logvar) [B, Z] ──z──► decoder ──► x^ [B, G] in [-1, 1]

Two encoders to the Gaussian posterior q(z|x) = N(mu, diag(exp(logvar))):

  "spectral"  (default) an MLP on the grain's log spectrum (1024-point), its 128-sample frames' log
              spectra and its pitch (trainer/pitch.py). With the harmonic decoder, latent 0 is the
              measured pitch itself (octaves above 220 Hz) for voiced grains.
  "conv"      `depth` strided convolutions (stride 4, channels doubling from `width`), then a linear layer.

Three decoders:

  "harmonic"  (default) DDSP-style (Engel et al. 2020): an oscillator bank at f0 = 220 Hz * 2^z0 with
              learned partial amplitudes and loudness envelope, plus filtered noise. It can sing: the
              partials sit exactly on the harmonics of the note, which a noise or convolutional decoder
              only approximates.
  "noise"     Bitton, Esling & Harada (2020), Neural Granular Sound Synthesis: an MLP predicts a magnitude
              response per STFT frame; it shapes a noise excitation in the frequency domain, the result is
              overlap-added and passed through a short learned FIR post-filter. The noise is a fixed buffer
              (drawn once from the seed), so decoding is deterministic and exports to TorchScript as is.
              128-sample frames are 172 Hz bins: it paints a coloured-noise envelope, never a harmonic.
  "conv"      a linear layer to a short feature map, then `depth` transposed convolutions (stride 4,
              kernel 8) back to G samples, tanh.

Loss per grain (trainer/vae.py has the pieces):

    noise, conv: loss = -log N(x; x^, sigma^2 I) + spectral_weight * G * MRSTFT(x, x^) + beta * KL
    harmonic:    loss =                            spectral_weight * G * MRSTFT(x, x^) + beta * KL

with -log N(x; x^, sigma^2 I) = sum_i (x_i - x^_i)^2 / (2 sigma^2) + G log sigma + G/2 log(2 pi) and
KL = KL(q(z|x) || N(0, I)). The variance is one *learned global* log sigma by default (sigma-VAE, Rybkin et
al. 2021). The harmonic decoder's partials start at phase 0, not at the source's phases, so a waveform
likelihood would only pull it towards silence: its reconstruction term is the multi-resolution STFT loss
(trainer/spectral.py, with a 1024-point resolution added for the partials of low notes), scaled by G so
that it is a per-sample quantity and beta keeps its meaning.

bench/grain_vae.py compares the decoders with PCA on synth, instrument notes and drums; its figures are in
the README.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from trainer import SAMPLE_RATE
from trainer.pitch import VOICED_PEAK, grain_pitch
from trainer.spectral import DEFAULT_FFT_SIZES, MultiResolutionSTFTLoss
from trainer.vae import gaussian_nll, kl_divergence, kl_per_dim, reparameterize

DECODERS = ("harmonic", "noise", "conv")
ENCODERS = ("spectral", "conv")
HARMONIC_FFT_SIZES = (64, 128, 256, 512, 1024)  # 1024: 21.5 Hz bins, fine enough for a low note's partials
STRIDE = 4
TABLE_SIZE = 2048  # harmonic decoder's wavetable: 16 samples a cycle of partial 128
F0_RANGE_HZ = (40.0, 2400.0)  # what the harmonic decoder can play: wider than trainer/pitch.py measures
PITCH_REFERENCE_HZ = 220.0  # latent 0 = 0 plays A3; +1 is an octave up (the harmonic decoder's pitch axis)
PITCH_SIGMA_OCTAVES = 0.005  # posterior std of a voiced grain's pitch coordinate: 6 cents
MIN_LOG_SIGMA = math.log(1e-4)  # the learned sigma cannot shrink past -80 dB: keeps the NLL finite


@dataclass
class GrainVAEConfig:
    """Everything that defines a Grain-VAE's shape and loss; stored in checkpoints and exported models."""

    grain_size: int = 1024
    latent_dim: int = 16
    width: int = 32  # channels of the outermost conv layers; doubles towards the latent
    depth: int = 4  # stride-4 layers: 1024 -> 256 -> 64 -> 16 -> 4
    max_width: int = 256
    decoder: str = "harmonic"  # harmonic won the benchmark (see the module docstring); noise, conv
    encoder: str = "spectral"  # spectral: MLP on log spectra and pitch; conv: strided convolutions
    sigma: float | None = None  # fixed std of the Gaussian likelihood; None = learned global log sigma
    spectral_weight: float = 1.0  # 0 turns the multi-resolution STFT term off
    fft_sizes: tuple[int, ...] | None = None  # None: HARMONIC_FFT_SIZES for "harmonic", else the defaults
    noise_fft: int = 128  # "noise" and "harmonic": frame size of the filtered-noise synthesis
    fir_taps: int = 31  # "noise" decoder: length of the learned post-filter
    harmonics: int = 128  # "harmonic" decoder: partials of the oscillator bank
    hidden: int = 256  # "harmonic" decoder and "spectral" encoder: width of their MLPs

    def __post_init__(self):
        if self.fft_sizes is None:
            self.fft_sizes = HARMONIC_FFT_SIZES if self.decoder == "harmonic" else DEFAULT_FFT_SIZES
        self.fft_sizes = tuple(self.fft_sizes)
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder {self.decoder!r} is unknown: choose one of {', '.join(DECODERS)}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder {self.encoder!r} is unknown: choose one of {', '.join(ENCODERS)}")
        if self.decoder == "harmonic" and self.encoder != "spectral":
            raise ValueError("the harmonic decoder needs the spectral encoder (it measures the pitch)")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.grain_size % STRIDE**self.depth:
            raise ValueError(
                f"grain_size {self.grain_size} is not divisible by {STRIDE}^depth = {STRIDE**self.depth}: "
                f"lower depth (now {self.depth}) or use a grain size that is a power of 4 times 4"
            )
        if self.sigma is not None and self.sigma <= 0:
            raise ValueError(f"sigma must be > 0 (or None for a learned sigma), got {self.sigma}")

    @classmethod
    def from_dict(cls, d: dict) -> GrainVAEConfig:
        """The config a checkpoint stored; runs from before the spectral encoder had the conv one."""
        return cls(**({"encoder": "conv"} | d))

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


class SpectralEncoder(nn.Module):
    """x [B, G] -> (mu, logvar) [B, Z] by an MLP on what a grain sounds like, not on its waveform:

      - the log magnitude of its Hann-windowed G-point spectrum (21.5 Hz bins at G = 1024: the partials);
      - the log magnitudes of its frames of `noise_fft` samples (how the spectrum moves in 46 ms: a hit);
      - its pitch by normalised autocorrelation (trainer/pitch.py): log2(f0 / 440 Hz) and the peak height.
    The waveform's phase is in none of them, so two grains cut a few samples apart encode alike.

    With `pitch_coordinate` (the harmonic decoder's), latent 0 *is* the pitch: for a voiced grain its
    posterior is N(log2(f0 / PITCH_REFERENCE_HZ), PITCH_SIGMA_OCTAVES^2), measured, not learned, so the
    decoder plays the source's f0 to within a few cents. The weight of the measurement rises from 0 at
    autocorrelation peak 0.6 to 1 at 0.8 (VOICED_PEAK); below that (noise, a drum) the MLP places it freely.
    """

    def __init__(self, cfg: GrainVAEConfig, pitch_coordinate: bool = False):
        super().__init__()
        self.pitch_coordinate = pitch_coordinate
        self.log2_reference = math.log2(PITCH_REFERENCE_HZ)
        self.pitch_logvar = 2.0 * math.log(PITCH_SIGMA_OCTAVES)
        self.voiced_peak = VOICED_PEAK
        self.frame = cfg.noise_fft
        self.register_buffer("window", torch.hann_window(cfg.grain_size))
        self.register_buffer("frame_window", torch.hann_window(cfg.noise_fft))
        frames = cfg.grain_size // cfg.noise_fft
        features = cfg.grain_size // 2 + 1 + frames * (cfg.noise_fft // 2 + 1) + 2
        self.mlp = nn.Sequential(
            nn.Linear(features, cfg.hidden),
            _act(),
            nn.Linear(cfg.hidden, cfg.hidden),
            _act(),
            nn.Linear(cfg.hidden, 2 * cfg.latent_dim),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        whole = torch.fft.rfft(x * self.window, dim=-1).abs()
        framed = x.reshape(x.shape[0], -1, self.frame) * self.frame_window
        parts = torch.fft.rfft(framed, dim=-1).abs().flatten(1)
        f0, peak = grain_pitch(x)
        octaves = torch.log2(f0.clamp(min=1.0)) - self.log2_reference
        octaves = torch.where(f0 > 0, octaves, torch.zeros_like(f0))
        spectra = [0.2 * torch.log(whole + 1e-4), 0.2 * torch.log(parts + 1e-4)]
        features = torch.cat(spectra + [octaves.unsqueeze(1), peak.unsqueeze(1)], dim=1)
        mu, logvar = self.mlp(features).chunk(2, dim=-1)
        logvar = logvar.clamp(-16.0, 8.0)
        if self.pitch_coordinate:
            w = ((peak - 0.6) / (self.voiced_peak - 0.6)).clamp(0.0, 1.0)
            mu0 = w * octaves + (1.0 - w) * mu[:, 0]
            logvar0 = w * self.pitch_logvar + (1.0 - w) * logvar[:, 0]
            mu = torch.cat([mu0.unsqueeze(1), mu[:, 1:]], dim=1)
            logvar = torch.cat([logvar0.unsqueeze(1), logvar[:, 1:]], dim=1)
        return mu, logvar


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
        self.register_buffer("noise_spectrum", fixed_noise_spectrum(self.frames, self.n_fft, seed))
        self.register_buffer("window", torch.hann_window(self.n_fft))
        self.post_filter = nn.Conv1d(1, 1, cfg.fir_taps, padding=cfg.fir_taps // 2, bias=False)
        with torch.no_grad():  # start as the identity filter
            self.post_filter.weight.zero_()
            self.post_filter.weight[0, 0, cfg.fir_taps // 2] = 1.0

    def forward(self, z: Tensor) -> Tensor:
        b = z.shape[0]
        # softplus-free magnitude: exp of a log-response spans the dynamic range of audio evenly.
        gain = torch.exp(self.mlp(z).view(b, self.frames, self.bins).clamp(max=6.0) - 4.0)
        y = filtered_noise(gain, self.noise_spectrum, self.window, self.hop, self.grain_size)
        return torch.tanh(self.post_filter(y.unsqueeze(1)).squeeze(1))


def fixed_noise_spectrum(frames: int, n_fft: int, seed: int) -> Tensor:
    """The rfft of `frames` frames of uniform noise drawn from `seed`, as real pairs [frames, bins, 2]."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(frames, n_fft, generator=g) * 2 - 1
    return torch.view_as_real(torch.fft.rfft(noise, dim=-1))


def filtered_noise(gain: Tensor, noise_spectrum: Tensor, window: Tensor, hop: int, grain_size: int) -> Tensor:
    """Noise frames shaped by gain [B, T, bins] in the frequency domain, windowed, overlap-added: [B, G]."""
    b, frames = gain.shape[0], gain.shape[1]
    n_fft = window.shape[0]
    noise = torch.view_as_complex(noise_spectrum)
    shaped = torch.fft.irfft(noise.unsqueeze(0) * gain, n=n_fft, dim=-1) * window
    # Overlap-add with fold: frames [B, n_fft, T] -> signal [B, 1, (T - 1) * hop + n_fft].
    length = (frames - 1) * hop + n_fft
    y = torch.nn.functional.fold(
        shaped.transpose(1, 2), output_size=(1, length), kernel_size=(1, n_fft), stride=(1, hop)
    )
    start = n_fft // 2  # centre the frames on the grain like a centred STFT
    return y.view(b, length)[:, start : start + grain_size]


class HarmonicDecoder(nn.Module):
    """z -> f0, partial amplitudes, envelope and noise filters -> harmonic oscillator bank + filtered noise.

    After DDSP (Engel et al. 2020) at grain scale. f0 is latent 0 read as octaves above PITCH_REFERENCE_HZ
    (clamped to F0_RANGE_HZ), constant over the grain: the spectral encoder writes the measured pitch there.
    An MLP maps z to
      - the shape of the spectrum: a softmax over `harmonics` partials at f0, 2 f0, ... (those at or above
        Nyquist get nothing, so nothing aliases);
      - the harmonic part's loudness at the grain's noise frames (hop noise_fft / 2), linearly interpolated
        to every sample: attacks and decays within the grain;
      - a magnitude response per noise frame for the filtered-noise part (breath, bow, the hit of a drum),
        synthesised exactly as in NoiseFilterDecoder.
    The grain is their sum. Partials start at phase 0: the losses compare magnitudes, and a grain's phase is
    not heard once Pd windows and scatters it.

    """

    def __init__(self, cfg: GrainVAEConfig, seed: int = 0):
        super().__init__()
        self.grain_size = cfg.grain_size
        self.hop = cfg.noise_fft // 2
        self.frames = cfg.grain_size // self.hop + 1
        self.bins = cfg.noise_fft // 2 + 1
        self.harmonics = cfg.harmonics
        self.sample_rate = float(SAMPLE_RATE)
        self.table_size = TABLE_SIZE
        self.log2_reference = math.log2(PITCH_REFERENCE_HZ)
        self.f0_min, self.f0_max = F0_RANGE_HZ
        self.trunk = nn.Sequential(
            nn.Linear(cfg.latent_dim, cfg.hidden), _act(), nn.Linear(cfg.hidden, cfg.hidden), _act()
        )
        # One linear layer for every control (a single matrix product at batch 1), split by `_controls`:
        # partials (harmonics), harmonic loudness per frame (frames), noise filter (frames x bins).
        self.split = [cfg.harmonics, self.frames, self.frames * self.bins]
        self.to_controls = nn.Linear(cfg.hidden, sum(self.split))
        self.register_buffer("noise_spectrum", fixed_noise_spectrum(self.frames, cfg.noise_fft, seed))
        self.register_buffer("window", torch.hann_window(cfg.noise_fft))
        self.register_buffer("partial_numbers", torch.arange(1, cfg.harmonics + 1, dtype=torch.float32))
        self.register_buffer("sample_index", torch.arange(cfg.grain_size, dtype=torch.float32))
        # Linear interpolation from the frame centres to every sample, as a [frames, G] matrix.
        distance = torch.arange(self.frames)[:, None] - torch.arange(cfg.grain_size) / self.hop
        self.register_buffer("frame_to_sample", (1.0 - distance.abs()).clamp(min=0.0).float())
        # Start with the partials near -17 dBFS and the noise 40 dB under them: noise fills every bin at
        # once, so from an even start it outgrows the partials and the model learns a hiss before a note.
        with torch.no_grad():
            bias = self.to_controls.bias.split(self.split)
            bias[1].fill_(0.0)
            bias[2].fill_(-4.0)

    def _oscillator(self, partials: Tensor, f0: Tensor) -> Tensor:
        """sum_k partials[k] sin(2 pi (k + 1) f0 n / sr), n < G, read from a one-period wavetable per grain.

        The table (TABLE_SIZE samples, one inverse FFT of the partials) costs the same whatever the number
        of partials, and reading it with linear interpolation is 2 lookups a sample: far cheaper than a sine
        per partial per sample. At 16 table samples per cycle of the highest partial (128) the
        interpolation is off by under 1.5 % in level, and the highest partials are the quietest.
        """
        b, k = partials.shape
        size = self.table_size
        # A sine of amplitude a at bin j of an L-point inverse rfft is the coefficient -i a L / 2.
        coefficients = torch.zeros(b, size // 2 + 1, dtype=partials.dtype, device=partials.device)
        coefficients[:, 1 : k + 1] = partials * (-size / 2)
        table = torch.fft.irfft(torch.complex(torch.zeros_like(coefficients), coefficients), n=size)
        table = torch.cat([table, table[:, :1]], dim=1)  # one wrapped sample: position + 1 never leaves it
        cycles = f0.double().unsqueeze(1) / self.sample_rate * self.sample_index.double()
        position = torch.remainder(cycles, 1.0) * size  # float64 (see f0), then float32 for the table
        left = position.floor()
        frac = (position - left).to(table.dtype)
        index = left.long().clamp(0, size - 1)
        return table.gather(1, index) * (1.0 - frac) + table.gather(1, index + 1) * frac

    def f0(self, z: Tensor) -> Tensor:
        """The f0 in Hz [B] that the decoder plays at z: latent 0 in octaves above PITCH_REFERENCE_HZ.

        float64: the phase of sample 1023 is f0 * 1023 / sr cycles, so a last-bit difference of a float32
        exp2 between two CPUs' libraries (an x86 workstation, a Pi) would move the grain's end by 2e-5."""
        return torch.exp2(self.log2_reference + z[:, 0].double()).clamp(self.f0_min, self.f0_max)

    def forward(self, z: Tensor) -> Tensor:
        b = z.shape[0]
        logits, loudness, noise = self.to_controls(self.trunk(z)).split(self.split, dim=1)
        # No gradient through f0: a partial's phase at sample n moves by 2 pi k n / sr per Hz, a gradient
        # thousands of times steeper than any other and no guide to the right pitch (it oscillates), which
        # blew training up. The encoder measures the pitch; the losses need not find it.
        f0 = self.f0(z).detach()
        # Partial amplitudes: a distribution over the partials below Nyquist (sums to 1, or 0 if none fit).
        below_nyquist = self.partial_numbers.unsqueeze(0) * f0.unsqueeze(1) < self.sample_rate / 2
        logits = logits.masked_fill(~below_nyquist, -1e4)
        partials = torch.softmax(logits, dim=-1) * below_nyquist.to(logits.dtype)  # [B, K]
        envelope = torch.exp(loudness.clamp(max=3.0) - 2.0) @ self.frame_to_sample  # [B, G]
        harmonic = self._oscillator(partials, f0) * envelope
        gain = torch.exp(noise.reshape(b, self.frames, self.bins).clamp(max=6.0) - 4.0)
        return harmonic + filtered_noise(gain, self.noise_spectrum, self.window, self.hop, self.grain_size)


class GrainVAE(nn.Module):
    """The Grain-VAE. `encode`, `decode` and `reconstruct` for use; `forward_loss` for trainer/loop.py."""

    def __init__(self, cfg: GrainVAEConfig | None = None):
        super().__init__()
        self.cfg = cfg or GrainVAEConfig()
        harmonic = self.cfg.decoder == "harmonic"
        if self.cfg.encoder == "spectral":
            self.encoder: nn.Module = SpectralEncoder(self.cfg, pitch_coordinate=harmonic)
        else:
            self.encoder = ConvEncoder(self.cfg)
        decoders = {"harmonic": HarmonicDecoder, "noise": NoiseFilterDecoder, "conv": ConvDecoder}
        self.decoder = decoders[self.cfg.decoder](self.cfg)
        if self.cfg.sigma is None and not harmonic:  # the harmonic decoder has no waveform likelihood
            self.log_sigma = nn.Parameter(torch.tensor(math.log(0.1)))
        else:
            self.register_buffer("log_sigma", torch.tensor(math.log(self.cfg.sigma or 0.1)))
        self.spectral = MultiResolutionSTFTLoss(self.cfg.fft_sizes) if self.cfg.spectral_weight > 0 else None

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance, each [B, Z]."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """Grains [B, G] in [-1, 1] from latent points [B, Z]. The harmonic decoder has no tanh (it would
        distort the partials), so its rare peaks past full scale are clipped here, not in training."""
        return self.decoder(z).clamp(-1.0, 1.0)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """decode(posterior mean): the deterministic reconstruction used for metrics and plots."""
        return self.decode(self.encode(x)[0])

    def forward_loss(self, x: Tensor, beta: float) -> dict[str, Tensor]:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        x_hat = self.decoder(z)
        out: dict[str, Tensor] = {}
        loss = x.new_zeros(())
        if self.cfg.decoder != "harmonic":  # its partials' phases are free: a waveform NLL would fight them
            log_sigma = self.log_sigma.clamp(min=MIN_LOG_SIGMA)
            out["recon"] = gaussian_nll(x, x_hat.float(), log_sigma).mean()
            out["sigma"] = log_sigma.detach().exp()
            loss = out["recon"]
        kl = kl_divergence(mu.float(), logvar.float()).mean()
        loss = loss + beta * kl
        out |= {"kl": kl, "kl_per_dim": kl_per_dim(mu.float(), logvar.float()).mean(0)}
        if self.spectral is not None:
            spectral = self.spectral(x, x_hat)
            weighted = self.cfg.spectral_weight * self.cfg.grain_size * spectral
            loss = loss + weighted
            out["spectral"] = spectral
            out.setdefault("recon", weighted)  # harmonic: the spectral term is the whole reconstruction term
        out["loss"] = loss
        out["mse"] = (x - x_hat.float()).pow(2).mean().detach()
        return out


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
