"""The speech synthesizer and the mouth renderer (zoo.data.synth, zoo.data.mouth)."""

import time

import numpy as np
import pytest
from scipy.signal import lfilter

from zoo.data import synth
from zoo.data.mouth import ARTICULATORS, MouthAppearance, render_mouth
from zoo.errors import ZooInputError

SHORT = synth.SynthSettings(words_per_utterance=(2, 3))


@pytest.fixture(scope="module")
def speakers():
    return synth.corpus_speakers(seed=0, n_speakers=4)


def utterance(speaker, style="neutral", seed=0, settings=SHORT):
    return synth.synthesize_utterance(speaker, style, np.random.default_rng(seed), settings)


def test_same_seed_same_utterance_other_seed_differs(speakers):
    a, b = utterance(speakers[0], seed=3), utterance(speakers[0], seed=3)
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.meta == b.meta
    c = utterance(speakers[0], seed=4)
    assert c.meta["phones"] != a.meta["phones"]
    n = min(a.audio.size, c.audio.size)
    assert not np.allclose(a.audio[:n], c.audio[:n])
    assert synth.corpus_speakers(0, 4) == speakers
    assert synth.corpus_speakers(1, 4) != speakers


def test_output_format(speakers):
    u = utterance(speakers[1], "angry", seed=1)
    meta = u.meta
    assert u.audio.dtype == np.float32 and u.audio.ndim == 1
    assert u.audio.size == meta["n_samples"]
    assert 0.45 <= np.abs(u.audio).max() <= 0.9
    assert u.frames.dtype == np.uint8 and u.frames.shape[1:] == (64, 64)
    assert meta["fps"] == 30
    # a whole number of video frames covering exactly the audio
    assert u.frames.shape[0] == meta["n_video_frames"] == meta["n_samples"] * 30 // 16000
    assert meta["n_samples"] * 30 % 16000 == 0
    assert u.articulation.shape == (u.frames.shape[0], len(ARTICULATORS))
    # phone segments are contiguous, start at 0 and end at the last sample
    phones = meta["phones"]
    assert phones[0][1] == 0 and phones[0][0] == "sil" and phones[-1][0] == "sil"
    assert all(abs(p[2] - q[1]) < 1e-4 for p, q in zip(phones, phones[1:]))
    assert phones[-1][2] == pytest.approx(meta["n_samples"] / 16000)
    assert {p[0] for p in phones} <= set(synth.PHONES)
    assert len(meta["words"]) in (2, 3)
    assert 50 < meta["f0_min_hz"] <= meta["f0_mean_hz"] <= meta["f0_max_hz"] < 500
    assert meta["speaker"] == speakers[1].id and meta["style"] == "angry"


def test_styles_move_pitch_energy_and_tempo_in_their_direction(speakers):
    """Same generator state, so the same words: only the style differs."""
    stats = {}
    for style in synth.STYLES:
        metas = [utterance(speakers[0], style, seed=s).meta for s in range(3)]
        stats[style] = {key: np.mean([m[key] for m in metas])
                        for key in ("f0_mean_hz", "f0_std_hz", "rms_db", "n_samples")}
    neutral, happy, sad, angry = (stats[s] for s in ("neutral", "happy", "sad", "angry"))
    assert happy["f0_mean_hz"] > angry["f0_mean_hz"] > neutral["f0_mean_hz"] > sad["f0_mean_hz"]
    assert happy["f0_std_hz"] > neutral["f0_std_hz"] > sad["f0_std_hz"]
    assert angry["f0_std_hz"] > neutral["f0_std_hz"]
    assert angry["rms_db"] > neutral["rms_db"] + 1 > sad["rms_db"] + 2
    assert happy["rms_db"] > neutral["rms_db"]
    assert happy["n_samples"] < neutral["n_samples"] < sad["n_samples"]  # tempo


def test_articulation_follows_the_phones(speakers):
    u = utterance(speakers[2], seed=0, settings=synth.SynthSettings(words_per_utterance=(8, 8)))
    art = synth.articulation_track([tuple(p) for p in u.meta["phones"]], frame_rate=100)
    jaw, spread, round_, closure = art.T

    def at_centres(labels, track):
        return np.array([track[int(100 * (s + e) / 2)] for lab, s, e in u.meta["phones"]
                         if lab in labels])

    assert at_centres("m", closure).min() > 0.85  # bilabial nasal: lips shut (no release)
    assert at_centres("aeiou@", closure).max() < 0.3
    assert at_centres("a", jaw).mean() > at_centres("iu", jaw).mean() + 0.3
    assert at_centres("u", round_).mean() > 0.7 > 0.2 > at_centres("i", round_).mean()
    assert at_centres("i", spread).mean() > 0.8
    with pytest.raises(ZooInputError, match="unknown phone"):
        synth.articulation_track([("x", 0.0, 0.1)])


def test_time_varying_filter_matches_lfilter_for_fixed_coefficients():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000)
    den = np.ones((51, 1))
    for freq, bw in ((500, 80), (1500, 90), (2500, 150), (270, 100)):
        den = synth._polymul_rows(den, synth._resonator_poly(np.full(51, freq), np.full(51, bw)))
    num = np.tile([0.3, -0.1, 0.05], (51, 1))
    out = synth.time_varying_filter(x, num, den, hop=80)
    np.testing.assert_allclose(out, lfilter(num[0], den[0], x), rtol=1e-6, atol=1e-8)


def test_faster_than_real_time_on_one_thread(speakers):
    """The brief asks >= 20x real time on one core; a modest bound here keeps CI unflaky."""
    cfg = synth.SynthSettings(words_per_utterance=(6, 8))
    utterance(speakers[0], seed=0, settings=cfg)  # warm-up (imports, caches)
    start, seconds = time.process_time(), 0.0
    for seed in range(2):
        seconds += utterance(speakers[seed], seed=seed, settings=cfg).meta["n_samples"] / 16000
    speed = seconds / (time.process_time() - start)
    print(f"synthesizer speed: {speed:.0f} s of audio (with video) per CPU second")
    assert speed > 10


def test_settings_and_arguments_are_checked(speakers):
    with pytest.raises(ZooInputError, match="unknown synthesizer setting"):
        synth.SynthSettings.from_kwargs(words_per_utterence=(2, 3))
    with pytest.raises(ZooInputError, match="styles"):
        synth.SynthSettings(styles=("bored",))
    with pytest.raises(ZooInputError, match="words_per_utterance"):
        synth.SynthSettings(words_per_utterance=(3, 2))
    with pytest.raises(ZooInputError, match="style"):
        utterance(speakers[0], "bored")
    with pytest.raises(ZooInputError, match="n_speakers"):
        synth.speaker_splits(["a", "b"], seed=0)


# ------------------------------------------------------------------------------ mouth renderer
def dark_fraction(frames):
    """Fraction of clearly dark pixels (the open mouth's cavity) per frame."""
    frames = frames.astype(float)
    ref = np.median(frames.reshape(len(frames), -1), 1)[:, None, None]
    return (frames < 0.45 * ref).mean((1, 2))


def test_mouth_opens_rounds_and_closes():
    rest, open_a, spread_i, round_u, closed_m = render_mouth(
        [[0.05, 0.2, 0.1, 0.85], [1.0, 0.35, 0, 0], [0.25, 1, 0, 0], [0.25, 0, 1, 0],
         [0.1, 0.2, 0.2, 1.0]])
    assert rest.shape == (64, 64) and rest.dtype == np.uint8
    dark = dark_fraction(np.stack([rest, open_a, spread_i, round_u, closed_m]))
    assert dark[1] > 0.04 > 0.01 > dark[4]  # /a/: a large dark cavity; /m/: none
    assert dark[1] > 3 * dark[3]

    def mouth_width(frame):
        lips = frame.astype(float) < 0.85 * np.median(frame)
        cols = np.nonzero(lips.any(0))[0]
        return cols[-1] - cols[0]

    assert mouth_width(spread_i) > mouth_width(round_u) + 6


def test_mouth_renderer_randomness_and_checks():
    art = np.tile([[0.6, 0.3, 0.1, 0.0]], (20, 1))
    still = render_mouth(art)
    assert (still == still[0]).all()  # no rng: no motion, no lighting drift, no noise
    moving = render_mouth(art, MouthAppearance(), np.random.default_rng(0))
    assert not (moving == moving[0]).all()
    np.testing.assert_array_equal(moving, render_mouth(art, MouthAppearance(),
                                                       np.random.default_rng(0)))
    dark_skin = render_mouth(art[:1], MouthAppearance(skin_tone=100))
    assert np.median(dark_skin) < np.median(still[:1]) - 30
    with pytest.raises(ZooInputError, match="articulation"):
        render_mouth(np.zeros((5, 3)))
    with pytest.raises(ZooInputError, match=r"\[0, 1\]"):
        render_mouth(np.full((5, 4), 2.0))
