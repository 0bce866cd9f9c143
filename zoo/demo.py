"""The zoo's main job in one call: enhance a noisy utterance of an unseen speaker.

``python -m zoo demo`` runs :func:`run_demo`: a test utterance of a speaker the shipped prior never
heard is mixed with cafe-like noise at 0 dB, enhanced with the VAE prior by variational EM and by
the classical baselines, and scored (SI-SDR, PESQ-WB, ESTOI). The wavs, a spectrogram figure and
the table are written to the output folder.
"""

from __future__ import annotations

import time
from pathlib import Path

from zoo.config import is_quick, quick

#: The demo's own small corpus: its seed differs from the shipped prior's training corpus, so every
#: speaker in it is new to the prior; the utterance comes from its test split.
DEMO_CORPUS = {"n_utterances": 30, "seed": 2026}


def shipped_prior_path(name: str = "speech_vae") -> Path:
    """Path of a prior shipped inside the package (``zoo/weights/<name>.pt``)."""
    from zoo.errors import ZooInputError

    path = Path(__file__).resolve().parent / "weights" / f"{name}.pt"
    if not path.exists():
        raise ZooInputError(f"{path}: the shipped prior '{name}' is missing from the package; "
                            "reinstall, or train it with the command in the README")
    return path


def format_table(rows: dict, metrics=("si_sdr", "pesq_wb", "estoi"), extra=("seconds",)) -> str:
    """Markdown table: one row per method, one column per metric."""
    labels = {"si_sdr": "SI-SDR (dB)", "pesq_wb": "PESQ-WB", "estoi": "ESTOI",
              "seconds": "time (s)", "pesq_nb": "PESQ-NB", "stoi": "STOI"}
    cols = [c for c in (*metrics, *extra) if any(c in r for r in rows.values())]
    lines = ["| method | " + " | ".join(labels.get(c, c) for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for name, row in rows.items():
        cells = [f"{row[c]:.2f}" if c in row else "" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_demo(out_dir="demo_out", prior_path=None, iterations: int | None = None,
             snr_db: float = 0.0, noise_kind: str = "cafe", seed: int = 0, device=None,
             verbose: bool = True) -> dict:
    """Run the demo and return ``{method: {"si_sdr": ..., "pesq_wb": ..., "estoi": ...,
    "seconds": ...}}``; writes ``<method>.wav``, ``spectrograms.png`` and ``results.md``."""
    import matplotlib.pyplot as plt

    from zoo import plots
    from zoo.checkpoint import load_checkpoint
    from zoo.data.audio import save_audio
    from zoo.data.corpus import synth_corpus
    from zoo.data.noise import make_noise, mix_at_snr
    from zoo.enhance import enhance
    from zoo.enhance.baselines import (
        learn_speech_dictionary,
        nmf_enhance,
        spectral_subtraction,
        wiener_filter,
    )
    from zoo.metrics import evaluate

    say = print if verbose else (lambda *a, **k: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    iterations = iterations or quick(100, 20)
    checkpoint = load_checkpoint(prior_path or shipped_prior_path(), device=device)

    corpus = synth_corpus(**DEMO_CORPUS)
    utt = corpus.split("test")[0]
    clean = corpus.load_audio(utt)
    noise = make_noise(noise_kind, clean.numel(), rng=seed)
    noisy, _ = mix_at_snr(clean, noise, snr_db)
    say(f"utterance {utt['id']} (speaker {utt['speaker']}, unseen by the prior), "
        f"{clean.numel() / 16000:.1f} s, {noise_kind} noise at {snr_db:g} dB SNR")

    train_clean = [corpus.load_audio(u) for u in corpus.split("train")[:quick(10, 4)]]
    estimates = {"noisy": (noisy, 0.0)}

    def timed(name, fn):
        start = time.perf_counter()
        estimates[name] = (fn(), time.perf_counter() - start)

    timed("spectral subtraction", lambda: spectral_subtraction(noisy))
    timed("Wiener (MMSE noise tracker)", lambda: wiener_filter(noisy))
    dictionary = learn_speech_dictionary(train_clean, rank=32, n_iter=quick(100, 30))
    timed("NMF (speech dictionary)", lambda: nmf_enhance(noisy, dictionary))
    timed(f"VAE-VEM ({iterations} it.)",
          lambda: enhance(noisy, checkpoint.model, checkpoint.guide, method="vem",
                          iterations=iterations, seed=seed, device=device).speech)

    rows = {}
    for name, (estimate, seconds) in estimates.items():
        scores = evaluate(clean, estimate, metrics=("si_sdr", "pesq_wb", "estoi"))
        rows[name] = {**scores, "seconds": seconds}
        slug = name.split(" (")[0].lower().replace(" ", "_").replace("-", "_")
        save_audio(out / f"{slug}.wav", estimate)
    save_audio(out / "clean.wav", clean)
    table = format_table(rows)
    header = (f"Demo: {utt['id']} (unseen speaker), {noise_kind} noise at {snr_db:g} dB, "
              f"prior {Path(checkpoint.path).name}{' (quick mode)' if is_quick() else ''}\n\n")
    (out / "results.md").write_text(header + table + "\n")
    say("\n" + table)

    fig = plots.spectrograms({"clean": clean, "noisy": noisy,
                              **{k: v for k, (v, _) in estimates.items() if k != "noisy"}},
                             ncols=3)
    fig.savefig(out / "spectrograms.png", dpi=100)
    plt.close(fig)
    say(f"\nwrote {out}/: clean.wav, noisy.wav, one wav per method, spectrograms.png, results.md")
    return rows

