"""Noise generators, the noise folder and mixing at an exact SNR."""

import functools
import time
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy import signal

from zoo.data.audio import AudioConversionWarning
from zoo.data.noise import (
    NOISE_TYPES,
    NoiseFolder,
    babble_noise,
    make_noise,
    mix_at_snr,
    snr_db,
)
from zoo.errors import ZooInputError

SR = 16000


def slope_db_per_octave(x: torch.Tensor, low=100.0, high=4000.0) -> float:
    """Least-squares slope of the Welch PSD (dB) against log2(frequency)."""
    freqs, psd = signal.welch(x.numpy(), fs=SR, nperseg=4096)
    band = (freqs >= low) & (freqs <= high)
    return float(np.polyfit(np.log2(freqs[band]), 10 * np.log10(psd[band]), 1)[0])


@functools.cache
def _talker(n: int, seed: int) -> torch.Tensor:
    return babble_noise(n, SR, rng=seed, n_talkers=1)


def speech_like(n=SR * 2, seed=0) -> torch.Tensor:
    """A stand-in for speech: one synthetic talker (cached, returned as a copy)."""
    return _talker(n, seed).clone()


@pytest.mark.parametrize("kind", sorted(NOISE_TYPES))
@pytest.mark.parametrize("n_samples", [100, 12345])
def test_every_noise_type_is_finite_non_silent_and_right_length(kind, n_samples):
    x = make_noise(kind, n_samples, SR, rng=3)
    assert x.shape == (n_samples,)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert float(x.square().mean().sqrt()) == pytest.approx(1.0, rel=1e-4)  # unit RMS


@pytest.mark.parametrize("kind", sorted(NOISE_TYPES))
def test_noise_is_deterministic_per_seed(kind):
    a = make_noise(kind, 8000, SR, rng=11)
    b = make_noise(kind, 8000, SR, rng=np.random.default_rng(11))
    c = make_noise(kind, 8000, SR, rng=12)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("kind, slope", [("white", 0.0), ("pink", -3.0), ("brown", -6.0)])
def test_spectral_slopes(kind, slope):
    x = make_noise(kind, SR * 8, SR, rng=0)
    assert slope_db_per_octave(x) == pytest.approx(slope, abs=0.4)


def test_scene_noises_have_their_character():
    car = make_noise("car", SR * 4, SR, rng=1)
    freqs, psd = signal.welch(car.numpy(), fs=SR, nperseg=2048)
    assert psd[freqs < 500].sum() / psd.sum() > 0.8  # engine and road rumble are low-frequency

    # A single synthetic talker comes in syllables and pauses: its 20 ms frame energy varies far
    # more than white noise's, and it has a fundamental between 80 and 300 Hz.
    talker, white = speech_like(SR * 4), make_noise("white", SR * 4, SR, rng=1)

    def frame_energy_spread(x):
        energy = x[: len(x) // 320 * 320].reshape(-1, 320).square().mean(1)
        return float(energy.std() / energy.mean())

    assert frame_energy_spread(talker) > 5 * frame_energy_spread(white)
    freqs, psd = signal.welch(talker.numpy(), fs=SR, nperseg=4096)
    assert 80 <= freqs[np.argmax(psd)] <= 1000  # a low harmonic or F1, not high-frequency hiss


def test_generation_is_fast():
    start = time.perf_counter()
    for kind in NOISE_TYPES:
        make_noise(kind, SR * 10, SR, rng=0)
    assert time.perf_counter() - start < 10.0  # about 0.7 s on one core


def test_make_noise_names_unknown_kind_and_lists_known_ones():
    with pytest.raises(ZooInputError, match="'hum'.*babble.*white"):
        make_noise("hum", 100)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_generators_refuse_bad_lengths(bad):
    with pytest.raises(ZooInputError, match="n_samples"):
        make_noise("pink", bad)


def test_bad_rng_is_refused():
    with pytest.raises(ZooInputError, match="rng"):
        make_noise("white", 10, rng="seed")


def test_babble_from_given_talkers():
    talkers = [speech_like(SR, seed) for seed in range(3)] + [speech_like(SR // 10, 9).numpy()]
    a = babble_noise(SR * 2, SR, rng=5, n_talkers=4, talkers=talkers)
    b = babble_noise(SR * 2, SR, rng=5, n_talkers=4, talkers=talkers)
    assert a.shape == (SR * 2,) and torch.equal(a, b) and torch.isfinite(a).all()
    with pytest.raises(ZooInputError, match="talkers"):
        babble_noise(100, talkers=[])
    with pytest.raises(ZooInputError, match=r"talkers\[0\]"):
        babble_noise(100, rng=0, n_talkers=1, talkers=[torch.zeros(50)])


# ---------------------------------------------------------------------------------- mixing
@functools.cache
def _scene_noise(kind: str, n: int) -> torch.Tensor:
    return make_noise(kind, n, SR, rng=2)


def scene_noise(kind: str, n: int) -> torch.Tensor:
    return _scene_noise(kind, n).clone()


@pytest.mark.parametrize("kind", ["white", "babble", "car", "street"])
@pytest.mark.parametrize("target", [-10.0, -5.0, 0.0, 5.0, 12.5, 30.0])
def test_mix_at_snr_is_exact(kind, target):
    speech = speech_like(SR)
    noise = scene_noise(kind, SR + 500) * 0.37
    mixture, scaled = mix_at_snr(speech, noise, target)
    assert mixture.shape == scaled.shape == speech.shape
    assert torch.allclose(mixture, speech + scaled)
    measured = 10 * np.log10(np.sum(speech.double().numpy() ** 2)
                             / np.sum(scaled.double().numpy() ** 2))
    assert abs(measured - target) < 0.01
    assert abs(float(snr_db(speech, scaled)) - target) < 0.01
    # the scaled noise is the given noise's first len(speech) samples, rescaled
    ratio = scaled / noise[: len(speech)]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4)


def test_mix_at_snr_batched_with_one_snr_per_row():
    speech = torch.stack([speech_like(SR, 0), speech_like(SR, 1)])
    noise = torch.stack([make_noise("pink", SR, SR, rng=0), make_noise("cafe", SR, SR, rng=0)])
    targets = torch.tensor([-3.0, 7.0])
    _, scaled = mix_at_snr(speech, noise, targets)
    assert torch.allclose(snr_db(speech, scaled).float(), targets, atol=0.01)


def test_short_noise_is_an_error_unless_tiled():
    speech, noise = speech_like(SR), make_noise("white", SR // 3, SR, rng=0)
    with pytest.raises(ZooInputError, match="shorter than the speech"):
        mix_at_snr(speech, noise, 0.0)
    _, scaled = mix_at_snr(speech, noise, 3.0, tile=True)
    assert abs(float(snr_db(speech, scaled)) - 3.0) < 0.01
    period = SR // 3
    assert torch.allclose(scaled[:period], scaled[period : 2 * period])


def test_silent_or_bad_signals_are_refused():
    speech, noise = speech_like(SR), make_noise("white", SR, SR, rng=0)
    with pytest.raises(ZooInputError, match="speech.*silent"):
        mix_at_snr(torch.zeros(SR), noise, 0.0)
    with pytest.raises(ZooInputError, match="noise.*silent"):
        mix_at_snr(speech, torch.zeros(SR), 0.0)
    bad = speech.clone()
    bad[10] = float("nan")
    with pytest.raises(ZooInputError, match="speech.*NaN"):
        mix_at_snr(bad, noise, 0.0)
    with pytest.raises(ZooInputError, match="same shape"):
        snr_db(speech, noise[:-1])


# ---------------------------------------------------------------------------- noise folder
def test_noise_folder_samples_excerpts_and_loops_short_files(tmp_path):
    rng = np.random.default_rng(0)
    short = rng.standard_normal(400).astype(np.float32) * 0.1
    sf.write(tmp_path / "short.wav", short, SR, subtype="FLOAT")
    folder = NoiseFolder(tmp_path)
    assert len(folder) == 1
    excerpt = folder.sample(1000, rng=1)
    assert excerpt.shape == (1000,)
    assert torch.allclose(excerpt[:400], excerpt[400:800])  # looped with period 400
    assert torch.equal(excerpt, folder.sample(1000, rng=1))

    long = rng.standard_normal(SR).astype(np.float32) * 0.1
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "long.flac", long, SR, subtype="PCM_24")
    folder = NoiseFolder(tmp_path)
    assert len(folder) == 2
    for seed in range(6):
        assert folder.sample(300, rng=seed).shape == (300,)


def test_noise_folder_resamples_with_a_warning_and_refuses_empty_folders(tmp_path):
    sf.write(tmp_path / "n48k.wav", np.random.default_rng(0).standard_normal(4800) * 0.1, 48000)
    with pytest.warns(AudioConversionWarning, match="48000 Hz"):
        x = NoiseFolder(tmp_path).sample(1000, rng=0)
    assert x.shape == (1000,)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ZooInputError, match="holds no audio"):
        NoiseFolder(empty)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ZooInputError, match="no such directory"):
            NoiseFolder(tmp_path / "missing")
