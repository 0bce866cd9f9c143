"""The shipped speech prior on held-out speakers: ELBO, and analysis-resynthesis quality.

    python benchmarks/prior.py        # -> benchmarks/results/prior.md

Analysis-resynthesis: each clean test utterance is encoded (posterior mean), decoded to the speech
variance sigma2, and resynthesised with magnitude sqrt(sigma2) and the clean phase; SI-SDR, PESQ-WB
and ESTOI against the clean signal say how much of the speech the prior can represent.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default=None)
    parser.add_argument("--utterances", type=int, default=30)
    parser.add_argument("--out", default=str(HERE / "results" / "prior.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from zoo.checkpoint import load_checkpoint
    from zoo.data.corpus import FrameDataset, synth_corpus
    from zoo.demo import shipped_prior_path
    from zoo.metrics import evaluate
    from zoo.train import evaluate as evaluate_elbo

    path = args.prior or shipped_prior_path()
    checkpoint = load_checkpoint(path, device="cpu")
    prior, encoder = checkpoint.model, checkpoint.guide
    corpus = synth_corpus(**checkpoint.extra.get("corpus", {"n_utterances": 200, "seed": 0}))
    elbo = evaluate_elbo(prior, encoder, FrameDataset(corpus, "test"))["elbo_per_frame"]
    stft = prior.stft
    scores = []
    for utt in corpus.split("test")[: args.utterances]:
        clean = corpus.load_audio(utt)
        spec = stft(clean)
        with torch.no_grad():
            loc, _ = encoder.encode(spec.abs().square().T)
            magnitude = prior.sigma2(loc).T.sqrt()
        resynthesis = stft.inverse(magnitude * torch.exp(1j * spec.angle()), clean.numel())
        scores.append(evaluate(clean, resynthesis, metrics=("si_sdr", "pesq_wb", "estoi")))
    mean = {k: sum(s[k] for s in scores) / len(scores) for k in scores[0]}
    history = checkpoint.extra.get("history", {})
    lines = [
        "# The shipped speech prior",
        "",
        f"Command: `python benchmarks/prior.py` ({platform.machine()}, torch {torch.__version__}). "
        f"Prior: `{Path(path).name}`, made by `{checkpoint.extra.get('command', '?')}`.",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| epochs trained | {len(history.get('train_elbo', []))} |",
        f"| best validation ELBO (nats per frame) | {max(history.get('val_elbo', [float('nan')])):.1f} |",
        f"| test-split ELBO, unseen speakers (nats per frame) | {elbo:.1f} |",
        f"| analysis-resynthesis SI-SDR (dB), {len(scores)} test utterances | {mean['si_sdr']:.2f} |",
        f"| analysis-resynthesis PESQ-WB | {mean['pesq_wb']:.2f} |",
        f"| analysis-resynthesis ESTOI | {mean['estoi']:.3f} |",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
