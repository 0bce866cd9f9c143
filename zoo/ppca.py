"""Probabilistic PCA: the linear-Gaussian latent model, solved in closed form, by EM and by SVI.

Generative story (Tipping & Bishop, 1999), for points ``x_n`` in ``R^d`` and latents in ``R^D``::

    z_n ~ N(0, I_D)
    x_n | z_n ~ N(A z_n + b, nu I_d)

with loadings ``A (d, D)``, bias ``b (d,)`` and noise variance ``nu`` (units of x squared).
Everything is Gaussian, so everything is exact:

* marginal      ``x_n ~ N(b, C)``, ``C = A A^T + nu I``: :meth:`PPCA.score_samples`;
* posterior     ``z_n | x_n ~ N(M^{-1} A^T (x_n - b), nu M^{-1})``, ``M = A^T A + nu I``:
  :meth:`PPCA.posterior`;
* maximum likelihood from the eigendecomposition of the sample covariance ``S = U L U^T``:
  ``b`` = data mean, ``nu`` = mean of the ``d - D`` discarded eigenvalues,
  ``A = U_D (L_D - nu I)^{1/2}`` (up to a rotation of the latent space): :meth:`PPCA.fit_closed_form`.

EM (:meth:`PPCA.fit_em`) reaches the same optimum iteratively, and SVI
(:meth:`PPCA.fit_svi`) reaches it by gradient ascent on the ELBO, either with the exact
posterior as guide (the ELBO then *equals* ``log p(x)``) or with an amortized linear guide
(:class:`LinearGaussianGuide`, a VAE encoder without the non-linearity) whose ELBO falls short by
``KL(q(z | x) || p(z | x))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer import Trace_ELBO
from pyro.nn import PyroModule, PyroParam

from zoo.errors import ZooInputError
from zoo.gmm import as_data, svi_full_batch


@dataclass
class EMHistory:
    """``log_likelihood[i]``: average log-likelihood per point (nats) before the M-step of
    iteration ``i + 1``; ``final_log_likelihood``: that of the returned parameters."""

    log_likelihood: list[float]
    final_log_likelihood: float
    n_iter: int
    converged: bool


def centred_covariance(x) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean (d,), S (d, d))``: the data mean and the maximum-likelihood (1/N) covariance."""
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / len(x)


def average_log_likelihood(cov_stats: torch.Tensor, loadings, noise_variance) -> float:
    """Average ``log N(x_n | b, A A^T + nu I)`` over the data, from its covariance ``S`` about
    ``b`` alone: ``-1/2 (d log 2 pi + log|C| + tr(C^{-1} S))``, with ``C^{-1}`` and ``log|C|``
    through the ``D x D`` matrix ``M = A^T A + nu I`` (Woodbury, determinant lemma)."""
    dim, latent_dim = loadings.shape
    m_chol = torch.linalg.cholesky(_m_matrix(loadings, noise_variance))
    log_det_c = (dim - latent_dim) * noise_variance.log() + 2 * m_chol.diagonal().log().sum()
    s_a = cov_stats @ loadings
    trace_c_inv_s = (cov_stats.trace()
                     - torch.cholesky_solve(loadings.T @ s_a, m_chol).trace()) / noise_variance
    return (-0.5 * (dim * math.log(2 * math.pi) + log_det_c + trace_c_inv_s)).item()


def _m_matrix(loadings, noise_variance) -> torch.Tensor:
    """``M = A^T A + nu I_D``: ``(D, D)``."""
    latent_dim = loadings.shape[1]
    eye = torch.eye(latent_dim, dtype=loadings.dtype, device=loadings.device)
    return loadings.T @ loadings + noise_variance * eye


class LinearGaussianGuide(PyroModule):
    """Amortized linear guide ``q(z_n | x_n) = N(W x_n + c, diag(s^2))``.

    The exact PPCA posterior has this mean form but a full covariance ``nu M^{-1}``; a diagonal
    ``s^2`` matches it only when ``A^T A`` is diagonal. This is a VAE encoder with no hidden layer.
    """

    def __init__(self, data_dim: int, latent_dim: int):
        super().__init__()
        self.encoder = torch.nn.Linear(data_dim, latent_dim)
        self.scale = PyroParam(torch.full((latent_dim,), 0.1), constraints.positive)

    def forward(self, x=None, n_samples: int | None = None):
        with pyro.plate("data", len(x), dim=-1):
            return pyro.sample("z", dist.Normal(self.encoder(x), self.scale).to_event(1))


class PPCA(PyroModule):
    """Probabilistic PCA with parameters ``loadings`` (A), ``bias`` (b), ``noise_variance`` (nu).

    Args:
        data_dim: d.
        latent_dim: D, below d.
        seed: seeds the random initial loadings (small Gaussian entries).
    """

    def __init__(self, data_dim: int, latent_dim: int, seed: int | None = None):
        super().__init__()
        if not 1 <= latent_dim < data_dim:
            raise ZooInputError(
                f"latent_dim must be in [1, data_dim={data_dim}), got {latent_dim}")
        self.data_dim, self.latent_dim = data_dim, latent_dim
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.set_parameters(0.1 * torch.randn(data_dim, latent_dim, generator=generator),
                            torch.zeros(data_dim), torch.tensor(1.0))

    def set_parameters(self, loadings, bias, noise_variance) -> PPCA:
        """Load ``A (d, D)``, ``b (d,)``, ``nu ()``."""
        self.loadings = PyroParam(torch.as_tensor(loadings).detach().clone())
        self.bias = PyroParam(torch.as_tensor(bias).detach().clone())
        self.noise_variance = PyroParam(torch.as_tensor(noise_variance).detach().clone(),
                                        constraints.positive)
        return self

    def _check_data(self, x) -> torch.Tensor:
        x = as_data(x)
        if x.shape[1] != self.data_dim:
            raise ZooInputError(f"x must have data_dim={self.data_dim} columns, got {x.shape[1]}")
        self.to(device=x.device, dtype=x.dtype)
        return x

    # ---------------------------------------------------------------- model and guides
    def model(self, x=None, n_samples: int | None = None):
        """``z_n ~ N(0, I)``, ``x_n ~ N(A z_n + b, nu I)``; generates ``n_samples`` if ``x=None``."""
        loadings, bias = self.loadings, self.bias
        noise_std = self.noise_variance.sqrt()
        n_points = len(x) if x is not None else n_samples
        with pyro.plate("data", n_points, dim=-1):
            z = pyro.sample("z", dist.Normal(bias.new_zeros(()), 1.0)
                            .expand([self.latent_dim]).to_event(1))
            mean = z @ loadings.T + bias
            return pyro.sample("x", dist.Normal(mean, noise_std).to_event(1), obs=x)

    def exact_guide(self, x=None, n_samples: int | None = None):
        """The exact posterior ``p(z_n | x_n)`` under the current parameters, as a guide."""
        with pyro.plate("data", len(x), dim=-1):
            return pyro.sample("z", self.posterior(x))

    def linear_guide(self) -> LinearGaussianGuide:
        """A fresh amortized linear guide with matching sizes, on the model's device and dtype."""
        return LinearGaussianGuide(self.data_dim, self.latent_dim).to(
            device=self.bias.device, dtype=self.bias.dtype)

    # ---------------------------------------------------------------- exact quantities
    def marginal(self) -> dist.LowRankMultivariateNormal:
        """``p(x) = N(b, A A^T + nu I)``, with its low-rank-plus-diagonal structure."""
        return dist.LowRankMultivariateNormal(
            self.bias, self.loadings, self.noise_variance.expand(self.data_dim))

    def posterior(self, x) -> dist.MultivariateNormal:
        """``p(z_n | x_n) = N(M^{-1} A^T (x_n - b), nu M^{-1})``: batch ``(N,)``, event ``(D,)``."""
        loadings, noise_variance = self.loadings, self.noise_variance
        m_chol = torch.linalg.cholesky(_m_matrix(loadings, noise_variance))
        mean = torch.cholesky_solve(loadings.T @ (x - self.bias).T, m_chol).T  # (N, D)
        covariance = noise_variance * torch.cholesky_inverse(m_chol)  # (D, D), shared by all n
        # positive definite by construction: skip the per-point argument check (costly in SVI)
        return dist.MultivariateNormal(mean, scale_tril=torch.linalg.cholesky(covariance),
                                       validate_args=False)

    @torch.no_grad()
    def score_samples(self, x) -> torch.Tensor:
        """``log p(x_n)``: ``(N,)`` nats."""
        x = self._check_data(x)
        return self.marginal().log_prob(x)

    def score(self, x) -> float:
        """Average log-likelihood per point (nats), as ``sklearn.decomposition.PCA.score``."""
        return self.score_samples(x).mean().item()

    @torch.no_grad()
    def transform(self, x) -> torch.Tensor:
        """Posterior means ``E[z_n | x_n]``: ``(N, D)``."""
        return self.posterior(self._check_data(x)).mean

    @torch.no_grad()
    def reconstruct(self, x) -> torch.Tensor:
        """``A E[z_n | x_n] + b``: the data seen through the latent space, ``(N, d)``."""
        return self.transform(x) @ self.loadings.T + self.bias

    @torch.no_grad()
    def sample(self, n_samples: int) -> torch.Tensor:
        """New data from the model: ``(n_samples, d)``."""
        return self.model(None, n_samples)

    @torch.no_grad()
    def elbo(self, x, guide=None, num_particles: int = 64) -> float:
        """Monte Carlo ELBO per point for ``guide`` (default: the exact posterior)."""
        x = self._check_data(x)
        guide = self.exact_guide if guide is None else guide
        estimator = Trace_ELBO(max_plate_nesting=1, num_particles=num_particles,
                               vectorize_particles=True)
        with pyro.get_param_store().scope():
            return -estimator.loss(self.model, guide, x) / len(x)

    # ---------------------------------------------------------------- fitting
    def fit_closed_form(self, x) -> PPCA:
        """Maximum likelihood from the eigendecomposition of the sample covariance."""
        x = self._check_data(x)
        mean, cov_stats = centred_covariance(x)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov_stats)  # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
        noise_variance = eigenvalues[self.latent_dim:].mean()
        # below rounding level of the largest variance, the discarded directions are empty
        if noise_variance <= self.data_dim * torch.finfo(x.dtype).eps * eigenvalues[0]:
            raise ZooInputError(
                f"x spans at most {self.latent_dim} dimensions: latent_dim={self.latent_dim} "
                "leaves no noise variance; use a smaller latent_dim")
        kept = eigenvalues[:self.latent_dim]
        loadings = eigenvectors[:, :self.latent_dim] * (kept - noise_variance).clamp_min(0).sqrt()
        return self.set_parameters(loadings, mean, noise_variance)

    def fit_em(self, x, max_iter: int = 1000, tol: float = 1e-6) -> EMHistory:
        """EM from the current loadings and noise variance (``b`` is set to the data mean, its
        closed form). Works on the covariance ``S``, so an iteration costs ``O(d^2 D)``:

            M = A^T A + nu I
            A_new = S A (nu I + M^{-1} A^T S A)^{-1}
            nu_new = tr(S - S A M^{-1} A_new^T) / d

        Stops when the average log-likelihood changes by less than ``tol`` nats per point.
        """
        x = self._check_data(x)
        mean, cov_stats = centred_covariance(x)
        loadings, noise_variance = self.loadings.detach(), self.noise_variance.detach()
        eye = torch.eye(self.latent_dim, dtype=x.dtype, device=x.device)
        history: list[float] = []
        converged = False
        for _ in range(max_iter):
            history.append(average_log_likelihood(cov_stats, loadings, noise_variance))
            m_chol = torch.linalg.cholesky(_m_matrix(loadings, noise_variance))
            s_a = cov_stats @ loadings  # (d, D)
            m_inv_at_s_a = torch.cholesky_solve(loadings.T @ s_a, m_chol)  # M^{-1} A^T S A
            new_loadings = torch.linalg.solve(noise_variance * eye + m_inv_at_s_a, s_a,
                                              left=False)
            noise_variance = (cov_stats.trace() - (s_a @ torch.cholesky_solve(
                new_loadings.T, m_chol)).trace()) / self.data_dim
            loadings = new_loadings
            if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
                converged = True
                break
        self.set_parameters(loadings, mean, noise_variance)
        return EMHistory(history, average_log_likelihood(cov_stats, loadings, noise_variance),
                         len(history), converged)

    def fit_svi(self, x, guide="exact", steps: int = 1000, lr: float = 0.02,
                num_particles: int = 1, seed: int | None = None) -> list[float]:
        """Gradient ascent on the ELBO (``Trace_ELBO``) from the current parameters.

        ``guide``: ``"exact"`` (:meth:`exact_guide`), ``"linear"`` (a fresh
        :class:`LinearGaussianGuide`) or any guide over the site ``z``. Returns the ELBO per
        point at each step.
        """
        x = self._check_data(x)
        if guide == "exact":
            guide = self.exact_guide
        elif guide == "linear":
            guide = self.linear_guide()
        elbo = Trace_ELBO(max_plate_nesting=1, num_particles=num_particles,
                          vectorize_particles=num_particles > 1)
        return svi_full_batch(self.model, guide, x, elbo, steps, lr, seed)
