"""Audio I/O and the checks every waveform passes before a model sees it.

Waveforms in the zoo are mono ``float32`` tensors of shape ``(n_samples,)`` at
:data:`SAMPLE_RATE` (16 kHz) unless a function says otherwise. Nothing is converted silently:
resampling and down-mixing are done only when asked for, and then said in a warning.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from zoo.errors import ZooInputError

SAMPLE_RATE = 16000
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


class AudioConversionWarning(UserWarning):
    """A stated conversion (resampling, down-mixing) was applied to an input file."""


def check_waveform(
    waveform: torch.Tensor,
    name: str = "waveform",
    min_samples: int = 1,
    allow_silence: bool = False,
) -> torch.Tensor:
    """Validate a mono waveform and return it as a float tensor.

    Raises :class:`ZooInputError` naming ``name`` when the waveform is not 1-D, holds NaN or Inf,
    is all zeros (unless ``allow_silence``), or is shorter than ``min_samples``.
    """
    waveform = torch.as_tensor(waveform)
    if waveform.dim() != 1:
        raise ZooInputError(
            f"{name}: expected a mono waveform of shape (n_samples,), got shape "
            f"{tuple(waveform.shape)} (down-mix stereo with load_audio(..., mono='mix'))"
        )
    if not waveform.is_floating_point():
        waveform = waveform.float()
    if waveform.numel() < min_samples:
        raise ZooInputError(
            f"{name}: {waveform.numel()} samples is too short, at least {min_samples} expected"
        )
    if not torch.isfinite(waveform).all():
        n_bad = int((~torch.isfinite(waveform)).sum())
        raise ZooInputError(f"{name}: contains {n_bad} NaN/Inf samples; expected finite audio")
    if not allow_silence and not bool(waveform.abs().max() > 0):
        raise ZooInputError(f"{name}: is all zeros (silence); expected a recording with signal")
    return waveform


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = SAMPLE_RATE,
    mono: str = "mix",
    min_seconds: float = 0.0,
    allow_silence: bool = False,
) -> torch.Tensor:
    """Read an audio file (wav, flac, ... anything libsndfile reads) as mono float32.

    Args:
        path: the file.
        sample_rate: target rate in Hz. A file at another rate is resampled with torchaudio and a
            :class:`AudioConversionWarning` says so. ``None`` keeps the file's rate (then use
            :func:`audio_info` to know it).
        mono: ``"mix"`` averages the channels of a multi-channel file (with a warning),
            ``"error"`` refuses such a file, ``"first"`` keeps channel 0 (with a warning).
        min_seconds: refuse files shorter than this.
        allow_silence: accept an all-zero file.

    Returns:
        ``(n_samples,)`` float32 tensor.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise ZooInputError(f"{path}: no such audio file")
    if path.is_dir():
        raise ZooInputError(f"{path}: is a directory, expected an audio file")
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises its own error types; we name the file
        raise ZooInputError(
            f"{path}: cannot be read as audio ({err}); expected a wav/flac/ogg file"
        ) from err
    n_channels = data.shape[1]
    wave = torch.from_numpy(np.ascontiguousarray(data.T))
    if n_channels > 1:
        if mono == "error":
            raise ZooInputError(f"{path}: has {n_channels} channels, expected mono")
        if mono == "first":
            warnings.warn(f"{path}: {n_channels} channels, keeping channel 0", AudioConversionWarning,
                          stacklevel=2)
            wave = wave[0]
        elif mono == "mix":
            warnings.warn(f"{path}: {n_channels} channels, averaged to mono", AudioConversionWarning,
                          stacklevel=2)
            wave = wave.mean(0)
        else:
            raise ZooInputError(f"mono must be 'mix', 'first' or 'error', got {mono!r}")
    else:
        wave = wave[0]
    if sample_rate is not None and file_rate != sample_rate:
        import torchaudio.functional as AF

        warnings.warn(
            f"{path}: sample rate {file_rate} Hz, resampled to {sample_rate} Hz",
            AudioConversionWarning,
            stacklevel=2,
        )
        wave = AF.resample(wave, file_rate, sample_rate)
    rate = sample_rate or file_rate
    return check_waveform(
        wave.contiguous(),
        name=str(path),
        min_samples=max(1, math.ceil(min_seconds * rate)),
        allow_silence=allow_silence,
    )


def audio_info(path: str | os.PathLike) -> dict:
    """Sample rate, channels, frames and duration of an audio file, without reading it."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as err:
        raise ZooInputError(f"{path}: cannot be read as audio ({err})") from err
    return {
        "sample_rate": info.samplerate,
        "channels": info.channels,
        "frames": info.frames,
        "seconds": info.frames / info.samplerate,
    }


def save_audio(path: str | os.PathLike, waveform: torch.Tensor, sample_rate: int = SAMPLE_RATE,
               subtype: str = "FLOAT") -> Path:
    """Write a mono waveform ``(n_samples,)`` (32-bit float wav by default, so nothing is clipped).

    Pass ``subtype="PCM_16"`` for 16-bit files; values outside [-1, 1] are then refused rather
    than clipped.
    """
    import soundfile as sf

    path = Path(path)
    wave = torch.as_tensor(waveform).detach().cpu().float()
    if wave.dim() != 1:
        raise ZooInputError(f"save_audio({path}): expected (n_samples,), got {tuple(wave.shape)}")
    if not torch.isfinite(wave).all():
        raise ZooInputError(f"save_audio({path}): waveform contains NaN/Inf")
    if subtype.startswith("PCM") and wave.abs().max() > 1:
        raise ZooInputError(
            f"save_audio({path}): peak {float(wave.abs().max()):.3f} > 1 would clip in {subtype}; "
            "peak-normalise first or keep the FLOAT subtype"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.numpy(), sample_rate, subtype=subtype)
    return path


def peak_normalize(waveform: torch.Tensor, peak: float = 0.9) -> torch.Tensor:
    """Scale so that ``max |x| == peak``; refuses silence rather than dividing by zero."""
    waveform = torch.as_tensor(waveform)
    top = waveform.abs().max()
    if not bool(top > 0):
        raise ZooInputError("peak_normalize: waveform is all zeros")
    return waveform * (peak / top)


def trim_silence(
    waveform: torch.Tensor,
    sample_rate: int = SAMPLE_RATE,
    top_db: float = 40.0,
    frame_ms: float = 20.0,
    pad_ms: float = 20.0,
) -> torch.Tensor:
    """Drop leading and trailing frames quieter than ``top_db`` below the loudest frame.

    Frames are ``frame_ms`` long (no overlap); ``pad_ms`` of signal is kept around the
    speech. Returns a view of the kept span.
    """
    waveform = check_waveform(waveform, "trim_silence input")
    frame = max(1, int(sample_rate * frame_ms / 1000))
    n = waveform.numel() // frame
    if n == 0:
        return waveform
    energy = waveform[: n * frame].reshape(n, frame).square().mean(-1)
    level_db = 10 * torch.log10(energy + 1e-20)
    active = torch.nonzero(level_db > level_db.max() - top_db).flatten()
    pad = int(sample_rate * pad_ms / 1000)
    start = max(0, int(active[0]) * frame - pad)
    stop = min(waveform.numel(), (int(active[-1]) + 1) * frame + pad)
    return waveform[start:stop]


def list_audio_files(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Sorted audio files in ``folder``; a clear error if it is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ZooInputError(f"{folder}: no such directory")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ZooInputError(
            f"{folder}: holds no audio files (looked for {', '.join(AUDIO_SUFFIXES)})"
        )
    return files
