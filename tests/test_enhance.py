"""The noisy-speech model and its inference: frozen prior, batching, bad input, quality."""

import pytest
import torch

from zoo.checkpoint import load_checkpoint
from zoo.data.stft import STFT
from zoo.demo import shipped_prior_path
from zoo.enhance import enhance, infer
from zoo.errors import ZooInputError
from zoo.metrics import si_sdr


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(shipped_prior_path(), device="cpu")


@pytest.fixture(scope="module")
def utterance():
    """A clean test utterance of the demo corpus (speakers the shipped prior never heard)."""
    from zoo.data.corpus import synth_corpus
    from zoo.demo import DEMO_CORPUS

    corpus = synth_corpus(**DEMO_CORPUS)
    return corpus.load_audio(corpus.split("test")[0])[: 16000 * 2]


@pytest.fixture(scope="module")
def noisy(utterance):
    from zoo.data.noise import make_noise, mix_at_snr

    mixture, _ = mix_at_snr(utterance, make_noise("white", utterance.numel(), rng=1), 5.0)
    return mixture


def test_decoder_is_bit_identical_after_enhancement(shipped, noisy):
    before = {k: v.clone() for k, v in shipped.model.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in shipped.guide.state_dict().items()}
    for m_step in ("closed", "gradient"):
        enhance(noisy, shipped.model, shipped.guide, iterations=2, m_step=m_step)
    for k, v in shipped.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in shipped.guide.state_dict().items():
        assert torch.equal(v, encoder_before[k]), k  # fine-tuning works on a copy
    assert all(p.requires_grad for p in shipped.model.parameters())  # the caller's flags too


def test_inference_never_steps_the_prior(shipped, noisy):
    """Inside infer, the prior handed over gets no gradient even when it requires one."""
    prior = shipped.model
    power = STFT()(noisy).abs().square()[None]
    mask = torch.ones(1, power.shape[-1], dtype=torch.bool)
    state = {k: v.clone() for k, v in prior.state_dict().items()}
    infer(prior, shipped.guide, power, mask, [power.shape[-1]], iterations=3)
    assert all(torch.equal(v, state[k]) for k, v in prior.state_dict().items())


@pytest.mark.parametrize("method", ["vem", "vem-meanfield", "mcem"])
def test_batch_equals_alone(shipped, noisy, method):
    short, long = noisy[: 16000], noisy
    options = dict(iterations=3, method=method, mh_steps=4, mh_burn_in=2)
    alone = enhance(short, shipped.model, shipped.guide, **options)
    batch = enhance([long, short], shipped.model, shipped.guide, **options)
    assert torch.allclose(alone.speech, batch[1].speech, atol=1e-5, rtol=1e-4)
    assert batch[0].speech.shape == long.shape


def test_vem_improves_and_its_loss_decreases(shipped, utterance, noisy):
    result = enhance(noisy, shipped.model, shipped.guide, iterations=30)
    gain_db = si_sdr(utterance, result.speech) - si_sdr(utterance, noisy)
    assert gain_db > 3.0
    assert result.loss.shape == (30, 1)
    assert result.loss[-5:].mean() < result.loss[:5].mean()
    # the noise estimate is the rest of the mixture
    assert torch.allclose(result.speech + result.noise, noisy, atol=1e-4)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_clean_input_is_not_degraded(shipped, index):
    """A clean recording (a 25 dB noise floor, as recordings have) loses < 1 dB SI-SDR."""
    from zoo.data.corpus import synth_corpus
    from zoo.data.noise import make_noise, mix_at_snr
    from zoo.demo import DEMO_CORPUS

    corpus = synth_corpus(**DEMO_CORPUS)
    speech = corpus.load_audio(corpus.split("test")[index])[: 16000 * 2]
    clean, _ = mix_at_snr(speech, make_noise("white", speech.numel(), rng=2), 25.0)
    result = enhance(clean, shipped.model, shipped.guide, iterations=100)
    assert si_sdr(speech, result.speech) > si_sdr(speech, clean) - 1.0


def test_long_recordings_are_segmented_without_seams(shipped, noisy):
    whole = enhance(noisy, shipped.model, shipped.guide, iterations=3)
    parts = enhance(noisy, shipped.model, shipped.guide, iterations=3, max_seconds=0.5)
    assert parts.speech.shape == noisy.shape and torch.isfinite(parts.speech).all()
    assert parts.loss.shape[1] == 5  # 126 frames in segments of at most 31 (0.5 s)
    # independent noise models per segment, one inverse STFT: close to the whole, no seams
    assert si_sdr(whole.speech, parts.speech) > 10.0


def test_bad_inputs_get_clear_errors(shipped, noisy):
    prior, encoder = shipped.model, shipped.guide
    with pytest.raises(ZooInputError, match="all zeros"):
        enhance(torch.zeros(16000), prior, encoder)
    with pytest.raises(ZooInputError, match="NaN"):
        enhance(torch.full((16000,), float("nan")), prior, encoder)
    with pytest.raises(ZooInputError, match="too short"):
        enhance(noisy[:1000], prior, encoder)
    clipped = (noisy * 20).clamp(-1, 1)
    with pytest.raises(ZooInputError, match="looks clipped"):
        enhance(clipped, prior, encoder)
    with pytest.raises(ZooInputError, match="n_fft: prior has 1024, input has 512"):
        enhance(noisy, prior, encoder, stft=STFT(n_fft=512, hop_length=128))
    with pytest.raises(ZooInputError, match="audio-only prior"):
        enhance(noisy, prior, encoder, video=torch.zeros(60, 32, 32))
    with pytest.raises(ZooInputError, match="encoder"):
        enhance(noisy, prior, None)
    with pytest.raises(ZooInputError, match="method"):
        enhance(noisy, prior, encoder, method="magic")
