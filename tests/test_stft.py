import math

import pytest
import torch

from zoo.data.stft import STFT, sine_window
from zoo.errors import ZooInputError


def test_defaults_match_the_design():
    stft = STFT()
    assert (stft.sample_rate, stft.n_fft, stft.hop_length) == (16000, 1024, 256)
    assert stft.n_freq == 513 and stft.frame_rate == 62.5
    assert stft.n_fft / stft.sample_rate == 0.064


@pytest.mark.parametrize("n_samples", [1, 300, 1024, 16000, 16001, 40000])
def test_round_trip_within_1e5(n_samples):
    torch.manual_seed(0)
    stft = STFT()
    x = torch.randn(n_samples)
    spec = stft(x)
    assert spec.shape == (513, stft.n_frames(n_samples))
    y = stft.inverse(spec, n_samples)
    assert ((y - x).norm() / x.norm()).item() < 1e-5


def test_batched_and_configurable():
    stft = STFT(n_fft=512, hop_length=128, window="hann")
    x = torch.randn(2, 3, 8000)
    spec = stft(x)
    assert spec.shape == (2, 3, 257, 63)
    assert torch.allclose(stft(x[1, 2]), spec[1, 2], atol=1e-5)
    y = stft.inverse(spec, 8000)
    assert ((y - x).norm() / x.norm()).item() < 1e-5


def test_sine_window_is_power_complementary_at_quarter_hop():
    w = sine_window(1024, dtype=torch.float64)
    total = sum(torch.roll(w.square(), 256 * k) for k in range(4))
    assert torch.allclose(total, torch.full_like(total, 2.0))


def test_tone_lands_in_its_bin():
    stft = STFT()
    t = torch.arange(16000) / 16000
    spec = stft.power(torch.sin(2 * math.pi * 1000 * t))
    assert int(spec[:, 10:-10].mean(-1).argmax()) == 64  # 1000 Hz * 1024 / 16000


def test_errors_name_the_problem():
    stft = STFT()
    with pytest.raises(ZooInputError, match="complex"):
        stft.inverse(torch.rand(513, 10))
    with pytest.raises(ZooInputError, match="frequency bins"):
        stft.inverse(torch.zeros(257, 10, dtype=torch.complex64))
    with pytest.raises(ZooInputError, match="hop_length"):
        STFT(hop_length=2048)
    with pytest.raises(ZooInputError, match="n_fft: model has 1024, input has 512"):
        STFT().check_compatible(STFT(n_fft=512), what="model")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    x = torch.randn(2, 16000, device="cuda")
    stft = STFT()
    spec = stft(x)
    assert spec.is_cuda
    assert ((stft.inverse(spec, 16000) - x).norm() / x.norm()).item() < 1e-5
