"""Foundation figures: corpus generation speed and size, STFT round-trip error, a corpus picture.

    python benchmarks/corpus.py            # writes benchmarks/results/corpus.md and corpus_overview.png

Generation speed is seconds of audio (with its mouth video) per second of CPU time of one
process with one thread (CPU time, so other work on the machine does not distort it).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=30, help="corpus built for the size figure")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio generated for the speed figure")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from zoo.__main__ import _corpus_figure
    from zoo.data.stft import STFT
    from zoo.data.synth import benchmark_speed, build_synth_corpus

    speed = benchmark_speed(seconds=args.seconds)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        corpus = build_synth_corpus(Path(tmp) / "c", n_utterances=args.utterances, seed=0,
                                    progress=False)
        build_s = time.perf_counter() - start
        audio_s = sum(u["n_samples"] for u in corpus.utterances) / 16000
        size = {kind: sum(p.stat().st_size for p in (Path(corpus.root) / kind).iterdir())
                for kind in ("wav", "video")}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        _corpus_figure(corpus, out / "corpus_overview.png")

    stft = STFT()
    errors = []
    for n in (16000, 48000, 160000):
        x = torch.randn(n)
        errors.append(float((stft.inverse(stft(x), n) - x).norm() / x.norm()))

    per_hour = {k: v / 1e6 / (audio_s / 3600) for k, v in size.items()}
    lines = [
        "# Foundation figures",
        "",
        f"Command: `python benchmarks/corpus.py` on {platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, Python {sys.version.split()[0]}.",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| synth generation speed, one thread (s of audio+video per CPU s) | {speed:.1f}x real time |",
        f"| corpus build, {args.utterances} utterances ({audio_s / 60:.1f} min), wall time | {build_s:.1f} s |",
        f"| size on disk per hour of audio: wav (16-bit PCM, 16 kHz) | {per_hour['wav']:.0f} MB |",
        f"| size on disk per hour of audio: mouth video (npz, 64x64 uint8, 30 fps) | {per_hour['video']:.0f} MB |",
        f"| STFT round trip, max relative error (1 s, 3 s, 10 s of noise) | {max(errors):.1e} |",
    ]
    (Path(args.out) / "corpus.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
