"""The zoo's command line: ``python -m zoo {demo,data,train,enhance,bench} ...``.

Run ``python -m zoo <command> --help`` for each command's options.
"""

from __future__ import annotations

import argparse
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


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m zoo",
        description="Pyro model zoo for audio-visual speech: data, training, unsupervised enhancement.",
    )
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

    for register in _EXTRA_COMMANDS:
        register(commands)
    return parser


_EXTRA_COMMANDS: list = []


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except ZooInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
