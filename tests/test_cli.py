"""The command line: every subcommand on tiny inputs, and errors as exit code 2 with a message."""

import numpy as np
import pytest
import soundfile as sf
import torch

from zoo.__main__ import main
from zoo.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "corpus"
    assert main(["data", "synth", "--out", str(out), "--utterances", "6", "--seed", "3",
                 "--quiet"]) == 0
    return out


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("demo", "data", "train", "enhance"):
        assert command in text


def test_data_synth_writes_a_corpus_and_its_picture(tiny_corpus, capsys):
    assert (tiny_corpus / "corpus.json").exists() and (tiny_corpus / "overview.png").exists()
    assert len(list((tiny_corpus / "wav").glob("*.wav"))) == 6
    assert main(["data", "synth", "--out", str(tiny_corpus), "--utterances", "6", "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_train_writes_a_loadable_prior(tiny_corpus, tmp_path):
    out = tmp_path / "prior.pt"
    assert main(["train", "vae", "--data", str(tiny_corpus), "--epochs", "2", "--hidden", "32",
                 "--latent-dim", "4", "--out", str(out), "--device", "cpu"]) == 0
    checkpoint = load_checkpoint(out, device="cpu")
    assert checkpoint.model.latent_dim == 4 and checkpoint.guide is not None
    assert checkpoint.extra["command"].startswith("python -m zoo train vae")


def test_enhance_a_file_and_a_folder(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    speechlike = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))
                  + 0.05 * rng.standard_normal(16000)).astype(np.float32)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", speechlike, 16000)
    sf.write(tmp_path / "in" / "b.wav", speechlike[::-1].copy(), 16000)
    assert main(["enhance", "--input", str(tmp_path / "in" / "a.wav"), "--output",
                 str(tmp_path / "a_enh.wav"), "--iterations", "3", "--device", "cpu"]) == 0
    assert sf.info(tmp_path / "a_enh.wav").frames == 16000
    assert main(["enhance", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                 "--iterations", "2", "--device", "cpu", "--save-noise"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.wav", "a_noise.wav", "b.wav", "b_noise.wav"]


def test_enhance_reports_bad_input(tmp_path, capsys):
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    assert main(["enhance", "--input", str(tmp_path / "broken.wav"), "--output",
                 str(tmp_path / "o.wav")]) == 2
    assert "broken.wav: cannot be read as audio" in capsys.readouterr().err


def test_demo_runs_in_quick_mode(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_QUICK", "1")
    assert main(["demo", "--out", str(tmp_path), "--iterations", "5", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "VAE-VEM" in text and "SI-SDR" in text
    for name in ("clean.wav", "noisy.wav", "vae_vem.wav", "spectrograms.png", "results.md"):
        assert (tmp_path / name).exists(), name
    assert torch.isfinite(torch.as_tensor(sf.read(tmp_path / "vae_vem.wav")[0])).all()
