"""SpeechVAE (the speech prior) and the general VAE."""

import pytest
import torch
from pyro import poutine

from guides import MLPEncoder
from zoo.data.stft import STFT
from zoo.errors import ZooInputError
from zoo.train import evaluate, fit
from zoo.vae import VAE, ComplexGaussianPower, SpeechVAE

SMALL_STFT = STFT(n_fft=30, hop_length=8)  # 16 frequency bins: fast tests


@pytest.fixture(autouse=True)
def one_thread():
    """Small networks train faster on one thread than on several competing for shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_speech_vae(**kwargs):
    return SpeechVAE(n_freq=16, hidden=(8,), latent_dim=3, stft=SMALL_STFT, **kwargs)


def test_defaults_are_the_references_513_128_16_tanh():
    vae = SpeechVAE()
    assert vae.config() == {
        "n_freq": 513, "hidden": (128,), "latent_dim": 16, "activation": "tanh",
        "stft": STFT().config(),
    }
    assert [tuple(p.shape) for p in vae.decoder.parameters()] == [(128, 16), (128,), (513, 128),
                                                                  (513,)]
    guide = vae.default_guide()
    assert isinstance(guide, MLPEncoder)
    assert guide.config()["hidden"] == (128,) and guide.input_transform == "log"
    assert vae.latent_sites == ("z",)


def test_model_sites_and_itakura_saito_likelihood():
    torch.manual_seed(0)
    vae = small_speech_vae()
    x = torch.rand(5, 16) * 3
    trace = poutine.trace(vae.model).get_trace(x)
    z_site, x_site = trace.nodes["z"], trace.nodes["x"]
    assert z_site["value"].shape == (5, 3) and z_site["fn"].event_shape == (3,)
    assert x_site["is_observed"] and x_site["fn"].batch_shape == (5,)
    assert [f.name for f in x_site["cond_indep_stack"]] == ["frames"]
    # -log p(x | z) = sum_f log sigma2_f + x_f / sigma2_f, the Itakura-Saito form.
    sigma2 = vae.sigma2(z_site["value"])
    expected = -(sigma2.log() + x / sigma2).sum(-1)
    torch.testing.assert_close(x_site["fn"].log_prob(x), expected)
    torch.testing.assert_close(vae.log_sigma2(z_site["value"]).exp(), sigma2)


def test_complex_gaussian_power_is_the_exponential_with_mean_sigma2():
    log_sigma2 = torch.randn(3, 5)
    power = ComplexGaussianPower(log_sigma2)
    exponential = torch.distributions.Exponential(torch.exp(-log_sigma2))
    x = torch.rand(3, 5) * 4
    torch.testing.assert_close(power.log_prob(x), exponential.log_prob(x))
    torch.manual_seed(0)
    samples = power.expand((2000, 3, 5)).sample()
    torch.testing.assert_close(samples.mean(0), log_sigma2.exp(), rtol=0.15, atol=0.0)
    with pytest.raises(ValueError):
        ComplexGaussianPower(log_sigma2, validate_args=True).log_prob(-x)


def test_any_leading_batch_shape_and_masked_frames_add_nothing():
    torch.manual_seed(0)
    vae = small_speech_vae()
    x = torch.rand(2, 4, 16)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    trace = poutine.trace(vae.model).get_trace(x, mask=mask)
    assert trace.nodes["z"]["value"].shape == (2, 4, 3)
    trace.compute_log_prob()
    log_px = trace.nodes["x"]["log_prob"]
    assert log_px.shape == (2, 4) and (log_px[~mask] == 0).all() and (log_px[mask] != 0).all()


def test_sampling_gives_power_spectra():
    torch.manual_seed(0)
    x = small_speech_vae().model(batch_shape=(7,))
    assert x.shape == (7, 16) and (x >= 0).all()


@pytest.mark.parametrize(
    "x, message",
    [
        (-torch.rand(3, 16), "negative"),
        (torch.rand(3, 15), r"\(\.\.\., 16\)"),
        (torch.rand(3, 16, dtype=torch.complex64), "complex"),
    ],
)
def test_model_rejects_inputs_that_are_not_power_spectra(x, message):
    with pytest.raises(ZooInputError, match=message):
        small_speech_vae().model(x)


def test_n_freq_must_match_the_stft():
    with pytest.raises(ZooInputError, match="n_freq=257"):
        SpeechVAE(n_freq=257)
    assert SpeechVAE(n_freq=257, stft=STFT(n_fft=512)).stft.n_fft == 512


def test_config_rebuilds_the_same_model():
    vae = SpeechVAE(n_freq=16, hidden=(12, 8), latent_dim=4, activation="relu", stft=SMALL_STFT)
    rebuilt = SpeechVAE(**vae.config())
    assert rebuilt.config() == vae.config()
    assert [layer.out_features for layer in rebuilt.decoder if hasattr(layer, "out_features")] \
        == [8, 12, 16]


def test_general_vae_bernoulli_rejects_non_binary_data():
    vae = VAE(4, hidden=(3,), latent_dim=2, likelihood="bernoulli")
    with pytest.raises(ZooInputError, match="binary"):
        vae.model(torch.full((2, 4), 0.5))
    with pytest.raises(ZooInputError, match="likelihood"):
        VAE(4, likelihood="poisson")


def test_general_vae_gaussian_scale_has_a_floor():
    vae = VAE(4, hidden=(3,), latent_dim=2, min_scale=0.05)
    with torch.no_grad():
        vae.obs_scale.raw.fill_(-100.0)
    assert torch.allclose(vae.obs_scale(), torch.full((4,), 0.05))
    trace = poutine.trace(vae.model).get_trace(torch.zeros(3, 4))
    assert torch.isfinite(trace.log_prob_sum())


def test_vae_on_digits_beats_independent_pixels_on_held_out_data():
    """A 4-d latent captures pixel dependencies: the held-out ELBO (a lower bound on log p)
    exceeds the exact log-likelihood of the best independent-pixel model."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    digits = torch.tensor(sklearn_datasets.load_digits().data, dtype=torch.float32)
    binary = (digits > 7).float()
    train, held_out = binary[:1400], binary[1400:]
    p = train.mean(0).clamp(1e-3, 1 - 1e-3)
    independent = (held_out * p.log() + (1 - held_out) * (1 - p).log()).sum(1).mean().item()

    torch.manual_seed(0)
    vae = VAE(64, hidden=(64,), latent_dim=4, likelihood="bernoulli")
    guide = vae.default_guide()
    before = evaluate(vae, guide, {"x": held_out})["elbo"]
    fit(vae, guide, {"x": train}, epochs=12, batch_size=100, lr=1e-2, progress=False,
        device="cpu")
    after = evaluate(vae, guide, {"x": held_out})["elbo"]
    assert before < independent < after
    assert after > independent + 2.0  # nats per digit


def test_gaussian_vae_trains_on_real_valued_digits():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    digits = torch.tensor(sklearn_datasets.load_digits().data[:600], dtype=torch.float32) / 16
    torch.manual_seed(0)
    vae = VAE(64, hidden=(32,), latent_dim=4)
    history = fit(vae, vae.default_guide(), {"x": digits}, epochs=10, batch_size=100, lr=1e-2,
                  progress=False, device="cpu")
    assert all(b > a for a, b in zip(history.train_elbo, history.train_elbo[1:]))
    assert history.train_elbo[-1] > history.train_elbo[0] + 20
