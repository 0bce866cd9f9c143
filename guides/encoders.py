"""Amortized guides: one network maps each frame to its posterior q(z | x).

An amortized guide generalizes to frames it never saw (held-out data, a noisy utterance at
enhancement time) at the price of the *amortization gap*: one network cannot match the best
Gaussian of every frame, so its ELBO is below that of a per-frame :class:`~guides.MeanField`
fitted on the same model (see ``tests/test_guides.py``).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from zoo.checkpoint import register
from zoo.errors import ZooInputError
from zoo.nn import GaussianHead, check_features, frame_mask, frame_plates, mlp

INPUT_TRANSFORMS = ("log", None)


@register
class MLPEncoder(PyroModule):
    """Diagonal Gaussian ``q(z_n | x_n) = N(loc(x_n), diag(scale(x_n)^2))`` from an MLP.

    Args:
        input_dim: features per frame (513 STFT bins).
        hidden: hidden widths, input side first.
        latent_dim: size of ``z``.
        activation: hidden activation.
        input_transform: ``"log"`` feeds ``log(x + eps)`` (for power spectra), ``None`` feeds ``x``.
        eps: the floor inside the log, in power units.

    Why the log for power spectra: speech power spans many orders of magnitude (a silent bin can
    be 1e-10 and a formant peak 1e2), so on the raw power a few loud bins dominate every
    pre-activation and quiet frames all map to the same code. The log puts every bin on the same
    footing, in the same units as the decoder's output ``log sigma2``, and turns a gain change of
    the input into a shift rather than a rescaling.

    Called with the model's arguments (``guide(x, mask=None)``), it samples the site ``"z"`` in the
    same :func:`~zoo.nn.frame_plates` as the model. Enhancement feeds :meth:`encode` the noisy
    power and fine-tunes it.
    """

    def __init__(
        self,
        input_dim: int,
        hidden=(128,),
        latent_dim: int = 16,
        activation: str = "tanh",
        input_transform: str | None = "log",
        eps: float = 1e-10,
    ):
        super().__init__()
        if input_transform not in INPUT_TRANSFORMS:
            raise ZooInputError(
                f"input_transform must be one of {INPUT_TRANSFORMS}, got {input_transform!r}"
            )
        self.input_dim = int(input_dim)
        self.hidden = (int(hidden),) if isinstance(hidden, int) else tuple(int(h) for h in hidden)
        self.latent_dim = int(latent_dim)
        self.activation = activation
        self.input_transform = input_transform
        self.eps = float(eps)
        # The body ends with an activation (its output is hidden features), unless it is empty.
        if self.hidden:
            self.body = mlp([self.input_dim, *self.hidden], activation, out_activation=activation)
        else:
            self.body = torch.nn.Identity()
        self.head = GaussianHead(self.hidden[-1] if self.hidden else self.input_dim, latent_dim)

    def config(self) -> dict:
        """Constructor arguments (stored in checkpoints, compared on load)."""
        return {
            "input_dim": self.input_dim,
            "hidden": self.hidden,
            "latent_dim": self.latent_dim,
            "activation": self.activation,
            "input_transform": self.input_transform,
            "eps": self.eps,
        }

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input: ``log(x + eps)`` or ``x``, ``(..., input_dim)``."""
        if self.input_transform == "log":
            return torch.log(x + self.eps)
        return x

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``(loc, scale)``, each ``(..., latent_dim)``, of frames ``x (..., input_dim)``."""
        x = check_features(x, self.input_dim, "x (encoder input)")
        return self.head(self.body(self.features(x)))

    def forward(self, x, mask=None):
        """Samples ``"z"`` for every frame of ``x (..., input_dim)``; ``mask`` as in the model."""
        loc, scale = self.encode(x)
        with frame_plates(x.shape[:-1]), frame_mask(mask, x.shape[:-1]):
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))
