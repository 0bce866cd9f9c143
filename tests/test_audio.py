import numpy as np
import pytest
import soundfile as sf
import torch

from zoo.data.audio import (
    AudioConversionWarning,
    audio_info,
    check_waveform,
    list_audio_files,
    load_audio,
    peak_normalize,
    save_audio,
    trim_silence,
)
from zoo.errors import ZooInputError


def tone(seconds=0.5, rate=16000, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_wav_and_flac_round_trip(tmp_path):
    x = torch.from_numpy(tone())
    for suffix in ("wav", "flac"):
        path = save_audio(tmp_path / f"a.{suffix}", x, subtype="FLOAT" if suffix == "wav" else "PCM_24")
        y = load_audio(path)
        assert y.dtype == torch.float32 and y.shape == x.shape
        assert torch.allclose(x, y, atol=1e-6 if suffix == "wav" else 1e-6 * 20)


def test_other_rate_is_resampled_with_a_warning(tmp_path):
    sf.write(tmp_path / "a.wav", tone(rate=48000), 48000)
    with pytest.warns(AudioConversionWarning, match="48000 Hz, resampled to 16000 Hz"):
        y = load_audio(tmp_path / "a.wav")
    assert y.shape == (8000,)
    assert audio_info(tmp_path / "a.wav")["sample_rate"] == 48000
    assert load_audio(tmp_path / "a.wav", sample_rate=None).shape == (24000,)


def test_stereo_is_mixed_with_a_warning_or_refused(tmp_path):
    stereo = np.stack([tone(), 0.5 * tone()], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 16000)
    with pytest.warns(AudioConversionWarning, match="2 channels, averaged"):
        y = load_audio(tmp_path / "s.wav")
    assert np.allclose(y.numpy(), 0.75 * tone(), atol=1e-4)
    with pytest.raises(ZooInputError, match="s.wav: has 2 channels, expected mono"):
        load_audio(tmp_path / "s.wav", mono="error")


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(ZooInputError, match="missing.wav: no such audio file"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....not a wave file at all")
    with pytest.raises(ZooInputError, match="corrupt.wav: cannot be read as audio"):
        load_audio(tmp_path / "corrupt.wav")
    sf.write(tmp_path / "zeros.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(ZooInputError, match="zeros.wav: is all zeros"):
        load_audio(tmp_path / "zeros.wav")
    sf.write(tmp_path / "short.wav", tone(0.01), 16000)
    with pytest.raises(ZooInputError, match="short.wav: 160 samples is too short"):
        load_audio(tmp_path / "short.wav", min_seconds=0.064)
    nan = tone()
    nan[10] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    with pytest.raises(ZooInputError, match="nan.wav: contains 1 NaN/Inf"):
        load_audio(tmp_path / "nan.wav")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ZooInputError, match="empty_dir: holds no audio files"):
        list_audio_files(tmp_path / "empty_dir")


def test_check_waveform_shapes():
    with pytest.raises(ZooInputError, match="mono waveform"):
        check_waveform(torch.zeros(2, 100), "x")
    assert check_waveform(torch.zeros(10), "x", allow_silence=True).shape == (10,)


def test_pcm_save_refuses_to_clip(tmp_path):
    with pytest.raises(ZooInputError, match="would clip"):
        save_audio(tmp_path / "loud.wav", torch.tensor([0.0, 1.5, -0.2]), subtype="PCM_16")


def test_peak_normalize_and_trim():
    x = torch.from_numpy(tone())
    assert abs(float(peak_normalize(x, 0.9).abs().max()) - 0.9) < 1e-6
    padded = torch.cat([torch.zeros(8000), x, torch.zeros(8000)])
    trimmed = trim_silence(padded)
    assert 8000 <= trimmed.numel() <= 8000 + 2 * 320 + 320
    with pytest.raises(ZooInputError):
        peak_normalize(torch.zeros(5))
