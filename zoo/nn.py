"""The few network builders every model of the zoo shares.

No model writes its own layer loop: encoders and decoders are :func:`mlp` stacks, recurrent
parts are :func:`rnn` stacks, and a network that outputs a diagonal Gaussian ends in a
:class:`GaussianHead`. :func:`frame_plates` opens the plates over independent frames that
models and guides must agree on, :func:`frame_mask` masks padded frames, and
:func:`check_features` gives the clear error for a feature tensor of the wrong kind.

The builders return plain ``torch.nn`` modules. Models and guides (``PyroModule`` s) hold them as
attributes; Pyro then registers their parameters with ``pyro.module`` semantics, which leaves
parameters frozen with ``requires_grad=False`` alone (see pyro issue 3438 for why we avoid
``torch.nn.Parameter`` attributes directly on a ``PyroModule``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import pyro
import torch
from pyro import poutine
from torch import nn
from torch.nn import functional as F

from zoo.errors import ZooInputError

ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def activation_layer(name: str) -> nn.Module:
    """The activation module called ``name`` (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ZooInputError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def _check_sizes(sizes, what: str) -> list[int]:
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise ZooInputError(
            f"{what}: sizes must list at least an input and an output size, all positive; "
            f"got {sizes}"
        )
    return sizes


def mlp(
    sizes: Sequence[int],
    activation: str = "tanh",
    out_activation: str | None = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """Fully connected stack ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Every hidden layer is ``Linear`` then ``activation`` (then ``Dropout`` if ``dropout > 0``);
    the last layer is ``Linear``, followed by ``out_activation`` if given. ``mlp([16, 513])``
    is a single linear layer.

    Args:
        sizes: layer widths, input first, e.g. ``[513, 128, 16]``.
        activation: name of the hidden activation (``"tanh"`` as in the speech-VAE references).
        out_activation: name of an activation after the last layer, or ``None`` for a linear output.
        dropout: dropout probability after each hidden activation.
    """
    sizes = _check_sizes(sizes, "mlp")
    for name in (activation, out_activation):
        if name is not None:
            activation_layer(name)  # an unknown name is an error even where it would go unused
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        is_last = i == len(sizes) - 2
        if not is_last:
            layers.append(activation_layer(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        elif out_activation is not None:
            layers.append(activation_layer(out_activation))
    return nn.Sequential(*layers)


def rnn(
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    kind: str = "lstm",
    bidirectional: bool = False,
    dropout: float = 0.0,
) -> nn.RNNBase:
    """Recurrent stack over ``(batch, time, features)`` inputs (``batch_first=True``).

    Args:
        input_size: features per time step.
        hidden_size: units per direction and layer; the output has
            ``hidden_size * (2 if bidirectional else 1)`` features.
        num_layers: stacked layers.
        kind: ``"lstm"``, ``"gru"`` or ``"rnn"`` (tanh).
        bidirectional: run a second stack backwards in time and concatenate.
        dropout: dropout between stacked layers (ignored by PyTorch when ``num_layers == 1``).
    """
    kinds = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
    if kind not in kinds:
        raise ZooInputError(f"rnn kind must be one of {sorted(kinds)}, got {kind!r}")
    if input_size <= 0 or hidden_size <= 0 or num_layers <= 0:
        raise ZooInputError(
            f"rnn: input_size, hidden_size and num_layers must be positive, got "
            f"{input_size}, {hidden_size}, {num_layers}"
        )
    return kinds[kind](
        input_size,
        hidden_size,
        num_layers=num_layers,
        batch_first=True,
        bidirectional=bidirectional,
        dropout=dropout if num_layers > 1 else 0.0,
    )


class GaussianHead(nn.Module):
    """Maps features ``(..., in_features)`` to a diagonal Gaussian ``(loc, scale)``, each
    ``(..., out_features)``.

    ``scale = softplus(raw) + min_scale``: smooth, positive, and without the overflow of
    ``exp(log_var / 2)`` when an encoder sees an input far from its training data.
    """

    def __init__(self, in_features: int, out_features: int, min_scale: float = 1e-4):
        super().__init__()
        self.loc = nn.Linear(in_features, out_features)
        self.raw_scale = nn.Linear(in_features, out_features)
        self.min_scale = float(min_scale)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loc(features), F.softplus(self.raw_scale(features)) + self.min_scale


def frame_plates(batch_shape: Sequence[int]) -> contextlib.ExitStack:
    """Plates over independent frames with the given batch shape, innermost last.

    The last batch dimension is the plate ``"frames"`` (dim -1); a second one (e.g. several
    utterances in a padded batch) is ``"utterances"`` (dim -2); further ones are
    ``"batch_<k>"`` (dim -k). Models and guides open the same plates, so any guide written with
    this helper fits any frame-level model of the zoo::

        with frame_plates(x.shape[:-1]):
            z = pyro.sample("z", dist.Normal(loc, scale).to_event(1))
    """
    stack = contextlib.ExitStack()
    n_dims = len(batch_shape)
    for k in range(n_dims, 0, -1):  # outermost plate first
        name = {1: "frames", 2: "utterances"}.get(k, f"batch_{k}")
        stack.enter_context(pyro.plate(name, int(batch_shape[n_dims - k]), dim=-k))
    return stack


def check_features(x: torch.Tensor, n_features: int, what: str) -> torch.Tensor:
    """``x`` unchanged if it is a real floating tensor ``(..., n_features)``; else a clear error."""
    if not isinstance(x, torch.Tensor):
        raise ZooInputError(f"{what} must be a torch.Tensor (..., {n_features}), got {type(x)}")
    if x.is_complex():
        raise ZooInputError(
            f"{what} must be real; got a complex tensor (for speech pass the power |STFT|^2)"
        )
    if x.dim() < 1 or x.shape[-1] != n_features:
        raise ZooInputError(
            f"{what} must have shape (..., {n_features}) (features last), got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ZooInputError(f"{what} must be a floating-point tensor, got {x.dtype}")
    return x


def frame_mask(mask: torch.Tensor | None, batch_shape) -> contextlib.AbstractContextManager:
    """``poutine.mask`` for padded frames (``mask`` True where a frame is real)."""
    if mask is None:
        return contextlib.nullcontext()
    if tuple(mask.shape) != tuple(batch_shape) or mask.dtype != torch.bool:
        raise ZooInputError(
            f"mask must be a bool tensor of the frames' batch shape {tuple(batch_shape)}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    return poutine.mask(mask=mask)
