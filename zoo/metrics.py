"""Speech quality and intelligibility measures, all taking ``(reference, estimate)`` waveforms.

* :func:`si_sdr` -- scale-invariant signal-to-distortion ratio (dB), the zoo's own code
  (Le Roux et al., 2019): ``10 log10(|a s|^2 / |a s - y|^2)`` with ``a = <y, s> / |s|^2``.
* :func:`pesq_wb`, :func:`pesq_nb` -- ITU-T P.862.2 wide-band and P.862 narrow-band PESQ
  (MOS-LQO, from the ``pesq`` package). Always labelled: the two scales are not comparable.
* :func:`stoi`, :func:`estoi` -- short-time objective intelligibility and its extended version
  (``pystoi``), in [0, 1] (ESTOI can be slightly negative).
* :func:`spectral_rmse_db` -- RMSE between log-power spectrograms (dB) on the zoo's STFT.
* :func:`evaluate` -- all of them at once, as a dict.

Waveforms are 1-D ``(n_samples,)`` at 16 kHz (torch or numpy), of equal length.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from zoo.data.stft import STFT
from zoo.errors import ZooInputError

METRIC_NAMES = ("si_sdr", "pesq_wb", "pesq_nb", "stoi", "estoi", "spectral_rmse_db")


def _pair(reference, estimate, name="estimate"):
    ref = torch.as_tensor(np.asarray(reference) if not torch.is_tensor(reference) else reference)
    est = torch.as_tensor(np.asarray(estimate) if not torch.is_tensor(estimate) else estimate)
    ref, est = ref.detach().double().cpu(), est.detach().double().cpu()
    if ref.shape != est.shape:
        raise ZooInputError(
            f"{name}: shape {tuple(est.shape)} differs from the reference's {tuple(ref.shape)}; "
            "expected waveforms of equal length"
        )
    for label, sig in (("reference", ref), (name, est)):
        if not torch.isfinite(sig).all():
            raise ZooInputError(f"{label}: contains NaN/Inf; expected finite audio")
    return ref, est


def si_sdr(reference, estimate, eps: float = 1e-12) -> torch.Tensor | float:
    """Scale-invariant SDR in dB, batched over leading dimensions ``(..., n_samples)``.

    Returns a float for 1-D input, else a tensor of shape ``(...)``. Means are not removed
    (the zoo's signals are zero-mean by construction); pass centred signals if yours are not.
    """
    ref, est = _pair(reference, estimate)
    if not bool((ref.square().sum(-1) > 0).all()):
        raise ZooInputError("si_sdr: the reference is all zeros; SI-SDR is undefined")
    alpha = (est * ref).sum(-1, keepdim=True) / ref.square().sum(-1, keepdim=True)
    target = alpha * ref
    residual = est - target
    value = 10 * torch.log10((target.square().sum(-1) + eps) / (residual.square().sum(-1) + eps))
    return float(value) if value.dim() == 0 else value


def _pesq(reference, estimate, sample_rate: int, mode: str) -> float:
    from pesq import NoUtterancesError, PesqError, pesq

    ref, est = _pair(reference, estimate)
    if ref.dim() != 1:
        raise ZooInputError(f"pesq: expected 1-D waveforms, got shape {tuple(ref.shape)}")
    if mode == "wb" and sample_rate != 16000:
        raise ZooInputError(f"wide-band PESQ needs 16 kHz audio, got {sample_rate} Hz")
    if sample_rate not in (8000, 16000):
        raise ZooInputError(f"PESQ needs 8 or 16 kHz audio, got {sample_rate} Hz")
    try:
        return float(pesq(sample_rate, ref.numpy(), est.numpy(), mode))
    except (NoUtterancesError, PesqError) as err:
        warnings.warn(f"PESQ-{mode.upper()} undefined ({err}); returning NaN", stacklevel=3)
        return math.nan


def pesq_wb(reference, estimate, sample_rate: int = 16000) -> float:
    """Wide-band PESQ (ITU-T P.862.2), MOS-LQO in about [1.04, 4.64]; NaN with a warning when the
    reference holds no speech PESQ can find."""
    return _pesq(reference, estimate, sample_rate, "wb")


def pesq_nb(reference, estimate, sample_rate: int = 16000) -> float:
    """Narrow-band PESQ (ITU-T P.862, MOS-LQO mapping), about [1.02, 4.55]."""
    return _pesq(reference, estimate, sample_rate, "nb")


def stoi(reference, estimate, sample_rate: int = 16000) -> float:
    """STOI (Taal et al., 2011) in [0, 1]."""
    from pystoi import stoi as _stoi

    ref, est = _pair(reference, estimate)
    return float(_stoi(ref.numpy(), est.numpy(), sample_rate, extended=False))


def estoi(reference, estimate, sample_rate: int = 16000) -> float:
    """Extended STOI (Jensen & Taal, 2016)."""
    from pystoi import stoi as _stoi

    ref, est = _pair(reference, estimate)
    return float(_stoi(ref.numpy(), est.numpy(), sample_rate, extended=True))


def spectral_rmse_db(reference, estimate, stft: STFT | None = None, floor_db: float = -80.0) -> float:
    """RMSE (dB) between the log-power spectrograms, each floored ``floor_db`` below its peak."""
    stft = stft or STFT()
    ref, est = _pair(reference, estimate)
    p_ref, p_est = stft.power(ref), stft.power(est)
    top = 10 * torch.log10(p_ref.max())
    db_ref = (10 * torch.log10(p_ref + 1e-20)).clamp(min=top + floor_db)
    db_est = (10 * torch.log10(p_est + 1e-20)).clamp(min=top + floor_db)
    return float((db_ref - db_est).square().mean().sqrt())


def evaluate(reference, estimate, sample_rate: int = 16000, metrics=METRIC_NAMES) -> dict:
    """All metrics of ``estimate`` against ``reference``: ``{"si_sdr": dB, "pesq_wb": ..., ...}``."""
    functions = {
        "si_sdr": lambda r, e: si_sdr(r, e),
        "pesq_wb": lambda r, e: pesq_wb(r, e, sample_rate),
        "pesq_nb": lambda r, e: pesq_nb(r, e, sample_rate),
        "stoi": lambda r, e: stoi(r, e, sample_rate),
        "estoi": lambda r, e: estoi(r, e, sample_rate),
        "spectral_rmse_db": lambda r, e: spectral_rmse_db(r, e, STFT(sample_rate=sample_rate)),
    }
    unknown = set(metrics) - set(functions)
    if unknown:
        raise ZooInputError(f"evaluate: unknown metrics {sorted(unknown)}; known: {METRIC_NAMES}")
    ref, est = _pair(reference, estimate)
    return {name: functions[name](ref, est) for name in metrics}
