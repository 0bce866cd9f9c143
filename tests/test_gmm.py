"""Gaussian mixture: exact EM against scikit-learn, EM's monotonicity, SVI with enumeration
against EM, and the sklearn-style interface."""

import warnings

import numpy as np
import pyro
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.infer import TraceEnum_ELBO
from pyro.poutine.util import site_is_subsample
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from zoo.errors import ZooInputError
from zoo.gmm import (
    COVARIANCE_TYPES,
    BayesianGaussianMixture,
    GaussianMixture,
    MixtureParameters,
    expectation_maximization,
    kmeans_plusplus,
    kmeans_plusplus_parameters,
)


def blobs(n_points=400, seed=0, separation=6.0):
    """Three well-separated, correlated 2-D clusters (float64) and their labels."""
    g = torch.Generator().manual_seed(seed)
    centers = separation * torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.8]], dtype=torch.float64)
    labels = torch.randint(3, (n_points,), generator=g)
    mixing = torch.tensor([[1.0, 0.4], [0.0, 0.5]], dtype=torch.float64)
    noise = torch.randn(n_points, 2, generator=g, dtype=torch.float64) @ mixing
    return centers[labels] + noise, labels


def sklearn_from(params: MixtureParameters, **kwargs) -> SklearnGaussianMixture:
    """An sklearn mixture that starts exactly at ``params``."""
    covs = params.covariances.numpy()
    precisions = np.linalg.inv(covs) if params.covariance_type == "full" else 1.0 / covs
    return SklearnGaussianMixture(
        len(params.weights), covariance_type=params.covariance_type,
        weights_init=params.weights.numpy(), means_init=params.locs.numpy(),
        precisions_init=precisions, init_params="random_from_data", **kwargs)


def trace_of_precision(params: MixtureParameters) -> torch.Tensor:
    """``tr(Sigma_k^{-1})`` per component: ``(K,)``."""
    covs = params.covariances
    if params.covariance_type == "full":
        return torch.linalg.inv(covs).diagonal(dim1=-2, dim2=-1).sum(-1)
    if params.covariance_type == "diag":
        return covs.reciprocal().sum(-1)
    return params.locs.shape[1] / covs


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_components=st.integers(1, 5), dim=st.integers(1, 4),
       true_components=st.integers(1, 4), covariance_type=st.sampled_from(COVARIANCE_TYPES),
       reg_covar=st.sampled_from([1e-9, 1e-6, 1e-3]), spread=st.floats(0.05, 2.0))
def test_em_never_decreases_the_log_likelihood(seed, n_components, dim, true_components,
                                                covariance_type, reg_covar, spread):
    """Exact EM never lowers log p(x); the covariance floor may lower it by at most
    ``reg_covar / 2 sum_k pi_k' tr(Sigma_k^{-1})`` per iteration (see expectation_maximization)."""
    g = torch.Generator().manual_seed(seed)
    n_points = int(torch.randint(3 * n_components, 120, (1,), generator=g))
    centers = 3 * torch.randn(true_components, dim, generator=g, dtype=torch.float64)
    labels = torch.randint(true_components, (n_points,), generator=g)
    x = centers[labels] + spread * torch.randn(n_points, dim, generator=g, dtype=torch.float64)
    iterates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collapse warnings are expected on such small data
        expectation_maximization(x, n_components, covariance_type, reg_covar=reg_covar, tol=0,
                                 max_iter=40, seed=seed,
                                 callback=lambda _, params: iterates.append(params))
    log_likelihoods = [p.e_step(x)[0].mean().item() for p in iterates]
    for before, after, ll_before, ll_after in zip(iterates, iterates[1:], log_likelihoods,
                                                  log_likelihoods[1:]):
        floor_effect = 0.5 * reg_covar * (after.weights * trace_of_precision(before)).sum().item()
        rounding = 1e-10 * (1 + abs(ll_before))
        assert ll_after >= ll_before - floor_effect - rounding


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_matches_sklearn_from_the_same_start(covariance_type):
    g = torch.Generator().manual_seed(1)
    # overlapping clusters, so EM needs many iterations
    x = torch.cat([torch.randn(300, 3, generator=g, dtype=torch.float64) * s + c
                   for s, c in [(1.0, 0.0), (0.7, 1.5), (1.3, -1.0)]])
    start = kmeans_plusplus_parameters(x, 4, covariance_type, seed=2)
    ours = expectation_maximization(x, 4, covariance_type, init=start, tol=1e-3, max_iter=200)
    theirs = sklearn_from(start, tol=1e-3, max_iter=200).fit(x.numpy())
    assert ours.n_iter == theirs.n_iter_ > 3
    assert ours.converged and theirs.converged_
    assert abs(ours.final_log_likelihood - theirs.score(x.numpy())) < 1e-3
    assert abs(ours.log_likelihood[-1] - theirs.lower_bound_) < 1e-3

    model = GaussianMixture(4, 3, covariance_type).set_parameters(ours.params)
    np.testing.assert_allclose(model.score_samples(x).numpy(), theirs.score_samples(x.numpy()),
                               atol=1e-3)
    np.testing.assert_allclose(model.predict_proba(x).numpy(), theirs.predict_proba(x.numpy()),
                               atol=1e-3)
    assert (model.predict(x).numpy() == theirs.predict(x.numpy())).mean() > 0.99
    assert model.bic(x) == pytest.approx(theirs.bic(x.numpy()), abs=1.0)
    assert model.aic(x) == pytest.approx(theirs.aic(x.numpy()), abs=1.0)


def test_enumerated_elbo_is_the_exact_log_likelihood():
    x, _ = blobs(200)
    model = GaussianMixture(3, 2).initialize(x, seed=0)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model.model, model.guide, x)
    assert -loss / len(x) == pytest.approx(model.score(x), abs=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_svi_with_enumeration_reaches_the_em_optimum(covariance_type):
    x, labels = blobs(400)
    em = expectation_maximization(x, 3, covariance_type, seed=0)
    model = GaussianMixture(3, 2, covariance_type)
    # a deliberately rough start: k-means++ seeds as means, unit covariances, equal weights
    seeds = x[kmeans_plusplus(x, 3, torch.Generator().manual_seed(3))]
    unit = {"full": torch.eye(2).expand(3, 2, 2), "diag": torch.ones(3, 2),
            "spherical": torch.ones(3)}[covariance_type]
    model.set_parameters(MixtureParameters(torch.full((3,), 1 / 3), seeds, unit, covariance_type))
    start = model.score(x)
    store_before = set(pyro.get_param_store().keys())
    history = model.fit_svi(x, steps=150, lr=0.1, seed=0)
    assert start < em.final_log_likelihood - 1.0
    assert history[-1] > em.final_log_likelihood - 0.05
    assert model.score(x) > em.final_log_likelihood - 0.05
    # the clusters are found: MAP assignments from infer_discrete agree with responsibilities
    assignments = model.infer_assignments(x)
    assert torch.equal(assignments, model.predict(x))
    agreement = max((assignments == perm[labels]).double().mean()
                    for perm in torch.tensor([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0],
                                              [2, 0, 1], [2, 1, 0]]))
    assert agreement > 0.98
    assert set(pyro.get_param_store().keys()) == store_before, "fit_svi must leave the store"


def test_sampling_follows_the_fitted_mixture():
    x, _ = blobs(600)
    model = GaussianMixture(3, 2)
    model.fit_em(x, seed=0)
    pyro.set_rng_seed(0)
    new_x, new_z = model.sample(20000)
    assert new_x.shape == (20000, 2) and new_z.shape == (20000,)
    np.testing.assert_allclose(torch.bincount(new_z, minlength=3) / 20000, model.weights.detach(),
                               atol=0.02)
    for k in range(3):
        np.testing.assert_allclose(new_x[new_z == k].mean(0), model.locs.detach()[k], atol=0.1)
    # the data we sampled are as likely under the model as the training data
    assert model.score(new_x) == pytest.approx(model.score(x), abs=0.1)


def test_bic_picks_the_true_number_of_components():
    x, _ = blobs(600)
    bics = []
    for k in range(1, 6):
        model = GaussianMixture(k, 2)
        model.fit_em(x, seed=0, n_init=2)
        bics.append(model.bic(x))
    assert int(np.argmin(bics)) + 1 == 3


def test_restarts_keep_the_best_and_report_all():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(300, 2, generator=g, dtype=torch.float64)
    result = expectation_maximization(x, 5, "full", n_init=4, seed=0)
    assert len(result.restart_log_likelihoods) == 4
    assert result.final_log_likelihood == max(result.restart_log_likelihoods)


def test_a_collapsing_component_is_floored_and_reported():
    g = torch.Generator().manual_seed(0)
    cloud = torch.randn(60, 2, generator=g, dtype=torch.float64)
    repeated = torch.tensor([[4.0, 4.0]], dtype=torch.float64).expand(6, 2)  # six identical points
    x = torch.cat([cloud, repeated])
    start = MixtureParameters(torch.tensor([0.5, 0.5], dtype=torch.float64),
                              torch.tensor([[0.0, 0.0], [4.0, 4.0]], dtype=torch.float64),
                              torch.eye(2, dtype=torch.float64).expand(2, 2, 2).clone())
    with pytest.warns(UserWarning, match=r"components \[1\] collapsed"):
        result = expectation_maximization(x, 2, "full", init=start, reg_covar=1e-4)
    assert result.collapsed == [1]
    assert torch.allclose(result.params.covariances[1], 1e-4 * torch.eye(2, dtype=torch.float64))
    assert np.isfinite(result.final_log_likelihood)


def test_bayesian_guides_sample_the_globals_and_recover_the_em_fit():
    x, _ = blobs(300)
    x = (x - x.mean(0)) / x.std(0)  # the priors assume standardised data
    model = BayesianGaussianMixture(3, 2)
    em = model.fit_em(x, seed=0)
    guide = model.posterior_guide()
    history = model.fit_svi(x, guide=guide, steps=60, lr=0.02, seed=0)
    assert np.isfinite(history).all()
    with pyro.get_param_store().scope():
        trace = pyro.poutine.trace(guide).get_trace(x)
    sampled = {name for name, site in trace.nodes.items() if site["type"] == "sample"
               and not site_is_subsample(site) and not site["infer"].get("is_auxiliary")}
    assert sampled == set(BayesianGaussianMixture.GLOBAL_SITES)
    # the posterior median is close to the maximum-likelihood fit on this much data
    assert model.score(x) > em.final_log_likelihood - 0.05
    assert torch.equal(model.infer_assignments(x), model.predict(x))
    map_model = BayesianGaussianMixture(3, 2, "diag")
    map_model.fit_em(x, seed=0)
    map_model.fit_svi(x, steps=30, lr=0.02)
    assert map_model.score(x) > em.final_log_likelihood - 1.0


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(10), "shape"),
    (torch.full((10, 2), float("nan")), "NaN"),
    (torch.zeros(10, 3), "dim=2"),
])
def test_bad_data_is_named(bad, match):
    with pytest.raises(ZooInputError, match=match):
        GaussianMixture(2, 2).fit_em(bad)


def test_bad_arguments_are_named():
    with pytest.raises(ZooInputError, match="covariance_type"):
        GaussianMixture(2, 2, "tied")
    with pytest.raises(ZooInputError, match="n_components"):
        expectation_maximization(torch.zeros(3, 2), 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_em_on_gpu_matches_cpu():
    x, _ = blobs(2000)
    start = kmeans_plusplus_parameters(x, 3, seed=0)
    cpu = expectation_maximization(x, 3, init=start)
    gpu = expectation_maximization(x.cuda(), 3, init=start)
    assert gpu.params.locs.device.type == "cuda"
    assert gpu.final_log_likelihood == pytest.approx(cpu.final_log_likelihood, abs=1e-9)
