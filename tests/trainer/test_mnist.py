"""The MNIST VAE: IDX reader and its errors, the Bernoulli likelihood, the estimators, a short real run."""

from __future__ import annotations

import gzip
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.distributions import Bernoulli, Normal, kl_divergence

from trainer.__main__ import main
from trainer.mnist.data import IdxError, binarize, fixed_binarization, load_mnist, read_idx
from trainer.mnist.eval import elbo_per_image, iw_log_likelihood, mean_elbo
from trainer.mnist.model import MnistVAE, MnistVAEConfig
from trainer.mnist.plots import plot_manifold

# ---------------------------------------------------------------------------------------------------------
# Hand-made IDX files


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file written by hand from the format's definition: 00 00 type ndim, big-endian sizes, data."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_code]
    header = struct.pack(">HBB", 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write_mnist_folder(folder: Path, n_train: int = 6, n_test: int = 4, *, gz: bool = True,
                       dotted: bool = False) -> dict[str, np.ndarray]:
    """Four tiny MNIST files (random 28x28 images, digit labels) in folder; returns the arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        raw = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("type_code", [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_reads_every_type_gzipped_or_not(tmp_path, type_code, gz):
    array = (np.arange(2 * 3 * 5).reshape(2, 3, 5) - 7).astype(np.float64) * (0.5 if type_code >= 0x0D else 1)
    if type_code == 0x08:
        array = np.abs(array)
    raw = idx_bytes(array, type_code)
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    got = read_idx(path)
    assert got.shape == (2, 3, 5)
    np.testing.assert_array_equal(got, array)
    assert got.dtype.isnative


def test_gzip_is_told_by_content_not_by_name(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    (tmp_path / "labels.gz").write_bytes(idx_bytes(labels))  # named .gz, not gzipped
    (tmp_path / "labels").write_bytes(gzip.compress(idx_bytes(labels)))  # gzipped, no .gz
    np.testing.assert_array_equal(read_idx(tmp_path / "labels.gz"), labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), labels)


def corrupt(raw: bytes, how: str) -> bytes:
    return {
        "wrong magic": b"\x08\x03" + raw[2:],  # first two bytes must be zero
        "unknown type": raw[:2] + b"\x07" + raw[3:],
        "zero dimensions": raw[:3] + b"\x00" + raw[4:],
        "truncated data": raw[:-10],
        "truncated header": raw[:9],
        "trailing bytes": raw + b"\x00\x00",
        "empty": b"",
    }[how]


@pytest.mark.parametrize(("how", "says"), [
    ("wrong magic", "wrong magic number"),
    ("unknown type", "wrong magic number"),
    ("zero dimensions", "wrong magic number"),
    ("truncated data", "truncated"),
    ("truncated header", "cut off"),
    ("trailing bytes", "trailing bytes"),
    ("empty", "too short"),
])
def test_malformed_idx_is_a_clear_error_naming_the_file(tmp_path, how, says):
    raw = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(raw, how))
    with pytest.raises(IdxError) as e:
        read_idx(path)
    assert str(path) in str(e.value) and says in str(e.value)


def test_cut_off_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8)))[:-12])
    with pytest.raises(IdxError, match="broken gzip") as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_load_mnist_from_a_tiny_folder_any_spelling(tmp_path):
    for gz, dotted in [(True, False), (False, False), (True, True), (False, True)]:
        folder = tmp_path / f"{gz}-{dotted}"
        arrays = write_mnist_folder(folder, gz=gz, dotted=dotted)
        data = load_mnist(folder)
        assert data.train_images.shape == (6, 784) and data.test_images.shape == (4, 784)
        assert data.train_images.dtype == torch.float32
        expected = arrays["train-images-idx3-ubyte"].reshape(6, 784) / 255.0
        np.testing.assert_allclose(data.train_images.numpy(), expected, atol=1e-7)
        assert data.test_labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
        assert len(data.fingerprint) == 16


def test_missing_file_names_the_file_and_the_fix(tmp_path):
    write_mnist_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(IdxError) as e:
        load_mnist(tmp_path)
    message = str(e.value)
    assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in message and "--data" in message
    with pytest.raises(IdxError, match="no such folder"):
        load_mnist(tmp_path / "nowhere")


def test_files_that_do_not_fit_together_are_refused(tmp_path):
    write_mnist_folder(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8))))
    with pytest.raises(IdxError, match="6 images but .* 5 labels"):
        load_mnist(tmp_path)
    wrong_size = idx_bytes(np.zeros((5, 20, 20), np.uint8))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(wrong_size))
    with pytest.raises(IdxError, match=r"shape \(5, 20, 20\), expected \[N, 28, 28\]"):
        load_mnist(tmp_path)


def test_command_reports_a_bad_data_folder_and_exits_non_zero(tmp_path, capsys):
    write_mnist_folder(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 7))  # header cut inside the sizes
    assert main(["mnist", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "cut off" in err
    assert not (tmp_path / "run").exists()  # nothing started


def test_the_real_mnist(shared_datasets):
    data = load_mnist(shared_datasets / "mnist")
    assert data.train_images.shape == (60_000, 784) and data.test_images.shape == (10_000, 784)
    assert data.train_images.min() == 0.0 and data.train_images.max() == 1.0
    assert sorted(data.train_labels.unique().tolist()) == list(range(10))
    # The digits' well-known statistics: about 13% mean grey level, labels roughly balanced.
    assert 0.12 < data.train_images.mean().item() < 0.14
    assert data.test_labels.bincount().min() > 850


# ---------------------------------------------------------------------------------------------------------
# Model and likelihood


def small_model(latent_dim: int = 4, seed: int = 0, **kw) -> MnistVAE:
    torch.manual_seed(seed)
    return MnistVAE(MnistVAEConfig(latent_dim=latent_dim, hidden=kw.pop("hidden", 64), **kw))


@pytest.mark.parametrize("preset", ["kingma2013", "improved"])
def test_recon_term_is_the_bernoulli_log_prob_and_kl_the_gaussian_kl(preset):
    model = MnistVAE(getattr(MnistVAEConfig, preset)(latent_dim=5)).eval()
    x = (torch.rand(16, 784, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    torch.manual_seed(7)
    out = model.forward_loss(x, beta=0.25)
    # The same z again (same seed), scored by torch.distributions instead of our closed forms.
    torch.manual_seed(7)
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    log_px = Bernoulli(logits=model.decode(z)).log_prob(x).sum(-1)
    kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(out["recon"], -log_px.mean(), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(out["kl"], kl.mean(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out["loss"], -log_px.mean() + 0.25 * kl.mean(), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(out["elbo"], (log_px - kl).mean(), rtol=1e-5, atol=1e-3)
    assert out["kl_per_dim"].shape == (5,)


def test_training_mode_binarises_each_batch_afresh():
    model = small_model().train()
    grey = torch.rand(32, 784, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)
    trained_on = model.forward_loss(grey)["recon"]
    torch.manual_seed(3)
    binary = torch.bernoulli(grey)  # the draw forward_loss made from the same RNG state
    expected = model.eval().forward_loss(binary)["recon"]
    torch.testing.assert_close(trained_on, expected)
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    # A second step draws another sample: the loss differs although the batch is the same.
    model.train()
    assert model.forward_loss(grey)["recon"].item() != trained_on.item()


def test_binarisation_is_a_bernoulli_sample_of_the_grey_level():
    grey = torch.full((2000, 784), 0.3)
    sample = binarize(grey)
    assert set(sample.unique().tolist()) == {0.0, 1.0}
    assert abs(sample.mean().item() - 0.3) < 0.005
    assert torch.equal(fixed_binarization(grey[:10]), fixed_binarization(grey[:10]))
    assert not torch.equal(fixed_binarization(grey[:10], seed=0), fixed_binarization(grey[:10], seed=1))


def test_bad_config_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="activation 'sine' unknown; choose one of"):
        MnistVAEConfig(activation="sine")


def test_output_bias_starts_the_decoder_at_the_mean_image():
    model = small_model()
    mean_image = torch.linspace(0.0, 1.0, 784)
    model.init_output_bias(mean_image)
    with torch.no_grad():
        model.decoder[-1].weight.zero_()
        p = torch.sigmoid(model.decode(torch.zeros(1, 4)))[0]
    torch.testing.assert_close(p, mean_image.clamp(1e-3, 1 - 1e-3), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Estimators


def exact_posterior_1d(model: MnistVAE, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """log p(x), and the posterior's mean and std, for a 1-D latent by quadrature on a fine grid over z."""
    z = torch.linspace(-8.0, 8.0, 16001)
    with torch.no_grad():
        logits = model.decode(z.unsqueeze(1))  # [G, 784]
    softplus = torch.nn.functional.softplus(logits)
    log_joint = (x.unsqueeze(1) * logits - softplus).sum(-1) + Normal(0.0, 1.0).log_prob(z)  # [N, G]
    log_px = torch.logsumexp(log_joint, dim=1) + math.log((z[1] - z[0]).item())
    posterior = torch.softmax(log_joint, dim=1)
    mean = (posterior * z).sum(1)
    std = (posterior * (z - mean.unsqueeze(1)).pow(2)).sum(1).sqrt()
    return log_px, mean, std


def test_importance_weighted_estimate_converges_to_the_exact_likelihood():
    # With a 1-D latent, log p(x) is computable exactly. The encoder is set to a proposal a little off the
    # true posterior (shifted by half a std, 1.5x as wide), so the ELBO has a real gap that L_k must close.
    torch.manual_seed(0)
    model = MnistVAE(MnistVAEConfig(latent_dim=1, hidden=32)).eval()
    with torch.no_grad():
        model.decoder[-1].weight.mul_(2.0)  # a decoder that depends on z: posterior std about 0.3
        x = torch.bernoulli(torch.sigmoid(model.decode(torch.tensor([[0.7]]))).expand(3, 784),
                            generator=torch.Generator().manual_seed(1))
    exact, post_mean, post_std = exact_posterior_1d(model, x)
    assert (post_std < 0.5).all()  # the likelihood shapes the posterior: far from the prior
    g = torch.Generator().manual_seed(5)
    for i in range(len(x)):
        with torch.no_grad():
            model.encoder[-1].weight.zero_()
            model.encoder[-1].bias.copy_(torch.stack([post_mean[i] + 0.5 * post_std[i],
                                                      2 * torch.log(1.5 * post_std[i])]))
        xi = x[i : i + 1]
        elbo = elbo_per_image(model, xi, samples=4000, generator=g)
        l_10 = iw_log_likelihood(model, xi, k=10, generator=g)
        l_5000 = iw_log_likelihood(model, xi, k=5000, generator=g)
        gap = (exact[i] - elbo).item()
        assert 0.3 < gap < 2.0, gap  # the ELBO is a lower bound with a visible gap
        assert elbo.item() < l_10.item() < exact[i].item() + 0.05
        assert abs(l_5000.item() - exact[i].item()) < 0.03, (l_5000.item(), exact[i].item())


def test_iw_with_one_sample_is_the_elbo_in_expectation():
    model = small_model().eval()
    x = fixed_binarization(torch.rand(200, 784, generator=torch.Generator().manual_seed(6)) * 0.5)
    l1 = iw_log_likelihood(model, x, k=1, generator=torch.Generator().manual_seed(8))
    elbo = elbo_per_image(model, x, samples=1, generator=torch.Generator().manual_seed(9))
    # Both are one-sample estimates of the same number: equal in mean, within a few standard errors.
    stderr = torch.cat([l1, elbo]).std() / math.sqrt(len(x))
    assert abs(l1.mean() - elbo.mean()) < 5 * stderr
    with pytest.raises(ValueError, match="k must be >= 1"):
        iw_log_likelihood(model, x, k=0)


def test_manifold_needs_a_2d_latent(tmp_path):
    with pytest.raises(ValueError, match="needs a 2-D latent space, this model has 4"):
        plot_manifold(small_model(), tmp_path / "m.png")
    path = plot_manifold(small_model(latent_dim=2), tmp_path / "m.png", n=5)
    assert path.stat().st_size > 1000


# ---------------------------------------------------------------------------------------------------------
# A short real run


def test_short_run_raises_the_test_elbo_and_writes_the_results(shared_datasets, tmp_path):
    torch.set_num_threads(1)
    data = load_mnist(shared_datasets / "mnist")
    test_binary = fixed_binarization(data.test_images[:2000])
    torch.manual_seed(0)
    untrained = MnistVAE(MnistVAEConfig(latent_dim=2))
    untrained.init_output_bias(data.train_images.mean(0))
    before = mean_elbo(untrained, test_binary)

    out = tmp_path / "run"
    code = main(["mnist", "--data", str(shared_datasets / "mnist"), "--latent-dim", "2", "--steps", "150",
                 "--eval-every", "50", "--warmup-steps", "50", "--batch-size", "100", "--out", str(out),
                 "--iw-k", "50", "--iw-images", "100", "--threads", "1", "--no-progress"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    trained = MnistVAE.from_state(torch.load(out / "model.pt", weights_only=False))
    after = mean_elbo(trained, test_binary)
    assert after > before + 20, (before, after)  # from about -206 (the mean image) to about -170
    assert metrics["steps"] == 150 and metrics["latent_dim"] == 2
    # The IW bound is tighter than the ELBO on the same images.
    assert metrics["test_iw_ll"] > metrics["test_elbo_on_iw_images"]
    history = json.loads((out / "history.json").read_text())
    test_curve = [h["val"]["test_elbo"] for h in history]
    assert len(test_curve) == 3 and test_curve[-1] > test_curve[0]
    for name in ("elbo_curves", "samples", "reconstructions", "manifold", "latent_scatter"):
        assert (out / f"{name}.png").stat().st_size > 5000, name
