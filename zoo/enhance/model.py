"""The noisy-speech model of unsupervised enhancement, as a Pyro model.

For utterance ``b``, frequency bin ``f`` and STFT frame ``n`` (Leglaive, Girin & Horaud 2018;
Bie et al. 2022)::

    z_bn        ~ p(z)                                 speech latents, from the frozen prior
    s_bfn | z   ~ N_c(0, sigma2_f(z_bn))               clean speech, the prior's decoder
    b_bfn       ~ N_c(0, (W_b H_b)_fn)                 noise, NMF of rank K
    x_bfn       = sqrt(g_bn) s_bfn + b_bfn             noisy mixture, per-frame gain g
    =>  x_bfn | z ~ N_c(0, g_bn sigma2_f(z_bn) + (W_b H_b)_fn)

The likelihood is written on the power ``|x|^2``, which is exponential with mean the variance
above (the Itakura-Saito likelihood, as in the speech prior). The prior's decoder is frozen: its
weights take no gradient and no optimizer step; only the guide over ``z`` and the noise
parameters ``W, H, g`` are inferred, per utterance.

Shapes: ``power (B, F, N)`` as the STFT gives it, ``mask (B, N)`` (1 = real frame, 0 = padding
of a batch of utterances of different lengths), latents ``z (B, N, D)``.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from zoo.errors import ZooInputError


class NoiseModel(nn.Module):
    """Per-utterance NMF noise variance ``W H`` and frame gains ``g``, stored as logarithms.

    Multiplicative (closed-form) updates become additions in the log domain, and the gradient
    M-step optimises the same tensors without a positivity constraint to enforce.

    Shapes: ``W (B, F, K)``, ``H (B, K, N)``, ``g (B, N)``.
    """

    def __init__(self, W: torch.Tensor, H: torch.Tensor, g: torch.Tensor):
        super().__init__()
        self.log_W = nn.Parameter(W.log())
        self.log_H = nn.Parameter(H.log())
        self.log_g = nn.Parameter(g.log())

    @classmethod
    def random(cls, power: torch.Tensor, rank: int, generator: torch.Generator | None = None):
        """Positive random ``W, H`` scaled to the noisy power's mean, and ``g = 1``."""
        B, F, N = power.shape
        scale = power.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-10).sqrt() / rank ** 0.5
        W = torch.rand(B, F, rank, generator=generator, dtype=power.dtype).to(power.device) + 0.1
        H = torch.rand(B, rank, N, generator=generator, dtype=power.dtype).to(power.device) + 0.1
        return cls(W * scale, H * scale, torch.ones(B, N, dtype=power.dtype, device=power.device))

    @property
    def W(self) -> torch.Tensor:
        return self.log_W.exp()

    @property
    def H(self) -> torch.Tensor:
        return self.log_H.exp()

    @property
    def g(self) -> torch.Tensor:
        return self.log_g.exp()

    def variance(self) -> torch.Tensor:
        """Noise variance ``W H``, ``(B, F, N)``."""
        return self.W @ self.H

    @torch.no_grad()
    def set_(self, W=None, H=None, g=None) -> None:
        """Write new values (from a closed-form update) in place."""
        for name, value in (("log_W", W), ("log_H", H), ("log_g", g)):
            if value is not None:
                getattr(self, name).copy_(value.clamp_min(torch.finfo(value.dtype).tiny).log())


class NoisySpeechModel(nn.Module):
    """``x | z ~ N_c(0, g sigma2(z) + W H)`` with a frozen speech prior.

    Args:
        prior: a speech prior exposing ``sigma2(z) -> (..., F)`` and ``latent_dim`` (any model
            of the zoo that does: the speech VAE, and later the audio-visual and dynamical ones).
        noise: the :class:`NoiseModel` of this batch.
    """

    def __init__(self, prior, noise: NoiseModel):
        super().__init__()
        self.prior = prior
        self.noise = noise

    def speech_variance(self, z: torch.Tensor) -> torch.Tensor:
        """Unit-gain speech variance ``sigma2(z)`` as ``(..., B, F, N)`` from ``z (..., B, N, D)``."""
        return self.prior.sigma2(z).transpose(-1, -2)

    def model(self, power: torch.Tensor, mask: torch.Tensor) -> None:
        """The generative story of the noisy power spectrogram ``power (B, F, N)``."""
        B, F, N = power.shape
        latent_dim = self.prior.latent_dim
        with pyro.plate("utterances", B, dim=-2), pyro.plate("frames", N, dim=-1), \
                poutine.mask(mask=mask):
            zeros = power.new_zeros(B, N, latent_dim)
            z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
            speech_var = self.noise.g.unsqueeze(-1) * self.prior.sigma2(z)  # (B, N, F)
            noisy_var = speech_var + self.noise.variance().transpose(-1, -2)
            pyro.sample("x", dist.Exponential(noisy_var.reciprocal()).to_event(1),
                        obs=power.transpose(-1, -2))

    def log_likelihood(self, power: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` per frame, ``(..., B, N)``, for ``z (..., B, N, D)`` (used by MCEM)."""
        noisy_var = self.noise.g.unsqueeze(-2) * self.speech_variance(z) + self.noise.variance()
        return -(noisy_var.log() + power / noisy_var).sum(-2)

    def wiener_gain(self, z: torch.Tensor) -> torch.Tensor:
        """Posterior Wiener gain ``mean_r g sigma2(z_r) / (g sigma2(z_r) + W H)``, ``(B, F, N)``.

        ``z (R, B, N, D)``: R samples from the posterior (or its approximation).
        """
        speech_var = self.noise.g.unsqueeze(-2) * self.speech_variance(z)
        return (speech_var / (speech_var + self.noise.variance())).mean(0)


def check_prior(prior, power: torch.Tensor) -> None:
    """The prior must expose ``sigma2`` and ``latent_dim`` and match the input's frequency bins."""
    for attribute in ("sigma2", "latent_dim"):
        if not hasattr(prior, attribute):
            raise ZooInputError(
                f"prior: {type(prior).__name__} has no '{attribute}'; enhancement needs a speech "
                "prior exposing sigma2(z) and latent_dim (e.g. zoo.vae.SpeechVAE)"
            )
    n_freq = getattr(prior, "n_freq", None)
    if n_freq is not None and n_freq != power.shape[-2]:
        raise ZooInputError(
            f"prior: models {n_freq} frequency bins but the input spectrogram has "
            f"{power.shape[-2]}; the prior and the input must use the same STFT"
        )
