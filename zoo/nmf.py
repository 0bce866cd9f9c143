"""Non-negative matrix factorisation with the Itakura-Saito divergence (closed-form updates).

The IS divergence is the negative log-likelihood of a circular complex Gaussian, up to a
constant: if ``x_fn ~ N_c(0, v_fn)`` then ``-log p(x) = sum_fn [ |x_fn|^2 / v_fn + log v_fn ]
+ const``, and ``d_IS(|x|^2 | v)`` differs from it only by terms that do not depend on ``v``.
So fitting ``V ~= W H`` in the IS sense is maximum likelihood for the model

    x_fn ~ N_c(0, (W H)_fn),        W (F, K) >= 0 spectral patterns,  H (K, N) >= 0 activations

(Févotte, Bertin & Durrieu 2009). The enhancement model adds a speech variance and a gain,

    x_fn ~ N_c(0, g_n sigma2_fn + (W H)_fn),

and its M-step updates the noise factors W, H (and the gain g) with the same multiplicative
updates, the speech term acting as a fixed extra component of the variance (Leglaive, Girin &
Horaud 2018; Bie et al. 2022). With ``V_x = speech_var + W H`` and ``P = |x|^2``:

    H <- H * ( [W^T (P V_x^-2)] / [W^T V_x^-1] ) ** exponent
    W <- W * ( [(P V_x^-2) H^T] / [V_x^-1 H^T] ) ** exponent

``exponent = 1`` is the classic heuristic update of Févotte et al. 2009 and of the enhancement
papers (fast, decreasing the cost in practice); ``exponent = 0.5`` is the majorisation-
minimisation update of Févotte & Idier 2011, for which the decrease of the IS cost (increase of
the likelihood) is guaranteed. Both are offered; every function here defaults to 1, and the
tests check the decrease for both.

Shapes: every function is batched over leading dimensions and broadcasts, so a dictionary
``W (F, K)`` may be shared by a batch ``H (B, K, N)``; a factor's update sums the statistics over
every dimension it is broadcast along (a shared dictionary is fitted to the whole batch, and extra
leading dimensions of ``speech_var``, e.g. Monte Carlo samples of the speech latents, are summed
over, which is the MCEM M-step). ``mask (..., N)`` (1 = real frame, 0 = padding) makes padded
frames contribute nothing. Everything runs on the device and in the precision of its inputs.
"""

from __future__ import annotations

import torch

from zoo.errors import ZooInputError

#: Floor on variances and powers, so the IS divergence stays finite where a power is exactly 0.
DEFAULT_EPS = 1e-12


# --------------------------------------------------------------------------- the cost
def is_divergence(
    V: torch.Tensor,
    V_hat: torch.Tensor,
    mask: torch.Tensor | None = None,
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """Itakura-Saito divergence ``sum_fn [V/V_hat - log(V/V_hat) - 1]`` over the last two dims.

    Args:
        V: observed power ``(..., F, N)``, >= 0.
        V_hat: model variance, broadcastable to ``V``, > 0.
        mask: ``(..., N)`` frame weights (1 real, 0 padding); padded frames count 0.
        eps: floor applied to ``V`` and ``V_hat`` (so a zero power gives a large, finite cost).

    Returns:
        ``(...)`` the divergence of each batch item (summed in float64, returned in ``V``'s dtype).
    """
    ratio = V.clamp_min(eps) / V_hat.clamp_min(eps)
    d = ratio - torch.log(ratio) - 1
    if mask is not None:
        d = d * mask.unsqueeze(-2).to(d.dtype)
    return d.sum(dim=(-2, -1), dtype=torch.float64).to(V.dtype)


# --------------------------------------------------------------------------- helpers
def _sum_to_shape(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum ``t`` over the dimensions along which a tensor of ``shape`` was broadcast to it."""
    extra = t.dim() - len(shape)
    if extra > 0:
        t = t.sum(dim=tuple(range(extra)))
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and t.shape[i] != 1)
    if dims:
        t = t.sum(dim=dims, keepdim=True)
    return t


def _ratio(num: torch.Tensor, den: torch.Tensor, exponent: float) -> torch.Tensor:
    """``(num / den) ** exponent``, and 1 where ``den == 0`` (entries that only see padding)."""
    safe = torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), 1.0)
    return safe if exponent == 1 else safe.pow(exponent)


def _frame_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """``mask (..., N)`` as ``(..., 1, N)`` weights in ``like``'s dtype and device."""
    if mask is None:
        return None
    if mask.shape[-1] != like.shape[-1]:
        raise ZooInputError(
            f"mask: expected (..., N) with N = {like.shape[-1]} frames, got {tuple(mask.shape)}"
        )
    return mask.to(device=like.device, dtype=like.dtype).unsqueeze(-2)


def _check_power(power: torch.Tensor, name: str = "power") -> None:
    if power.dim() < 2:
        raise ZooInputError(f"{name}: expected a power spectrogram (..., F, N), got "
                            f"shape {tuple(power.shape)}")
    if power.is_complex():
        raise ZooInputError(f"{name}: expected a real power |X|^2, got a complex tensor "
                            "(take stft(x).abs().square())")
    if not torch.isfinite(power).all() or bool((power < 0).any()):
        raise ZooInputError(f"{name}: expected finite, non-negative powers")


# --------------------------------------------------------------------------- one M-step
def update_noise_nmf(
    power: torch.Tensor,
    speech_var: torch.Tensor | None,
    W: torch.Tensor,
    H: torch.Tensor,
    n_inner: int = 1,
    mask: torch.Tensor | None = None,
    update_W: bool = True,
    update_H: bool = True,
    exponent: float = 1.0,
    eps: float = DEFAULT_EPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiplicative updates of the noise factors for ``x ~ N_c(0, speech_var + W H)``.

    Each of the ``n_inner`` rounds updates H, then W (see the module docstring for the
    equations); ``speech_var`` is held fixed. With ``speech_var=None`` this is plain IS-NMF.

    Args:
        power: ``|x|^2``, ``(..., F, N)``.
        speech_var: fixed speech variance (e.g. ``g_n sigma2_fn``) broadcastable with
            ``(..., F, N)``, or None. Extra leading dimensions (Monte Carlo samples) are summed.
        W: ``(..., F, K)`` noise spectral patterns, > 0.
        H: ``(..., K, N)`` noise activations, > 0.
        n_inner: number of H-then-W rounds.
        mask: ``(..., N)``, 1 for real frames, 0 for padding; padded frames do not move W and
            their columns of H are left as they are.
        update_W, update_H: which factors to update.
        exponent: 1 (heuristic, as in the papers) or 0.5 (guaranteed decrease of the IS cost).
        eps: floor on the model variance.

    Returns:
        ``(W, H)``, new tensors with the shapes of the inputs.
    """
    frame_w = _frame_mask(mask, power)
    for _ in range(n_inner):
        if update_H:
            inv_var, weighted = _update_statistics(power, speech_var, W @ H, frame_w, eps)
            num = _sum_to_shape(W.mT @ weighted, H.shape)
            den = _sum_to_shape(W.mT @ inv_var, H.shape)
            H = H * _ratio(num, den, exponent)
        if update_W:
            inv_var, weighted = _update_statistics(power, speech_var, W @ H, frame_w, eps)
            num = _sum_to_shape(weighted @ H.mT, W.shape)
            den = _sum_to_shape(inv_var @ H.mT, W.shape)
            W = W * _ratio(num, den, exponent)
    return W, H


def _update_statistics(power, speech_var, noise_var, frame_w, eps):
    """``(V_x^-1, P V_x^-2)`` with ``V_x = speech_var + noise_var``, zeroed on padded frames."""
    model_var = noise_var if speech_var is None else speech_var + noise_var
    inv_var = 1.0 / model_var.clamp_min(eps)
    weighted = power * inv_var.square()
    if frame_w is not None:
        inv_var = inv_var * frame_w
        weighted = weighted * frame_w
    return inv_var, weighted


def update_gain(
    power: torch.Tensor,
    speech_var_unit: torch.Tensor,
    noise_var: torch.Tensor,
    g: torch.Tensor,
    mask: torch.Tensor | None = None,
    exponent: float = 1.0,
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """Multiplicative update of the per-frame gain in ``x_fn ~ N_c(0, g_n sigma2_fn + v_fn)``.

        g_n <- g_n * ( [sum_f sigma2_fn P_fn V_x,fn^-2] / [sum_f sigma2_fn V_x,fn^-1] ) ** exponent

    Args:
        power: ``|x|^2``, ``(..., F, N)``.
        speech_var_unit: ``sigma2`` at unit gain, broadcastable with ``(..., F, N)``; extra
            leading dimensions (Monte Carlo samples) are summed.
        noise_var: ``(W H)``, broadcastable with ``(..., F, N)``.
        g: ``(..., N)`` gains, > 0.
        mask: ``(..., N)``; padded frames keep their gain.
        exponent: 1 (as in Leglaive et al. 2018) or 0.5 (guaranteed decrease).

    Returns:
        the new gain, shape of ``g``.
    """
    frame_w = _frame_mask(mask, power)
    speech_var = g.unsqueeze(-2) * speech_var_unit
    inv_var, weighted = _update_statistics(power, speech_var, noise_var, frame_w, eps)
    num = _sum_to_shape((speech_var_unit * weighted).sum(-2), g.shape)
    den = _sum_to_shape((speech_var_unit * inv_var).sum(-2), g.shape)
    return g * _ratio(num, den, exponent)


# --------------------------------------------------------------------------- full fit
def random_init(
    power: torch.Tensor,
    rank: int,
    generator: torch.Generator | None = None,
    shared_W: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random positive ``W (..., F, K)``, ``H (..., K, N)`` with ``W H`` near the mean power.

    Drawn on the CPU from ``generator`` (so a seed gives the same start on every device), then
    moved to ``power``'s device and dtype. ``shared_W`` draws one ``W (F, K)`` for the batch.
    """
    *batch, n_freq, n_frames = power.shape
    w_batch = [] if shared_W else batch
    W = 0.5 + torch.rand(*w_batch, n_freq, rank, generator=generator, dtype=torch.float64)
    H = 0.5 + torch.rand(*batch, rank, n_frames, generator=generator, dtype=torch.float64)
    scale = power.detach().double().mean(dim=(-2, -1)).cpu().clamp_min(DEFAULT_EPS) / rank
    H = H * scale.reshape(*batch, 1, 1)
    return W.to(power), H.to(power)


def normalize_columns(W: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescale so that each column of W sums to 1, leaving ``W H`` unchanged (fixes the scale)."""
    norms = W.sum(-2, keepdim=True).clamp_min(DEFAULT_EPS)  # (..., 1, K)
    return W / norms, H * norms.mT


def nmf_is(
    V: torch.Tensor,
    rank: int | None = None,
    n_iter: int = 100,
    W: torch.Tensor | None = None,
    H: torch.Tensor | None = None,
    update_W: bool = True,
    update_H: bool = True,
    generator: torch.Generator | None = None,
    eps: float = DEFAULT_EPS,
    mask: torch.Tensor | None = None,
    exponent: float = 1.0,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IS-NMF ``V ~= W H`` by multiplicative updates (Févotte et al. 2009).

    Args:
        V: power spectrogram ``(..., F, N)``.
        rank: number of components K (needed when W or H is not given).
        n_iter: number of H-then-W rounds.
        W, H: starting factors; drawn by :func:`random_init` from ``generator`` when None.
        update_W, update_H: hold a factor fixed (e.g. a learned dictionary W).
        generator: CPU ``torch.Generator`` for the random start.
        eps: floor on the model variance.
        mask: ``(..., N)`` padded-frame mask.
        exponent: 1 (default, Févotte et al. 2009) or 0.5 (guaranteed monotone).
        normalize: when both factors are updated, rescale W's columns to unit sum after each
            round (does not change ``W H`` or the cost; keeps the factors well scaled).

    Returns:
        ``(W, H, history)``; ``history (n_iter + 1, ...)`` is the IS divergence before the first
        round and after each one.
    """
    _check_power(V, "V")
    if W is None or H is None:
        if rank is None:
            raise ZooInputError("nmf_is: give rank, or both starting factors W and H")
        W0, H0 = random_init(V, rank, generator)
        W = W0 if W is None else W
        H = H0 if H is None else H
    if W.shape[-1] != H.shape[-2]:
        raise ZooInputError(
            f"nmf_is: W {tuple(W.shape)} and H {tuple(H.shape)} disagree on the rank"
        )
    history = [is_divergence(V, W @ H, mask, eps)]
    for _ in range(n_iter):
        W, H = update_noise_nmf(V, None, W, H, mask=mask, update_W=update_W, update_H=update_H,
                                exponent=exponent, eps=eps)
        if normalize and update_W and update_H:
            W, H = normalize_columns(W, H)
        history.append(is_divergence(V, W @ H, mask, eps))
    return W, H, torch.stack(history)
