"""Probabilistic PCA: closed form against scikit-learn, EM and SVI against the closed form,
and the analytic posterior against Bayes' rule."""

import math

import numpy as np
import pyro
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from zoo.errors import ZooInputError
from zoo.ppca import PPCA


def low_rank_data(n_points=500, dim=10, latent_dim=3, noise=0.3, seed=0):
    """``x = A z + b + noise`` in float64, with a random non-orthogonal ``A``."""
    g = torch.Generator().manual_seed(seed)
    loadings = torch.randn(dim, latent_dim, generator=g, dtype=torch.float64)
    z = torch.randn(n_points, latent_dim, generator=g, dtype=torch.float64)
    noise = noise * torch.randn(n_points, dim, generator=g, dtype=torch.float64)
    return z @ loadings.T + noise + 1.0


@pytest.fixture(scope="module")
def digits():
    return torch.tensor(load_digits().data / 16.0)  # (1797, 64) float64, pixels in [0, 1]


@pytest.mark.parametrize("latent_dim", [2, 10, 30])
def test_closed_form_matches_sklearn_pca_score(digits, latent_dim):
    model = PPCA(64, latent_dim).fit_closed_form(digits)
    sklearn_pca = PCA(n_components=latent_dim).fit(digits.numpy())
    # sklearn scales its covariance by 1/(N-1), the ML solution by 1/N: a second-order effect
    assert model.score(digits) == pytest.approx(sklearn_pca.score(digits.numpy()), abs=1e-4)
    assert model.noise_variance.item() == pytest.approx(sklearn_pca.noise_variance_, rel=1e-3)
    # same principal subspace: the projector onto span(A) equals sklearn's
    q, _ = torch.linalg.qr(model.loadings.detach())
    components = torch.tensor(sklearn_pca.components_)
    torch.testing.assert_close(q @ q.T, components.T @ components, atol=1e-6, rtol=0)


def test_em_converges_to_the_closed_form_and_never_decreases(digits):
    best = PPCA(64, 5).fit_closed_form(digits).score(digits)
    model = PPCA(64, 5, seed=0)
    history = model.fit_em(digits, tol=1e-8)
    assert history.converged
    assert np.all(np.diff(history.log_likelihood) >= -1e-10)
    assert history.final_log_likelihood == pytest.approx(model.score(digits), abs=1e-9)
    assert model.score(digits) == pytest.approx(best, abs=1e-4)


def correlated_loadings():
    """Loadings with non-orthogonal columns, hence a correlated posterior ``p(z | x)``."""
    return torch.tensor([[1.0, 0.9, 0.0]] * 5 + [[0.0, 1.0, 0.8]] * 5, dtype=torch.float64)


def test_posterior_is_bayes_rule():
    x = low_rank_data(20)
    model = PPCA(10, 3).set_parameters(correlated_loadings(), x.mean(0),
                                       torch.tensor(0.2, dtype=torch.float64))
    posterior = model.posterior(x)
    g = torch.Generator().manual_seed(2)
    for z in torch.randn(3, 20, 3, generator=g, dtype=torch.float64):
        prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        likelihood = torch.distributions.Normal(
            z @ model.loadings.detach().T + model.bias.detach(),
            model.noise_variance.detach().sqrt()).log_prob(x).sum(-1)
        bayes = prior + likelihood - model.score_samples(x)
        torch.testing.assert_close(posterior.log_prob(z).detach(), bayes, atol=1e-9, rtol=0)


def test_exact_guide_has_no_gap_and_the_linear_guide_has_one():
    x = low_rank_data(300)
    model = PPCA(10, 3, seed=0).to(torch.float64)  # arbitrary, non-optimal parameters
    assert model.elbo(x) == pytest.approx(model.score(x), abs=1e-9)

    noise_variance = torch.tensor(0.1, dtype=torch.float64)
    model.set_parameters(correlated_loadings(), x.mean(0), noise_variance)
    model.requires_grad_(False)  # train only the guide
    pyro.set_rng_seed(0)
    guide = model.linear_guide()
    model.fit_svi(x, guide=guide, steps=300, lr=0.05, num_particles=8, seed=0)
    gap = model.score(x) - model.elbo(x, guide, num_particles=256)
    # the best diagonal Gaussian misses the posterior precision P = M / nu by
    # KL = 1/2 (sum_i log P_ii - log det P), the same for every point
    precision = (correlated_loadings().T @ correlated_loadings()
                 + noise_variance * torch.eye(3, dtype=torch.float64)) / noise_variance
    smallest_gap = 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision)).item()
    assert smallest_gap > 0.1
    assert smallest_gap - 0.01 < gap < smallest_gap + 0.1


def test_svi_with_the_exact_guide_reaches_the_closed_form():
    x = low_rank_data(200)
    best = PPCA(10, 3).fit_closed_form(x).score(x)
    model = PPCA(10, 3, seed=0)
    store_before = set(pyro.get_param_store().keys())
    history = model.fit_svi(x, guide="exact", steps=300, lr=0.1, seed=0)
    assert history[0] < best - 5
    assert history[-1] == pytest.approx(best, abs=0.01)
    assert model.score(x) == pytest.approx(best, abs=0.01)
    assert set(pyro.get_param_store().keys()) == store_before  # fit_svi leaves no params


def test_reconstructions_and_samples():
    x = low_rank_data(2000, noise=0.05)
    model = PPCA(10, 3).fit_closed_form(x)
    reconstruction = model.reconstruct(x)
    assert reconstruction.shape == x.shape
    # three latent dimensions explain all but the isotropic noise
    assert (reconstruction - x).square().mean() < 2 * 0.05**2
    pyro.set_rng_seed(0)
    samples = model.sample(20000)
    assert samples.shape == (20000, 10)
    torch.testing.assert_close(samples.mean(0), x.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), model.marginal().covariance_matrix.detach(),
                               atol=0.1, rtol=0.05)
    assert model.transform(x).shape == (2000, 3)
    assert math.isfinite(model.score(samples))


def test_bad_input_is_named():
    with pytest.raises(ZooInputError, match="latent_dim"):
        PPCA(4, 4)
    with pytest.raises(ZooInputError, match="data_dim=10"):
        PPCA(10, 2).fit_closed_form(torch.zeros(5, 3))
    flat = torch.randn(50, 2, dtype=torch.float64) @ torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(ZooInputError, match="smaller latent_dim"):
        PPCA(6, 2).fit_closed_form(flat)
