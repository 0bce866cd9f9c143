"""``enhance``: noisy waveforms in, speech (and noise) estimates out, with a frozen prior.

    from zoo.checkpoint import load_checkpoint
    from zoo.demo import shipped_prior_path
    from zoo.enhance import enhance
    prior = load_checkpoint(shipped_prior_path())     # or your own "prior.pt"
    result = enhance(noisy, prior.model, prior.guide) # noisy: (n_samples,) or a list of them
    result.speech                                # (n_samples,) estimate, same length

Every utterance is checked (NaN, silence, clipping, too short), transformed with the prior's
STFT, cut into segments of at most ``max_seconds`` (so long recordings fit in memory; the noise
model is fitted per segment, the Wiener gains are joined before one inverse STFT, so there are
no seams), and the segments are enhanced together in padded batches of ``batch_size``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from zoo.config import default_device
from zoo.data.audio import check_waveform
from zoo.data.stft import STFT
from zoo.enhance.inference import METHODS, infer
from zoo.enhance.model import check_prior
from zoo.errors import ZooInputError

#: Fewer STFT frames than this is not a recording the noise model can be fitted to.
MIN_FRAMES = 8


@dataclass
class Enhanced:
    """Result of :func:`enhance` for one input (lists of these for a list of inputs).

    ``speech`` and ``noise`` are waveforms ``(n_samples,)`` on the CPU, ``speech_gain`` the
    Wiener gain ``(F, N)``, ``loss`` the per-iteration loss per frame of each segment
    ``(iterations, n_segments)``, ``seconds`` the share of inference time of this input.
    """

    speech: torch.Tensor
    noise: torch.Tensor
    speech_gain: torch.Tensor
    loss: torch.Tensor
    seconds: float
    info: dict = field(default_factory=dict)


def check_not_clipped(waveform: torch.Tensor, name: str, max_fraction: float = 1e-3) -> None:
    """Refuse a recording whose peak value repeats on many samples (a clipped recording).

    Clipping adds broadband distortion the noise model cannot explain; enhancing it silently
    would give a misleading result. The test: more than ``max_fraction`` of the samples lie
    within 0.1 % of the peak, in runs of at least 3 consecutive samples.
    """
    peak = waveform.abs().max()
    at_peak = waveform.abs() >= 0.999 * peak
    runs = at_peak[:-2] & at_peak[1:-1] & at_peak[2:]
    if runs.sum() > max_fraction * waveform.numel():
        raise ZooInputError(
            f"{name}: looks clipped ({int(at_peak.sum())} samples at the peak value "
            f"{float(peak):.3f}); expected an unclipped recording"
        )


def _prior_stft(prior) -> STFT:
    stft = getattr(prior, "stft", None)
    if stft is None:
        return STFT()
    return stft if isinstance(stft, STFT) else STFT(**stft)


def enhance(
    noisy,
    prior,
    encoder=None,
    method: str = "vem",
    iterations: int = 100,
    noise_rank: int = 8,
    stft: STFT | None = None,
    level_db: float | None = -25.0,
    video=None,
    max_seconds: float = 30.0,
    batch_size: int = 32,
    device=None,
    seed: int = 0,
    progress: bool = False,
    names=None,
    **inference_options,
):
    """Enhance one noisy waveform ``(n_samples,)`` or a list of them.

    Args:
        noisy: waveform(s) at the prior's sample rate (16 kHz for the shipped prior).
        prior: trained speech prior (``sigma2``, ``latent_dim``, its ``stft``); it is copied,
            frozen and moved to ``device``; the object you pass is left untouched.
        encoder: the prior's trained guide (``encode``), e.g. ``load_checkpoint(path).guide``
            (``prior.default_guide()`` would be untrained).
        method: ``"vem"``, ``"vem-meanfield"`` or ``"mcem"``.
        iterations: EM iterations per segment.
        noise_rank: NMF rank of the noise (8, as in the references).
        level_db: each input is scaled to this RMS level (dBFS) before inference, near the level
            the prior was trained at (the encoder is not level invariant), and the outputs are
            scaled back, so they are at the input's level. ``None`` leaves the level alone.
        stft: the analysis settings of the input; must equal the prior's (default: the prior's).
        video: only for audio-visual priors; an audio-only prior refuses it.
        max_seconds: longest segment inferred at once.
        batch_size: segments per padded batch.
        device: ``"cuda"``/``"cpu"``; default CUDA when present.
        seed: seeds each segment's random numbers.
        progress: show a progress bar (iterations x batches).
        names: labels of the inputs for error messages (default ``noisy[i]``).
        **inference_options: passed to :func:`zoo.enhance.inference.infer` (``lr``,
            ``m_step``, ``wiener_samples``, ``mh_steps``, ...).

    Returns:
        :class:`Enhanced` for one waveform, a list of them for a list.
    """
    if method not in METHODS:
        raise ZooInputError(f"method: expected one of {METHODS}, got {method!r}")
    single = torch.is_tensor(noisy) and noisy.dim() == 1
    waveforms = [noisy] if single else list(noisy)
    names = names or (["noisy"] if single else [f"noisy[{i}]" for i in range(len(waveforms))])
    prior_stft = _prior_stft(prior)
    if stft is not None:
        prior_stft.check_compatible(stft, what="prior")
    stft = prior_stft
    if video is not None and not getattr(prior, "uses_video", False):
        raise ZooInputError(
            f"video: {type(prior).__name__} is an audio-only prior and takes no video; "
            "pass video only to an audio-visual prior"
        )
    if encoder is None:
        raise ZooInputError(
            "encoder: enhancement needs the prior's trained encoder (VEM starts from it, MCEM "
            "and mean-field VEM initialise with it); zoo.checkpoint.load_checkpoint(path) "
            "returns both (.model, .guide)"
        )
    device = default_device(device)
    prior = copy.deepcopy(prior).to(device).requires_grad_(False).eval()
    encoder = copy.deepcopy(encoder).to(device).requires_grad_(False).eval()

    # ---- check, transform, cut into segments
    min_samples = (MIN_FRAMES - 1) * stft.hop_length
    spectra, segments, levels = [], [], []  # segments: (input index, first frame, n_frames)
    max_frames = max(MIN_FRAMES, int(max_seconds * stft.frame_rate))
    for i, (wave, name) in enumerate(zip(waveforms, names)):
        wave = check_waveform(torch.as_tensor(wave), name, min_samples=min_samples)
        check_not_clipped(wave, name)
        level = 1.0 if level_db is None else 10 ** (level_db / 20) / wave.square().mean().sqrt()
        levels.append(float(level))
        spec = stft(wave.to(device) * level)
        spectra.append(spec)
        n_frames = spec.shape[-1]
        n_segments = -(-n_frames // max_frames)
        bounds = torch.linspace(0, n_frames, n_segments + 1).round().long().tolist()
        segments += [(i, a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]
    check_prior(prior, spectra[0].abs())

    # ---- infer the segments in padded batches
    gains = [torch.zeros(spec.shape, device=device) for spec in spectra]
    losses = [[] for _ in spectra]
    seconds = [0.0 for _ in spectra]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        n_batches = -(-len(segments) // batch_size)
        bar = tqdm(total=n_batches * iterations, desc=f"enhance ({method})", unit="it")
    for first in range(0, len(segments), batch_size):
        batch = segments[first:first + batch_size]
        n_max = max(n for _, _, n in batch)
        power = torch.zeros(len(batch), stft.n_freq, n_max, device=device)
        mask = torch.zeros(len(batch), n_max, dtype=torch.bool, device=device)
        for b, (i, start, n) in enumerate(batch):
            power[b, :, :n] = spectra[i][:, start:start + n].abs().square()
            mask[b, :n] = True
        result = infer(prior, encoder, power, mask, [n for _, _, n in batch], method=method,
                       iterations=iterations, noise_rank=noise_rank, seed=seed, progress=bar,
                       **inference_options)
        for b, (i, start, n) in enumerate(batch):
            gains[i][:, start:start + n] = result.speech_gain[b, :, :n]
            losses[i].append(result.loss[:, b].cpu())
            seconds[i] += result.seconds * n / mask.sum().item()
    if bar is not None:
        bar.close()

    # ---- Wiener estimate and noise estimate, one inverse STFT per input
    out = []
    for i, wave in enumerate(waveforms):
        n_samples = torch.as_tensor(wave).shape[-1]
        speech_spec = gains[i] * spectra[i] / levels[i]
        speech = stft.inverse(speech_spec, n_samples).cpu()
        noise = stft.inverse(spectra[i] / levels[i] - speech_spec, n_samples).cpu()
        out.append(Enhanced(speech=speech, noise=noise, speech_gain=gains[i].cpu(),
                            loss=torch.stack(losses[i], -1), seconds=seconds[i],
                            info={"method": method, "iterations": iterations,
                                  "noise_rank": noise_rank, "device": str(device)}))
    return out[0] if single else out
