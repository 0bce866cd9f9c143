"""One-file checkpoints: weights + configuration, rebuilt by zoo.load, with clear errors."""

import pyro
import pytest
import torch
from pyro.infer.autoguide import AutoNormal

import zoo
from guides import MeanField, MLPEncoder
from zoo import checkpoint
from zoo.data.stft import STFT
from zoo.errors import ZooInputError
from zoo.vae import VAE, SpeechVAE

SMALL_STFT = STFT(n_fft=30, hop_length=8)  # 16 frequency bins


def small_speech_vae(latent_dim=3):
    torch.manual_seed(0)
    return SpeechVAE(n_freq=16, hidden=(8,), latent_dim=latent_dim, stft=SMALL_STFT)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_then_zoo_load_rebuilds_model_and_guide(tmp_path):
    vae = small_speech_vae()
    guide = vae.default_guide()
    path = checkpoint.save(tmp_path / "prior.pt", vae, guide, extra={"note": "test"})
    model = zoo.load(path, device="cpu")
    assert type(model) is SpeechVAE and model.config() == vae.config()
    assert model.stft == SMALL_STFT and same_weights(model, vae)
    z = torch.randn(4, 3)
    torch.testing.assert_close(model.sigma2(z), vae.sigma2(z))

    loaded = checkpoint.load_checkpoint(path, device="cpu")
    assert isinstance(loaded.guide, MLPEncoder) and same_weights(loaded.guide, guide)
    assert loaded.extra == {"note": "test"}


def test_load_into_an_existing_model_and_guide(tmp_path):
    vae, other = small_speech_vae(), SpeechVAE(n_freq=16, hidden=(8,), latent_dim=3,
                                               stft=SMALL_STFT)
    guide, other_guide = vae.default_guide(), other.default_guide()
    path = checkpoint.save(tmp_path / "a.pt", vae, guide)
    assert not same_weights(vae, other)
    assert zoo.load(path, other, other_guide) is other
    assert same_weights(vae, other) and same_weights(guide, other_guide)


def test_loading_into_a_model_with_another_config_names_file_and_difference(tmp_path):
    path = checkpoint.save(tmp_path / "prior.pt", small_speech_vae(latent_dim=3))
    with pytest.raises(ZooInputError) as error:
        zoo.load(path, small_speech_vae(latent_dim=5))
    message = str(error.value)
    assert str(path) in message and "latent_dim: file has 3, model has 5" in message


def test_loading_into_a_model_of_another_class_fails_clearly(tmp_path):
    path = checkpoint.save(tmp_path / "prior.pt", small_speech_vae())
    with pytest.raises(ZooInputError, match=r"holds a model of class SpeechVAE, not VAE"):
        zoo.load(path, VAE(16, hidden=(8,), latent_dim=3))


def test_a_file_that_is_not_a_zoo_checkpoint_is_reported(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(ZooInputError, match="is not a zoo checkpoint"):
        zoo.load(junk)
    plain = tmp_path / "state_dict.pt"
    torch.save(small_speech_vae().state_dict(), plain)
    with pytest.raises(ZooInputError, match="without the 'avspeech-zoo-checkpoint' header"):
        zoo.load(plain)
    with pytest.raises(ZooInputError, match="does not exist"):
        zoo.load(tmp_path / "missing.pt")


def test_other_format_version_is_refused(tmp_path):
    path = checkpoint.save(tmp_path / "a.pt", small_speech_vae())
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(ZooInputError, match="version 99"):
        zoo.load(path)


def test_general_vae_and_mean_field_round_trip(tmp_path):
    vae = VAE(6, hidden=(5,), latent_dim=2, likelihood="bernoulli")
    guide = MeanField((3, 4), 2, init_scale=0.5)
    loaded = checkpoint.load_checkpoint(checkpoint.save(tmp_path / "v.pt", vae, guide),
                                        device="cpu")
    assert loaded.model.config() == vae.config() and same_weights(loaded.model, vae)
    assert loaded.guide.config() == guide.config() and same_weights(loaded.guide, guide)


def test_autonormal_guide_weights_load_into_a_guide_you_build(tmp_path):
    vae = small_speech_vae()
    x = torch.rand(5, 16)
    guide, fresh = AutoNormal(vae), AutoNormal(small_speech_vae())
    with pyro.get_param_store().scope():  # leave no AutoNormal names in the global store
        guide(x)  # AutoNormal creates its parameters on the first call
    with pyro.get_param_store().scope():
        fresh(x)
    path = checkpoint.save(tmp_path / "a.pt", vae, guide)
    assert checkpoint.load_checkpoint(path, device="cpu").guide is None  # no config to rebuild
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    zoo.load(path, small_speech_vae(), fresh)
    assert same_weights(fresh, guide)


def test_update_extra_keeps_weights(tmp_path):
    vae = small_speech_vae()
    path = checkpoint.save(tmp_path / "a.pt", vae, extra={"a": 1})
    checkpoint.update_extra(path, {"data": "synth"})
    loaded = checkpoint.load_checkpoint(path, device="cpu")
    assert loaded.extra == {"a": 1, "data": "synth"} and same_weights(loaded.model, vae)


def test_a_model_without_config_cannot_be_checkpointed(tmp_path):
    with pytest.raises(ZooInputError, match="config"):
        checkpoint.save(tmp_path / "a.pt", torch.nn.Linear(2, 2))
