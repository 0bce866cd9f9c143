"""Data: audio and video I/O, the one STFT, synthetic corpora, noise, real-corpus readers."""

from zoo.data.audio import (
    SAMPLE_RATE,
    check_waveform,
    list_audio_files,
    load_audio,
    peak_normalize,
    save_audio,
    trim_silence,
)
from zoo.data.stft import STFT

__all__ = [
    "SAMPLE_RATE",
    "STFT",
    "check_waveform",
    "list_audio_files",
    "load_audio",
    "peak_normalize",
    "save_audio",
    "trim_silence",
]
