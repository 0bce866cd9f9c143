"""IS-NMF: the cost decreases, low-rank data are recovered, padding and batching change nothing."""

import math

import pytest
import torch

from zoo.errors import ZooInputError
from zoo.nmf import (
    is_divergence,
    nmf_is,
    normalize_columns,
    random_init,
    update_gain,
    update_noise_nmf,
)


def gamma_power(shape, seed, dtype=torch.float64):
    """Power spectrogram-like data: exponential draws around a random spectral envelope."""
    g = torch.Generator().manual_seed(seed)
    envelope = 0.1 + 10 * torch.rand(shape[-2], 1, generator=g, dtype=torch.float64)
    draws = -torch.log(torch.rand(*shape, generator=g, dtype=torch.float64))
    return (envelope * draws).to(dtype)


def low_rank(n_freq, n_frames, rank, seed):
    g = torch.Generator().manual_seed(seed)
    W = torch.rand(n_freq, rank, generator=g, dtype=torch.float64) + 0.05
    H = torch.rand(rank, n_frames, generator=g, dtype=torch.float64) + 0.05
    return W @ H


def test_is_divergence_values():
    V = torch.tensor([[2.0, 1.0], [0.5, 3.0]])
    assert float(is_divergence(V, V)) == pytest.approx(0.0, abs=1e-6)
    expected = sum(r - math.log(r) - 1 for r in (2.0, 1.0, 0.5, 3.0))
    assert float(is_divergence(V, torch.ones(2, 2))) == pytest.approx(expected, rel=1e-6)
    # A mask drops the second frame.
    masked = is_divergence(V, torch.ones(2, 2), mask=torch.tensor([1.0, 0.0]))
    assert float(masked) == pytest.approx(2 - math.log(2) - 1 + 0.5 - math.log(0.5) - 1, rel=1e-6)


@pytest.mark.parametrize("exponent", [1.0, 0.5])
@pytest.mark.parametrize("seed", range(6))
def test_nmf_cost_never_increases(seed, exponent):
    V = gamma_power((40, 60), seed)
    _, _, history = nmf_is(V, rank=5, n_iter=60, exponent=exponent,
                           generator=torch.Generator().manual_seed(seed))
    steps = history[1:] - history[:-1]
    assert bool((steps <= 1e-9 * history[:-1]).all()), f"cost rose: max step {steps.max()}"
    assert float(history[-1]) < 0.8 * float(history[0])


@pytest.mark.parametrize("exponent", [1.0, 0.5])
@pytest.mark.parametrize("seed", range(4))
def test_noise_and_gain_updates_increase_likelihood(seed, exponent):
    """M-step of x ~ N_c(0, g_n sigma2 + W H): each H/W/g update lowers the IS cost."""
    power = gamma_power((30, 50), seed)
    g = torch.Generator().manual_seed(100 + seed)
    sigma2 = 3 * torch.rand(30, 50, generator=g, dtype=torch.float64)
    gain = torch.ones(50, dtype=torch.float64)
    W, H = random_init(power, 4, g)
    costs = [is_divergence(power, gain * sigma2 + W @ H)]
    for _ in range(25):
        W, H = update_noise_nmf(power, gain * sigma2, W, H, exponent=exponent)
        costs.append(is_divergence(power, gain * sigma2 + W @ H))
        gain = update_gain(power, sigma2, W @ H, gain, exponent=exponent)
        costs.append(is_divergence(power, gain * sigma2 + W @ H))
    costs = torch.stack(costs)
    assert bool((costs[1:] <= costs[:-1] * (1 + 1e-9)).all())
    assert float(costs[-1]) < float(costs[0])


def test_low_rank_matrix_is_recovered():
    V = low_rank(30, 50, rank=4, seed=1)
    W, H, history = nmf_is(V, rank=4, n_iter=1000, generator=torch.Generator().manual_seed(11))
    assert float(history[-1]) / V.numel() < 1e-5
    assert float(((W @ H - V).abs() / V).max()) < 0.02
    # normalize=True keeps W's columns summing to one.
    assert torch.allclose(W.sum(0), torch.ones(4, dtype=W.dtype))


def test_padding_changes_nothing_on_real_frames():
    """A padded batch with a mask gives the unpadded result on the real frames."""
    n_freq, rank, lengths = 20, 3, (35, 50)
    powers = [gamma_power((n_freq, n), seed) for seed, n in enumerate(lengths)]
    g = torch.Generator().manual_seed(5)
    starts = [random_init(p, rank, g) for p in powers]
    padded = torch.zeros(2, n_freq, max(lengths), dtype=torch.float64)
    H_pad = torch.ones(2, rank, max(lengths), dtype=torch.float64)
    mask = torch.zeros(2, max(lengths))
    for b, (p, (_, H0)) in enumerate(zip(powers, starts)):
        padded[b, :, : lengths[b]] = p
        H_pad[b, :, : lengths[b]] = H0
        mask[b, : lengths[b]] = 1
    W_pad = torch.stack([W0 for W0, _ in starts])

    W_b, H_b, hist_b = nmf_is(padded, W=W_pad, H=H_pad, n_iter=20, mask=mask)
    sigma2 = torch.rand(2, n_freq, max(lengths), generator=g, dtype=torch.float64)
    gain_b = update_gain(padded, sigma2, W_b @ H_b, torch.ones(2, max(lengths)), mask=mask)
    for b, (p, (W0, H0)) in enumerate(zip(powers, starts)):
        n = lengths[b]
        W_1, H_1, hist_1 = nmf_is(p, W=W0, H=H0, n_iter=20)
        assert torch.allclose(W_b[b], W_1, rtol=1e-10)
        assert torch.allclose(H_b[b, :, :n], H_1, rtol=1e-10)
        assert torch.allclose(hist_b[:, b], hist_1, rtol=1e-10)
        gain_1 = update_gain(p, sigma2[b, :, :n], W_1 @ H_1, torch.ones(n))
        assert torch.allclose(gain_b[b, :n], gain_1, rtol=1e-10)
        assert bool((gain_b[b, n:] == 1).all()), "padded frames keep their gain"
        assert torch.isfinite(H_b).all()


def test_shared_dictionary_is_fitted_to_the_whole_batch():
    """W (F, K) shared by H (B, K, N) is the same fit as on the frames laid side by side."""
    V = gamma_power((2, 25, 30), seed=3)
    W0, H0 = random_init(V, 4, torch.Generator().manual_seed(0), shared_W=True)
    assert W0.shape == (25, 4) and H0.shape == (2, 4, 30)
    W_b, H_b, _ = nmf_is(V, W=W0, H=H0, n_iter=15)
    side_by_side = torch.cat(list(V), dim=-1)
    W_c, H_c, _ = nmf_is(side_by_side, W=W0, H=torch.cat(list(H0), dim=-1), n_iter=15)
    assert W_b.shape == (25, 4)
    assert torch.allclose(W_b, W_c, rtol=1e-9)
    assert torch.allclose(torch.cat(list(H_b), dim=-1), H_c, rtol=1e-9)


def test_monte_carlo_samples_of_speech_var_are_summed():
    """Extra leading dims of speech_var are summed: R equal samples give the one-sample update."""
    power = gamma_power((20, 30), seed=4)
    g = torch.Generator().manual_seed(1)
    sigma2 = torch.rand(20, 30, generator=g, dtype=torch.float64)
    W, H = random_init(power, 3, g)
    W1, H1 = update_noise_nmf(power, sigma2, W, H)
    W3, H3 = update_noise_nmf(power, sigma2.expand(3, 20, 30), W, H)
    assert W3.shape == W.shape and H3.shape == H.shape
    assert torch.allclose(W1, W3) and torch.allclose(H1, H3)


def test_fixed_factors_and_normalization():
    V = gamma_power((20, 30), seed=6)
    W0, H0 = random_init(V, 3, torch.Generator().manual_seed(2))
    W, H, history = nmf_is(V, W=W0, H=H0, n_iter=10, update_W=False)
    assert torch.equal(W, W0) and not torch.equal(H, H0)
    assert float(history[-1]) < float(history[0])
    Wn, Hn = normalize_columns(W0, H0)
    assert torch.allclose(Wn @ Hn, W0 @ H0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_are_kept(dtype):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        V = gamma_power((2, 16, 20), seed=7, dtype=dtype).to(device)
        W, H, history = nmf_is(V, rank=3, n_iter=5, generator=torch.Generator().manual_seed(0))
        for t in (W, H, history):
            assert t.dtype == dtype and t.device.type == device
        assert W.shape == (2, 16, 3) and H.shape == (2, 3, 20) and history.shape == (6, 2)
        gain = update_gain(V, V, W @ H, torch.ones(2, 20, dtype=dtype, device=device))
        assert gain.dtype == dtype and gain.device.type == device


def test_same_seed_same_start_and_result():
    V = gamma_power((16, 20), seed=8)
    a = nmf_is(V, rank=3, n_iter=5, generator=torch.Generator().manual_seed(3))
    b = nmf_is(V, rank=3, n_iter=5, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_bad_inputs_are_named():
    V = gamma_power((10, 12), seed=9)
    with pytest.raises(ZooInputError, match="rank"):
        nmf_is(V)
    with pytest.raises(ZooInputError, match="V"):
        nmf_is(-V, rank=2)
    with pytest.raises(ZooInputError, match="complex"):
        nmf_is(V.to(torch.complex128), rank=2)
    with pytest.raises(ZooInputError, match="rank"):
        nmf_is(V, W=torch.ones(10, 2, dtype=V.dtype), H=torch.ones(3, 12, dtype=V.dtype))
    W, H = random_init(V, 2)
    with pytest.raises(ZooInputError, match="mask"):
        update_noise_nmf(V, None, W, H, mask=torch.ones(5))
