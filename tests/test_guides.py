"""Swappable guides: the amortized MLPEncoder, the per-frame MeanField, and Pyro's AutoNormal,
trained with the same model, and the ELBO ordering one expects between them."""

import math

import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from guides import MeanField, MLPEncoder
from zoo.data.stft import STFT
from zoo.errors import ZooInputError
from zoo.train import evaluate, fit
from zoo.vae import SpeechVAE

STFT_64 = STFT(n_fft=126, hop_length=32)  # 64 frequency bins


def student(seed):
    torch.manual_seed(seed)
    return SpeechVAE(n_freq=64, hidden=(32,), latent_dim=3, stft=STFT_64)


@pytest.fixture(scope="module")
def spectra():
    """Training and held-out power spectra drawn from a random nonlinear "teacher" SpeechVAE
    (3-d latent): data a 3-d student can model well."""
    torch.manual_seed(0)
    teacher = SpeechVAE(n_freq=64, hidden=(16,), latent_dim=3, stft=STFT_64)
    with torch.no_grad():
        for param in teacher.decoder.parameters():
            param.mul_(2.5)  # spread the log-variances over a speech-like dynamic range
        return teacher.model(batch_shape=(512,)), teacher.model(batch_shape=(256,))


@pytest.fixture(scope="module")
def amortized(spectra):
    """A student trained jointly with its default amortized encoder."""
    train, _ = spectra
    model = student(1)
    encoder = model.default_guide()
    fit(model, encoder, {"x": train}, epochs=60, batch_size=128, lr=1e-2, progress=False,
        device="cpu")
    return model, encoder


def precise_elbo(model, guide, x):
    """ELBO per frame with 64 particles, so orderings are not Monte-Carlo noise."""
    loss = Trace_ELBO(num_particles=64, vectorize_particles=True, max_plate_nesting=1)
    return evaluate(model, guide, {"x": x}, loss=loss)["elbo"]


def importance_sampled_log_likelihood(model, encoder, x, n_samples=2000):
    """log p(x) per frame, estimated with n_samples from the encoder as the proposal."""
    with torch.no_grad():
        loc, scale = encoder.encode(x)
        proposal = torch.distributions.Normal(loc, scale)
        z = proposal.sample((n_samples,))
        sigma2 = model.sigma2(z)
        log_px_given_z = -(sigma2.log() + x / sigma2).sum(-1)
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_w = log_px_given_z + log_pz - proposal.log_prob(z).sum(-1)
        return (torch.logsumexp(log_w, 0) - math.log(n_samples)).mean().item()


# ----------------------------------------------------------------------------- MLPEncoder
def test_encoder_reads_log_power_and_samples_z_in_the_models_plates():
    encoder = MLPEncoder(16, hidden=(8,), latent_dim=3)
    x = torch.rand(2, 5, 16)
    torch.testing.assert_close(encoder.features(x), torch.log(x + encoder.eps))
    loc, scale = encoder.encode(x)
    assert loc.shape == scale.shape == (2, 5, 3) and (scale > 0).all()
    site = poutine.trace(encoder).get_trace(x).nodes["z"]
    assert site["fn"].batch_shape == (2, 5) and site["fn"].event_shape == (3,)
    assert {f.name for f in site["cond_indep_stack"]} == {"frames", "utterances"}


def test_encoder_input_transform_options():
    x = torch.randn(4, 6)
    assert torch.equal(MLPEncoder(6, (5,), 2, input_transform=None).features(x), x)
    assert MLPEncoder(6, (), 2).encode(x.abs())[0].shape == (4, 2)  # linear encoder
    with pytest.raises(ZooInputError, match="input_transform"):
        MLPEncoder(6, (5,), 2, input_transform="sqrt")


# ----------------------------------------------------------------------------- MeanField
def test_mean_field_covers_all_frames_or_the_indexed_ones():
    guide = MeanField(10, 3)
    with torch.no_grad():
        guide.posterior["loc"].copy_(torch.arange(30.0).reshape(10, 3))
        guide.posterior["log_scale"].fill_(-30.0)  # (almost) deterministic samples
    z_all = guide(torch.rand(10, 8))
    torch.testing.assert_close(z_all, guide.posterior["loc"], atol=1e-6, rtol=0)
    index = torch.tensor([7, 2])
    torch.testing.assert_close(guide(torch.rand(2, 8), index=index),
                               guide.posterior["loc"][index], atol=1e-6, rtol=0)
    assert guide().shape == (10, 3)  # x is only read for its shape


def test_mean_field_refuses_frames_it_does_not_hold():
    guide = MeanField(10, 3)
    with pytest.raises(ZooInputError, match="holds"):
        guide(torch.rand(12, 8))
    with pytest.raises(ZooInputError, match=r"index must lie in \[0, 10\)"):
        guide(torch.rand(2, 8), index=torch.tensor([3, 10]))


def test_mean_field_from_encoder_starts_at_the_encoder_posterior():
    encoder = MLPEncoder(16, (8,), 3)
    x = torch.rand(2, 7, 16)
    guide = MeanField.from_encoder(encoder, x)
    loc, scale = encoder.encode(x)
    assert guide.batch_shape == (2, 7)
    torch.testing.assert_close(guide.posterior_params()[0], loc.detach())
    torch.testing.assert_close(guide.posterior_params()[1], scale.detach())


# ----------------------------------------------------------------------------- orderings
def test_mean_field_and_autonormal_are_the_same_family_and_reach_the_same_elbo(spectra):
    """MeanField is AutoNormal's family and parameterization (loc, exp(log_scale), started at
    0 and 0.1): trained jointly with the same model from the same start they end equal."""
    train, _ = spectra
    results = {}
    for name in ("MeanField", "AutoNormal"):
        model = student(2)
        guide = MeanField(len(train), 3) if name == "MeanField" else AutoNormal(model)
        history = fit(model, guide, {"x": train}, epochs=60, lr=1e-2, progress=False, seed=3,
                      device="cpu")
        results[name] = history.train_elbo
    mean_field, auto_normal = results["MeanField"], results["AutoNormal"]
    assert mean_field[-1] > mean_field[0] + 30 and auto_normal[-1] > auto_normal[0] + 30
    assert abs(mean_field[-1] - auto_normal[-1]) < 1.0  # nats per frame


def test_held_out_elbo_ordering_encoder_below_refined_mean_field_below_log_likelihood(
    spectra, amortized
):
    """On held-out frames, with the trained model frozen:

    ELBO(trained encoder) < ELBO(MeanField refined from it) <= log p(x)

    The first gap is the amortization gap (one network cannot give every frame its best
    Gaussian; per-frame parameters started at the encoder's output can only improve on it), the
    second is the KL from the best Gaussian to the true posterior (the ELBO is a lower bound).
    A mean-field guide trained jointly has no posterior for held-out frames at all: it must be
    refitted on them, as here (fit refuses val_data with it, see test_train.py).
    """
    train, held_out = spectra
    model, encoder = amortized
    untrained = precise_elbo(model, MLPEncoder(64, (32,), 3), held_out)
    encoder_elbo = precise_elbo(model, encoder, held_out)

    model.requires_grad_(False)
    try:
        refined = MeanField.from_encoder(encoder, held_out)
        fit(model, refined, {"x": held_out}, epochs=100, lr=1e-2, progress=False, device="cpu")
        refined_elbo = precise_elbo(model, refined, held_out)
    finally:
        model.requires_grad_(True)
    log_likelihood = importance_sampled_log_likelihood(model, encoder, held_out)

    assert untrained < encoder_elbo - 10  # the trained encoder generalizes to unseen frames
    assert encoder_elbo < refined_elbo - 0.5  # amortization gap, nats per frame
    assert refined_elbo < log_likelihood + 0.02  # a bound (0.02: importance-sampling error)
