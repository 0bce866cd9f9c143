"""The zoo's command line: ``python -m zoo {demo,data,train,enhance,bench} ...``.

Run ``python -m zoo <command> --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from zoo.errors import ZooInputError


# --------------------------------------------------------------------------- data
def cmd_data_synth(args) -> None:
    from zoo.data.synth import build_synth_corpus

    start = time.perf_counter()
    corpus = build_synth_corpus(args.out, n_utterances=args.utterances, n_speakers=args.speakers,
                                seed=args.seed, progress=not args.quiet)
    seconds = time.perf_counter() - start
    _describe_corpus(corpus, seconds)
    if not args.no_figure:
        path = _corpus_figure(corpus, Path(args.out) / "overview.png")
        print(f"figure: {path}")


def _describe_corpus(corpus, build_seconds: float | None = None) -> None:
    audio_s = sum(u["n_samples"] for u in corpus.utterances) / corpus.info["sample_rate"]
    size = sum(p.stat().st_size for p in Path(corpus.root).rglob("*") if p.is_file())
    print(f"corpus: {corpus.root}")
    print(f"  {len(corpus)} utterances, {audio_s / 60:.1f} min of audio, "
          f"{len(corpus.speakers)} speakers, {size / 1e6:.1f} MB on disk "
          f"({size / 1e6 / max(audio_s / 3600, 1e-9):.0f} MB per hour)")
    for split in ("train", "val", "test"):
        utts = corpus.split(split)
        speakers = sorted({u["speaker"] for u in utts})
        print(f"  {split:5s}: {len(utts):4d} utterances, speakers {', '.join(speakers)}")
    if build_seconds is not None:
        print(f"  built in {build_seconds:.1f} s ({audio_s / build_seconds:.1f} s of audio per s)")


def _corpus_figure(corpus, path: Path) -> Path:
    """A few mouth frames above the spectrogram of the same utterance."""
    import matplotlib.pyplot as plt

    from zoo import plots

    utt = corpus.split("train")[0]
    audio, frames = corpus.load_audio(utt), corpus.load_video(utt)
    fig = plt.figure(figsize=(10, 4.2))
    n = 10
    grid = fig.add_gridspec(2, n, height_ratios=[1, 2])
    axes = [fig.add_subplot(grid[0, i]) for i in range(n)]
    plots.mouth_strip(frames, n=n, fps=utt["fps"], axes=axes)
    ax = fig.add_subplot(grid[1, :])
    plots.spectrogram(audio, ax=ax, title=f"{utt['id']} ({utt['speaker']}, {utt['style']})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- train
def cmd_train(args) -> None:
    import torch

    from zoo.checkpoint import save
    from zoo.data.stft import STFT
    from zoo.train import fit
    from zoo.vae import SpeechVAE

    train_data, val_data, source, corpus_kwargs = _frame_data(args.data, args.utterances,
                                                              args.seed)
    print(f"training frames: {len(train_data)} (train), {len(val_data)} (val) from {source}")
    torch.manual_seed(args.seed)
    model = SpeechVAE(hidden=tuple(args.hidden), latent_dim=args.latent_dim, stft=STFT())
    guide = model.default_guide()
    history = fit(model, guide, train_data, val_data, epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, kl_warmup_epochs=args.kl_warmup,
                  patience=args.patience, checkpoint=args.out, resume=args.resume,
                  seed=args.seed, device=args.device)
    # the checkpoint holds the best model; add how it was made, for whoever loads it
    save(args.out, model, guide, extra={
        "data": source, "corpus": corpus_kwargs, "command": "python -m zoo " + shlex.join(args.argv),
        "history": {"train_elbo": history.train_elbo, "val_elbo": history.val_elbo},
    })
    best = max(history.val_elbo) if history.val_elbo else float("nan")
    print(f"saved {args.out}: best validation ELBO {best:.2f} per frame "
          f"after {len(history.train_elbo)} epochs ({sum(history.epoch_seconds):.0f} s)")


def _frame_data(data: str, n_utterances: int, seed: int):
    """Train/val STFT-frame datasets from the built-in corpus or a folder."""
    from zoo.data.corpus import Corpus, FrameDataset, synth_corpus

    if data == "synth":
        corpus_kwargs = {"n_utterances": n_utterances, "seed": seed}
        corpus = synth_corpus(**corpus_kwargs)
        source = f"synth corpus ({n_utterances} utterances, seed {seed})"
    else:
        corpus, corpus_kwargs = Corpus(data), None
        source = str(data)
    return FrameDataset(corpus, "train"), FrameDataset(corpus, "val"), source, corpus_kwargs


# --------------------------------------------------------------------------- enhance
def cmd_enhance(args) -> None:
    from zoo.checkpoint import load_checkpoint
    from zoo.data.audio import list_audio_files, load_audio, save_audio
    from zoo.demo import shipped_prior_path
    from zoo.enhance import enhance

    checkpoint = load_checkpoint(args.prior or shipped_prior_path(), device=args.device)
    source = Path(args.input)
    inputs = list_audio_files(source) if source.is_dir() else [source]
    output = Path(args.output)
    single_file = not source.is_dir() and output.suffix.lower() in (".wav", ".flac")
    from tqdm.auto import tqdm

    for path in tqdm(inputs, desc="files", unit="file", disable=len(inputs) == 1):
        noisy = load_audio(path, sample_rate=checkpoint.model.stft.sample_rate)
        result = enhance([noisy], checkpoint.model, checkpoint.guide, method=args.method,
                         iterations=args.iterations, noise_rank=args.noise_rank,
                         device=args.device, seed=args.seed, progress=len(inputs) == 1,
                         names=[str(path)])[0]
        if single_file:
            target = output
        else:
            relative = path.relative_to(source) if source.is_dir() else Path(path.name)
            target = output / relative.with_suffix(".wav")
        save_audio(target, result.speech)
        if args.save_noise:
            save_audio(target.with_name(target.stem + "_noise.wav"), result.noise)
    print(f"enhanced {len(inputs)} file(s) -> {output}")


# --------------------------------------------------------------------------- demo
def cmd_demo(args) -> None:
    from zoo.demo import run_demo

    start = time.perf_counter()
    run_demo(args.out, prior_path=args.prior, iterations=args.iterations, snr_db=args.snr,
             noise_kind=args.noise, device=args.device)
    print(f"demo took {time.perf_counter() - start:.0f} s")


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m zoo",
        description="Pyro model zoo for audio-visual speech: data, training, unsupervised enhancement.",
    )
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: the zoo's networks are small, and two threads "
             "competing with other work on a small machine run many times slower than one)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="build the built-in corpora")
    data_kinds = data.add_subparsers(dest="kind", required=True, metavar="KIND")
    synth = data_kinds.add_parser("synth", help="synthetic audio-visual speech corpus (wav + mouth video)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--utterances", type=int, default=200)
    synth.add_argument("--speakers", type=int, default=None, help="default: about one per 10 utterances")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--no-figure", action="store_true", help="skip overview.png")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=cmd_data_synth)

    train = commands.add_parser("train", help="train a speech prior")
    train.add_argument("model", choices=["vae"], help="model family")
    train.add_argument("--data", default="synth",
                       help="'synth' (built-in corpus) or a corpus folder (corpus.json layout)")
    train.add_argument("--utterances", type=int, default=200, help="size of the synth corpus")
    train.add_argument("--epochs", type=int, default=100)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--kl-warmup", type=int, default=0, help="epochs of KL warm-up")
    train.add_argument("--patience", type=int, default=10)
    train.add_argument("--hidden", type=int, nargs="+", default=[128])
    train.add_argument("--latent-dim", type=int, default=16)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default=None)
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument("--out", required=True, help="checkpoint file (.pt)")
    train.set_defaults(func=cmd_train)

    enh = commands.add_parser("enhance", help="enhance noisy recordings with a speech prior")
    enh.add_argument("--prior", default=None, help="checkpoint (default: the shipped prior)")
    enh.add_argument("--input", required=True, help="a noisy audio file or a folder of them")
    enh.add_argument("--output", required=True, help="output .wav file, or folder")
    enh.add_argument("--method", default="vem", choices=["vem", "vem-meanfield", "mcem"])
    enh.add_argument("--iterations", type=int, default=100)
    enh.add_argument("--noise-rank", type=int, default=8)
    enh.add_argument("--seed", type=int, default=0)
    enh.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    enh.add_argument("--save-noise", action="store_true", help="also write the noise estimate")
    enh.set_defaults(func=cmd_enhance)

    demo = commands.add_parser("demo", help="the main job: enhance a noisy utterance, compare")
    demo.add_argument("--out", default="demo_out", help="output folder")
    demo.add_argument("--prior", default=None, help="checkpoint (default: the shipped prior)")
    demo.add_argument("--iterations", type=int, default=None)
    demo.add_argument("--snr", type=float, default=0.0)
    demo.add_argument("--noise", default="cafe")
    demo.add_argument("--device", default=None)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # recorded in checkpoints, so a shipped file says how it was made
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        args.func(args)
    except ZooInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
