"""Real-corpus readers on tiny folders built in the corpora's layouts."""

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from zoo.data.audio import AudioConversionWarning
from zoo.data.readers import NTCDTIMIT, WSJ0QUT, VoiceBankDemand
from zoo.data.video import write_video
from zoo.errors import ZooInputError


def write_wav(path, n_samples=1600, rate=16000, channels=1, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = 0.1 * np.random.default_rng(seed).standard_normal((n_samples, channels))
    sf.write(path, data if channels > 1 else data[:, 0], rate)
    return path


# ------------------------------------------------------------------------ VoiceBank-DEMAND
def voicebank(root, names=("p232_001", "p232_002"), rate=48000):
    for i, name in enumerate(names):
        write_wav(root / "clean_testset_wav" / f"{name}.wav", 4800, rate, seed=i)
        write_wav(root / "noisy_testset_wav" / f"{name}.wav", 4800, rate, seed=10 + i)
    return root


def test_voicebank_pairs_by_name_and_resamples_48k_with_a_warning(tmp_path):
    corpus = VoiceBankDemand(voicebank(tmp_path), split="test")
    assert len(corpus) == 2
    assert [p.id for p in corpus.pairs] == ["p232_001", "p232_002"]
    assert corpus.pairs[0].noisy == tmp_path / "noisy_testset_wav" / "p232_001.wav"
    with pytest.warns(AudioConversionWarning, match="48000 Hz, resampled to 16000 Hz"):
        item = corpus[1]
    assert item["clean"].shape == item["noisy"].shape == (1600,)
    assert item["clean"].dtype == torch.float32
    assert item["id"] == "p232_002" and item["speaker"] == "p232"
    assert "video" not in item
    corpus.check_lengths()


def test_voicebank_stereo_file_is_averaged_with_a_warning(tmp_path):
    write_wav(tmp_path / "clean_testset_wav" / "p257_001.wav", 1600, channels=2)
    write_wav(tmp_path / "noisy_testset_wav" / "p257_001.wav", 1600)
    with pytest.warns(AudioConversionWarning, match="2 channels, averaged to mono"):
        item = VoiceBankDemand(tmp_path)[0]
    assert item["clean"].shape == (1600,)


def test_voicebank_prefers_the_16k_copy_and_finds_the_one_training_set(tmp_path):
    voicebank(tmp_path)
    for kind in ("clean", "noisy"):
        write_wav(tmp_path / f"{kind}_testset_wav_16k" / "p232_001.wav", 1600)
        write_wav(tmp_path / f"{kind}_trainset_28spk_wav" / "p226_001.wav", 1600)
    corpus = VoiceBankDemand(tmp_path, split="test")
    assert len(corpus) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already 16 kHz: no conversion, no warning
        assert corpus[0]["noisy"].shape == (1600,)
    assert VoiceBankDemand(tmp_path, split="train").pairs[0].id == "p226_001"
    with pytest.raises(ZooInputError, match="has no clean_trainset_56spk_wav"):
        VoiceBankDemand(tmp_path, split="train56")
    with pytest.raises(ZooInputError, match="split 'dev'"):
        VoiceBankDemand(tmp_path, split="dev")


def test_voicebank_missing_partner_is_an_error_naming_the_file(tmp_path):
    voicebank(tmp_path)
    write_wav(tmp_path / "noisy_testset_wav" / "p232_003.wav", 4800, 48000)
    with pytest.raises(ZooInputError, match=r"p232_003.wav: has no clean partner; expected .*"
                                            r"clean_testset_wav/p232_003.wav"):
        VoiceBankDemand(tmp_path)
    (tmp_path / "noisy_testset_wav" / "p232_003.wav").unlink()
    write_wav(tmp_path / "clean_testset_wav" / "p232_004.wav", 4800, 48000)
    with pytest.raises(ZooInputError, match="p232_004.wav: has no noisy partner"):
        VoiceBankDemand(tmp_path)


def test_voicebank_length_mismatch_and_empty_folders_are_errors(tmp_path):
    write_wav(tmp_path / "clean_testset_wav" / "p232_001.wav", 1600)
    write_wav(tmp_path / "noisy_testset_wav" / "p232_001.wav", 1500)
    corpus = VoiceBankDemand(tmp_path)
    with pytest.raises(ZooInputError, match="p232_001.wav: 1500 samples but its clean reference"):
        corpus[0]
    with pytest.raises(ZooInputError, match="p232_001.wav: lasts"):
        corpus.check_lengths()
    with pytest.raises(IndexError):
        corpus[1]

    empty = tmp_path / "empty"
    (empty / "clean_testset_wav").mkdir(parents=True)
    (empty / "noisy_testset_wav").mkdir()
    with pytest.raises(ZooInputError, match="clean_testset_wav: holds no audio files"):
        VoiceBankDemand(empty)
    with pytest.raises(ZooInputError, match="nowhere: no such directory"):
        VoiceBankDemand(tmp_path / "nowhere")


# -------------------------------------------------------------------------------- WSJ0-QUT
def test_wsj0qut_paired_folders_accept_a_mixture_folder(tmp_path):
    for i, name in enumerate(["440/440c0201", "440/440c0202", "441/441c0201"]):
        write_wav(tmp_path / "test" / "clean" / f"{name}.wav", 800, seed=i)
        write_wav(tmp_path / "test" / "mixture" / f"{name}.wav", 800, seed=5 + i)
    corpus = WSJ0QUT(tmp_path, split="test")
    assert [p.id for p in corpus.pairs] == ["440/440c0201", "440/440c0202", "441/441c0201"]
    item = corpus[2]
    assert item["clean"].shape == item["noisy"].shape == (800,)
    assert not torch.equal(item["clean"], item["noisy"])

    write_wav(tmp_path / "test" / "mixture" / "442" / "442c0201.wav", 800)
    with pytest.raises(ZooInputError, match="442c0201.wav: has no clean partner"):
        WSJ0QUT(tmp_path, split="test")
    with pytest.raises(ZooInputError, match="train: no such directory"):
        WSJ0QUT(tmp_path, split="train")


def test_wsj0qut_dvae_se_layout_pairs_by_utterance_and_reads_noise_and_snr(tmp_path):
    clean_root = tmp_path / "wsj_clean" / "wsj0_si_et_05"
    for i, utt in enumerate(["440c0201", "440c0202", "441c0203"]):
        write_wav(clean_root / utt[:3] / f"{utt}.wav", 800, seed=i)
    noisy = tmp_path / "QUT_WSJ0" / "test"
    write_wav(noisy / "440c0201_CAFE-CAFE-2_0.wav", 800)
    write_wav(noisy / "441c0203_STREET-KG-2_-5.wav", 800)
    corpus = WSJ0QUT(tmp_path / "QUT_WSJ0", "test", clean_root=clean_root)
    assert len(corpus) == 2  # 440c0202 has no noisy version: allowed in this layout
    pair = corpus.pairs[1]
    assert (pair.noise, pair.snr_db, pair.speaker) == ("STREET-KG-2", -5.0, "441")
    assert pair.clean == clean_root / "441" / "441c0203.wav"
    assert corpus[0]["noise"] == "CAFE-CAFE-2"

    write_wav(noisy / "badname.wav", 800)
    with pytest.raises(ZooInputError, match="badname.wav: expected a name <utt>_<NOISE>_<snr>"):
        WSJ0QUT(tmp_path / "QUT_WSJ0", "test", clean_root=clean_root)
    (noisy / "badname.wav").unlink()
    write_wav(noisy / "450c0101_CAR-WINUPB-2_5.wav", 800)
    with pytest.raises(ZooInputError, match="450c0101_CAR-WINUPB-2_5.wav: has no clean partner"):
        WSJ0QUT(tmp_path / "QUT_WSJ0", "test", clean_root=clean_root)


# ------------------------------------------------------------------------------ NTCD-TIMIT
def ntcd(root, with_videos=True):
    for spk in ("01M", "09F"):
        for i, utt in enumerate(("sa1", "si1000")):
            write_wav(root / "Clean" / "volunteers" / spk / "straightcam" / f"{utt}.wav", 1600, seed=i)
            for noise, snr in (("Cafe", 5), ("White", -5)):
                write_wav(root / noise / str(snr) / "volunteers" / spk / "straightcam" / f"{utt}.wav",
                          1600, seed=3 + i)
            if with_videos:
                frames = np.full((3, 24, 32), 100 + 20 * i, dtype=np.uint8)
                write_video(root / "volunteers" / spk / "Clips" / "straightcam" / f"{utt}.mp4",
                            frames, fps=30)
    return root


def test_ntcd_timit_pairs_noisy_with_clean_and_video(tmp_path):
    corpus = NTCDTIMIT(ntcd(tmp_path))
    assert len(corpus) == 8
    assert corpus.pairs[0].id == "Cafe/5/01M/sa1"
    item = corpus[len(corpus) - 1]
    assert (item["noise"], item["snr_db"], item["speaker"]) == ("White", -5.0, "09F")
    assert item["clean"].shape == item["noisy"].shape == (1600,)
    assert item["video"].shape == (3, 24, 32) and item["video"].dtype == torch.uint8
    assert item["fps"] == pytest.approx(30.0)
    assert abs(float(item["video"].float().mean()) - 120) < 3

    subset = NTCDTIMIT(tmp_path, noise_types=["White"], snrs=[-5], speakers=["01M"])
    assert [p.id for p in subset.pairs] == ["White/-5/01M/sa1", "White/-5/01M/si1000"]
    with pytest.raises(ZooInputError, match=r"noise_types: \['Babble'\] not found"):
        NTCDTIMIT(tmp_path, noise_types=["Babble"])


def test_ntcd_timit_missing_video_or_clean_is_an_error(tmp_path):
    ntcd(tmp_path, with_videos=False)
    with pytest.raises(ZooInputError, match="sa1.wav: no video found.*Clips/straightcam/sa1.mp4"):
        NTCDTIMIT(tmp_path)
    corpus = NTCDTIMIT(tmp_path, with_video=False)
    assert "video" not in corpus[0]

    write_wav(tmp_path / "Cafe" / "5" / "volunteers" / "33F" / "straightcam" / "sx1.wav", 1600)
    with pytest.raises(ZooInputError, match=r"sx1.wav: has no clean partner; expected "
                                            r".*Clean/volunteers/33F/straightcam/sx1.wav"):
        NTCDTIMIT(tmp_path, with_video=False)


def test_ntcd_timit_wrong_layout_is_an_error(tmp_path):
    write_wav(tmp_path / "Clean" / "volunteers" / "01M" / "straightcam" / "sa1.wav")
    with pytest.raises(ZooInputError, match="holds no noisy folders"):
        NTCDTIMIT(tmp_path)
    with pytest.raises(ZooInputError, match="Clean/volunteers: no such directory"):
        NTCDTIMIT(tmp_path / "Clean")
