"""Variational autoencoders: the speech prior of unsupervised enhancement, and a general VAE.

:class:`SpeechVAE` is the clean-speech prior of the enhancement references. For every STFT frame
``n`` (frequency bins ``f = 1..F``)::

    z_n            ~ N(0, I_D)                                  latent, D = latent_dim
    s_fn | z_n     ~ N_c(0, sigma2_f(z_n)),  log sigma2(z) = decoder(z)

so the power ``x_fn = |s_fn|^2`` is exponential with mean ``sigma2_f(z_n)``::

    -log p(x_fn | z_n) = log sigma2_f(z_n) + x_fn / sigma2_f(z_n)
                       = d_IS(x_fn, sigma2_f(z_n)) + log x_fn + 1

the Itakura-Saito divergence up to terms free of the model: maximizing this likelihood fits the
speech variance in the IS sense, as NMF-IS does. Enhancement freezes the decoder and uses
:meth:`SpeechVAE.sigma2` in its noisy-speech model.

:class:`VAE` is the same story for any vector data (Gaussian or Bernoulli likelihood), so the
tutorials can also run on a shipped real data set (scikit-learn's digits).

Both are ``PyroModule`` s whose ``model`` method is the generative story with the latent site
``"z"`` and the observed site ``"x"``; they list their latent sites in ``latent_sites`` (the
trainer scales those for KL warm-up) and name a default guide.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, pyro_method
from torch import nn
from torch.nn import functional as F

from zoo.checkpoint import register
from zoo.data.stft import STFT
from zoo.errors import ZooInputError
from zoo.nn import check_features, frame_mask, frame_plates, mlp


class ComplexGaussianPower(dist.TorchDistribution):
    """Power ``|s|^2`` of a circular complex Gaussian ``s ~ N_c(0, sigma2)``: exponential with
    mean ``sigma2``, parameterized by ``log_sigma2`` (elementwise, batch shape = its shape).

    ``log p(x) = -log sigma2 - x / sigma2``. Same values as ``Exponential(rate=1 / sigma2)``,
    computed from the log-variance a decoder outputs, without taking the log of an exponential
    (cheaper, and no ``log(0)`` when ``1 / sigma2`` underflows).
    """

    arg_constraints = {"log_sigma2": constraints.real}
    support = constraints.nonnegative
    has_rsample = True

    def __init__(self, log_sigma2: torch.Tensor, validate_args=None):
        self.log_sigma2 = log_sigma2
        super().__init__(log_sigma2.shape, validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.log_sigma2.exp()

    @property
    def variance(self) -> torch.Tensor:
        return (2 * self.log_sigma2).exp()

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ComplexGaussianPower, _instance)
        new.log_sigma2 = self.log_sigma2.expand(batch_shape)
        super(ComplexGaussianPower, new).__init__(torch.Size(batch_shape), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        unit = self.log_sigma2.new_empty(shape).exponential_()
        return unit * self.log_sigma2.exp()

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return -self.log_sigma2 - value * torch.exp(-self.log_sigma2)


def _as_tuple(sizes) -> tuple[int, ...]:
    if isinstance(sizes, int):
        return (int(sizes),)
    return tuple(int(s) for s in sizes)


@register
class SpeechVAE(PyroModule):
    """VAE prior of clean-speech STFT frames with the Itakura-Saito (exponential) likelihood.

    Args:
        n_freq: frequency bins per frame (must equal ``stft.n_freq``; 513 for the default STFT).
        hidden: hidden widths on the encoder side, data first (``(128,)`` gives the references'
            513 -> 128 -> 16); the decoder mirrors them (16 -> 128 -> 513).
        latent_dim: size D of the latent ``z`` per frame.
        activation: hidden activation of decoder and default encoder.
        stft: the STFT settings the prior is trained for (default ``STFT()``; stored in
            checkpoints, and enhancement checks its input against them). A dict of
            :meth:`STFT.config` is accepted.
    """

    latent_sites = ("z",)
    observed_sites = ("x",)

    def __init__(
        self,
        n_freq: int = 513,
        hidden=(128,),
        latent_dim: int = 16,
        activation: str = "tanh",
        stft: STFT | dict | None = None,
    ):
        super().__init__()
        if stft is None:
            stft = STFT()
        self.stft = stft if isinstance(stft, STFT) else STFT(**stft)
        if n_freq != self.stft.n_freq:
            raise ZooInputError(
                f"n_freq={n_freq} does not match the STFT (n_fft={self.stft.n_fft} gives "
                f"{self.stft.n_freq} bins): pass stft=STFT(n_fft=...) matching n_freq"
            )
        self.n_freq = int(n_freq)
        self.hidden = _as_tuple(hidden)
        self.latent_dim = int(latent_dim)
        self.activation = activation
        # The decoder outputs log sigma2: unconstrained, and the IS likelihood is smooth in it.
        self.decoder = mlp([self.latent_dim, *reversed(self.hidden), self.n_freq], activation)

    def config(self) -> dict:
        """Constructor arguments (stored in checkpoints, compared on load)."""
        return {
            "n_freq": self.n_freq,
            "hidden": self.hidden,
            "latent_dim": self.latent_dim,
            "activation": self.activation,
            "stft": self.stft.config(),
        }

    def log_sigma2(self, z: torch.Tensor) -> torch.Tensor:
        """Log speech variance ``(..., n_freq)`` (log power) from latents ``z (..., latent_dim)``."""
        return self.decoder(z)

    def sigma2(self, z: torch.Tensor) -> torch.Tensor:
        """Speech variance ``sigma2_f(z)`` ``(..., n_freq)``, power units, from ``z (..., D)``."""
        return torch.exp(self.decoder(z))

    @pyro_method
    def model(self, x=None, mask=None, batch_shape=(1,)):
        """Generative story over frames; returns the power spectra ``(..., n_freq)``.

        Args:
            x: observed power spectra ``|s|^2``, shape ``(..., n_freq)`` with any leading batch
                shape (e.g. ``(frames,)`` or ``(utterances, frames)``); ``None`` to sample.
            mask: optional bool ``x.shape[:-1]``, False on padded frames (they then add nothing).
            batch_shape: frames to sample when ``x`` is None.
        """
        if x is not None:
            x = check_features(x, self.n_freq, "x (power spectra)")
            if x.numel() and x.min() < 0:  # a reduction: cheaper than (x < 0).any() on big batches
                raise ZooInputError("x must be power spectra |s|^2 >= 0; it has negative values")
            batch_shape = x.shape[:-1]
        decoder = self.decoder  # one attribute read: each read of a module emits param sites
        zeros = decoder[0].weight.new_zeros((*batch_shape, self.latent_dim))
        with frame_plates(batch_shape), frame_mask(mask, batch_shape):
            z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
            # s_f ~ N_c(0, sigma2_f(z)), i.e. |s_f|^2 ~ Exponential(rate = 1 / sigma2_f(z)).
            log_sigma2 = decoder(z)
            return pyro.sample("x", ComplexGaussianPower(log_sigma2).to_event(1), obs=x)

    def forward(self, x=None, mask=None, batch_shape=(1,)):
        """Same as :meth:`model` (so ``AutoNormal(vae)`` and ``poutine.trace(vae)`` work)."""
        return self.model(x, mask=mask, batch_shape=batch_shape)

    def default_guide(self):
        """Amortized encoder q(z | x) with mirrored sizes, reading log power (see MLPEncoder)."""
        from guides.encoders import MLPEncoder

        return MLPEncoder(
            self.n_freq, self.hidden, self.latent_dim, self.activation, input_transform="log"
        ).to(self.decoder[0].weight.device)


class _ObservationScale(nn.Module):
    """Learned per-feature standard deviation ``min_scale + softplus(raw)`` of a Gaussian
    likelihood; the floor keeps a feature that is constant in the data (e.g. a blank pixel)
    from driving the likelihood to infinity."""

    def __init__(self, n_features: int, min_scale: float):
        super().__init__()
        self.raw = nn.Parameter(torch.zeros(n_features))
        self.min_scale = float(min_scale)

    def forward(self) -> torch.Tensor:
        return F.softplus(self.raw) + self.min_scale


@register
class VAE(PyroModule):
    """General VAE for vectors: ``z ~ N(0, I)``, ``x | z ~ Normal(decoder(z), scale)`` (per-feature
    learned scale) or ``Bernoulli(logits=decoder(z))`` (binary data).

    Args:
        data_dim: features per data vector (64 for 8x8 digits).
        hidden: encoder-side hidden widths; the decoder mirrors them.
        latent_dim: latent size.
        likelihood: ``"gaussian"`` (real data) or ``"bernoulli"`` (data in {0, 1}).
        activation: hidden activation.
        min_scale: floor of the Gaussian standard deviation, in data units.

    Each data vector sits in the zoo's ``"frames"`` plate (the plate of independent feature
    vectors shared by all frame-level models), so the same guides fit.
    """

    latent_sites = ("z",)
    observed_sites = ("x",)
    likelihoods = ("gaussian", "bernoulli")

    def __init__(
        self,
        data_dim: int,
        hidden=(256,),
        latent_dim: int = 8,
        likelihood: str = "gaussian",
        activation: str = "tanh",
        min_scale: float = 1e-2,
    ):
        super().__init__()
        if likelihood not in self.likelihoods:
            raise ZooInputError(f"likelihood must be one of {self.likelihoods}, got {likelihood!r}")
        self.data_dim = int(data_dim)
        self.hidden = _as_tuple(hidden)
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood
        self.activation = activation
        self.min_scale = float(min_scale)
        self.decoder = mlp([self.latent_dim, *reversed(self.hidden), self.data_dim], activation)
        if likelihood == "gaussian":
            self.obs_scale = _ObservationScale(self.data_dim, self.min_scale)

    def config(self) -> dict:
        """Constructor arguments (stored in checkpoints, compared on load)."""
        return {
            "data_dim": self.data_dim,
            "hidden": self.hidden,
            "latent_dim": self.latent_dim,
            "likelihood": self.likelihood,
            "activation": self.activation,
            "min_scale": self.min_scale,
        }

    def likelihood_of(self, z: torch.Tensor) -> dist.Distribution:
        """The distribution of ``x`` given ``z (..., latent_dim)``, batch shape ``z.shape[:-1]``."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(1)
        return dist.Normal(out, self.obs_scale()).to_event(1)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of ``x`` given ``z``: reconstructions, ``(..., data_dim)``."""
        out = self.decoder(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    @pyro_method
    def model(self, x=None, mask=None, batch_shape=(1,)):
        """Generative story; ``x (..., data_dim)`` or ``None`` to sample ``batch_shape`` vectors."""
        if x is not None:
            x = check_features(x, self.data_dim, "x")
            if self.likelihood == "bernoulli" and not ((x == 0) | (x == 1)).all():
                raise ZooInputError(
                    "x must be binary (0 or 1) for likelihood='bernoulli'; threshold the data "
                    "(e.g. x > 0.5) or use likelihood='gaussian'"
                )
            batch_shape = x.shape[:-1]
        decoder = self.decoder
        zeros = decoder[0].weight.new_zeros((*batch_shape, self.latent_dim))
        with frame_plates(batch_shape), frame_mask(mask, batch_shape):
            z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
            return pyro.sample("x", self.likelihood_of(z), obs=x)

    def forward(self, x=None, mask=None, batch_shape=(1,)):
        """Same as :meth:`model`."""
        return self.model(x, mask=mask, batch_shape=batch_shape)

    def default_guide(self):
        """Amortized MLP encoder q(z | x) with mirrored sizes, reading ``x`` as is."""
        from guides.encoders import MLPEncoder

        return MLPEncoder(
            self.data_dim, self.hidden, self.latent_dim, self.activation, input_transform=None
        ).to(self.decoder[0].weight.device)
