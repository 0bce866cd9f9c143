"""The on-disk corpus format, the Corpus reader, the disk cache and the Datasets
(zoo.data.corpus), on a tiny synthetic corpus built once per session."""

import json
import re
import shutil

import cv2
import numpy as np
import pytest
import torch

from zoo.data.corpus import (
    Corpus,
    FrameDataset,
    SequenceDataset,
    UtteranceDataset,
    synth_corpus,
    utterance_features,
)
from zoo.data.stft import STFT
from zoo.data.synth import SYNTH_VERSION, build_synth_corpus, speaker_splits
from zoo.data.video import align_to_stft
from zoo.errors import ZooInputError

TINY = {"n_utterances": 8, "seed": 0, "progress": False, "words_per_utterance": (2, 3)}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return build_synth_corpus(tmp_path_factory.mktemp("synth") / "tiny", **TINY)


@pytest.fixture
def broken(corpus, tmp_path):
    """A copy of the tiny corpus that a test may damage."""
    return Corpus(shutil.copytree(corpus.root, tmp_path / "copy"))


# ------------------------------------------------------------------------------ format
def test_layout_and_index(corpus):
    info = json.loads((corpus.root / "corpus.json").read_text())
    assert info == corpus.info
    assert info["format_version"] == 1 and info["sample_rate"] == 16000
    assert info["video_fps"] == 30 and info["mouth_size"] == [64, 64] and info["seed"] == 0
    assert info["generator"]["version"] == SYNTH_VERSION
    assert len(corpus) == 8 and len(list(corpus)) == 8
    for utt in corpus:
        assert (corpus.root / utt["wav"]).is_file() and (corpus.root / utt["video"]).is_file()
        assert utt["wav"] == f"wav/{utt['id']}.wav" and utt["video"] == f"video/{utt['id']}.npz"
        assert utt["style"] in ("neutral", "happy", "sad", "angry")
        assert corpus[utt["id"]] is utt
    assert not list(corpus.root.glob("video/*.avi"))  # only when asked for


def test_splits_are_speaker_disjoint_and_stable(corpus):
    splits = corpus.info["splits"]
    assert set(splits) == {"train", "val", "test"}
    assert all(len(s) >= 1 for s in splits.values())
    members = [set(s) for s in splits.values()]
    assert not (members[0] & members[1] or members[0] & members[2] or members[1] & members[2])
    assert set().union(*members) == set(corpus.speakers)
    for name, speakers in splits.items():
        assert {u["speaker"] for u in corpus.split(name)} <= set(speakers)
    assert sum(len(corpus.split(n)) for n in splits) == len(corpus)
    assert splits == speaker_splits(corpus.speakers, seed=0)  # the same on every build
    many = [f"spk{k:02d}" for k in range(20)]
    big = speaker_splits(many, seed=0)
    assert [len(big[n]) for n in ("train", "val", "test")] == [14, 3, 3]
    assert big == speaker_splits(many, seed=0) != speaker_splits(many, seed=1)
    with pytest.raises(ZooInputError, match="split"):
        corpus.split("dev")


def test_build_is_deterministic_for_a_seed(corpus, tmp_path):
    # 3 utterances with the same seed: the same speakers, styles and generators as the first 3
    again = build_synth_corpus(tmp_path / "again", **{**TINY, "n_utterances": 3, "write_avi": True})
    for a, b in zip(corpus.utterances[:3], again.utterances):
        assert a == b
        torch.testing.assert_close(corpus.load_audio(a), again.load_audio(b), rtol=0, atol=0)
        np.testing.assert_array_equal(corpus.load_video(a), again.load_video(b))
        assert (again.root / f"video/{b['id']}.avi").stat().st_size > 0
    other = build_synth_corpus(tmp_path / "other", **{**TINY, "n_utterances": 3, "seed": 1})
    assert other.utterances[0]["phones"] != corpus.utterances[0]["phones"]
    with pytest.raises(ZooInputError, match="not an empty folder"):
        build_synth_corpus(tmp_path / "again", **TINY)


# ------------------------------------------------------------------------------ audio-video
def mouth_opening(frames):
    """Fraction of dark (open-mouth cavity) pixels in the central region of each frame."""
    frames = frames.astype(float)
    ref = np.median(frames.reshape(len(frames), -1), 1)[:, None, None]
    return (frames[:, 16:48, 8:56] < 0.45 * ref).mean((1, 2))


def test_audio_and_video_are_aligned_and_correlated(corpus):
    """Mouth opening follows the speech energy (300-3000 Hz) frame by frame; pairing each
    utterance's energy with another utterance's video gives a much weaker correlation."""
    stft = STFT()
    freqs = stft.freqs()
    band = (freqs > 300) & (freqs < 3000)
    energies, openings = [], []
    for utt in corpus:
        audio, frames = corpus.load_audio(utt), corpus.load_video(utt)
        assert frames.shape[0] / utt["fps"] == pytest.approx(audio.numel() / 16000)
        power = stft.power(audio)
        energies.append(10 * torch.log10(power[band].sum(0) + 1e-10).numpy())
        openings.append(align_to_stft(mouth_opening(frames), utt["fps"], power.shape[1],
                                      stft.frame_rate).numpy())

    def corr(opening, energy):
        n = min(len(opening), len(energy))
        return np.corrcoef(opening[:n], energy[:n])[0, 1]

    n = len(corpus)
    matched = [corr(openings[i], energies[i]) for i in range(n)]
    mismatched = [corr(openings[(i + 1) % n], energies[i]) for i in range(n)]
    assert min(matched) > 0.3
    assert np.mean(matched) > np.mean(mismatched) + 0.15


# ------------------------------------------------------------------------------ errors
def test_missing_corpus_json(broken):
    (broken.root / "corpus.json").unlink()
    with pytest.raises(ZooInputError, match="corpus.json"):
        Corpus(broken.root)
    with pytest.raises(ZooInputError, match="no such corpus folder"):
        Corpus(broken.root / "nowhere")


def test_corrupt_or_missing_wav(broken):
    utt = broken.utterances[0]
    wav = broken.root / utt["wav"]
    wav.write_bytes(b"RIFF....this is not a wav file")
    with pytest.raises(ZooInputError, match=re.escape(str(wav))):
        broken.load_audio(utt)
    wav.unlink()
    with pytest.raises(ZooInputError, match=re.escape(str(wav))):
        broken.load_audio(utt)


def test_corrupt_npz(broken):
    utt = broken.utterances[1]
    npz = broken.root / utt["video"]
    npz.write_bytes(npz.read_bytes()[:100])  # truncated archive
    with pytest.raises(ZooInputError, match=re.escape(str(npz))):
        broken.load_video(utt)
    np.savez(npz, frames=np.zeros((3, 4), np.float32))
    with pytest.raises(ZooInputError, match=re.escape(str(npz))):
        broken.load_video(utt)


def test_video_shorter_than_audio(broken):
    utt = broken.utterances[2]
    npz = broken.root / utt["video"]
    frames = broken.load_video(utt)
    np.savez_compressed(npz, frames=frames[:5])
    with pytest.raises(ZooInputError, match=re.escape(str(npz))):
        broken.load_video(utt)
    with pytest.raises(ZooInputError, match=re.escape(str(npz))):
        FrameDataset(broken, utt["split"], video=True)


def test_audio_length_differs_from_index(broken):
    utt = broken.utterances[3]
    utt["n_samples"] += 160
    with pytest.raises(ZooInputError, match=re.escape(utt["wav"])):
        broken.load_audio(utt)


# ------------------------------------------------------------------------------ datasets
def test_utterance_dataset(corpus):
    ds = UtteranceDataset(corpus, "train")
    assert len(ds) == len(corpus.split("train"))
    item = ds[0]
    assert set(item) == {"audio", "video", "meta"}
    assert item["audio"].shape == (item["meta"]["n_samples"],)
    assert item["video"].shape == (item["meta"]["n_video_frames"], 64, 64)
    assert item["video"].dtype == torch.float32
    assert 0 <= item["video"].min() and item["video"].max() <= 1


def test_frame_dataset_aligns_video_with_audio_frames(corpus):
    stft = STFT()
    ds = FrameDataset(corpus, "val", stft=stft, video=True, mouth_size=(24, 32))
    utts = corpus.split("val")
    n_frames = [stft.n_frames(u["n_samples"]) for u in utts]
    assert ds.x.shape == (sum(n_frames), stft.n_freq) and ds.x.dtype == torch.float32
    assert ds.v.shape == (sum(n_frames), 24 * 32)
    assert 0 <= ds.v.min() and ds.v.max() <= 1
    assert set(ds[5]) == {"x", "v"} and ds[5]["x"].shape == (stft.n_freq,)
    # the frames of the second utterance, rebuilt by hand
    second = ds.utterance_index == 1
    torch.testing.assert_close(ds.x[second], stft.power(corpus.load_audio(utts[1])).T)
    frames = corpus.load_video(utts[1])
    small = np.stack([cv2.resize(f, (32, 24), interpolation=cv2.INTER_AREA) for f in frames])
    expected = align_to_stft(small, 30, n_frames[1], stft.frame_rate).reshape(-1, 24 * 32) / 255
    torch.testing.assert_close(ds.v[second], expected)
    assert ds.frame_index[second].tolist() == list(range(n_frames[1]))
    # audio only, and silent frames dropped on request
    audio_only = FrameDataset(corpus, "val", stft=stft)
    assert audio_only.v is None and set(audio_only[0]) == {"x"}
    torch.testing.assert_close(audio_only.x, ds.x)
    voiced = FrameDataset(corpus, "val", stft=stft, min_power_db=-40)
    assert 0 < voiced.n_dropped < len(audio_only)
    assert len(voiced) + voiced.n_dropped == len(audio_only)
    assert voiced.x.sum(1).min() > audio_only.x.sum(1).min()
    with pytest.raises(ZooInputError, match="min_power_db"):
        FrameDataset(corpus, "val", min_power_db=10)


def test_sequence_dataset(corpus):
    stft = STFT()
    ds = SequenceDataset(corpus, "test", seq_len=40, stft=stft, video=True)
    item = ds[0]
    assert item["x"].shape == (40, stft.n_freq) and item["v"].shape == (40, 32 * 32)
    assert ds.x.shape == (len(ds), 40, stft.n_freq) and ds.v.shape == (len(ds), 40, 1024)
    whole = ds.whole_utterances()
    assert len(whole) == len(corpus.split("test"))
    for i, seq in enumerate(whole):
        n = stft.n_frames(seq["meta"]["n_samples"])
        assert seq["x"].shape == (n, stft.n_freq) and seq["v"].shape == (n, 1024)
        covered = torch.zeros(n, dtype=torch.bool)
        for utt_index, start in ds.chunks:
            if utt_index == i:
                covered[start : start + 40] = True
                torch.testing.assert_close(ds[ds.chunks.index((utt_index, start))]["x"],
                                           seq["x"][start : start + 40])
        assert covered.all()  # every frame is in some chunk
    longest = max(stft.n_frames(u["n_samples"]) for u in corpus.split("test"))
    with pytest.warns(UserWarning, match="shorter than seq_len"):
        SequenceDataset(corpus, "test", seq_len=longest)
    with pytest.raises(ZooInputError, match="seq_len"):
        SequenceDataset(corpus, "test", seq_len=longest + 1)


def test_features_refuse_another_sample_rate(corpus):
    with pytest.raises(ZooInputError, match="sample_rate"):
        utterance_features(corpus, corpus.utterances[0], STFT(sample_rate=8000, n_fft=512,
                                                              hop_length=128))


# ------------------------------------------------------------------------------ disk cache
def test_synth_corpus_is_built_once_and_reused(tmp_path):
    first = synth_corpus(n_utterances=3, seed=5, root=tmp_path, progress=False)
    assert first.root == tmp_path / f"synth-3-5-v{SYNTH_VERSION}"
    stamp = (first.root / "corpus.json").stat().st_mtime_ns
    second = synth_corpus(n_utterances=3, seed=5, root=tmp_path, progress=False)
    assert second.root == first.root
    assert (second.root / "corpus.json").stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.root.name]  # no partial folders left
