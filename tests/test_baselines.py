"""Classical enhancement baselines: each one improves SI-SDR on stationary noise, the noise
tracker follows level steps without tracking speech, and bad inputs are refused by name."""

import math

import pytest
import torch

from zoo.data import noise as noise_generators
from zoo.data.stft import STFT
from zoo.enhance.baselines import (
    fit_noisy_nmf,
    learn_speech_dictionary,
    nmf_enhance,
    noise_psd_tracker,
    spectral_subtraction,
    wiener_filter,
)
from zoo.errors import ZooInputError
from zoo.metrics import si_sdr

SR = 16000


def speech_like(seconds: float, seed: int) -> torch.Tensor:
    """Voiced "speech": harmonics of a gliding F0 through three formants, syllabic modulation
    (about 3.5 syllables/s) and a pause every other second."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    rate, offset = 0.4 + 0.2 * torch.rand(2, generator=g)
    f0 = 130 + 30 * torch.sin(2 * math.pi * rate * t + 6 * offset)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    formants = torch.tensor([500.0, 1500.0, 2500.0]) * (0.8 + 0.4 * torch.rand(3, generator=g))
    k = torch.arange(1, 30, dtype=torch.float64).unsqueeze(-1)  # harmonic numbers (29, 1)
    freq = k * f0  # (29, n_samples)
    envelope = torch.exp(-0.5 * ((freq.unsqueeze(-1) - formants) / 150) ** 2).sum(-1) + 0.02
    wave = (envelope * (freq < SR / 2) * torch.sin(k * phase) / k.sqrt()).sum(0)
    syllable_phase = 2 * math.pi * 3.5 * t + 6 * float(torch.rand(1, generator=g))
    syllables = torch.sin(syllable_phase).clamp_min(0) ** 2
    words = (torch.sin(2 * math.pi * 0.5 * t) > -0.5).double()
    wave = wave * syllables * words
    return (0.5 * wave / wave.abs().max()).float()


def white(n: int, seed: int) -> torch.Tensor:
    return noise_generators.white_noise(n, rng=seed)


def pink(n: int, seed: int) -> torch.Tensor:
    return noise_generators.pink_noise(n, rng=seed)


def mix_at_snr(speech, noise, snr_db):
    return speech + noise * (speech.norm() / noise.norm()) * 10 ** (-snr_db / 20)


@pytest.fixture(scope="module")
def speech():
    return speech_like(3.0, seed=1)


@pytest.fixture(scope="module", params=["white", "pink"])
def noisy(request, speech):
    make = white if request.param == "white" else pink
    return mix_at_snr(speech, make(speech.numel(), 2), 0.0)


@pytest.fixture(scope="module")
def speech_dictionary():
    """Learned on ten other voices (other formants and F0 glides) than the test voice."""
    clean = [speech_like(2.0, seed) for seed in range(10, 20)]
    return learn_speech_dictionary(clean, rank=32, n_iter=60)


@pytest.mark.parametrize("method", [spectral_subtraction, wiener_filter])
def test_classical_methods_improve_si_sdr(method, speech, noisy):
    enhanced = method(noisy)
    assert enhanced.shape == noisy.shape and enhanced.dtype == noisy.dtype
    assert torch.isfinite(enhanced).all()
    improvement = si_sdr(speech, enhanced) - si_sdr(speech, noisy)
    assert improvement > 5.0, f"{method.__name__}: SI-SDR improvement {improvement:.1f} dB"


def test_nmf_enhance_improves_si_sdr(speech, noisy, speech_dictionary):
    assert speech_dictionary.shape == (STFT().n_freq, 32)
    assert torch.allclose(speech_dictionary.sum(0), torch.ones(32))
    enhanced = nmf_enhance(noisy, speech_dictionary, noise_rank=8, n_iter=60)
    assert enhanced.shape == noisy.shape and torch.isfinite(enhanced).all()
    improvement = si_sdr(speech, enhanced) - si_sdr(speech, noisy)
    assert improvement > 3.0, f"NMF: SI-SDR improvement {improvement:.1f} dB"


def test_noisy_nmf_fit_decreases_the_is_cost(noisy, speech_dictionary):
    power = STFT().power(noisy).double()
    fit = fit_noisy_nmf(power, speech_dictionary, noise_rank=4, n_iter=20)
    history = fit["history"]
    assert bool((history[1:] <= history[:-1] * (1 + 1e-9)).all())
    assert fit["W_noise"].shape == (STFT().n_freq, 4)
    assert torch.allclose(fit["speech_var"], speech_dictionary.double() @ fit["H_speech"])
    # The same dictionary is learned from the waveforms or from their power spectrogram.
    clean = [speech_like(1.0, seed) for seed in (30, 31)]
    from_power = learn_speech_dictionary(
        power=torch.cat([STFT().power(w) for w in clean], -1), rank=4, n_iter=5
    )
    assert torch.allclose(learn_speech_dictionary(clean, rank=4, n_iter=5), from_power)


def test_given_noise_psd_is_used(speech):
    """With the true (oracle) noise PSD, both methods work and differ from the tracked run."""
    noise = 0.1 * white(speech.numel(), 3)
    noisy = speech + noise
    true_psd = STFT().power(noise).mean(-1)  # (F,)
    for method in (spectral_subtraction, wiener_filter):
        oracle = method(noisy, noise_psd=true_psd)
        assert si_sdr(speech, oracle) - si_sdr(speech, noisy) > 6.0
        assert not torch.allclose(oracle, method(noisy))


def test_fixed_over_subtraction_subtracts_more_when_larger(noisy):
    mild = spectral_subtraction(noisy, over_subtraction=1.0)
    strong = spectral_subtraction(noisy, over_subtraction=4.0)
    assert strong.square().sum() < mild.square().sum() < noisy.square().sum()


def test_batch_gives_the_single_results(speech, noisy):
    batch = torch.stack([noisy, speech + 0.05 * white(speech.numel(), 4)])
    for method in (spectral_subtraction, wiener_filter):
        out = method(batch)
        assert out.shape == batch.shape
        assert torch.allclose(out[0], method(noisy), atol=1e-5)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_waveforms_device(device, noisy, speech_dictionary):
    """Output on the input's device, float32, and (on a GPU) the CPU's result."""
    methods = {
        "spectral_subtraction": lambda x, W: spectral_subtraction(x),
        "wiener_filter": lambda x, W: wiener_filter(x),
        "nmf_enhance": lambda x, W: nmf_enhance(x, W, n_iter=5),
    }
    for name, method in methods.items():
        enhanced = method(noisy.to(device), speech_dictionary.to(device))
        assert enhanced.device.type == device and enhanced.dtype == torch.float32, name
        assert torch.isfinite(enhanced).all(), name
        on_cpu = method(noisy, speech_dictionary)
        assert torch.allclose(enhanced.cpu(), on_cpu, atol=1e-3 * float(on_cpu.abs().max())), name


def test_tracker_follows_a_level_step():
    """White noise rising by 10 dB at 3 s: tracked within 2 dB of the new level by 4.5 s;
    falling by 10 dB: within 2 dB by 3.5 s. Before the step, within 2 dB too."""
    stft = STFT()
    noise = white(SR * 6, 5)
    reference = stft.power(noise[: SR * 3]).mean()  # expected |STFT|^2 per bin before the step
    times = stft.frame_times(stft.n_frames(noise.numel()))
    for step_db, settle_by in ((10.0, 4.5), (-10.0, 3.5)):
        level = torch.ones_like(noise)
        level[SR * 3 :] = 10 ** (step_db / 20)
        estimate = noise_psd_tracker(stft.power(noise * level))
        assert estimate.shape == (stft.n_freq, times.numel())
        error_db = 10 * torch.log10(estimate.mean(0) / reference)  # frequency-averaged
        before = (times > 1.0) & (times < 3.0)
        after = times > settle_by
        assert bool((error_db[before].abs() < 2.0).all())
        assert bool(((error_db[after] - step_db).abs() < 2.0).all()), (
            f"step {step_db} dB: error {float((error_db[after] - step_db).abs().max()):.1f} dB"
        )


def test_tracker_does_not_track_speech(speech):
    """Where speech dominates (clean power > 10x noise) the noise estimate stays within 2 dB
    of the true noise PSD, while the noisy power is far above it."""
    stft = STFT()
    noise = 0.05 * white(speech.numel(), 6)
    noise_psd = stft.power(noise).mean(-1, keepdim=True)
    noisy_power = stft.power(speech + noise)
    estimate = noise_psd_tracker(noisy_power)
    dominated = stft.power(speech) > 10 * noise_psd
    assert int(dominated.sum()) > 1000
    estimate_db = 10 * torch.log10(estimate / noise_psd)[dominated].mean()
    noisy_db = 10 * torch.log10(noisy_power / noise_psd)[dominated].mean()
    assert abs(float(estimate_db)) < 2.0
    assert float(noisy_db) > 10.0


@pytest.mark.parametrize("method", [spectral_subtraction, wiener_filter, nmf_enhance])
def test_bad_input_is_refused(method, speech_dictionary):
    kwargs = {"speech_dictionary": speech_dictionary} if method is nmf_enhance else {}
    good = white(4096, 7)
    with pytest.raises(ZooInputError, match="NaN"):
        method(torch.cat([good, torch.tensor([float("nan")])]), **kwargs)
    with pytest.raises(ZooInputError, match="silence"):
        method(torch.zeros(4096), **kwargs)
    with pytest.raises(ZooInputError, match="too short"):
        method(good[:500], **kwargs)
    with pytest.raises(ZooInputError, match="noisy"):
        method(good.reshape(2, 2, 1024), **kwargs)
    with pytest.raises(ZooInputError, match=r"noisy\[1\]"):
        method(torch.stack([good, torch.zeros(4096)]), **kwargs)


def test_bad_arguments_are_named():
    good = white(4096, 8)
    with pytest.raises(ZooInputError, match="speech_dictionary"):
        nmf_enhance(good)
    with pytest.raises(ZooInputError, match="speech_dictionary"):
        nmf_enhance(good, torch.ones(100, 4))
    with pytest.raises(ZooInputError, match="noise_psd"):
        wiener_filter(good, noise_psd=torch.ones(7))
    with pytest.raises(ZooInputError, match="noise_psd"):
        spectral_subtraction(good, noise_psd=-torch.ones(STFT().n_freq))
    with pytest.raises(ZooInputError, match="noise_psd"):
        spectral_subtraction(good, noise_psd=torch.ones(3, STFT().n_freq, 17))
    with pytest.raises(ZooInputError, match="exactly one"):
        learn_speech_dictionary()
    with pytest.raises(ZooInputError, match="power"):
        learn_speech_dictionary(power=torch.ones(7, 50))
