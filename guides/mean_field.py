"""Non-amortized mean-field guide: free Gaussian parameters for every frame.

``q(z_n) = N(loc_n, diag(scale_n^2))`` with ``loc_n, scale_n`` optimized directly. For a fixed
model this is the best diagonal Gaussian per frame (no amortization gap), but it only knows the
frames it was fitted on: a held-out frame has no parameters until a new MeanField is fitted on it
(enhancement does exactly that on one noisy utterance, with the speech prior frozen).
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from zoo.checkpoint import register
from zoo.errors import ZooInputError
from zoo.nn import frame_mask, frame_plates


@register
class MeanField(PyroModule):
    """Per-frame diagonal Gaussians over ``z`` for a fixed set of frames.

    Args:
        batch_shape: the frames it holds: an int ``n_frames``, or a shape such as
            ``(n_utterances, n_frames)`` (same leading shape as the model's ``x``).
        latent_dim: size of ``z``.
        init_scale: initial posterior standard deviation (locs start at 0, the prior mean).

    Called with the model's arguments plus ``index``: ``guide(x=None, mask=None, index=None)``.

    * ``index=None``: the guide covers all its frames; ``x`` (if given) must have the batch shape
      ``batch_shape`` (full-batch training, or one utterance at enhancement time).
    * ``index``: a LongTensor of positions along the first batch dimension, the frames a
      mini-batch holds. :func:`zoo.train.fit` passes it automatically to any guide whose call
      has an ``index`` argument (the positions of the batch's items in the training data).

    ``x`` is only read for its shape: the posterior does not depend on the data's values.
    """

    def __init__(self, batch_shape, latent_dim: int, init_scale: float = 0.1):
        super().__init__()
        shape = (int(batch_shape),) if isinstance(batch_shape, int) else tuple(batch_shape)
        if not shape or any(int(n) <= 0 for n in shape):
            raise ZooInputError(f"batch_shape must be positive sizes, got {batch_shape!r}")
        if init_scale <= 0:
            raise ZooInputError(f"init_scale must be > 0, got {init_scale}")
        self.batch_shape = tuple(int(n) for n in shape)
        self.latent_dim = int(latent_dim)
        self.init_scale = float(init_scale)
        # A plain ParameterDict (not Parameters on the PyroModule itself): Pyro registers it like
        # pyro.module, which leaves parameters frozen with requires_grad=False frozen.
        self.posterior = nn.ParameterDict(
            {
                "loc": nn.Parameter(torch.zeros(*self.batch_shape, self.latent_dim)),
                "log_scale": nn.Parameter(
                    torch.full((*self.batch_shape, self.latent_dim), math.log(self.init_scale))
                ),
            }
        )

    @classmethod
    def from_encoder(cls, encoder, x: torch.Tensor) -> MeanField:
        """A MeanField over the frames of ``x (..., input_dim)`` started at an amortized encoder's
        posterior (``encoder.encode(x)``): refining it can only tighten the bound."""
        with torch.no_grad():
            loc, scale = encoder.encode(x)
        guide = cls(tuple(x.shape[:-1]), loc.shape[-1]).to(loc.device)
        guide.initialize(loc, scale)
        return guide

    def config(self) -> dict:
        """Constructor arguments (stored in checkpoints, compared on load)."""
        return {
            "batch_shape": self.batch_shape,
            "latent_dim": self.latent_dim,
            "init_scale": self.init_scale,
        }

    def initialize(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        """Set every frame's posterior: ``loc, scale`` of shape ``(*batch_shape, latent_dim)``."""
        expected = (*self.batch_shape, self.latent_dim)
        for name, value in (("loc", loc), ("scale", scale)):
            if tuple(value.shape) != expected:
                raise ZooInputError(f"{name} must have shape {expected}, got {tuple(value.shape)}")
        if not (scale > 0).all():
            raise ZooInputError("scale must be > 0 everywhere")
        with torch.no_grad():
            self.posterior["loc"].copy_(loc)
            self.posterior["log_scale"].copy_(scale.log())

    def posterior_params(self, index: torch.Tensor | None = None):
        """``(loc, scale)`` of the frames at ``index`` (all frames if None)."""
        posterior = self.posterior
        loc, log_scale = posterior["loc"], posterior["log_scale"]
        if index is not None:
            loc, log_scale = loc[index], log_scale[index]
        return loc, log_scale.exp()

    def forward(self, x=None, mask=None, index=None):
        """Samples ``"z"`` for the frames at ``index`` (all if None); see the class docstring."""
        if index is not None:
            index = torch.as_tensor(index, dtype=torch.long, device=self.posterior["loc"].device)
            if index.dim() != 1:
                raise ZooInputError(f"index must be 1-D positions, got shape {tuple(index.shape)}")
            if len(index) and (index.min() < 0 or index.max() >= self.batch_shape[0]):
                raise ZooInputError(
                    f"index must lie in [0, {self.batch_shape[0]}) (the frames this MeanField "
                    f"holds), got values in [{int(index.min())}, {int(index.max())}]"
                )
        loc, scale = self.posterior_params(index)
        frames_shape = loc.shape[:-1]
        if x is not None and tuple(x.shape[:-1]) != tuple(frames_shape):
            raise ZooInputError(
                f"x has batch shape {tuple(x.shape[:-1])} but this MeanField guide holds "
                f"{tuple(frames_shape)} frames{' at index' if index is not None else ''}: "
                "pass index= (the batch's positions) or build MeanField for this data"
            )
        with frame_plates(frames_shape), frame_mask(mask, frames_shape):
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))
