"""Noise: generators for typical acoustic scenes, a folder of recordings, and mixing at an SNR.

Every generator has the signature ``fn(n_samples, sample_rate=16000, rng=None) -> (n_samples,)``
float32 tensor, scaled to unit RMS (levels are set when mixing, by :func:`mix_at_snr`).
``rng`` is ``None`` (fresh entropy), an ``int`` seed (same seed, same noise) or a
``numpy.random.Generator``. All generators are vectorised (FFT shaping, ``scipy.signal``
filters, one STFT per talker); none loops over samples in Python.

=========  =================================================================================
white      flat spectrum
pink       power ``~ 1/f`` (-3 dB per octave) above 20 Hz
brown      power ``~ 1/f^2`` (-6 dB per octave) above 20 Hz
babble     several talkers at once: synthetic speech-like talkers (harmonic source with a
           wandering F0, moving formants, ~4 Hz syllables, pauses) or excerpts of waveforms
           passed as ``talkers=``
cafe       babble of many talkers + cup and cutlery clinks + clatter + room tone
car        engine (harmonics of the firing rate, slowly varying RPM) + road rumble
street     broadband traffic noise with a slow level drift + vehicles passing by as swells
=========  =================================================================================

Mixing: :func:`mix_at_snr` scales a noise so that the speech-to-noise energy ratio over the whole
signals is exactly the requested SNR; :func:`snr_db` measures it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from scipy import signal

from zoo.data.audio import SAMPLE_RATE, list_audio_files, load_audio
from zoo.data.stft import STFT
from zoo.errors import ZooInputError

LOW_CUTOFF_HZ = 20.0  # coloured noises are flat below this, so they do not drift without bound


# --------------------------------------------------------------------------------- helpers
def as_generator(rng=None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from ``None`` (fresh entropy), an int seed, or a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise ZooInputError(
        f"rng: expected None, an int seed or a numpy.random.Generator, got {type(rng).__name__}"
    )


def _check_size(n_samples, sample_rate) -> tuple[int, int]:
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ZooInputError(f"n_samples: expected a positive int, got {n_samples!r}")
    if not (isinstance(sample_rate, (int, float, np.number)) and sample_rate > 0):
        raise ZooInputError(f"sample_rate: expected a positive number of Hz, got {sample_rate!r}")
    return int(n_samples), int(sample_rate)


def _unit_rms(x: np.ndarray, name: str) -> np.ndarray:
    rms = math.sqrt(float(np.mean(np.square(x, dtype=np.float64))))
    if not (np.isfinite(rms) and rms > 0):
        raise ZooInputError(f"{name}: generated noise is silent or not finite")
    return x / rms


def _finish(x: np.ndarray, name: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(_unit_rms(x, name), dtype=np.float32))


def _power_law(n_samples: int, sample_rate: int, rng: np.random.Generator, exponent: float):
    """Gaussian noise whose power spectrum falls as ``1 / f**exponent`` above 20 Hz (unit RMS)."""
    white = rng.standard_normal(n_samples)
    if n_samples < 2:
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n_samples, d=1.0 / sample_rate)
    amplitude = np.maximum(freqs, LOW_CUTOFF_HZ) ** (-exponent / 2.0)
    amplitude[0] = 0.0  # no DC offset
    shaped = np.fft.irfft(spectrum * amplitude, n=n_samples)
    return _unit_rms(shaped, f"1/f^{exponent} noise")


def _slow_wander(times: np.ndarray, rng: np.random.Generator, f_lo: float, f_hi: float,
                 n_components: int = 4) -> np.ndarray:
    """A smooth random curve in about [-1, 1]: a few sinusoids with random slow frequencies."""
    freqs = rng.uniform(f_lo, f_hi, n_components)
    phases = rng.uniform(0, 2 * np.pi, n_components)
    curve = np.sin(2 * np.pi * freqs[:, None] * times[None, :] + phases[:, None]).sum(0)
    return curve / math.sqrt(n_components / 2.0) / 1.5


def _lowpass(x: np.ndarray, cutoff_hz: float, sample_rate: int, order: int = 4) -> np.ndarray:
    cutoff = min(cutoff_hz, 0.45 * sample_rate)
    sos = signal.butter(order, cutoff, btype="low", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, x)


def _bandpass(x: np.ndarray, low_hz: float, high_hz: float, sample_rate: int, order: int = 4):
    high = min(high_hz, 0.45 * sample_rate)
    sos = signal.butter(order, [min(low_hz, 0.5 * high), high], btype="band", fs=sample_rate,
                        output="sos")
    return signal.sosfilt(sos, x)


# ------------------------------------------------------------------------------ generators
def white_noise(n_samples: int, sample_rate: int = SAMPLE_RATE, rng=None) -> torch.Tensor:
    """Gaussian white noise, ``(n_samples,)``, unit RMS."""
    n_samples, sample_rate = _check_size(n_samples, sample_rate)
    return _finish(as_generator(rng).standard_normal(n_samples), "white noise")


def pink_noise(n_samples: int, sample_rate: int = SAMPLE_RATE, rng=None) -> torch.Tensor:
    """Pink noise: power spectral density ``~ 1/f`` (-3 dB/octave) above 20 Hz, unit RMS.

    Made by shaping the FFT of white noise (so it is periodic over ``n_samples``).
    """
    n_samples, sample_rate = _check_size(n_samples, sample_rate)
    return _finish(_power_law(n_samples, sample_rate, as_generator(rng), 1.0), "pink noise")


def brown_noise(n_samples: int, sample_rate: int = SAMPLE_RATE, rng=None) -> torch.Tensor:
    """Brown (red) noise: power ``~ 1/f^2`` (-6 dB/octave) above 20 Hz, unit RMS."""
    n_samples, sample_rate = _check_size(n_samples, sample_rate)
    return _finish(_power_law(n_samples, sample_rate, as_generator(rng), 2.0), "brown noise")


def _stft_for(sample_rate: int) -> STFT:
    """A ~32 ms analysis for synthesis of speech-like talkers (512 points at 16 kHz)."""
    n_fft = 2 ** round(math.log2(0.032 * sample_rate))
    return STFT(sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4)


# Formants of a neutral adult voice (Hz): target ranges, bandwidths and relative levels.
_FORMANT_RANGES = np.array([[300.0, 850.0], [850.0, 2300.0], [2200.0, 3000.0], [3200.0, 3900.0]])
_FORMANT_BANDWIDTHS = np.array([90.0, 110.0, 170.0, 250.0])
_FORMANT_LEVELS = np.array([1.0, 0.6, 0.3, 0.15])


def _synthetic_talker_spectrum(n_samples: int, sample_rate: int, stft: STFT,
                               rng: np.random.Generator) -> torch.Tensor:
    """STFT ``(n_freq, n_frames)`` of one speech-like talker (unnormalised).

    Source: a sawtooth at F0 (harmonics falling 6 dB/octave), F0 wandering slowly around a
    speaker's mean, plus white noise for the unvoiced onset of each syllable. Filter: four
    formant resonances whose centre frequencies glide between per-syllable targets. Syllables
    last ~0.25 s (4 Hz modulation) under a ``sin(pi * phase)`` envelope; ~15 % are pauses.
    """
    duration = n_samples / sample_rate
    n_frames = stft.n_frames(n_samples)
    frame_times = np.arange(n_frames) * stft.hop_length / sample_rate

    # Syllable boundaries (s) covering the whole signal, starting before t = 0.
    n_syll = int(duration / 0.08) + 4
    lengths = np.clip(rng.gamma(4.0, 0.25 / 4.0, n_syll), 0.08, 0.6)
    bounds = np.concatenate([[0.0], np.cumsum(lengths)]) - rng.uniform(0.0, 0.5)
    syllable = np.clip(np.searchsorted(bounds, frame_times, side="right") - 1, 0, n_syll - 1)
    phase = (frame_times - bounds[syllable]) / lengths[syllable]
    level = rng.lognormal(0.0, 0.3, n_syll) * (rng.random(n_syll) > 0.15)
    envelope = np.sin(np.pi * np.clip(phase, 0.0, 1.0)) * level[syllable]
    unvoiced = (phase < 0.2) & (rng.random(n_syll) < 0.6)[syllable]

    # Formant centre frequencies glide linearly between targets set at syllable centres.
    centres = bounds[:-1] + lengths / 2
    targets = rng.uniform(_FORMANT_RANGES[:, 0], _FORMANT_RANGES[:, 1], (n_syll, 4))
    formants = np.stack([np.interp(frame_times, centres, targets[:, i]) for i in range(4)], 1)
    freqs = np.linspace(0.0, sample_rate / 2.0, stft.n_freq)
    detune = (freqs[None, :, None] - formants[:, None, :]) / (_FORMANT_BANDWIDTHS / 2.0)
    vowel_filter = (_FORMANT_LEVELS / (1.0 + detune**2)).sum(-1).T + 0.01  # (n_freq, n_frames)
    fricative_filter = 1.0 / (1.0 + ((freqs - 4500.0) / 2500.0) ** 2)

    # F0 contour: speaker mean, slow wander (+-10 %), a per-syllable accent; sawtooth source.
    f0_mean = rng.uniform(90.0, 240.0)
    accent = np.interp(frame_times, centres, rng.normal(0.0, 0.05, n_syll))
    f0_frames = f0_mean * (1.0 + 0.1 * _slow_wander(frame_times, rng, 0.2, 1.5) + accent)
    f0 = np.interp(np.arange(n_samples) / sample_rate, frame_times, f0_frames)
    cycles = np.cumsum(f0) / sample_rate + rng.uniform()
    voiced_source = 2.0 * (cycles - np.floor(cycles)) - 1.0
    noise_source = 0.08 * rng.standard_normal(n_samples)  # fricatives weaker than vowels

    sources = torch.from_numpy(np.stack([voiced_source, noise_source]).astype(np.float32))
    voiced_spec, noise_spec = stft(sources)
    voiced_gain = torch.from_numpy((vowel_filter * (envelope * ~unvoiced)).astype(np.float32))
    noise_gain = torch.from_numpy(
        (fricative_filter[:, None] * (envelope * unvoiced)).astype(np.float32)
    )
    return voiced_spec * voiced_gain + noise_spec * noise_gain


def _talker_excerpt(wave, n_samples: int, rng: np.random.Generator, name: str) -> np.ndarray:
    """A random excerpt of ``wave``, looped (wrapping around) when the waveform is shorter."""
    wave = np.asarray(torch.as_tensor(wave).detach().cpu().double().numpy())
    if wave.ndim != 1 or wave.size == 0:
        raise ZooInputError(f"{name}: expected a non-empty mono waveform (n_samples,), "
                            f"got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise ZooInputError(f"{name}: contains NaN/Inf; expected finite audio")
    start = rng.integers(0, wave.size)
    return _unit_rms(wave[(start + np.arange(n_samples)) % wave.size], name)


def babble_noise(n_samples: int, sample_rate: int = SAMPLE_RATE, rng=None, n_talkers: int = 6,
                 talkers=None) -> torch.Tensor:
    """Babble: ``n_talkers`` talkers speaking at once, each at a random level (+-3 dB), unit RMS.

    Args:
        talkers: optional list of speech waveforms ``(n,)`` at ``sample_rate`` to draw the talkers
            from (random excerpts; a waveform shorter than ``n_samples`` is looped). Without it,
            speech-like talkers are synthesised (harmonic source, gliding formants, ~4 Hz
            syllables with pauses), with a faint pink room tone 30 dB below.
    """
    n_samples, sample_rate = _check_size(n_samples, sample_rate)
    if isinstance(n_talkers, bool) or not isinstance(n_talkers, (int, np.integer)) \
            or n_talkers < 1:
        raise ZooInputError(f"n_talkers: expected a positive int, got {n_talkers!r}")
    rng = as_generator(rng)
    gains = 10.0 ** (rng.uniform(-3.0, 3.0, n_talkers) / 20.0)
    if talkers is not None:
        talkers = list(talkers)
        if not talkers:
            raise ZooInputError("talkers: empty list; expected speech waveforms to mix")
        choice = rng.permutation(max(n_talkers, len(talkers)))[:n_talkers] % len(talkers)
        mixture = sum(
            gain * _talker_excerpt(talkers[k], n_samples, rng, f"talkers[{k}]")
            for gain, k in zip(gains, choice)
        )
        return _finish(mixture, "babble noise")
    stft = _stft_for(sample_rate)
    total = None
    for gain in gains:
        spec = _synthetic_talker_spectrum(n_samples, sample_rate, stft, rng)
        energy = spec.abs().square().sum().clamp_min(1e-30)  # equal loudness, then the gain
        spec = spec * (float(gain) / energy.sqrt())
        total = spec if total is None else total + spec
    speech = stft.inverse(total, length=n_samples).double().numpy()
    room = 10 ** (-30 / 20) * _power_law(n_samples, sample_rate, rng, 1.0)
    return _finish(_unit_rms(speech, "babble noise") + room, "babble noise")


def _decaying_partials(freqs, decays, amps, length: int, sample_rate: int) -> np.ndarray:
    t = np.arange(length) / sample_rate
    partials = np.sin(2 * np.pi * freqs[:, None] * t) * np.exp(-t / decays[:, None])
    return (amps[:, None] * partials).sum(0)


def cafe_noise(n_samples: int, sample_rate: int = SAMPLE_RATE, rng=None) -> torch.Tensor:
    """Cafe: babble of 10 talkers, pink room tone (-15 dB), cup clinks and cutlery clatter.

    Clinks (~0.8 per s) are three decaying partials between 2 and 6 kHz (decay 30-150 ms);
    clatter (~0.5 per s) is a cluster of 3-6 short band-passed noise impacts within 150 ms.
    """
    n_samples, sample_rate = _check_size(n_samples, sample_rate)
    rng = as_generator(rng)
    duration = n_samples / sample_rate
    scene = babble_noise(n_samples, sample_rate, rng, n_talkers=10).double().numpy()
    scene = scene + 10 ** (-15 / 20) * _power_law(n_samples, sample_rate, rng, 1.0)

    nyquist_safe = 0.45 * sample_rate
    clink_length = int(0.5 * sample_rate)
    for start in rng.integers(0, n_samples, rng.poisson(0.8 * duration)):
        freqs = rng.uniform(min(2000.0, 0.5 * nyquist_safe), min(6000.0, nyquist_safe), 3)
        clink = _decaying_partials(freqs, rng.uniform(0.03, 0.15, 3), rng.uniform(0.3, 1.0, 3),
                                   clink_length, sample_rate)
        clink *= rng.uniform(1.0, 4.0) / np.abs(clink).max()
        stop = min(n_samples, start + clink_length)
        scene[start:stop] += clink[: stop - start]

    impact_noise = _unit_rms(_bandpass(rng.standard_normal(n_samples), 800.0, 5000.0,
                                       sample_rate), "clatter")
    impact_length = int(0.06 * sample_rate)
    impact_shape = np.exp(-np.arange(impact_length) / (0.012 * sample_rate))
    clatter_envelope = np.zeros(n_samples)
    for centre in rng.integers(0, n_samples, rng.poisson(0.5 * duration)):
        offsets = rng.integers(0, int(0.15 * sample_rate), rng.integers(3, 7))
        for start in centre + offsets:
            stop = min(n_samples, start + impact_length)
            if start < stop:
                clatter_envelope[start:stop] += rng.uniform(0.5, 2.5) * impact_shape[: stop - start]
    return _finish(scene + clatter_envelope * impact_noise, "cafe noise")


def car_noise(n_samples: int, sample_rate: int = SAMPLE_RATE, rng=None) -> torch.Tensor:
    """Car interior: engine harmonics at a slowly varying RPM, over road and wind rumble.

    A four-cylinder four-stroke engine fires twice per revolution: the engine tone has harmonics
    of ``2 * rpm / 60`` Hz (amplitudes ``~ h^-1.2``) plus a weaker half-order component; the RPM
    wanders between ~900 and ~3000 over tens of seconds. Road noise is brown noise plus pink
    noise low-passed at 400 Hz; the engine sits 4 dB below it.
    """
    n_samples, sample_rate = _check_size(n_samples, sample_rate)
    rng = as_generator(rng)
    times = np.arange(n_samples) / sample_rate
    rpm = rng.uniform(1400.0, 2200.0) * (1.0 + 0.35 * _slow_wander(times, rng, 0.01, 0.15))
    revolutions = np.cumsum(rpm / 60.0) / sample_rate  # crank angle in turns
    engine = np.zeros(n_samples)
    for order in (0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10):  # in multiples of the firing rate
        if 2.0 * order * rpm.max() / 60.0 >= 0.45 * sample_rate:
            break
        amplitude = (0.3 if order == 0.5 else order ** -1.2) * rng.uniform(0.6, 1.2)
        engine += amplitude * np.sin(2 * np.pi * 2.0 * order * revolutions + rng.uniform(0, 7))
    road = _power_law(n_samples, sample_rate, rng, 2.0) + _unit_rms(
        _lowpass(_power_law(n_samples, sample_rate, rng, 1.0), 400.0, sample_rate), "road noise")
    return _finish(10 ** (-4 / 20) * _unit_rms(engine, "engine") + _unit_rms(road, "road"),
                   "car noise")


def street_noise(n_samples: int, sample_rate: int = SAMPLE_RATE, rng=None) -> torch.Tensor:
    """Street: broadband traffic hum with a slow level drift, plus vehicles passing by.

    The hum is pink noise amplitude-modulated by ``1 + 0.3 m(t)`` with ``m`` a smooth random
    curve (0.05-0.5 Hz). Each passing vehicle (~one per 8 s) is low-passed (1.5 kHz) noise
    under a Gaussian swell 1-3 s wide peaking 0-10 dB above the hum.
    """
    n_samples, sample_rate = _check_size(n_samples, sample_rate)
    rng = as_generator(rng)
    duration = n_samples / sample_rate
    times = np.arange(n_samples) / sample_rate
    hum = _power_law(n_samples, sample_rate, rng, 1.0)
    hum *= 1.0 + 0.3 * _slow_wander(times, rng, 0.05, 0.5)

    n_vehicles = rng.poisson(duration / 8.0) + 1
    centres = rng.uniform(-2.0, duration + 2.0, n_vehicles)
    widths = rng.uniform(1.0, 3.0, n_vehicles)
    peaks = 10 ** (rng.uniform(0.0, 10.0, n_vehicles) / 20.0)
    grid = np.arange(0.0, duration + 0.01, 0.01)  # envelope on a 100 Hz grid, then interpolated
    swell = (peaks[:, None] * np.exp(-0.5 * ((grid - centres[:, None]) / widths[:, None]) ** 2))
    envelope = np.interp(times, grid, swell.sum(0))
    engines = _unit_rms(_lowpass(_power_law(n_samples, sample_rate, rng, 1.0), 1500.0,
                                 sample_rate), "vehicle noise")
    return _finish(hum + envelope * engines, "street noise")


NOISE_TYPES = {
    "white": white_noise,
    "pink": pink_noise,
    "brown": brown_noise,
    "babble": babble_noise,
    "cafe": cafe_noise,
    "car": car_noise,
    "street": street_noise,
}


def make_noise(kind: str, n_samples: int, sample_rate: int = SAMPLE_RATE, rng=None,
               **kwargs) -> torch.Tensor:
    """Noise of the named ``kind`` (a key of :data:`NOISE_TYPES`), ``(n_samples,)``, unit RMS."""
    if kind not in NOISE_TYPES:
        raise ZooInputError(
            f"noise kind {kind!r} is unknown; expected one of {', '.join(sorted(NOISE_TYPES))}"
        )
    return NOISE_TYPES[kind](n_samples, sample_rate, rng, **kwargs)


# ------------------------------------------------------------------------ recorded noise
class NoiseFolder:
    """A folder of noise recordings (any format :func:`~zoo.data.audio.load_audio` reads).

    Files are read on demand as mono at ``sample_rate`` (a file at another rate is resampled,
    and a stereo file averaged, each with an ``AudioConversionWarning``). :meth:`sample` returns
    a random excerpt; a file shorter than the excerpt is **looped** (repeated end to start).
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int = SAMPLE_RATE):
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.files = list_audio_files(self.path)

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"NoiseFolder({str(self.path)!r}, {len(self)} files)"

    def sample(self, n_samples: int, rng=None) -> torch.Tensor:
        """A random excerpt ``(n_samples,)`` float32 of a randomly chosen file (unscaled)."""
        n_samples, _ = _check_size(n_samples, self.sample_rate)
        rng = as_generator(rng)
        path = self.files[rng.integers(len(self.files))]
        wave = load_audio(path, sample_rate=self.sample_rate)
        if wave.numel() >= n_samples:
            start = int(rng.integers(0, wave.numel() - n_samples + 1))
            return wave[start : start + n_samples].clone()
        start = int(rng.integers(0, wave.numel()))
        return wave[(start + torch.arange(n_samples)) % wave.numel()]


# ------------------------------------------------------------------------------- mixing
def _as_signal(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x) if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ZooInputError(f"{name}: expected a waveform (..., n_samples), got shape "
                            f"{tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    if not torch.isfinite(x).all():
        raise ZooInputError(f"{name}: contains NaN/Inf samples; expected finite audio")
    return x


def _energy(x: torch.Tensor, name: str) -> torch.Tensor:
    energy = x.double().square().sum(-1)
    if not bool((energy > 0).all()):
        where = "" if x.dim() == 1 else f" (rows {torch.nonzero(energy <= 0).flatten().tolist()})"
        raise ZooInputError(f"{name}: is silent (all zeros){where}; the SNR is undefined")
    return energy


def snr_db(speech, noise) -> torch.Tensor:
    """``10 log10(sum speech^2 / sum noise^2)`` over the last axis (dB); same shapes required."""
    speech, noise = _as_signal(speech, "speech"), _as_signal(noise, "noise")
    if speech.shape != noise.shape:
        raise ZooInputError(f"snr_db: speech {tuple(speech.shape)} and noise "
                            f"{tuple(noise.shape)} must have the same shape")
    return 10.0 * torch.log10(_energy(speech, "speech") / _energy(noise, "noise"))


def mix_at_snr(speech, noise, snr_db: float, tile: bool = False):
    """Add ``noise`` to ``speech`` at exactly ``snr_db`` (energy over the whole signals).

    Args:
        speech: ``(..., n_samples)`` waveform(s).
        noise: ``(..., n_noise)``; its first ``n_samples`` samples are used. A noise shorter than
            the speech is an error unless ``tile=True``, which repeats it end to start.
        snr_db: target SNR in dB, a number or a tensor broadcastable to the leading dimensions.

    Returns:
        ``(mixture, scaled_noise)``, both shaped like ``speech``, with
        ``mixture = speech + scaled_noise`` and ``snr_db(speech, scaled_noise) == snr_db``.
    """
    speech, noise = _as_signal(speech, "speech"), _as_signal(noise, "noise")
    n = speech.shape[-1]
    if noise.shape[-1] < n:
        if not tile:
            raise ZooInputError(
                f"noise: {noise.shape[-1]} samples is shorter than the speech ({n} samples); "
                "pass a longer noise or tile=True to repeat it"
            )
        noise = noise[..., torch.arange(n) % noise.shape[-1]]
    noise = noise[..., :n]
    target = torch.as_tensor(snr_db, dtype=torch.float64)
    if not bool(torch.isfinite(target).all()):
        raise ZooInputError(f"snr_db: expected finite dB values, got {snr_db!r}")
    gain = torch.sqrt(_energy(speech, "speech") / (_energy(noise, "noise") * 10.0 ** (target / 10)))
    scaled_noise = (noise.double() * gain.unsqueeze(-1)).to(speech.dtype)
    return speech + scaled_noise, scaled_noise
