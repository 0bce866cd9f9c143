"""Plots every part of the zoo shares: spectrograms, waveforms, mouth frames, ELBO curves,
Gaussian ellipses. Each function draws on given axes (or makes a figure) and returns the figure,
so notebooks show it and scripts save it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves
import numpy as np
import torch

from zoo.data.stft import STFT


def _np(x):
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def spectrogram(
    waveform_or_power,
    ax=None,
    stft: STFT | None = None,
    title: str | None = None,
    db_range: float = 80.0,
    vmax: float | None = None,
    colorbar: bool = False,
):
    """Log-power spectrogram (dB) of a waveform ``(n_samples,)`` or of a power array ``(n_freq, n_frames)``.

    Time on x (seconds), frequency on y (kHz).
    """
    stft = stft or STFT()
    data = torch.as_tensor(_np(waveform_or_power))
    power = stft.power(data) if data.dim() == 1 else data
    power_db = 10 * np.log10(_np(power) + 1e-12)
    vmax = power_db.max() if vmax is None else vmax
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    n_frames = power_db.shape[1]
    extent = [0, n_frames / stft.frame_rate, 0, stft.sample_rate / 2000]
    im = ax.imshow(power_db, origin="lower", aspect="auto", extent=extent, cmap="magma",
                   vmin=vmax - db_range, vmax=vmax)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (kHz)")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label="dB")
    return ax.figure


def spectrograms(signals: dict, stft: STFT | None = None, ncols: int | None = None,
                 db_range: float = 80.0, height: float = 2.6):
    """Several spectrograms side by side on a common colour scale: ``{"clean": x, "noisy": y}``."""
    stft = stft or STFT()
    powers = {}
    for name, sig in signals.items():
        data = torch.as_tensor(_np(sig))
        powers[name] = _np(stft.power(data) if data.dim() == 1 else data)
    vmax = max(10 * np.log10(p.max() + 1e-12) for p in powers.values())
    n = len(powers)
    ncols = ncols or min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, height * nrows), squeeze=False,
                             sharey=True)
    for ax, (name, p) in zip(axes.flat, powers.items()):
        spectrogram(p, ax=ax, stft=stft, title=name, vmax=vmax, db_range=db_range)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def waveform(x, sample_rate: int = 16000, ax=None, title: str | None = None):
    """Waveform against time (seconds)."""
    x = _np(x)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2))
    ax.plot(np.arange(len(x)) / sample_rate, x, lw=0.5)
    ax.set_xlabel("time (s)")
    ax.set_xlim(0, len(x) / sample_rate)
    if title:
        ax.set_title(title)
    return ax.figure


def mouth_strip(frames, n: int = 10, fps: float | None = None, axes=None, start: int = 0,
                step: int | None = None):
    """A strip of ``n`` mouth frames from ``frames (n_frames, H, W)``, evenly spaced by default."""
    frames = _np(frames)
    step = step or max(1, (len(frames) - start) // n)
    idx = list(range(start, len(frames), step))[:n]
    if axes is None:
        fig, axes = plt.subplots(1, len(idx), figsize=(1.2 * len(idx), 1.4))
    axes = np.atleast_1d(axes)
    for ax, i in zip(axes, idx):
        ax.imshow(frames[i], cmap="gray", vmin=0, vmax=255 if frames.dtype == np.uint8 else 1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{i / fps:.2f}s" if fps else str(i), fontsize=7)
    return axes[0].figure


def elbo_curves(history: dict, ax=None, per: str = "frame", title: str | None = None):
    """Training curves: ``history`` maps a label to a sequence of values (e.g. ELBO per epoch)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for label, values in history.items():
        values = _np(values)
        if len(values):
            ax.plot(np.arange(1, len(values) + 1), values, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"ELBO per {per}")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax.figure


def covariance_ellipses(ax, means, covariances, n_std=(1.0, 2.0), colors=None, **kwargs):
    """Draw ``n_std``-sigma ellipses of 2-D Gaussians ``means (K, 2)``, ``covariances (K, 2, 2)``."""
    from matplotlib.patches import Ellipse

    means, covariances = _np(means), _np(covariances)
    colors = colors or [f"C{k % 10}" for k in range(len(means))]
    for mean, cov, color in zip(means, covariances, colors):
        evals, evecs = np.linalg.eigh(cov)
        angle = np.degrees(np.arctan2(evecs[1, -1], evecs[0, -1]))
        for s in n_std:
            width, height = 2 * s * np.sqrt(np.maximum(evals[::-1], 0))
            ax.add_patch(Ellipse(mean, width, height, angle=angle, fill=False, color=color,
                                 **kwargs))
    return ax.figure
