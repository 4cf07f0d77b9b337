"""The MNIST VAE of Kingma & Welling (2013, "Auto-Encoding Variational Bayes"), and a faster-learning variant.

Encoder q(z|x) = N(mu(x), diag(exp(logvar(x)))) and decoder p(x|z) are MLPs; the prior is p(z) = N(0, I).
The paper's MNIST model: one hidden layer of 500 tanh units in each, trained with Adagrad, minibatch 100.
`MnistVAEConfig.kingma2013()` is that model; `MnistVAEConfig.improved()` keeps 500-unit layers but uses
two of them with ELU, which reaches a better bound in the same CPU minutes (bench/mnist.py says how much).

Why a Bernoulli decoder, and the loss it gives
----------------------------------------------
The pixels are binary (each training image is binarised afresh at every step, see trainer/mnist/data.py), so
p(x|z) is a product of 784 independent Bernoulli variables whose probabilities the decoder outputs as
logits l = f(z):

    p(x|z)     = prod_i p_i^x_i (1 - p_i)^(1 - x_i),         p_i = sigmoid(l_i)
    log p(x|z) = sum_i x_i log sigmoid(l_i) + (1 - x_i) log(1 - sigmoid(l_i))
               = sum_i -x_i softplus(-l_i) - (1 - x_i) softplus(l_i)     [log sigmoid(l) = -softplus(-l),
                                                                          log(1 - sigmoid(l)) = -softplus(l)]
               = sum_i x_i l_i - softplus(l_i)                           [softplus(l) - softplus(-l) = l]
               = -BCEWithLogits(l, x) summed over pixels.

So the reconstruction term of the ELBO is minus the binary cross-entropy on logits, summed over the 784
pixels, in nats per image; `trainer.vae.bernoulli_nll` computes it that way (stable for any logit). A
Gaussian would be the wrong model here: on {0, 1} data its density grows without bound as sigma -> 0, so
its "likelihood" is not comparable with the paper's. With the closed-form KL of `trainer.vae`:

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I))     (one reparameterised sample per image in training)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from trainer.mnist.data import PIXELS, binarize
from trainer.vae import bernoulli_nll, kl_per_dim, reparameterize

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "softplus": nn.Softplus, "gelu": nn.GELU}


@dataclass
class MnistVAEConfig:
    """Shape of the MLP VAE. The defaults are the improved model; kingma2013() is the paper's."""

    latent_dim: int = 20
    hidden: int = 500  # units per hidden layer, as in the paper
    layers: int = 2  # hidden layers in the encoder and in the decoder
    activation: str = "elu"

    @classmethod
    def kingma2013(cls, latent_dim: int = 20) -> MnistVAEConfig:
        """The paper's MNIST model: one hidden layer of 500 tanh units (its Appendix C.2, Figure 2)."""
        return cls(latent_dim=latent_dim, hidden=500, layers=1, activation="tanh")

    @classmethod
    def improved(cls, latent_dim: int = 20) -> MnistVAEConfig:
        """Two hidden layers of 500 ELU units: the best test ELBO per CPU minute we measured."""
        return cls(latent_dim=latent_dim)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} unknown; choose one of {sorted(ACTIVATIONS)}")
        if self.latent_dim < 1 or self.hidden < 1 or self.layers < 1:
            raise ValueError(f"latent_dim, hidden and layers must be >= 1, got {self}")


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given sizes with the activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MnistVAE(nn.Module):
    """Gaussian MLP encoder, Bernoulli MLP decoder, standard normal prior.

    Feed it grey-level images in [0, 1] while training (it binarises each batch itself: a fresh Bernoulli
    sample per step) and binary images in eval mode (binarise the evaluation set once, with a fixed seed).
    """

    def __init__(self, config: MnistVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or MnistVAEConfig()
        c = self.config
        self.encoder = mlp([PIXELS] + [c.hidden] * c.layers + [2 * c.latent_dim], c.activation)
        self.decoder = mlp([c.latent_dim] + [c.hidden] * c.layers + [PIXELS], c.activation)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def init_output_bias(self, mean_image: Tensor) -> None:
        """Start the decoder at the data's mean image (logit of each pixel's mean grey level).

        The first steps then learn digits instead of the fact that most pixels are black, which saves
        some of a short budget.
        """
        p = mean_image.clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.decoder[-1].bias.copy_(torch.log(p) - torch.log1p(-p))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance, each [B, Z]."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        """Bernoulli logits of the 784 pixels, [B, 784]; sigmoid() of them is the mean image."""
        return self.decoder(z)

    def forward_loss(self, x: Tensor, beta: float = 1.0) -> dict[str, Tensor]:
        """Losses of one batch for trainer.loop.train: loss = recon + beta * KL (batch means, nats).

        'elbo' is the true bound -(recon + KL) whatever beta is, so curves stay comparable during warm-up.
        """
        if self.training:
            x = binarize(x)
        mu, logvar = self.encode(x)
        logits = self.decode(reparameterize(mu, logvar))
        recon = bernoulli_nll(x, logits).mean()
        kl_dims = kl_per_dim(mu, logvar)
        kl = kl_dims.sum(dim=1).mean()
        return {"loss": recon + beta * kl, "recon": recon, "kl": kl, "kl_per_dim": kl_dims.mean(dim=0),
                "elbo": -(recon + kl)}

    def state(self) -> dict:
        """What rebuilds this model: its config and weights (see from_state)."""
        return {"config": asdict(self.config), "model": self.state_dict()}

    @classmethod
    def from_state(cls, state: dict) -> MnistVAE:
        model = cls(MnistVAEConfig(**state["config"]))
        model.load_state_dict(state["model"])
        return model


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block with the model in eval mode, then give it back in the mode it was in.

    Evaluation and plots are called from inside training (the loop's on_eval hook): they must not leave a
    training model in eval mode, which would silently switch off dynamic binarisation.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
