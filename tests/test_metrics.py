import math

import numpy as np
import pytest
import torch

from zoo.errors import ZooInputError
from zoo.metrics import (
    METRIC_NAMES,
    estoi,
    evaluate,
    pesq_nb,
    pesq_wb,
    si_sdr,
    spectral_rmse_db,
    stoi,
)


def test_si_sdr_hand_computed_case():
    # s = [1, 0], y = [1, 1]: alpha = <y,s>/|s|^2 = 1, target = [1, 0], residual = [0, 1]
    # -> 10 log10(1 / 1) = 0 dB.  y = [2, 1]: alpha = 2, target [2, 0], residual [0, 1] -> 10 log10 4.
    s = torch.tensor([1.0, 0.0])
    assert abs(si_sdr(s, torch.tensor([1.0, 1.0]))) < 1e-9
    assert abs(si_sdr(s, torch.tensor([2.0, 1.0])) - 10 * math.log10(4)) < 1e-9


def test_si_sdr_is_scale_invariant_and_batched():
    torch.manual_seed(0)
    s, n = torch.randn(3, 1000), torch.randn(3, 1000)
    y = s + 0.1 * n
    values = si_sdr(s, y)
    assert values.shape == (3,)
    assert torch.allclose(values, si_sdr(s, 7.0 * y), atol=1e-9)
    assert abs(float(values[0]) - si_sdr(s[0].numpy(), y[0].numpy())) < 1e-9
    assert 19 < float(values.mean()) < 21  # noise 20 dB down


def _speechlike(seconds=3.0, rate=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 30))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 0.5
    return (0.3 * x * envelope).astype(np.float64), rng


def test_metrics_rank_cleaner_estimates_higher():
    clean, rng = _speechlike()
    noise = rng.standard_normal(clean.shape)
    mild, harsh = clean + 0.02 * noise, clean + 0.3 * noise
    for fn in (pesq_wb, pesq_nb, stoi, estoi):
        assert fn(clean, mild) > fn(clean, harsh), fn.__name__
    assert spectral_rmse_db(clean, mild) < spectral_rmse_db(clean, harsh)
    assert pesq_wb(clean, clean) > 4.5 and stoi(clean, clean) > 0.99


def test_evaluate_returns_every_metric():
    clean, rng = _speechlike(2.0)
    result = evaluate(clean, clean + 0.05 * rng.standard_normal(clean.shape))
    assert set(result) == set(METRIC_NAMES)
    assert all(math.isfinite(v) for v in result.values())
    with pytest.raises(ZooInputError, match="unknown metrics"):
        evaluate(clean, clean, metrics=("snr",))


def test_bad_pairs_are_refused():
    with pytest.raises(ZooInputError, match="differs from the reference"):
        si_sdr(torch.zeros(10), torch.zeros(11))
    with pytest.raises(ZooInputError, match="NaN"):
        si_sdr(torch.ones(10), torch.tensor([float("nan")] * 10))
    with pytest.raises(ZooInputError, match="all zeros"):
        si_sdr(torch.zeros(10), torch.ones(10))
    with pytest.raises(ZooInputError, match="16 kHz"):
        pesq_wb(np.ones(8000), np.ones(8000), sample_rate=8000)
