"""The PCA baseline: exact on low-rank data, equal to a textbook SVD, and a floor that falls with k."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import GRAIN_SIZE
from trainer import pca as pca_module
from trainer.metrics import SNR_CAP_DB
from trainer.pca import PCA, pca_baseline, pca_baseline_table
from trainer.synth import render_synth_grains

G = GRAIN_SIZE


def low_rank(n: int, rank: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n grains in a rank-`rank` affine subspace: mean + coefficients @ orthonormal basis, within [-1, 1]."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((G, rank)))[0].T  # [rank, G], orthonormal rows
    scales = 2.0 ** -np.arange(rank)  # distinct variances, so components are unique up to sign
    coeffs = rng.standard_normal((n, rank)) * scales
    mean = 0.1 * np.sin(np.linspace(0, 20, G))
    x = mean + coeffs @ basis
    return (x / np.abs(x).max()).astype(np.float32), basis


@pytest.fixture(scope="module")
def synth_set():
    grains, _ = render_synth_grains(1200, seed=11)
    return grains[:1000], grains[1000:]


def test_enough_components_reconstruct_low_rank_data_exactly():
    x, basis = low_rank(300, rank=5)
    pca = PCA.fit(x[:200], k=5)
    m = pca_baseline(x[:200], x[200:], k=5)
    assert m["sc"] < 1e-5 and m["lsd_db"] < 0.01 and m["snr_db"] > 80
    # the components span the data's subspace: projecting the basis onto them loses nothing
    assert np.allclose(np.linalg.norm(basis @ pca.components.T, axis=1), 1.0, atol=1e-6)
    too_few = pca_baseline(x[:200], x[200:], k=2)
    assert too_few["sc"] > 0.01 and too_few["snr_db"] < SNR_CAP_DB


def test_matches_a_textbook_svd(synth_set):
    train, _ = synth_set
    pca = PCA.fit(train, k=16)
    centred = train.astype(np.float64) - train.mean(0, dtype=np.float64)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    assert np.allclose(pca.explained_variance, s[:16] ** 2 / (len(train) - 1), rtol=1e-8)
    # same directions up to sign
    assert np.allclose(np.abs(np.sum(pca.components * vt[:16], axis=1)), 1.0, atol=1e-6)
    assert np.allclose(pca.components @ pca.components.T, np.eye(16), atol=1e-9)
    assert np.all(np.diff(pca.explained_variance) <= 0)


def test_chunked_fit_and_truncation_agree_with_a_direct_fit(synth_set, monkeypatch):
    train, val = synth_set
    direct = PCA.fit(train, k=8).reconstruct(val)
    assert np.allclose(PCA.fit(train, k=32).truncate(8).reconstruct(val), direct, atol=1e-5)
    monkeypatch.setattr(pca_module, "_CHUNK", 77)
    assert np.allclose(PCA.fit(train, k=8).reconstruct(val), direct, atol=1e-5)


def test_more_components_reconstruct_better(synth_set):
    train, val = synth_set
    rows = pca_baseline_table(train, val, ks=[32, 8, 16])
    assert [r["k"] for r in rows] == [8, 16, 32]
    sc = [r["sc"] for r in rows]
    snr = [r["snr_db"] for r in rows]
    kept = [r["variance_kept"] for r in rows]
    assert sc[0] > sc[1] > sc[2] and snr[0] < snr[1] < snr[2] and 0 < kept[0] < kept[1] < kept[2] < 1
    assert rows[1] == pytest.approx({"k": 16, **pca_baseline(train, val, 16), "variance_kept": kept[1]})


def test_reconstructions_are_float32_in_range_and_memmaps_work(synth_set, tmp_path):
    train, val = synth_set
    np.save(tmp_path / "train.npy", train)
    mapped = np.load(tmp_path / "train.npy", mmap_mode="r")
    x_hat = PCA.fit(mapped, k=4).reconstruct(val)
    assert x_hat.dtype == np.float32 and x_hat.shape == val.shape and np.abs(x_hat).max() <= 1.0


def test_bad_arguments_are_clear_errors(synth_set):
    train, _ = synth_set
    with pytest.raises(ValueError, match="k must be between 1 and the grain size 1024"):
        PCA.fit(train, k=2000)
    with pytest.raises(ValueError, match="at least 2 training grains"):
        PCA.fit(train[:1], k=1)
    with pytest.raises(ValueError, match="truncate to 1..8"):
        PCA.fit(train, k=8).truncate(9)
