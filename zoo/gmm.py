"""Gaussian mixture model: the Pyro model trained by SVI, and exact EM beside it.

Generative story, for ``n = 1..N`` points ``x_n`` in ``R^d`` and ``K`` components::

    z_n ~ Categorical(pi)                      which component drew the point
    x_n | z_n = k ~ N(mu_k, Sigma_k)           full, diagonal or spherical Sigma_k

so ``log p(x_n) = log sum_k pi_k N(x_n | mu_k, Sigma_k)``. Two ways to maximise it:

* **EM** (:func:`expectation_maximization`): the E-step computes the exact posterior of
  ``z_n``, the responsibilities ``eta_nk = p(z_n = k | x_n)``; the M-step maximises the
  expected complete-data log-likelihood in closed form. Each iteration never lowers
  ``log p(x)``.
* **SVI** (:meth:`GaussianMixture.fit_svi`): ``TraceEnum_ELBO`` sums ``z_n`` out exactly
  (enumeration), so the ELBO of the point-estimate model *is* ``log p(x)`` and gradient
  ascent on it climbs the same surface as EM, only more slowly.

:class:`GaussianMixture` keeps the global parameters (``pi``, ``mu``, ``Sigma``) as module
parameters: maximum likelihood. :class:`BayesianGaussianMixture` puts priors on them and
swaps in a point-estimate guide (MAP) or a mean-field posterior guide.

Shapes follow scikit-learn: ``weights (K,)``, ``locs (K, d)``, ``covariances`` ``(K, d, d)``
(full), ``(K, d)`` (diag) or ``(K,)`` (spherical); data ``x (N, d)``. Log-likelihoods are in
nats; "per point" values are averages over the N points, as ``sklearn``'s ``score``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import TraceEnum_ELBO, infer_discrete
from pyro.infer.autoguide import AutoDelta, AutoNormal, init_to_value
from pyro.nn import PyroModule, PyroParam

from zoo.errors import ZooInputError

COVARIANCE_TYPES = ("full", "diag", "spherical")

# Rows per block when the (K, rows, d) whitened residuals of the full-covariance E- and M-steps
# are formed: enough elements for fast batched matrix products, few enough to stay in cache
# memory (1e5 points x 32 components x 64 dims would otherwise need 1.6 GB in float64).
_BLOCK_ELEMENTS = 2**21


# ---------------------------------------------------------------------------- input checks
def as_data(x, name: str = "x") -> torch.Tensor:
    """``x`` as a floating ``(N, d)`` tensor (numpy arrays accepted; dtype kept if floating)."""
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ZooInputError(f"{name} must be a non-empty (N, d) array, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ZooInputError(f"{name} contains NaN or infinite values")
    return x


def _check_covariance_type(covariance_type: str) -> None:
    if covariance_type not in COVARIANCE_TYPES:
        raise ZooInputError(
            f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}"
        )


# ---------------------------------------------------------------------------- Gaussian algebra
def component_log_densities(x, locs, covariances, covariance_type: str) -> torch.Tensor:
    """``log N(x_n | mu_k, Sigma_k)`` for all points and components: ``(N, K)``.

    Full covariances go through their Cholesky factors ``Sigma_k = L_k L_k^T``: the squared
    Mahalanobis distance is ``|W_k^T x_n - W_k^T mu_k|^2`` with ``W_k = L_k^{-T}``, and ``log
    |Sigma_k| = 2 sum log diag L_k``. The K whitening maps sit side by side in one ``(d, K d)``
    matrix, so each block of points is whitened by all components in one matrix product.
    """
    n_points, dim = x.shape
    n_components = len(locs)
    const = dim * math.log(2 * math.pi)
    if covariance_type == "full":
        chol, info = torch.linalg.cholesky_ex(covariances)
        if (info != 0).any():
            bad = torch.nonzero(info).flatten().tolist()
            raise ZooInputError(f"covariances of components {bad} are not positive definite")
        eye = torch.eye(dim, dtype=x.dtype, device=x.device)
        whiten = torch.linalg.solve_triangular(chol, eye, upper=False).mT  # (K, d, d)
        whiten_all = whiten.permute(1, 0, 2).reshape(dim, n_components * dim)
        shift = (locs.unsqueeze(1) @ whiten).reshape(n_components * dim)
        log_det = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,)
        mahalanobis = torch.empty(n_points, n_components, dtype=x.dtype, device=x.device)
        block = max(1, _BLOCK_ELEMENTS // (n_components * dim))
        for start in range(0, n_points, block):
            whitened = torch.addmm(shift, x[start:start + block], whiten_all, beta=-1)
            distances = torch.linalg.vector_norm(whitened.view(-1, n_components, dim), dim=-1)
            mahalanobis[start:start + block] = distances.square_()
        return -0.5 * (const + log_det + mahalanobis)
    # diagonal / spherical: expand |x - mu|^2 / var into matrix products
    variances = covariances if covariance_type == "diag" else covariances[:, None].expand_as(locs)
    precisions = variances.reciprocal()  # (K, d)
    mahalanobis = (
        x.square() @ precisions.T
        - 2 * x @ (locs * precisions).T
        + (locs.square() * precisions).sum(-1)
    )
    return -0.5 * (const + variances.log().sum(-1) + mahalanobis)


@dataclass
class MixtureParameters:
    """A Gaussian mixture's parameters in scikit-learn's shapes (see the module docstring)."""

    weights: torch.Tensor
    locs: torch.Tensor
    covariances: torch.Tensor
    covariance_type: str = "full"

    def log_joint(self, x) -> torch.Tensor:
        """``log pi_k + log N(x_n | mu_k, Sigma_k)``: ``(N, K)``."""
        return self.weights.log() + component_log_densities(
            x, self.locs, self.covariances, self.covariance_type
        )

    def e_step(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(x_n)  (N,), log eta_nk  (N, K))``: per-point log-likelihood and
        log-responsibilities ``log p(z_n = k | x_n)``."""
        log_joint = self.log_joint(x)
        log_likelihood = torch.logsumexp(log_joint, dim=-1)
        return log_likelihood, log_joint - log_likelihood[:, None]

    def n_free_parameters(self) -> int:
        """Number of free parameters (for BIC / AIC)."""
        n_components, dim = self.locs.shape
        per_cov = {"full": dim * (dim + 1) // 2, "diag": dim, "spherical": 1}
        return n_components * (dim + per_cov[self.covariance_type]) + n_components - 1


def m_step(x, responsibilities, covariance_type: str, reg_covar: float) -> MixtureParameters:
    """Closed-form maximiser of ``sum_nk eta_nk log(pi_k N(x_n | mu_k, Sigma_k))``.

    ``pi_k = N_k / N``, ``mu_k = sum_n eta_nk x_n / N_k``, ``Sigma_k = sum_n eta_nk (x_n -
    mu_k)(x_n - mu_k)^T / N_k + reg_covar I``, with ``N_k = sum_n eta_nk``. The floor
    ``reg_covar`` (units of x squared) keeps every covariance positive definite when a
    component collapses onto a point or a subspace. As in scikit-learn, ``N_k`` gets ``10 eps``
    so an emptied component stays finite.
    """
    counts = responsibilities.sum(0) + 10 * torch.finfo(x.dtype).eps  # (K,)
    locs = responsibilities.T @ x / counts[:, None]
    if covariance_type == "full":
        # sum_n eta_nk (x_n - c)(x_n - c)^T for all k in one product per block of points, about
        # the data mean c (which keeps the cancellation in "second moment - mean^2" small)
        n_components, dim = locs.shape
        centre = x.mean(0)
        scatter = torch.zeros(n_components * dim, dim, dtype=x.dtype, device=x.device)
        block = max(1, _BLOCK_ELEMENTS // (n_components * dim))
        for start in range(0, len(x), block):
            centred = x[start:start + block] - centre  # (b, d)
            weighted = responsibilities[start:start + block, :, None] * centred[:, None, :]
            scatter.addmm_(weighted.view(len(centred), -1).T, centred)
        offsets = locs - centre
        covariances = (scatter.view(n_components, dim, dim) / counts[:, None, None]
                       - offsets[:, :, None] * offsets[:, None, :])
        covariances = 0.5 * (covariances + covariances.mT)
        covariances.diagonal(dim1=-2, dim2=-1).add_(reg_covar)
    else:
        centre = x.mean(0)
        second_moments = responsibilities.T @ (x - centre).square() / counts[:, None]
        covariances = second_moments - (locs - centre).square() + reg_covar  # (K, d)
        if covariance_type == "spherical":
            covariances = covariances.mean(-1)
    return MixtureParameters(counts / counts.sum(), locs, covariances, covariance_type)


def kmeans_plusplus(x, n_clusters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices ``(n_clusters,)`` of k-means++ seeds (Arthur & Vassilvitskii, 2007).

    Each new seed is drawn with probability proportional to the squared distance to the nearest
    seed so far; as in scikit-learn, ``2 + log(n_clusters)`` candidates are drawn and the one
    that most lowers the total squared distance is kept.
    """
    n_points = len(x)
    n_trials = 2 + int(math.log(n_clusters))
    first = torch.randint(n_points, (1,), generator=generator, device="cpu").item()
    seeds = [first]
    closest = (x - x[first]).square().sum(-1)  # (N,) squared distance to the nearest seed
    for _ in range(1, n_clusters):
        weights = closest.cpu() if closest.sum() > 0 else torch.ones(n_points, dtype=x.dtype)
        candidates = torch.multinomial(weights, n_trials, replacement=True, generator=generator)
        candidates = candidates.to(x.device)
        to_candidates = torch.cdist(x[candidates], x).square()  # (trials, N)
        updated = torch.minimum(closest, to_candidates)
        best = updated.sum(-1).argmin()
        seeds.append(candidates[best].item())
        closest = updated[best]
    return torch.tensor(seeds, device=x.device)


def kmeans_plusplus_parameters(x, n_components: int, covariance_type: str = "full",
                               reg_covar: float = 1e-6, seed: int | None = None
                               ) -> MixtureParameters:
    """Initial parameters: k-means++ seeds, each point assigned to its nearest seed, one M-step."""
    x = as_data(x)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    seeds = x[kmeans_plusplus(x, n_components, generator)]
    nearest = torch.cdist(x, seeds).argmin(-1)
    hard = torch.nn.functional.one_hot(nearest, n_components).to(x.dtype)
    return m_step(x, hard, covariance_type, reg_covar)


def collapsed_components(params: MixtureParameters, counts: torch.Tensor, reg_covar: float,
                         factor: float = 10.0) -> list[int]:
    """Components that explain less than one point (``N_k < 1``) or whose smallest covariance
    eigenvalue is within ``factor`` of the floor ``reg_covar``: the likelihood there is held
    up by the floor, not by the data."""
    if params.covariance_type == "full":
        smallest = torch.linalg.eigvalsh(params.covariances)[:, 0]
    elif params.covariance_type == "diag":
        smallest = params.covariances.min(-1).values
    else:
        smallest = params.covariances
    mask = (counts < 1) | (smallest <= factor * reg_covar)
    return torch.nonzero(mask).flatten().tolist()


# ---------------------------------------------------------------------------- EM
@dataclass
class EMResult:
    """What :func:`expectation_maximization` found (the best of its restarts).

    ``log_likelihood[i]`` is the average log-likelihood per point of the parameters at the
    start of iteration ``i + 1`` (what scikit-learn calls the lower bound); ``final_log_likelihood``
    is that of the returned parameters, one M-step further.
    """

    params: MixtureParameters
    log_likelihood: list[float]
    final_log_likelihood: float
    n_iter: int
    converged: bool
    collapsed: list[int] = field(default_factory=list)
    restart: int = 0
    restart_log_likelihoods: list[float] = field(default_factory=list)


def expectation_maximization(
    x,
    n_components: int,
    covariance_type: str = "full",
    *,
    init: MixtureParameters | None = None,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    seed: int | None = None,
    callback: Callable[[int, MixtureParameters], None] | None = None,
) -> EMResult:
    """Fit a Gaussian mixture by EM; returns the best of ``n_init`` restarts.

    Args:
        x: data ``(N, d)``; computations run in its dtype and on its device.
        init: starting parameters; default k-means++ (:func:`kmeans_plusplus_parameters`),
            drawn anew for each restart (seeded by ``seed``, ``seed + 1``, ...).
        tol: stop when the average log-likelihood per point changes by less than ``tol``
            between iterations (scikit-learn's criterion and default).
        reg_covar: covariance floor added to the diagonal (units of x squared).
        callback: ``callback(iteration, params)`` after each M-step (iteration 0 = start).

    Restarts whose components collapsed (:func:`collapsed_components`) lose to any restart
    without collapse; the kept result lists its collapsed components and a warning says so.

    Monotonicity: with ``reg_covar = 0`` no iteration lowers the log-likelihood. With the floor,
    the M-step maximises the expected complete-data log-likelihood minus ``reg_covar / 2
    sum_k N_k tr(Sigma_k^{-1})``, so one iteration can lower the average log-likelihood by at
    most ``reg_covar / 2 sum_k pi_k' tr(Sigma_k^{-1})`` (new weights, old covariances): a
    dip of that order is the floor at work, not a bug.
    """
    x = as_data(x)
    _check_covariance_type(covariance_type)
    if n_components < 1 or n_components > len(x):
        raise ZooInputError(f"n_components must be in [1, N={len(x)}], got {n_components}")
    if max_iter < 1 or n_init < 1:
        raise ZooInputError(f"max_iter and n_init must be >= 1, got {max_iter} and {n_init}")
    if init is not None and n_init != 1:
        raise ZooInputError("n_init must be 1 when init parameters are given")
    if init is not None and init.covariance_type != covariance_type:
        raise ZooInputError(f"init has covariance_type={init.covariance_type!r}, expected "
                            f"{covariance_type!r}")
    best: EMResult | None = None
    finals = []
    for restart in range(n_init):
        if init is None:
            params = kmeans_plusplus_parameters(
                x, n_components, covariance_type, reg_covar,
                None if seed is None else seed + restart)
        else:
            params = MixtureParameters(*(torch.as_tensor(t, dtype=x.dtype, device=x.device)
                                         for t in (init.weights, init.locs, init.covariances)),
                                       covariance_type)
        if callback is not None:
            callback(0, params)
        history: list[float] = []
        converged = False
        for iteration in range(1, max_iter + 1):
            log_likelihood, log_resp = params.e_step(x)
            history.append(log_likelihood.mean().item())
            responsibilities = log_resp.exp()
            params = m_step(x, responsibilities, covariance_type, reg_covar)
            if callback is not None:
                callback(iteration, params)
            if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
                converged = True
                break
        final_log_likelihood, log_resp = params.e_step(x)
        collapsed = collapsed_components(params, log_resp.exp().sum(0), reg_covar)
        result = EMResult(params, history, final_log_likelihood.mean().item(), iteration,
                          converged, collapsed, restart)
        finals.append(result.final_log_likelihood)
        if best is None or ((not result.collapsed, result.final_log_likelihood)
                            > (not best.collapsed, best.final_log_likelihood)):
            best = result
    best.restart_log_likelihoods = finals
    if best.collapsed:
        warnings.warn(
            f"GMM EM: components {best.collapsed} collapsed (fewer than one point, or a "
            f"covariance at the floor reg_covar={reg_covar}); their likelihood is set by the "
            "floor. Try fewer components, more restarts, or a larger reg_covar.",
            stacklevel=2,
        )
    return best


# ---------------------------------------------------------------------------- SVI loop
def svi_full_batch(model, guide, x, elbo, steps: int, lr: float,
                   seed: int | None = None) -> list[float]:
    """Adam on the negative ELBO over the full data set; returns the ELBO per point at each step.

    A deliberately small loop for the shallow models (one full-batch step per iteration); the
    deep models use the shared trainer ``zoo.train.fit`` (mini-batches, annealing, checkpoints).

    ``model`` and ``guide`` are PyroModules or their methods; their parameters live in the
    modules, and Pyro's global param store is scoped (emptied, then restored) around the loop,
    so models and guides can be re-created and re-trained freely in a notebook. The value at step ``t`` is
    the ELBO of the parameters before the ``t``-th update. Modules are moved to ``x``'s device
    and dtype first.
    """
    if seed is not None:
        pyro.set_rng_seed(seed)
    modules = [module for fn in (model, guide) for module in [getattr(fn, "__self__", fn)]
               if isinstance(module, torch.nn.Module)]
    for module in modules:  # parameters follow the data's device and dtype
        module.to(device=x.device, dtype=x.dtype)
    history = []
    with pyro.get_param_store().scope():
        loss = elbo.differentiable_loss(model, guide, x)  # also builds lazily-made guide params
        parameters = {id(p): p for module in modules for p in module.parameters()}
        optimizer = torch.optim.Adam(parameters.values(), lr=lr)
        for step in range(steps):
            if step:
                loss = elbo.differentiable_loss(model, guide, x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append(-loss.item() / len(x))
    return history


# ---------------------------------------------------------------------------- Pyro model
class GaussianMixture(PyroModule):
    """Gaussian mixture with maximum-likelihood global parameters held in the module.

    Args:
        n_components: K.
        dim: d, the dimension of a data point.
        covariance_type: ``"full"``, ``"diag"`` or ``"spherical"``.
        reg_covar: covariance floor used by EM (units of x squared).

    Fit with :meth:`fit_em` (exact EM) or :meth:`fit_svi` (``TraceEnum_ELBO``), then use it
    as scikit-learn's ``GaussianMixture``: :meth:`predict`, :meth:`predict_proba`,
    :meth:`score`, :meth:`score_samples`, :meth:`sample`, :meth:`bic`.
    """

    def __init__(self, n_components: int, dim: int, covariance_type: str = "full",
                 reg_covar: float = 1e-6):
        super().__init__()
        _check_covariance_type(covariance_type)
        if n_components < 1 or dim < 1:
            raise ZooInputError(
                f"n_components and dim must be >= 1, got {n_components} and {dim}")
        self.n_components, self.dim = n_components, dim
        self.covariance_type, self.reg_covar = covariance_type, reg_covar
        cov_shape = {"full": (dim, dim), "diag": (dim,), "spherical": ()}[covariance_type]
        unit = torch.eye(dim) if covariance_type == "full" else torch.ones(cov_shape)
        self.set_parameters(MixtureParameters(
            torch.full((n_components,), 1.0 / n_components), torch.randn(n_components, dim),
            unit.expand(n_components, *cov_shape).clone(), covariance_type))

    # ---------------------------------------------------------------- parameters
    def set_parameters(self, params: MixtureParameters) -> GaussianMixture:
        """Load ``params`` (scikit-learn shapes) as the module's point estimates."""
        self.weights = PyroParam(params.weights.detach().clone(), constraints.simplex)
        self.locs = PyroParam(params.locs.detach().clone())
        covariances = params.covariances.detach()
        if self.covariance_type == "full":
            self.scale_tril = PyroParam(torch.linalg.cholesky(covariances),
                                        constraints.lower_cholesky)
        else:
            self.variances = PyroParam(covariances.clone(), constraints.positive)
        return self

    @property
    def covariances(self) -> torch.Tensor:
        """``Sigma``: ``(K, d, d)``, ``(K, d)`` or ``(K,)`` by covariance type."""
        if self.covariance_type == "full":
            return self.scale_tril @ self.scale_tril.mT
        return self.variances

    def mixture_parameters(self) -> MixtureParameters:
        """The point estimates, detached, as :class:`MixtureParameters`."""
        return MixtureParameters(self.weights.detach(), self.locs.detach(),
                                 self.covariances.detach(), self.covariance_type)

    def global_parameters(self):
        """``(pi (K,), mu (K, d), scale)`` for the model: ``scale`` is the Cholesky factor
        ``(K, d, d)`` (full) or the standard deviations ``(K, d)`` (diag, spherical)."""
        if self.covariance_type == "full":
            return self.weights, self.locs, self.scale_tril
        stds = self.variances.sqrt()
        if self.covariance_type == "spherical":
            stds = stds[:, None].expand(-1, self.dim)
        return self.weights, self.locs, stds

    def _component(self, z, locs, scale):
        """The distribution of ``x`` given component indices ``z`` (any batch shape)."""
        if self.covariance_type == "full":
            # scale is lower-Cholesky by construction (constraint transform or LKJ prior), so
            # skip the argument check, which costs more than the whole SVI step here
            return dist.MultivariateNormal(locs[z], scale_tril=scale[z], validate_args=False)
        return dist.Normal(locs[z], scale[z]).to_event(1)

    # ---------------------------------------------------------------- model / guide
    def model(self, x=None, n_samples: int | None = None):
        """``z_n ~ Cat(pi)``, ``x_n ~ N(mu_{z_n}, Sigma_{z_n})``; ``z`` is enumerated in SVI.

        With ``x=None`` it generates ``n_samples`` points (returns them).
        """
        weights, locs, scale = self.global_parameters()
        n_points = len(x) if x is not None else n_samples
        with pyro.plate("data", n_points, dim=-1):
            z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
            return pyro.sample("x", self._component(z, locs, scale), obs=x)

    def guide(self, x=None, n_samples: int | None = None):
        """Nothing to sample: ``z`` is summed out by enumeration, and the globals are point
        estimates living in the module. The ELBO is then exactly ``log p(x)``."""

    def default_guide(self):
        """The guide :meth:`fit_svi` uses when none is given."""
        return self.guide

    # ---------------------------------------------------------------- fitting
    def initialize(self, x, seed: int | None = None) -> GaussianMixture:
        """Set the parameters from k-means++ (see :func:`kmeans_plusplus_parameters`)."""
        x = self._check_data(x)
        return self.set_parameters(kmeans_plusplus_parameters(
            x, self.n_components, self.covariance_type, self.reg_covar, seed))

    def fit_em(self, x, **kwargs) -> EMResult:
        """Exact EM (:func:`expectation_maximization`, same keywords); keeps the best fit."""
        x = self._check_data(x)
        result = expectation_maximization(x, self.n_components, self.covariance_type,
                                          reg_covar=self.reg_covar, **kwargs)
        self.set_parameters(result.params)
        return result

    def fit_svi(self, x, guide=None, steps: int = 1000, lr: float = 0.05,
                seed: int | None = None, num_particles: int = 1) -> list[float]:
        """Maximise the ELBO with ``TraceEnum_ELBO`` from the current parameters (call
        :meth:`initialize` or :meth:`fit_em` first). Returns the ELBO per point per step."""
        x = self._check_data(x)
        self.to(device=x.device, dtype=x.dtype)
        guide = self.default_guide() if guide is None else guide
        elbo = TraceEnum_ELBO(max_plate_nesting=1, num_particles=num_particles,
                              vectorize_particles=num_particles > 1)
        return svi_full_batch(self.model, guide, x, elbo, steps, lr, seed)

    def _check_data(self, x) -> torch.Tensor:
        x = as_data(x)
        if x.shape[1] != self.dim:
            raise ZooInputError(f"x must have dim={self.dim} columns, got {x.shape[1]}")
        return x

    # ---------------------------------------------------------------- using a fitted model
    def _params_like(self, x) -> MixtureParameters:
        p = self.mixture_parameters()
        return MixtureParameters(*(t.to(device=x.device, dtype=x.dtype)
                                   for t in (p.weights, p.locs, p.covariances)),
                                 self.covariance_type)

    @torch.no_grad()
    def score_samples(self, x) -> torch.Tensor:
        """``log p(x_n)`` per point: ``(N,)`` nats."""
        x = self._check_data(x)
        return self._params_like(x).e_step(x)[0]

    def score(self, x) -> float:
        """Average log-likelihood per point (nats), as ``sklearn``'s ``score``."""
        return self.score_samples(x).mean().item()

    @torch.no_grad()
    def predict_proba(self, x) -> torch.Tensor:
        """Responsibilities ``eta_nk = p(z_n = k | x_n)``: ``(N, K)``."""
        x = self._check_data(x)
        return self._params_like(x).e_step(x)[1].exp()

    def predict(self, x) -> torch.Tensor:
        """Most probable component per point: ``(N,)`` integers."""
        return self.predict_proba(x).argmax(-1)

    @torch.no_grad()
    def infer_assignments(self, x, temperature: int = 0) -> torch.Tensor:
        """Component of each point from the Pyro model with ``infer_discrete``: the MAP
        assignment (``temperature=0``) or a posterior sample (``temperature=1``). ``(N,)``."""
        x = self._check_data(x)
        self.to(device=x.device, dtype=x.dtype)
        with pyro.get_param_store().scope():
            model = infer_discrete(self._point_model(), first_available_dim=-2,
                                   temperature=temperature)
            trace = poutine.trace(model).get_trace(x)
        return trace.nodes["z"]["value"]

    def _point_model(self):
        """The model with its global parameters at the point estimates."""
        return self.model

    @torch.no_grad()
    def sample(self, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """New data from the fitted model: ``(x (n, d), z (n,))``, as ``sklearn``'s ``sample``."""
        with pyro.get_param_store().scope():
            trace = poutine.trace(self._point_model()).get_trace(None, n_samples)
        return trace.nodes["x"]["value"], trace.nodes["z"]["value"]

    def bic(self, x) -> float:
        """Bayesian information criterion ``-2 log p(x) + n_params log N`` (lower is better)."""
        x = self._check_data(x)
        n_params = self.mixture_parameters().n_free_parameters()
        return -2 * self.score(x) * len(x) + n_params * math.log(len(x))

    def aic(self, x) -> float:
        """Akaike information criterion ``-2 log p(x) + 2 n_params`` (lower is better)."""
        x = self._check_data(x)
        return -2 * self.score(x) * len(x) + 2 * self.mixture_parameters().n_free_parameters()


class BayesianGaussianMixture(GaussianMixture):
    """The same mixture with priors on its global parameters, for guides over them.

    Priors (for standardised data: zero mean, unit variance per feature)::

        pi ~ Dirichlet(concentration 1_K)
        mu_k ~ N(0, loc_scale^2 I)
        per-feature standard deviations of component k ~ LogNormal(0, 1)   (one for spherical)
        correlation Cholesky factor of component k ~ LKJCholesky(d, 1)     (full only)

    Guides: :meth:`map_guide` (``AutoDelta``, point estimates: MAP) and :meth:`posterior_guide`
    (``AutoNormal``, a mean-field Gaussian posterior over the unconstrained globals); both start
    at the module's current point estimates. After :meth:`fit_svi` the guide's posterior median
    becomes the module's point estimate, used by ``predict``, ``score`` and ``sample``.
    """

    GLOBAL_SITES = ("weights", "locs", "scales", "corr_cholesky")

    def __init__(self, n_components: int, dim: int, covariance_type: str = "full",
                 reg_covar: float = 1e-6, loc_scale: float = 3.0):
        super().__init__(n_components, dim, covariance_type, reg_covar)
        self.loc_scale = loc_scale

    def model(self, x=None, n_samples: int | None = None):
        """Priors on ``pi``, ``mu``, ``Sigma`` (sites in :attr:`GLOBAL_SITES`), then the
        mixture of :meth:`GaussianMixture.model`."""
        like = self.locs
        n_components, dim = self.n_components, self.dim
        one, zero = like.new_ones(()), like.new_zeros(())
        weights = pyro.sample("weights", dist.Dirichlet(like.new_ones(n_components)))
        with pyro.plate("components", n_components, dim=-1):
            locs = pyro.sample("locs", dist.Normal(zero, self.loc_scale * one)
                               .expand([dim]).to_event(1))
            if self.covariance_type == "spherical":
                scales = pyro.sample("scales", dist.LogNormal(zero, one))[:, None].expand(-1, dim)
            else:
                scales = pyro.sample("scales", dist.LogNormal(zero, one)
                                     .expand([dim]).to_event(1))
            if self.covariance_type == "full":
                corr = pyro.sample("corr_cholesky", dist.LKJCholesky(dim, one))
                scales = scales[..., :, None] * corr  # (K, d, d) Cholesky factor of Sigma_k
        n_points = len(x) if x is not None else n_samples
        with pyro.plate("data", n_points, dim=-1):
            z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
            return pyro.sample("x", self._component(z, locs, scales), obs=x)

    def point_sites(self) -> dict:
        """The module's point estimates as values of the global sample sites."""
        weights, locs, scale = (t.detach() for t in self.global_parameters())
        if self.covariance_type == "full":
            stds = scale.norm(dim=-1)  # row norms of L: sqrt(diag Sigma)
            return {"weights": weights, "locs": locs, "scales": stds,
                    "corr_cholesky": scale / stds[..., None]}
        return {"weights": weights, "locs": locs,
                "scales": scale[:, 0] if self.covariance_type == "spherical" else scale}

    def _globals_only(self):
        return poutine.block(self.model, expose=list(self.GLOBAL_SITES))

    def map_guide(self) -> AutoDelta:
        """Point-estimate guide over the globals: SVI with it finds the MAP parameters."""
        return AutoDelta(self._globals_only(), init_loc_fn=init_to_value(values=self.point_sites()))

    def posterior_guide(self, init_scale: float = 0.05) -> AutoNormal:
        """Mean-field Gaussian guide over the (unconstrained) globals: a full posterior."""
        return AutoNormal(self._globals_only(), init_scale=init_scale,
                          init_loc_fn=init_to_value(values=self.point_sites()))

    def default_guide(self):
        return self.map_guide()

    def fit_svi(self, x, guide=None, steps: int = 1000, lr: float = 0.05,
                seed: int | None = None, num_particles: int = 1) -> list[float]:
        """As :meth:`GaussianMixture.fit_svi`, then the guide's median becomes the point
        estimate. The ELBO now includes ``log p(globals)`` (and the guide's entropy)."""
        x = self._check_data(x)
        self.to(device=x.device, dtype=x.dtype)
        guide = self.default_guide() if guide is None else guide
        history = super().fit_svi(x, guide, steps, lr, seed, num_particles)
        with pyro.get_param_store().scope(), torch.no_grad():
            median = guide.median(x)
        self.set_point_sites(median)
        return history

    @torch.no_grad()
    def posterior_samples(self, guide, x, n_samples: int = 100) -> dict:
        """``n_samples`` draws of the global sites from a fitted guide: ``{site: (n, ...)}``."""
        x = self._check_data(x)
        with pyro.get_param_store().scope():
            draws = [guide(x) for _ in range(n_samples)]
        return {name: torch.stack([draw[name] for draw in draws]) for name in draws[0]}

    def set_point_sites(self, sites: dict) -> BayesianGaussianMixture:
        """Load values of the global sites (e.g. a guide's median) as the point estimates."""
        scales = sites["scales"]
        if self.covariance_type == "full":
            scale_tril = scales[..., :, None] * sites["corr_cholesky"]
            covariances = scale_tril @ scale_tril.mT
        else:
            covariances = scales.square()
        return self.set_parameters(MixtureParameters(sites["weights"], sites["locs"],
                                                     covariances, self.covariance_type))

    def _point_model(self):
        return poutine.condition(self.model, data=self.point_sites())
