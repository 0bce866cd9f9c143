"""Inference in the noisy-speech model: VEM (encoder or mean-field guide) and MCEM.

One loop serves every method. Each iteration has

* an **E-step** over the speech latents ``z``: for VEM, one stochastic-gradient step on the
  noisy-speech ELBO (Pyro's ``Trace_ELBO`` of :class:`~zoo.enhance.model.NoisySpeechModel`
  against the guide), updating only the guide's parameters; for MCEM, Metropolis-Hastings
  sampling of ``p(z | x)`` frame by frame (Leglaive et al. 2018);
* an **M-step** over the noise ``W, H`` and gains ``g``: the closed-form multiplicative updates
  (:mod:`zoo.nmf`) with the speech variance of samples of ``z``, or, as an option for VEM, a
  gradient step on the same ELBO.

The optimizer holds exactly the guide's (and, for the gradient M-step, the noise model's)
parameters, so the prior's decoder can never move: its weights are also set to
``requires_grad=False`` (the test suite checks they are bit-identical after enhancement).

Batches: the guide keeps one copy of its parameters per utterance and each utterance draws its
random numbers from its own generator, so enhancing utterances together in one padded batch
gives, for each, what enhancing it alone gives (up to float round-off).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from zoo.enhance.baselines import noise_psd_tracker
from zoo.enhance.model import NoiseModel, NoisySpeechModel
from zoo.nmf import nmf_is, update_gain, update_noise_nmf

METHODS = ("vem", "vem-meanfield", "mcem")


# --------------------------------------------------------------------------- randomness
class NoiseStreams:
    """Standard-normal noise for a batch, each utterance from its own generator.

    Utterance ``b`` of length ``N_b`` always receives the same numbers for the same seed,
    whatever else is in the batch; padding frames get zeros.
    """

    def __init__(self, lengths: list[int], n_max: int, seed: int, device: torch.device,
                 dtype=torch.float32):
        self.lengths, self.n_max, self.device, self.dtype = lengths, n_max, device, dtype
        self.generators = [torch.Generator().manual_seed(seed) for _ in lengths]

    def normal(self, *shape_after_frames: int, leading: tuple[int, ...] = ()) -> torch.Tensor:
        """``(*leading, B, N_max, *shape_after_frames)`` standard-normal draws."""
        out = torch.zeros(*leading, len(self.lengths), self.n_max, *shape_after_frames,
                          dtype=self.dtype)
        for b, (gen, n) in enumerate(zip(self.generators, self.lengths)):
            out[..., b, :n, :] = torch.randn(*leading, n, *shape_after_frames, generator=gen,
                                             dtype=self.dtype)
        return out.to(self.device)

    def uniform(self, leading: tuple[int, ...] = ()) -> torch.Tensor:
        """``(*leading, B, N_max)`` uniform draws (MH acceptance)."""
        out = torch.ones(*leading, len(self.lengths), self.n_max, dtype=self.dtype)
        for b, (gen, n) in enumerate(zip(self.generators, self.lengths)):
            out[..., b, :n] = torch.rand(*leading, n, generator=gen, dtype=self.dtype)
        return out.to(self.device)


class _NormalWithNoise(dist.Normal):
    """A Normal whose reparameterised draw is ``loc + scale * noise`` for the given noise.

    It lets the guide use the per-utterance :class:`NoiseStreams` while Pyro computes the
    ELBO as usual (``log_prob`` and the KL are those of the Normal).
    """

    def __init__(self, loc, scale, noise, validate_args=None):
        super().__init__(loc, scale, validate_args=validate_args)
        self.noise = noise

    def rsample(self, sample_shape=torch.Size()):
        return self.loc + self.scale * self.noise

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape)
        return type(self)(self.loc.expand(shape), self.scale.expand(shape),
                          self.noise.expand(shape))


# --------------------------------------------------------------------------- guides
class _Encode(nn.Module):
    """``forward = encoder.encode``, so ``torch.func.functional_call`` can run the encoder."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, power):
        return self.encoder.encode(power)


class EncoderGuide(nn.Module):
    """``q(z_bn | x_b) = N(mu(x_bn), sigma(x_bn))``: the prior's trained encoder, one copy per
    utterance, fed with the noisy power and fine-tuned on the noisy-speech ELBO (VEM).

    Args:
        encoder: the prior's guide; ``encoder.encode(power (..., F)) -> (loc, scale)``.
        n_utterances: number of copies (the batch size).
    """

    def __init__(self, encoder: nn.Module, n_utterances: int):
        super().__init__()
        copies = [_Encode(copy.deepcopy(encoder)).requires_grad_(True)
                  for _ in range(n_utterances)]
        params, self._buffers_stacked = stack_module_state(copies)
        self._names = list(params)
        # ParameterDict keys cannot hold dots
        self.params = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(v.detach())
                                        for k, v in params.items()})
        # the architecture only, kept outside .parameters(): weights come from self.params
        object.__setattr__(self, "_template", copies[0].to("meta"))

    def encode(self, power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``power (B, N, F)`` -> ``loc, scale (B, N, D)``, utterance b through copy b."""
        stacked = {name: self.params[name.replace(".", "__")] for name in self._names}

        def encode_one(params, buffers, x):
            return functional_call(self._template, (params, buffers), (x,), strict=False)

        return vmap(encode_one)(stacked, self._buffers_stacked, power)

    def forward(self, power: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor) -> None:
        loc, scale = self.encode(power.transpose(-1, -2))
        _sample_z(loc, scale, mask, noise)

    @torch.no_grad()
    def sample(self, power: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``noise (R, B, N, D)`` -> ``z (R, B, N, D)`` drawn from ``q``."""
        loc, scale = self.encode(power.transpose(-1, -2))
        return loc + scale * noise


class MeanFieldGuide(nn.Module):
    """``q(z_bn) = N(m_bn, diag(s_bn))``: :class:`guides.MeanField` over the batch's frames
    (free per-frame parameters, no encoder), started from the prior's encoder on the noisy input."""

    def __init__(self, encoder: nn.Module, power: torch.Tensor):
        super().__init__()
        from guides.mean_field import MeanField

        self.mean_field = MeanField.from_encoder(encoder, power.transpose(-1, -2))

    def forward(self, power: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor) -> None:
        _sample_z(*self.mean_field.posterior_params(), mask, noise)

    @torch.no_grad()
    def sample(self, power: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        loc, scale = self.mean_field.posterior_params()
        return loc + scale * noise


def _sample_z(loc, scale, mask, noise):
    B, N, _ = loc.shape
    with pyro.plate("utterances", B, dim=-2), pyro.plate("frames", N, dim=-1), \
            poutine.mask(mask=mask):
        pyro.sample("z", _NormalWithNoise(loc, scale, noise).to_event(1))


# --------------------------------------------------------------------------- the loop
@dataclass
class InferenceResult:
    """What inference leaves for the estimate, per utterance of the batch.

    ``speech_gain (B, F, N)``: posterior Wiener gain ``E_q[g sigma2 / (g sigma2 + W H)]``;
    ``noise_var (B, F, N)``: ``W H``; ``gain (B, N)``: ``g``; ``loss (iterations, B)``: for VEM the
    negative ELBO per frame of each utterance at each iteration, for MCEM the negative
    log-likelihood per frame at the current samples; ``seconds``: wall time of the loop.
    """

    speech_gain: torch.Tensor
    noise_var: torch.Tensor
    gain: torch.Tensor
    loss: torch.Tensor
    seconds: float = 0.0


def _init_noise(power, mask, lengths, rank, streams: NoiseStreams, how: str) -> NoiseModel:
    """Starting noise model of each utterance (its own generator), and gains ``g = 1``.

    ``how="level"`` (default): positive random ``W, H`` whose product has the mean level of the
    noise PSD that the MMSE tracker of the baselines (Gerkmann & Hendriks 2012) estimates. A
    start at the *mixture's* level (``how="random"``) overestimates the noise of a clean
    recording by tens of dB, and the multiplicative updates take many iterations to come down,
    removing speech meanwhile; a start at the tracker's *shape* (``how="tracker"``, IS-NMF of its
    estimate) inherits the tracker's errors on non-stationary noise. Measured on the shipped
    prior (see the note in ``benchmarks/results/enhance.md``).
    """
    B, F, N = power.shape
    if how not in ("random", "tracker", "level"):
        raise ValueError(f"noise_init must be 'random', 'level' or 'tracker', got {how!r}")
    noise_psd = noise_psd_tracker(power) if how != "random" else power  # causal: padding
    frames_w = mask.to(power.dtype)                                     # stays in the pad
    mean_power = (noise_psd * frames_w.unsqueeze(-2)).sum(dim=(-2, -1)) / (
        frames_w.sum(-1).clamp_min(1) * F)
    scale = (mean_power / rank).sqrt().cpu()
    W = torch.empty(B, F, rank, dtype=power.dtype)
    H = torch.ones(B, rank, N, dtype=power.dtype)
    for b, (gen, n) in enumerate(zip(streams.generators, lengths)):
        W[b] = (torch.rand(F, rank, generator=gen, dtype=power.dtype) + 0.1) * scale[b]
        H[b, :, :n] = (torch.rand(rank, n, generator=gen, dtype=power.dtype) + 0.1) * scale[b]
    W, H = W.to(power.device), H.to(power.device)
    if how == "tracker":
        W, H, _ = nmf_is(noise_psd, W=W, H=H, n_iter=20, mask=mask)
    return NoiseModel(W, H, torch.ones(B, N, dtype=power.dtype, device=power.device))


def _m_step_closed_form(model: NoisySpeechModel, power, mask, z_samples, exponent) -> None:
    """Multiplicative updates of ``H, W`` then ``g`` given samples ``z (R, B, N, D)``."""
    noise = model.noise
    unit_var = model.speech_variance(z_samples)  # (R, B, F, N)
    W, H = update_noise_nmf(power, noise.g.unsqueeze(-2) * unit_var, noise.W, noise.H,
                            mask=mask, exponent=exponent)
    g = update_gain(power, unit_var, W @ H, noise.g, mask=mask, exponent=exponent)
    noise.set_(W=W, H=H, g=g)


def infer(
    prior,
    encoder,
    power: torch.Tensor,
    mask: torch.Tensor,
    lengths: list[int],
    method: str = "vem",
    iterations: int = 100,
    noise_rank: int = 8,
    lr: float = 5e-3,
    m_step: str = "closed",
    m_samples: int = 1,
    wiener_samples: int = 16,
    mh_steps: int = 40,
    mh_burn_in: int = 30,
    mh_step_var: float = 0.01,
    nmf_exponent: float = 0.5,
    noise_init: str = "level",
    seed: int = 0,
    progress=None,
) -> InferenceResult:
    """Fit the noisy-speech model to a padded batch of noisy power spectrograms.

    Args:
        prior: frozen speech prior (``sigma2``, ``latent_dim``), on the batch's device.
        encoder: the prior's trained guide (``encode``), used by VEM and to start MCEM and the
            mean-field guide.
        power: ``(B, F, N)`` noisy power ``|x|^2``; ``mask (B, N)``; ``lengths``: frames per
            utterance.
        method: ``"vem"`` (encoder guide), ``"vem-meanfield"`` or ``"mcem"``.
        iterations: EM iterations.
        noise_rank: NMF rank K.
        lr: Adam step size of the E-step (and of the gradient M-step).
        m_step: ``"closed"`` (multiplicative updates) or ``"gradient"`` (VEM only: ``W, H, g``
            join the guide's parameters in the same optimizer step).
        m_samples: samples of ``z`` per frame in the closed-form M-step (VEM).
        wiener_samples: samples of ``z`` averaged in the Wiener gain (VEM).
        mh_steps, mh_burn_in, mh_step_var: Metropolis-Hastings settings of MCEM (random-walk
            proposal of variance ``mh_step_var``; the ``mh_steps - mh_burn_in`` last samples
            feed the M-step and the final Wiener gain).
        nmf_exponent: exponent of the multiplicative updates: 0.5 (the majorisation-
            minimisation update, monotone, as in the reference implementations) or 1 (faster,
            heuristic).
        noise_init: ``"level"``, ``"random"`` or ``"tracker"`` (see :func:`_init_noise`).
        seed: seeds every utterance's random numbers (same for each utterance).
        progress: a tqdm bar to advance once per iteration, or None.
    """
    import time

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if m_step not in ("closed", "gradient"):
        raise ValueError(f"m_step must be 'closed' or 'gradient', got {m_step!r}")
    if m_step == "gradient" and method == "mcem":
        raise ValueError("the gradient M-step is a VEM option; MCEM uses the closed form")
    start = time.perf_counter()
    mask = mask.to(device=power.device, dtype=torch.bool)
    B, F, N = power.shape
    streams = NoiseStreams(lengths, N, seed, power.device, power.dtype)
    model = NoisySpeechModel(prior, _init_noise(power, mask, lengths, noise_rank, streams,
                                                     noise_init))
    frames = mask.sum(-1).clamp_min(1).to(power.dtype)

    with pyro.validation_enabled(False):  # inputs were checked; skip per-step checks
        if method == "mcem":
            speech_gain, losses = _run_mcem(model, encoder, power, mask, iterations, mh_steps,
                                            mh_burn_in, mh_step_var, nmf_exponent, streams,
                                            progress)
        else:
            guide = (EncoderGuide(encoder, B).to(power.device) if method == "vem"
                     else MeanFieldGuide(encoder, power))
            speech_gain, losses = _run_vem(model, guide, power, mask, iterations, lr, m_step,
                                           m_samples, wiener_samples, nmf_exponent, streams,
                                           progress)
    with torch.no_grad():
        return InferenceResult(
            speech_gain=speech_gain,
            noise_var=model.noise.variance().detach(),
            gain=model.noise.g.detach(),
            loss=torch.stack(losses).div(frames) if losses else power.new_zeros(0, B),
            seconds=time.perf_counter() - start,
        )


def _run_vem(model, guide, power, mask, iterations, lr, m_step, m_samples, wiener_samples,
             nmf_exponent, streams, progress):
    """VEM iterations; returns the Wiener gain ``(B, F, N)`` and the loss per iteration."""
    latent_dim = model.prior.latent_dim
    params = list(guide.parameters())
    if m_step == "gradient":
        params += list(model.noise.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(iterations):
        # E-step: one gradient step on the negative ELBO (each utterance its own guide)
        optimizer.zero_grad()
        loss = _negative_elbo_per_utterance(model, guide, power, mask,
                                            streams.normal(latent_dim))
        loss.sum().backward()
        optimizer.step()
        losses.append(loss.detach())
        if m_step == "closed":  # M-step in closed form, with fresh samples from q
            z = guide.sample(power, streams.normal(latent_dim, leading=(m_samples,)))
            with torch.no_grad():
                _m_step_closed_form(model, power, mask, z, nmf_exponent)
        if progress is not None:
            progress.update(1)
    z = guide.sample(power, streams.normal(latent_dim, leading=(wiener_samples,)))
    with torch.no_grad():
        return model.wiener_gain(z), losses


@torch.no_grad()
def _run_mcem(model, encoder, power, mask, iterations, mh_steps, mh_burn_in, mh_step_var,
              nmf_exponent, streams, progress):
    """MCEM iterations; returns the Wiener gain and minus the log-likelihood per iteration."""
    z, _ = encoder.encode(power.transpose(-1, -2))
    losses = []
    for _ in range(iterations):
        samples, log_lik = _metropolis_hastings(model, power, z, mh_steps, mh_burn_in,
                                                mh_step_var, streams)
        z = samples[-1]
        losses.append(-(log_lik * mask).sum(-1))
        _m_step_closed_form(model, power, mask, samples, nmf_exponent)
        if progress is not None:
            progress.update(1)
    samples, _ = _metropolis_hastings(model, power, z, mh_steps, mh_burn_in, mh_step_var,
                                      streams)
    return model.wiener_gain(samples), losses


def _negative_elbo_per_utterance(model, guide, power, mask, noise) -> torch.Tensor:
    """``-ELBO`` of each utterance, ``(B,)``.

    Exactly what ``pyro.infer.Trace_ELBO`` computes (model and guide traced, the model replayed
    on the guide's samples, masked log-densities), summed over frames but kept per utterance,
    so the loop can report each utterance's convergence. Its sum is the batch's loss.
    """
    guide_trace = poutine.trace(guide).get_trace(power, mask, noise)
    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(
        power, mask)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    loss = 0.0
    for trace, sign in ((model_trace, -1.0), (guide_trace, 1.0)):
        for site in trace.nodes.values():
            if site["type"] == "sample":
                loss = loss + sign * site["log_prob"].sum(-1)
    return loss


def _metropolis_hastings(model: NoisySpeechModel, power, z, n_steps, burn_in, step_var,
                         streams: NoiseStreams):
    """Random-walk Metropolis-Hastings on ``p(z_bn | x_bn)``, every frame its own chain.

    Target ``log p(x_bn | z_bn) + log N(z_bn; 0, I)``; proposal ``z' = z + sqrt(step_var) eps``.
    Returns the ``n_steps - burn_in`` last states ``(R, B, N, D)`` and the log-likelihood of the
    final state ``(B, N)``.
    """
    def log_target(z):
        log_lik = model.log_likelihood(power, z)
        return log_lik - 0.5 * z.square().sum(-1), log_lik

    current, log_lik = log_target(z)
    kept = []
    for step in range(n_steps):
        proposal = z + math.sqrt(step_var) * streams.normal(z.shape[-1])
        proposed, proposed_lik = log_target(proposal)
        accept = streams.uniform().log() < proposed - current
        z = torch.where(accept.unsqueeze(-1), proposal, z)
        current = torch.where(accept, proposed, current)
        log_lik = torch.where(accept, proposed_lik, log_lik)
        if step >= burn_in:
            kept.append(z)
    return torch.stack(kept), log_lik
