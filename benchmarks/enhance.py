"""Enhancement benchmark: the VAE prior (VEM, mean-field VEM, MCEM) against the baselines.

    python benchmarks/enhance.py                 # full table -> benchmarks/results/enhance.md
    python benchmarks/enhance.py --quick         # a few mixtures, to check the script runs

The test set is written once (cached under the zoo cache folder) and reused: the test-split
speakers of the shipped prior's training corpus (never seen in training), each utterance mixed
with every noise type at every SNR. Scores are means over the set; time is the real-time factor
(seconds of computation per second of audio) on this machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
NOISES = ("babble", "cafe", "car", "street")
SNRS = (-5.0, 0.0, 5.0)


def build_test_set(n_utterances: int, noises, snrs, corpus_kwargs, seconds_max: float):
    """``[(clean, noisy, info)]``, written once to the cache and read back afterwards."""
    from zoo.config import cache_dir
    from zoo.data.audio import load_audio, save_audio
    from zoo.data.corpus import synth_corpus
    from zoo.data.noise import make_noise, mix_at_snr

    tag = (f"enhance-set-{corpus_kwargs['n_utterances']}-{corpus_kwargs['seed']}-"
           f"{n_utterances}-{'_'.join(noises)}-{'_'.join(f'{s:g}' for s in snrs)}")
    folder = cache_dir() / tag
    index_path = folder / "index.json"
    if not index_path.exists():
        corpus = synth_corpus(**corpus_kwargs)
        utterances = corpus.split("test")[:n_utterances]
        if len(utterances) < n_utterances:
            raise SystemExit(f"the test split has only {len(utterances)} utterances")
        items = []
        for u, utt in enumerate(utterances):
            clean = corpus.load_audio(utt)[: int(seconds_max * 16000)]
            save_audio(folder / f"{utt['id']}_clean.wav", clean)
            for k, noise_kind in enumerate(noises):
                noise = make_noise(noise_kind, clean.numel(), rng=1000 * u + k)
                for snr in snrs:
                    noisy, _ = mix_at_snr(clean, noise, snr)
                    name = f"{utt['id']}_{noise_kind}_{snr:+g}dB"
                    save_audio(folder / f"{name}.wav", noisy)
                    items.append({"id": name, "clean": f"{utt['id']}_clean.wav",
                                  "noisy": f"{name}.wav", "noise": noise_kind, "snr_db": snr,
                                  "speaker": utt["speaker"]})
        index_path.write_text(json.dumps(items, indent=1))
    items = json.loads(index_path.read_text())
    return [(load_audio(folder / it["clean"]), load_audio(folder / it["noisy"]), it)
            for it in items]


def _scores(args):
    from zoo.metrics import evaluate

    clean, estimate = args
    return evaluate(clean, estimate, metrics=("si_sdr", "pesq_wb", "estoi"))


def score_all(pairs, workers: int):
    if workers <= 1:
        return [_scores(p) for p in pairs]
    # spawn, not fork: a forked child of a process that ran torch's thread pool can deadlock
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_scores, pairs, chunksize=8))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 utterances, 2 noises, 2 SNRs")
    parser.add_argument("--utterances", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--mcem-fraction", type=float, default=0.125,
                        help="MCEM is slow: it runs on this share of the set (every k-th item); "
                             "VEM is also reported on exactly that subset for the comparison")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None)
    parser.add_argument("--workers", type=int, default=2, help="processes for the metrics")
    parser.add_argument("--prior", default=None, help="checkpoint (default: the shipped prior)")
    parser.add_argument("--out", default=str(HERE / "results" / "enhance.md"))
    args = parser.parse_args(argv)

    from zoo.checkpoint import load_checkpoint
    from zoo.demo import format_table, shipped_prior_path
    from zoo.enhance import enhance
    from zoo.enhance.baselines import (
        learn_speech_dictionary,
        nmf_enhance,
        spectral_subtraction,
        wiener_filter,
    )

    prior_path = args.prior or shipped_prior_path()
    checkpoint = load_checkpoint(prior_path, device=args.device)
    corpus_kwargs = checkpoint.extra.get("corpus", {"n_utterances": 200, "seed": 0})
    noises, snrs, n_utt = NOISES, SNRS, args.utterances
    if args.quick:
        noises, snrs, n_utt = NOISES[:2], SNRS[1:], 3
    test_set = build_test_set(n_utt, noises, snrs, corpus_kwargs, seconds_max=4.0)
    cleans = [c for c, _, _ in test_set]
    noisies = [n for _, n, _ in test_set]
    audio_seconds = sum(n.numel() for n in noisies) / 16000
    print(f"{len(test_set)} mixtures, {audio_seconds / 60:.1f} min of audio "
          f"({n_utt} utterances x {len(noises)} noises x {len(snrs)} SNRs)", flush=True)

    # NMF baseline: a speech dictionary from the prior's training speakers
    from zoo.data.corpus import synth_corpus

    train_corpus = synth_corpus(**corpus_kwargs)
    dictionary = learn_speech_dictionary(
        [train_corpus.load_audio(u) for u in train_corpus.split("train")[:40]], rank=32)

    estimates, seconds = {}, {}

    def run(name, fn, items=None):
        items = list(range(len(test_set))) if items is None else items
        start = time.perf_counter()
        estimates[name] = dict(zip(items, fn([noisies[i] for i in items])))
        seconds[name] = time.perf_counter() - start
        audio = sum(noisies[i].numel() for i in items) / 16000
        print(f"  {name}: {seconds[name]:.1f} s, RTF {seconds[name] / audio:.3f}", flush=True)

    def model_based(method, **kw):
        return lambda xs: [r.speech for r in enhance(
            xs, checkpoint.model, checkpoint.guide, method=method, iterations=args.iterations,
            batch_size=args.batch_size, device=args.device, **kw)]

    run("noisy", lambda xs: xs)
    run("spectral subtraction", lambda xs: [spectral_subtraction(x) for x in xs])
    run("Wiener (MMSE tracker)", lambda xs: [wiener_filter(x) for x in xs])
    run("NMF (speech dictionary)", lambda xs: [nmf_enhance(x, dictionary) for x in xs])
    run("VAE-VEM (encoder guide)", model_based("vem"))
    run("VAE-VEM (mean-field guide)", model_based("vem-meanfield"))
    step = max(1, round(1 / args.mcem_fraction))
    subset = list(range(0, len(test_set), step))
    run("VAE-MCEM", model_based("mcem"), items=subset)

    # single-utterance real-time factor of VEM (one 2-s utterance, 100 iterations)
    two_seconds = noisies[0][:32000]
    enhance(two_seconds, checkpoint.model, checkpoint.guide, iterations=5, device=args.device)
    start = time.perf_counter()
    enhance(two_seconds, checkpoint.model, checkpoint.guide, iterations=100, device=args.device)
    rtf_single = (time.perf_counter() - start) / 2.0

    print("scoring...", flush=True)
    rows, rows_subset = {}, {}
    for name, by_item in estimates.items():
        keys = sorted(by_item)
        scores = score_all([(cleans[i], by_item[i]) for i in keys], args.workers)
        mean = {m: sum(s[m] for s in scores) / len(scores) for m in scores[0]}
        audio = sum(noisies[i].numel() for i in keys) / 16000
        row = {**mean, "rtf": seconds[name] / audio}
        if name != "VAE-MCEM":
            rows[name] = row
        sub = [s for i, s in zip(keys, scores) if i in set(subset)]
        if name in ("noisy", "VAE-VEM (encoder guide)", "VAE-MCEM"):
            rows_subset[name] = {m: sum(s[m] for s in sub) / len(sub) for m in sub[0]}
            rows_subset[name]["rtf"] = row["rtf"]
        per_snr = {}
        for snr in snrs:
            vals = [s["si_sdr"] for i, s in zip(keys, scores) if test_set[i][2]["snr_db"] == snr]
            if vals:
                per_snr[snr] = sum(vals) / len(vals)
        row.update({f"si_sdr@{snr:+g}": v for snr, v in per_snr.items()})

    device = next(checkpoint.model.parameters()).device
    header = [
        "# Enhancement benchmark",
        "",
        f"Command: `python benchmarks/enhance.py{' --quick' if args.quick else ''}` "
        f"({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"device {device}, Python {sys.version.split()[0]}).",
        f"Prior: `{Path(prior_path).name}`; test set: {len(test_set)} mixtures = {n_utt} "
        f"utterances of held-out speakers x noises {', '.join(noises)} x SNR "
        f"{', '.join(f'{s:g}' for s in snrs)} dB ({audio_seconds / 60:.1f} min of audio); "
        f"{args.iterations} EM iterations; model-based methods in padded batches of "
        f"{args.batch_size}.",
        "RTF = seconds of computation per second of audio, whole set, batched.",
        "",
    ]
    snr_cols = tuple(f"si_sdr@{s:+g}" for s in snrs)
    table = format_table(rows, metrics=("si_sdr", "pesq_wb", "estoi", *snr_cols), extra=("rtf",))
    sub_table = format_table(rows_subset, metrics=("si_sdr", "pesq_wb", "estoi"), extra=("rtf",))
    text = "\n".join(header) + table + "\n\n" + (
        f"MCEM against VEM on the same subset ({len(subset)} mixtures, every {step}-th):\n\n"
    ) + sub_table + "\n\n" + (
        f"VAE-VEM on one 2-s utterance, {100} iterations: RTF {rtf_single:.3f}.\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
