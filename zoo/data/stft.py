"""The one short-time Fourier transform of the zoo.

Every model, enhancement method, metric and plot goes through :class:`STFT`, so analysis
settings are stated once. Defaults: 16 kHz, a 64 ms sine window (``n_fft = 1024``), 25 % hop
(``hop_length = 256``, 16 ms), i.e. 513 frequency bins and 62.5 frames per second.

Conventions (shapes):
    waveform      ``(..., n_samples)`` real, float
    spectrogram   ``(..., n_freq, n_frames)`` complex, ``n_freq = n_fft // 2 + 1``
    power         ``|spectrogram| ** 2``, same shape, real

Frames are centred: frame ``n`` is centred on sample ``n * hop_length`` (the signal is padded
with ``n_fft // 2`` zeros on both sides), so ``n_frames = 1 + n_samples // hop_length``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from zoo.errors import ZooInputError


def sine_window(n_fft: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``w[n] = sin(pi (n + 1/2) / n_fft)``; with a 25 % or 50 % hop its squares sum to a constant."""
    n = torch.arange(n_fft, device=device, dtype=torch.float64)
    return torch.sin(math.pi * (n + 0.5) / n_fft).to(dtype)


@dataclass(frozen=True)
class STFT:
    """Analysis / synthesis settings, with the forward and inverse transforms.

    Args:
        sample_rate: Hz.
        n_fft: window and FFT length in samples (1024 = 64 ms at 16 kHz).
        hop_length: frame shift in samples (256 = 16 ms at 16 kHz).
        window: ``"sine"`` (default, as in the enhancement references) or ``"hann"``.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    window: str = "sine"

    def __post_init__(self):
        if self.window not in ("sine", "hann"):
            raise ZooInputError(f"STFT window must be 'sine' or 'hann', got {self.window!r}")
        if not 0 < self.hop_length <= self.n_fft:
            raise ZooInputError(
                f"STFT hop_length must be in (0, n_fft={self.n_fft}], got {self.hop_length}"
            )

    # ----------------------------------------------------------------- derived sizes
    @property
    def n_freq(self) -> int:
        """Number of frequency bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def frame_rate(self) -> float:
        """STFT frames per second."""
        return self.sample_rate / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Number of STFT frames of a waveform of ``n_samples`` samples."""
        return 1 + n_samples // self.hop_length

    def frame_times(self, n_frames: int) -> torch.Tensor:
        """Centre time (seconds) of each of ``n_frames`` frames."""
        return torch.arange(n_frames, dtype=torch.float64) * self.hop_length / self.sample_rate

    def freqs(self) -> torch.Tensor:
        """Centre frequency (Hz) of each bin."""
        return torch.linspace(0, self.sample_rate / 2, self.n_freq, dtype=torch.float64)

    def config(self) -> dict:
        """Plain dict of the settings (stored in checkpoints, compared on load)."""
        return asdict(self)

    # ----------------------------------------------------------------- transforms
    def _window(self, device, dtype):
        if self.window == "sine":
            return sine_window(self.n_fft, device=device, dtype=dtype)
        return torch.hann_window(self.n_fft, periodic=True, device=device, dtype=dtype)

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.forward(waveform)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Complex spectrogram ``(..., n_freq, n_frames)`` of ``waveform (..., n_samples)``.

        Batched over leading dimensions, on the waveform's device and precision.
        """
        waveform = torch.as_tensor(waveform)
        if waveform.is_complex() or waveform.dim() == 0:
            raise ZooInputError(
                f"STFT input must be a real waveform (..., n_samples), got shape "
                f"{tuple(waveform.shape)} dtype {waveform.dtype}"
            )
        if not waveform.is_floating_point():
            waveform = waveform.float()
        batch_shape = waveform.shape[:-1]
        flat = waveform.reshape(-1, waveform.shape[-1])
        spec = torch.stft(
            flat,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self._window(flat.device, flat.dtype),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        return spec.reshape(*batch_shape, *spec.shape[-2:])

    def inverse(self, spectrogram: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Waveform ``(..., length)`` from a complex spectrogram ``(..., n_freq, n_frames)``.

        Weighted overlap-add with the same window; ``inverse(forward(x), len(x))`` reconstructs
        ``x`` to float precision.
        """
        if not spectrogram.is_complex():
            raise ZooInputError(
                "STFT.inverse needs a complex spectrogram; got a real tensor (a power or "
                "magnitude spectrogram has lost its phase: multiply a mask with the complex STFT)"
            )
        if spectrogram.shape[-2] != self.n_freq:
            raise ZooInputError(
                f"STFT.inverse: spectrogram has {spectrogram.shape[-2]} frequency bins, this "
                f"STFT (n_fft={self.n_fft}) expects {self.n_freq}"
            )
        batch_shape = spectrogram.shape[:-2]
        flat = spectrogram.reshape(-1, *spectrogram.shape[-2:])
        real_dtype = flat.real.dtype
        wave = torch.istft(
            flat,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self._window(flat.device, real_dtype),
            center=True,
            length=length,
        )
        return wave.reshape(*batch_shape, wave.shape[-1])

    def power(self, waveform: torch.Tensor) -> torch.Tensor:
        """Power spectrogram ``|STFT|^2``, ``(..., n_freq, n_frames)``."""
        return self.forward(waveform).abs().square()

    def check_compatible(self, other: STFT | dict, what: str = "model") -> None:
        """Raise a clear error if ``other`` (an STFT or its ``config()``) differs from this one."""
        other_cfg = other.config() if isinstance(other, STFT) else dict(other)
        mine = self.config()
        diff = {k: (v, other_cfg.get(k)) for k, v in mine.items() if other_cfg.get(k) != v}
        if diff:
            lines = ", ".join(f"{k}: {what} has {a}, input has {b}" for k, (a, b) in diff.items())
            raise ZooInputError(f"STFT settings differ between the {what} and the input ({lines})")
