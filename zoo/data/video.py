"""Video: alignment of visual frames to STFT frames (I/O and mouth extraction are added below).

Mouth frames are ``uint8`` or float arrays of shape ``(n_video_frames, height, width)``
(grayscale). Video and audio run at different rates (e.g. 30 fps against 62.5 STFT
frames/s); every model that reads video sees it resampled to the STFT frame rate by
:func:`align_to_stft`, which says how.
"""

from __future__ import annotations

import numpy as np
import torch

from zoo.errors import ZooInputError


def align_to_stft(
    frames,
    video_fps: float,
    n_stft_frames: int,
    stft_frame_rate: float,
    mode: str = "interpolate",
    name: str = "video",
    max_mismatch_s: float = 0.5,
) -> torch.Tensor:
    """Resample visual frames to the STFT frame times.

    STFT frame ``n`` is centred at ``n / stft_frame_rate`` seconds; video frame ``k`` covers
    ``[k, k + 1) / video_fps`` and is taken at its centre ``(k + 1/2) / video_fps``.

    Args:
        frames: ``(n_video_frames, ...)`` array or tensor.
        video_fps: video frame rate (Hz).
        n_stft_frames: number of STFT frames of the matching audio.
        stft_frame_rate: STFT frames per second (``STFT.frame_rate``).
        mode: ``"interpolate"`` (linear between the two nearest video frames) or ``"repeat"``
            (nearest earlier video frame, i.e. each video frame repeated).
        max_mismatch_s: refuse a video whose duration differs from the audio's by more than this.

    Returns:
        float32 tensor ``(n_stft_frames, ...)``.
    """
    frames = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
    if frames.dim() < 1 or frames.shape[0] == 0:
        raise ZooInputError(f"{name}: has no frames; expected (n_video_frames, ...)")
    if mode not in ("interpolate", "repeat"):
        raise ZooInputError(f"align_to_stft mode must be 'interpolate' or 'repeat', got {mode!r}")
    video_seconds = frames.shape[0] / video_fps
    audio_seconds = n_stft_frames / stft_frame_rate
    if abs(video_seconds - audio_seconds) > max_mismatch_s:
        raise ZooInputError(
            f"{name}: video lasts {video_seconds:.2f} s ({frames.shape[0]} frames at "
            f"{video_fps:g} fps) but the audio lasts {audio_seconds:.2f} s; expected them to "
            f"match within {max_mismatch_s} s"
        )
    frames = frames.float()
    t = torch.arange(n_stft_frames, dtype=torch.float64) / stft_frame_rate
    pos = (t * video_fps - 0.5).clamp(0, frames.shape[0] - 1)  # fractional video-frame index
    if mode == "repeat":
        return frames[(t * video_fps).floor().long().clamp(0, frames.shape[0] - 1)]
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=frames.shape[0] - 1)
    frac = (pos - lo).float().reshape(-1, *([1] * (frames.dim() - 1)))
    return frames[lo] * (1 - frac) + frames[hi] * frac
