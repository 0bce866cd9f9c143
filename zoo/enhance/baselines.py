"""Classical single-channel speech enhancement: the baselines every enhancement table compares to.

* :func:`noise_psd_tracker` -- MMSE-based noise power tracking with a speech presence
  probability (SPP) of fixed a priori SNR (Gerkmann & Hendriks 2012).
* :func:`spectral_subtraction` -- power spectral subtraction with over-subtraction and a
  spectral floor (Berouti, Schwartz & Makhoul 1979).
* :func:`wiener_filter` -- Wiener gain with the decision-directed a priori SNR (Ephraim &
  Malah 1984).
* :func:`nmf_enhance` -- supervised-speech / unsupervised-noise IS-NMF: a speech dictionary
  learned beforehand on clean speech (:func:`learn_speech_dictionary`) is held fixed, the noise
  dictionary and all activations are fitted on the noisy spectrogram, and the speech is the
  Wiener estimate ``W_s H_s / (W_s H_s + W_n H_n) x``.

Every function takes a noisy waveform ``(n_samples,)`` (or a batch ``(B, n_samples)`` of equal
length), float, at the STFT's sample rate, and returns the enhanced waveform of the same shape;
the noisy phase is kept. They run on the waveform's device. All STFTs go through
:class:`zoo.data.stft.STFT`; noise and speech powers are ``(..., F, N)`` in the units of
``|STFT|^2``.
"""

from __future__ import annotations

import math

import torch

from zoo.data.audio import check_waveform
from zoo.data.stft import STFT
from zoo.errors import ZooInputError
from zoo.nmf import (
    DEFAULT_EPS,
    is_divergence,
    nmf_is,
    normalize_columns,
    random_init,
    update_noise_nmf,
)

#: Frame shift (seconds) the tracker's published constants were tuned for (Gerkmann &
#: Hendriks 2012 use 16 kHz, 32 ms frames, 50 % overlap); other hops rescale the time constants.
_REFERENCE_HOP_SECONDS = 0.016


# --------------------------------------------------------------------------- input handling
def _check_noisy(noisy: torch.Tensor, stft: STFT, name: str = "noisy") -> torch.Tensor:
    """Validate ``(n_samples,)`` or ``(B, n_samples)``, at least one STFT frame long."""
    noisy = torch.as_tensor(noisy)
    if noisy.dim() == 2:
        rows = [_check_noisy(row, stft, f"{name}[{i}]") for i, row in enumerate(noisy)]
        if not rows:
            raise ZooInputError(f"{name}: empty batch, expected (B, n_samples) with B >= 1")
        return torch.stack(rows)
    return check_waveform(noisy, name=name, min_samples=stft.n_fft)


def _check_noise_psd(noise_psd: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
    """A user-given noise PSD ``(F,)``, ``(F, N)`` or ``(..., F, N)`` as a broadcastable tensor."""
    noise_psd = torch.as_tensor(noise_psd).to(device=power.device, dtype=power.dtype)
    if noise_psd.dim() == 1:
        noise_psd = noise_psd.unsqueeze(-1)
    try:
        fits = torch.broadcast_shapes(noise_psd.shape, power.shape) == power.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ZooInputError(
            f"noise_psd: shape {tuple(noise_psd.shape)} does not fit the noisy power spectrogram "
            f"{tuple(power.shape)}; expected (F,), (F, N) or (..., F, N) with F = {power.shape[-2]}"
        )
    if not torch.isfinite(noise_psd).all() or not bool((noise_psd > 0).all()):
        raise ZooInputError("noise_psd: expected finite, positive noise powers")
    return noise_psd


def _noise_psd_or_track(noise_psd, power: torch.Tensor, stft: STFT) -> torch.Tensor:
    if noise_psd is None:
        return noise_psd_tracker(power, stft=stft)
    return _check_noise_psd(noise_psd, power)


# --------------------------------------------------------------------------- noise tracker
def noise_psd_tracker(
    power: torch.Tensor,
    stft: STFT = STFT(),
    prior_snr_db: float = 15.0,
    smoothing: float = 0.8,
    spp_smoothing: float = 0.9,
    spp_max: float = 0.99,
    init_seconds: float = 0.1,
    init_search_seconds: float = 1.0,
) -> torch.Tensor:
    """Noise PSD ``(..., F, N)`` of a noisy power spectrogram ``(..., F, N)``.

    The MMSE-based tracker of Gerkmann & Hendriks (2012), "Unbiased MMSE-based noise power
    estimation with low complexity and low tracking delay". Frame by frame, with ``s2`` the
    previous noise estimate and ``xi = 10 ** (prior_snr_db / 10)`` a *fixed* a priori SNR under
    speech presence (equal priors for presence and absence):

        p       = 1 / (1 + (1 + xi) exp(-|y|^2 / s2 * xi / (1 + xi)))      speech presence prob.
        p_bar   = spp_smoothing p_bar + (1 - spp_smoothing) p
        p       = min(p, spp_max)  where p_bar > spp_max                    (avoids stagnation)
        E|N|^2  = (1 - p) |y|^2 + p s2                                     MMSE noise periodogram
        s2      = smoothing s2 + (1 - smoothing) E|N|^2

    Start: the paper assumes the first frames are noise only. Here the estimate starts from the
    mean power of the ``init_seconds`` of quietest frames (lowest total power) among the first
    ``init_search_seconds``, so a recording that starts with speech does not start with a noise
    estimate that holds speech (which the recursion would then keep until the first pause).
    Like the paper, no bias compensation is applied; in noise-only Gaussian noise the fixed-SPP
    recursion settles about 1 dB below the true PSD (measured on white noise).
    The time constants (``smoothing``, ``spp_smoothing``) are the paper's for a 16 ms frame shift
    and are rescaled for the STFT's hop, so tracking speed in seconds does not depend on the hop.
    """
    if power.dim() < 2 or power.is_complex():
        raise ZooInputError(
            f"power: expected a real power spectrogram (..., F, N), got {tuple(power.shape)}"
        )
    hop_ratio = stft.hop_length / stft.sample_rate / _REFERENCE_HOP_SECONDS
    alpha_noise = smoothing**hop_ratio
    alpha_spp = spp_smoothing**hop_ratio
    xi = 10.0 ** (prior_snr_db / 10.0)
    n_search = max(1, min(power.shape[-1], round(init_search_seconds * stft.frame_rate)))
    n_init = max(1, min(n_search, round(init_seconds * stft.frame_rate)))
    floor = torch.finfo(power.dtype).tiny

    frame_energy = power[..., :n_search].sum(-2)  # (..., n_search)
    quiet = frame_energy.topk(n_init, dim=-1, largest=False).indices  # (..., n_init)
    quiet = quiet.unsqueeze(-2).expand(*power.shape[:-1], n_init)
    noise = power.gather(-1, quiet).mean(-1).clamp_min(floor)  # (..., F)
    spp_bar = torch.full_like(noise, 0.5)
    estimates = []
    for frame in power.unbind(-1):
        posterior_snr = frame / noise
        spp = torch.sigmoid(posterior_snr * (xi / (1 + xi)) - math.log1p(xi))
        spp_bar = alpha_spp * spp_bar + (1 - alpha_spp) * spp
        spp = torch.where(spp_bar > spp_max, spp.clamp_max(spp_max), spp)
        noise_periodogram = (1 - spp) * frame + spp * noise
        noise = (alpha_noise * noise + (1 - alpha_noise) * noise_periodogram).clamp_min(floor)
        estimates.append(noise)
    return torch.stack(estimates, dim=-1)


# --------------------------------------------------------------------------- spectral subtraction
def spectral_subtraction(
    noisy: torch.Tensor,
    stft: STFT = STFT(),
    noise_psd: torch.Tensor | None = None,
    over_subtraction: float | None = None,
    spectral_floor: float = 0.01,
) -> torch.Tensor:
    """Power spectral subtraction with over-subtraction and a spectral floor (Berouti et al. 1979).

        |S|^2 = |Y|^2 - alpha |D|^2    if that exceeds beta |D|^2,    else beta |D|^2

    Args:
        noisy: ``(n_samples,)`` or ``(B, n_samples)`` waveform.
        stft: analysis/synthesis settings.
        noise_psd: ``|D|^2`` as ``(F,)`` or ``(..., F, N)``; tracked by
            :func:`noise_psd_tracker` when None.
        over_subtraction: alpha. None (default) follows Berouti: per frame,
            ``alpha = 4 - 3/20 SNR`` with the frame's a posteriori SNR in dB clamped to
            [-5, 20] (alpha from 4.75 down to 1: subtract more in noisier frames).
        spectral_floor: beta (0.01 = the floor sits 20 dB below the noise).

    Returns:
        the enhanced waveform, shape of ``noisy``.
    """
    noisy = _check_noisy(noisy, stft)
    spec = stft(noisy)
    power = spec.abs().square()
    noise = _noise_psd_or_track(noise_psd, power, stft)
    if over_subtraction is None:
        snr_db = 10 * torch.log10(power.sum(-2) / noise.expand_as(power).sum(-2))  # (..., N)
        alpha = (4.0 - 0.15 * snr_db.clamp(-5.0, 20.0)).unsqueeze(-2)
    else:
        alpha = float(over_subtraction)
    speech_power = torch.maximum(power - alpha * noise, spectral_floor * noise)
    gain = torch.sqrt(speech_power / power.clamp_min(torch.finfo(power.dtype).tiny))
    return stft.inverse(gain * spec, noisy.shape[-1])


# --------------------------------------------------------------------------- Wiener filter
def wiener_filter(
    noisy: torch.Tensor,
    stft: STFT = STFT(),
    noise_psd: torch.Tensor | None = None,
    dd_smoothing: float = 0.98,
    min_prior_snr_db: float = -25.0,
) -> torch.Tensor:
    """Wiener filter with the decision-directed a priori SNR (Ephraim & Malah 1984).

    Frame by frame, with ``gamma = |Y|^2 / lambda`` the a posteriori SNR and ``lambda`` the
    noise PSD:

        xi_n = a |S_{n-1}|^2 / lambda_{n-1} + (1 - a) max(gamma_n - 1, 0),  xi_n >= xi_min
        G_n  = xi_n / (1 + xi_n),     S_n = G_n Y_n

    Args:
        noisy: ``(n_samples,)`` or ``(B, n_samples)`` waveform.
        stft: analysis/synthesis settings.
        noise_psd: ``(F,)`` or ``(..., F, N)``; tracked by :func:`noise_psd_tracker` when None.
        dd_smoothing: ``a``, the decision-directed weight (0.98 as in the paper).
        min_prior_snr_db: ``xi_min`` in dB, which also floors the gain (limits musical noise).

    Returns:
        the enhanced waveform, shape of ``noisy``.
    """
    noisy = _check_noisy(noisy, stft)
    spec = stft(noisy)
    power = spec.abs().square()
    noise = _noise_psd_or_track(noise_psd, power, stft).expand_as(power)
    xi_min = 10.0 ** (min_prior_snr_db / 10.0)
    floor = torch.finfo(power.dtype).tiny

    prev_speech_snr = torch.zeros_like(power[..., 0])  # |S_{n-1}|^2 / lambda_{n-1}
    gains = []
    for frame_power, frame_noise in zip(power.unbind(-1), noise.unbind(-1)):
        posterior_snr = frame_power / frame_noise.clamp_min(floor)
        prior_snr = dd_smoothing * prev_speech_snr + (1 - dd_smoothing) * (posterior_snr - 1).relu()
        prior_snr = prior_snr.clamp_min(xi_min)
        gain = prior_snr / (1 + prior_snr)
        prev_speech_snr = gain.square() * posterior_snr
        gains.append(gain)
    return stft.inverse(torch.stack(gains, dim=-1) * spec, noisy.shape[-1])


# --------------------------------------------------------------------------- NMF
def learn_speech_dictionary(
    clean_waveforms: torch.Tensor | list[torch.Tensor] | None = None,
    rank: int = 32,
    n_iter: int = 200,
    *,
    power: torch.Tensor | None = None,
    stft: STFT = STFT(),
    silence_db: float = 40.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Speech dictionary ``W_s (F, rank)`` by IS-NMF of clean speech, columns summing to 1.

    Give either ``clean_waveforms`` (one ``(n_samples,)`` waveform, a ``(B, n_samples)`` batch or
    a list of waveforms of any lengths) or
    ``power``, a clean power spectrogram ``(F, N)``. Frames more than ``silence_db`` below the
    loudest frame are left out of the fit: the IS divergence is scale invariant, so pauses would
    otherwise cost as much as speech and pull atoms towards silence.
    """
    if (clean_waveforms is None) == (power is None):
        raise ZooInputError("learn_speech_dictionary: give exactly one of clean_waveforms, power")
    if power is None:
        if isinstance(clean_waveforms, torch.Tensor) and clean_waveforms.dim() in (1, 2):
            clean_waveforms = list(clean_waveforms.reshape(-1, clean_waveforms.shape[-1]))
        if isinstance(clean_waveforms, torch.Tensor) or not len(clean_waveforms):
            raise ZooInputError(
                "clean_waveforms: expected a waveform (n_samples,), a batch (B, n_samples) or a "
                "non-empty list of waveforms"
            )
        power = torch.cat(
            [
                stft.power(check_waveform(w, f"clean_waveforms[{i}]", min_samples=stft.n_fft))
                for i, w in enumerate(clean_waveforms)
            ],
            dim=-1,
        )
    power = torch.as_tensor(power)
    if power.dim() != 2 or power.shape[0] != stft.n_freq:
        raise ZooInputError(
            f"power: expected a clean power spectrogram (F={stft.n_freq}, N), "
            f"got {tuple(power.shape)}"
        )
    if not torch.isfinite(power).all() or bool((power < 0).any()):
        raise ZooInputError("power: expected finite, non-negative powers")
    frame_energy = power.sum(0)
    loud = frame_energy > frame_energy.max() * 10.0 ** (-silence_db / 10.0)
    if int(loud.sum()) < rank:
        raise ZooInputError(
            f"learn_speech_dictionary: only {int(loud.sum())} non-silent frames for rank {rank}; "
            "give more clean speech or a smaller rank"
        )
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    W, H, _ = nmf_is(power[:, loud], rank, n_iter, generator=generator)
    return normalize_columns(W, H)[0]


def fit_noisy_nmf(
    power: torch.Tensor,
    speech_dictionary: torch.Tensor,
    noise_rank: int = 8,
    n_iter: int = 100,
    generator: torch.Generator | None = None,
    exponent: float = 1.0,
) -> dict[str, torch.Tensor]:
    """IS-NMF of a noisy power ``(..., F, N)`` as ``W_s H_s + W_n H_n`` with ``W_s`` held fixed.

    Each round updates the speech activations H_s (noise term fixed), then the noise factors
    W_n, H_n (speech term fixed), with the multiplicative updates of :mod:`zoo.nmf`.

    Returns:
        dict with ``speech_var = W_s H_s``, ``noise_var = W_n H_n`` (both ``(..., F, N)``), the
        factors ``H_speech``, ``W_noise``, ``H_noise`` and the IS cost ``history (n_iter + 1, ...)``.
    """
    W_s = torch.as_tensor(speech_dictionary)
    if W_s.dim() != 2 or W_s.shape[0] != power.shape[-2]:
        raise ZooInputError(
            f"speech_dictionary: expected (F={power.shape[-2]}, K), got {tuple(W_s.shape)}"
        )
    if not torch.isfinite(W_s).all() or bool((W_s < 0).any()) or not bool((W_s.sum(0) > 0).all()):
        raise ZooInputError("speech_dictionary: expected finite, non-negative, non-zero columns")
    W_s = W_s.to(power)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    # Start with half the mean power in each part.
    W_n, H_n = random_init(power, noise_rank, generator)
    H_n = 0.5 * H_n
    batch = power.shape[:-2]
    H_s = 0.5 + torch.rand(*batch, W_s.shape[1], power.shape[-1], generator=generator,
                           dtype=torch.float64).to(power)
    mean_power = power.mean(dim=(-2, -1), keepdim=True)
    H_s = H_s * 0.5 * mean_power / (W_s.shape[1] * W_s.mean())

    def cost():
        return is_divergence(power, W_s @ H_s + W_n @ H_n)

    history = [cost()]
    for _ in range(n_iter):
        W_s, H_s = update_noise_nmf(power, W_n @ H_n, W_s, H_s, update_W=False, exponent=exponent)
        W_n, H_n = update_noise_nmf(power, W_s @ H_s, W_n, H_n, exponent=exponent)
        W_n, H_n = normalize_columns(W_n, H_n)
        history.append(cost())
    return {
        "speech_var": W_s @ H_s,
        "noise_var": W_n @ H_n,
        "H_speech": H_s,
        "W_noise": W_n,
        "H_noise": H_n,
        "history": torch.stack(history),
    }


def nmf_enhance(
    noisy: torch.Tensor,
    speech_dictionary: torch.Tensor | None = None,
    noise_rank: int = 8,
    n_iter: int = 100,
    stft: STFT = STFT(),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """NMF enhancement: fixed speech dictionary, noise and activations fitted on the noisy input.

    The speech estimate is the Wiener-like mask ``W_s H_s / (W_s H_s + W_n H_n)`` applied to the
    noisy STFT (see :func:`fit_noisy_nmf`).

    Args:
        noisy: ``(n_samples,)`` or ``(B, n_samples)`` waveform.
        speech_dictionary: ``W_s (F, K_s)`` from :func:`learn_speech_dictionary`. Required: a
            fully blind NMF has no principled way to tell speech components from noise ones.
        noise_rank: number of noise components.
        n_iter: NMF rounds.
        stft: analysis/synthesis settings (must be those the dictionary was learned with).
        generator: CPU generator for the random start (default: seeded with 0, deterministic).

    Returns:
        the enhanced waveform, shape of ``noisy``.
    """
    if speech_dictionary is None:
        raise ZooInputError(
            "speech_dictionary: nmf_enhance needs a speech dictionary W_s (F, K) learned on clean "
            "speech, e.g. learn_speech_dictionary(clean_waveforms, rank=32)"
        )
    noisy = _check_noisy(noisy, stft)
    spec = stft(noisy)
    power = spec.abs().square().clamp_min(DEFAULT_EPS)
    fit = fit_noisy_nmf(power, speech_dictionary, noise_rank, n_iter, generator)
    mask = fit["speech_var"] / (fit["speech_var"] + fit["noise_var"])
    return stft.inverse(mask * spec, noisy.shape[-1])
