"""Visual corruptions of mouth videos, for robustness experiments of audio-visual models.

Frames are ``(n_frames, height, width)`` (or ``(n_frames, height, width, channels)``), ``uint8``
or float, as a numpy array or a torch tensor. Every corruption picks exactly
``round(fraction * n_frames)`` frames at random, returns ``(corrupted_copy, affected)`` with
``affected`` a boolean numpy mask ``(n_frames,)``, keeps the input's type and dtype, and never
modifies the input.

==========  ===============================================================================
occlude     a rectangle (default half the height and width) filled with ``fill`` at a random
            position on each affected frame
blur        Gaussian blur of standard deviation ``sigma`` pixels
drop        affected frames set to zero (a lost frame shown as black)
freeze      affected frames replaced by the last kept frame before them (a stalled camera)
==========  ===============================================================================
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from zoo.data.noise import as_generator
from zoo.errors import ZooInputError


def _as_frames(frames, name: str = "frames") -> tuple[np.ndarray, bool]:
    """A numpy copy of ``frames`` and whether the input was a torch tensor."""
    is_tensor = torch.is_tensor(frames)
    array = frames.detach().cpu().numpy().copy() if is_tensor else np.array(frames, copy=True)
    if array.ndim not in (3, 4) or array.shape[0] == 0:
        raise ZooInputError(
            f"{name}: expected frames (n_frames, height, width[, channels]), got shape "
            f"{array.shape}"
        )
    if not (array.dtype == np.uint8 or np.issubdtype(array.dtype, np.floating)):
        raise ZooInputError(f"{name}: expected uint8 or float frames, got dtype {array.dtype}")
    return array, is_tensor


def _back(array: np.ndarray, is_tensor: bool):
    return torch.from_numpy(array) if is_tensor else array


def choose_frames(n_frames: int, fraction: float, rng=None) -> np.ndarray:
    """Boolean mask ``(n_frames,)`` with exactly ``round(fraction * n_frames)`` True, at random."""
    if not (isinstance(fraction, (int, float, np.number)) and 0.0 <= fraction <= 1.0):
        raise ZooInputError(f"fraction: expected a number in [0, 1], got {fraction!r}")
    rng = as_generator(rng)
    affected = np.zeros(n_frames, dtype=bool)
    affected[rng.choice(n_frames, size=int(round(fraction * n_frames)), replace=False)] = True
    return affected


def occlude(frames, fraction: float, rng=None, patch_size=None, fill: float = 0):
    """Cover a random rectangle of each affected frame with the value ``fill``.

    Args:
        patch_size: ``(height, width)`` or one int for a square, in pixels; default half the
            frame's height and width. Must fit in the frame.
    """
    array, is_tensor = _as_frames(frames)
    n_frames, height, width = array.shape[:3]
    if patch_size is None:
        patch_size = (max(1, height // 2), max(1, width // 2))
    patch_h, patch_w = (patch_size, patch_size) if np.isscalar(patch_size) else patch_size
    if not (1 <= patch_h <= height and 1 <= patch_w <= width):
        raise ZooInputError(
            f"patch_size: {patch_size!r} does not fit frames of {height}x{width} pixels"
        )
    rng = as_generator(rng)
    affected = choose_frames(n_frames, fraction, rng)
    index = np.flatnonzero(affected)
    tops = rng.integers(0, height - patch_h + 1, index.size)
    lefts = rng.integers(0, width - patch_w + 1, index.size)
    rows = np.arange(height)[None, :, None]
    cols = np.arange(width)[None, None, :]
    inside = ((rows >= tops[:, None, None]) & (rows < (tops + patch_h)[:, None, None])
              & (cols >= lefts[:, None, None]) & (cols < (lefts + patch_w)[:, None, None]))
    patched = array[index]
    patched[inside] = fill
    array[index] = patched
    return _back(array, is_tensor), affected


def blur(frames, fraction: float, rng=None, sigma: float = 2.0):
    """Gaussian blur (standard deviation ``sigma`` pixels, spatial only) of affected frames."""
    if not (isinstance(sigma, (int, float, np.number)) and sigma > 0):
        raise ZooInputError(f"sigma: expected a positive number of pixels, got {sigma!r}")
    array, is_tensor = _as_frames(frames)
    affected = choose_frames(array.shape[0], fraction, rng)
    spatial = (0, sigma, sigma) + ((0,) if array.ndim == 4 else ())
    blurred = ndimage.gaussian_filter(array[affected].astype(np.float32), sigma=spatial,
                                      mode="nearest")
    if array.dtype == np.uint8:  # a blur stays within the input's range: rounding is exact
        blurred = np.rint(blurred)
    array[affected] = blurred.astype(array.dtype)
    return _back(array, is_tensor), affected


def drop_frames(frames, fraction: float, rng=None):
    """Set affected frames to zero (lost frames shown as black)."""
    array, is_tensor = _as_frames(frames)
    affected = choose_frames(array.shape[0], fraction, rng)
    array[affected] = 0
    return _back(array, is_tensor), affected


def freeze_frames(frames, fraction: float, rng=None):
    """Replace each affected frame by the last kept frame before it.

    Affected frames at the very start (no kept frame before them) take the first kept frame.
    At least one frame must be kept (``fraction < 1``).
    """
    array, is_tensor = _as_frames(frames)
    n_frames = array.shape[0]
    affected = choose_frames(n_frames, fraction, rng)
    if affected.all():
        raise ZooInputError(
            f"fraction: freezing all {n_frames} frames leaves no frame to hold; expected "
            "fraction < 1"
        )
    kept_index = np.where(~affected, np.arange(n_frames), -1)
    source = np.maximum.accumulate(kept_index)
    source[source < 0] = np.flatnonzero(~affected)[0]
    return _back(array[source], is_tensor), affected


CORRUPTIONS = {
    "occlude": occlude,
    "blur": blur,
    "drop": drop_frames,
    "freeze": freeze_frames,
}


def corrupt_video(frames, kind: str, fraction: float, rng=None, **kwargs):
    """Apply the corruption named ``kind`` (a key of :data:`CORRUPTIONS`) to ``fraction`` of frames.

    Extra keyword arguments go to the corruption (``patch_size``, ``fill``, ``sigma``).
    Returns ``(corrupted_copy, affected_mask)``.
    """
    if kind not in CORRUPTIONS:
        raise ZooInputError(
            f"corruption kind {kind!r} is unknown; expected one of {', '.join(sorted(CORRUPTIONS))}"
        )
    return CORRUPTIONS[kind](frames, fraction, rng, **kwargs)
