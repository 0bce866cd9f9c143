"""The zoo's on-disk corpus format, its reader, the disk cache, and the torch Datasets.

Every corpus of the zoo (the built-in synthetic one, and the real ones once converted) is a
folder::

    root/corpus.json        {"name", "format_version": 1, "seed", "sample_rate": 16000,
                             "video_fps", "mouth_size": [H, W], "generator": {...},
                             "splits": {"train": [speakers], "val": [...], "test": [...]}}
    root/utterances.jsonl   one JSON object per line: {"id", "speaker", "style", "split",
                             "wav": "wav/<id>.wav", "video": "video/<id>.npz" (or null),
                             "fps", "n_samples", "phones": [[label, start_s, end_s], ...], ...}
    root/wav/<id>.wav       mono, at sample_rate
    root/video/<id>.npz     "frames": uint8 (n_video_frames, H, W) grayscale mouth frames
                            (lossless), optionally "articulation": float32 (n_video_frames, 4)

Splits are speaker-disjoint. :class:`Corpus` reads the folder and checks what it loads; the
Datasets turn a split into what the models consume, items being dicts keyed by the models'
argument names:

* :class:`UtteranceDataset`: whole utterances, ``{"audio", "video", "meta"}``;
* :class:`FrameDataset`: every STFT frame of the split, ``{"x"}`` (+ ``{"v"}``: the mouth
  frame aligned to that STFT frame), precomputed, also as full tensors ``.x`` and ``.v``;
* :class:`SequenceDataset`: fixed-length runs of consecutive STFT frames for dynamical models.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.audio import audio_info, load_audio
from zoo.data.stft import STFT
from zoo.data.video import align_to_stft
from zoo.errors import ZooInputError

FORMAT_VERSION = 1
_REQUIRED_INFO = ("name", "format_version", "sample_rate", "splits")
_REQUIRED_UTTERANCE = ("id", "speaker", "split", "wav", "n_samples")


class Corpus:
    """A corpus folder in the zoo's format (see the module docstring).

    Args:
        root: the folder holding ``corpus.json`` and ``utterances.jsonl``.
        max_av_mismatch_s: largest allowed difference between a video's and its audio's
            durations (checked by :func:`zoo.data.video.align_to_stft`'s rule).

    Attributes:
        root: the folder.
        info: the ``corpus.json`` dict.
        utterances: one dict per utterance, in file order.
    """

    def __init__(self, root: str | os.PathLike, max_av_mismatch_s: float = 0.5):
        self.root = Path(root)
        self.max_av_mismatch_s = max_av_mismatch_s
        if not self.root.is_dir():
            raise ZooInputError(f"{self.root}: no such corpus folder")
        info_path = self.root / "corpus.json"
        if not info_path.is_file():
            raise ZooInputError(
                f"{info_path}: missing, so {self.root} is not a zoo corpus (expected corpus.json "
                "and utterances.jsonl; build one with zoo.data.synth.build_synth_corpus or "
                "`python -m zoo data`)"
            )
        try:
            self.info = json.loads(info_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ZooInputError(f"{info_path}: is not valid JSON ({err})") from err
        missing = [k for k in _REQUIRED_INFO if k not in self.info]
        if missing:
            raise ZooInputError(f"{info_path}: lacks the keys {missing}")
        if self.info["format_version"] != FORMAT_VERSION:
            raise ZooInputError(
                f"{info_path}: format_version {self.info['format_version']}, this zoo reads "
                f"version {FORMAT_VERSION}; rebuild the corpus"
            )
        self.utterances = self._read_index(self.root / "utterances.jsonl")
        self._by_id = {u["id"]: u for u in self.utterances}

    @staticmethod
    def _read_index(path: Path) -> list[dict]:
        if not path.is_file():
            raise ZooInputError(f"{path}: missing; expected one JSON object per utterance")
        utterances, seen = [], set()
        with open(path) as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    utt = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ZooInputError(f"{path}, line {number}: not valid JSON ({err})") from err
                missing = [k for k in _REQUIRED_UTTERANCE if k not in utt]
                if missing:
                    raise ZooInputError(f"{path}, line {number}: lacks the keys {missing}")
                if utt["id"] in seen:
                    raise ZooInputError(f"{path}, line {number}: duplicate id {utt['id']!r}")
                seen.add(utt["id"])
                utterances.append(utt)
        if not utterances:
            raise ZooInputError(f"{path}: lists no utterances")
        return utterances

    # ------------------------------------------------------------------ listing
    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.utterances)

    def __getitem__(self, key: int | str) -> dict:
        """Utterance by position or by id."""
        if isinstance(key, str):
            return self.utterance(key)
        return self.utterances[key]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}: {len(self.split(name))}" for name in self.splits)
        return (f"Corpus({str(self.root)!r}, {len(self)} utterances, {len(self.speakers)} "
                f"speakers; {sizes})")

    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def sample_rate(self) -> int:
        return int(self.info["sample_rate"])

    @property
    def speakers(self) -> list[str]:
        """Sorted speaker ids."""
        return sorted({u["speaker"] for u in self.utterances})

    @property
    def splits(self) -> list[str]:
        """Split names, as listed in ``corpus.json``."""
        return list(self.info["splits"])

    def split(self, name: str) -> list[dict]:
        """The utterances of split ``name`` (``train``, ``val``, ``test``), in file order."""
        if name not in self.info["splits"]:
            raise ZooInputError(f"split: {name!r} is not a split of {self.root} "
                                f"(it has {self.splits})")
        return [u for u in self.utterances if u["split"] == name]

    def utterance(self, utt: dict | str) -> dict:
        """The utterance dict of ``utt`` (an id or a dict of this corpus)."""
        if isinstance(utt, dict):
            return utt
        try:
            return self._by_id[utt]
        except KeyError:
            raise ZooInputError(f"utterance {utt!r} is not in {self.root}") from None

    # ------------------------------------------------------------------ loading
    def load_audio(self, utt: dict | str) -> torch.Tensor:
        """Waveform ``(n_samples,)`` float32 of ``utt`` at the corpus sample rate.

        A missing or unreadable file, or one whose rate or length differs from the index, is a
        ZooInputError naming the file.
        """
        utt = self.utterance(utt)
        path = self.root / utt["wav"]
        rate = audio_info(path)["sample_rate"] if path.is_file() else None
        if rate is not None and rate != self.sample_rate:
            raise ZooInputError(f"{path}: sample rate {rate} Hz, the corpus says "
                                f"{self.sample_rate} Hz")
        wave = load_audio(path, sample_rate=self.sample_rate, mono="error")
        if wave.numel() != utt["n_samples"]:
            raise ZooInputError(f"{path}: has {wave.numel()} samples, utterances.jsonl says "
                                f"{utt['n_samples']}")
        return wave

    def _load_npz(self, utt: dict, key: str) -> tuple[np.ndarray, Path]:
        if not utt.get("video"):
            raise ZooInputError(f"utterance {utt['id']!r} of {self.root} has no video")
        path = self.root / utt["video"]
        if not path.is_file():
            raise ZooInputError(f"{path}: no such video file")
        try:
            with np.load(path, allow_pickle=False) as npz:
                if key not in npz.files:
                    raise ZooInputError(f"{path}: holds no {key!r} array (it has {npz.files})")
                return npz[key], path
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise ZooInputError(f"{path}: cannot be read as an npz archive ({err})") from err

    def load_video(self, utt: dict | str) -> np.ndarray:
        """Mouth frames ``(n_video_frames, H, W)`` uint8 of ``utt``.

        A missing or corrupt file, frames of another type or shape, or a video whose duration
        does not match the audio's (the rule of :func:`zoo.data.video.align_to_stft`) is a
        ZooInputError naming the file.
        """
        utt = self.utterance(utt)
        frames, path = self._load_npz(utt, "frames")
        if frames.dtype != np.uint8 or frames.ndim != 3:
            raise ZooInputError(f"{path}: frames are {frames.dtype} {frames.shape}, expected "
                                "uint8 (n_frames, height, width)")
        self._check_video_length(frames.shape[0], utt, path)
        return frames

    def load_articulation(self, utt: dict | str) -> np.ndarray:
        """Ground-truth articulation ``(n_video_frames, 4)`` (jaw, spread, round, closure) of a
        synthetic utterance (the npz's ``articulation`` array)."""
        utt = self.utterance(utt)
        art, path = self._load_npz(utt, "articulation")
        self._check_video_length(art.shape[0], utt, path)
        return art

    def video_fps(self, utt: dict | str) -> float:
        """Frame rate of ``utt``'s video (its own ``fps``, else the corpus's ``video_fps``)."""
        utt = self.utterance(utt)
        fps = utt.get("fps", self.info.get("video_fps"))
        if not fps:
            raise ZooInputError(f"utterance {utt['id']!r} of {self.root}: no video frame rate "
                                "(fps) in utterances.jsonl nor video_fps in corpus.json")
        return float(fps)

    def _check_video_length(self, n_video_frames: int, utt: dict, path: Path) -> None:
        # the zoo has one rule for "video and audio last the same": align_to_stft's check
        stft = STFT(sample_rate=self.sample_rate)
        align_to_stft(np.zeros(n_video_frames, np.float32), self.video_fps(utt),
                      stft.n_frames(utt["n_samples"]), stft.frame_rate, name=str(path),
                      max_mismatch_s=self.max_av_mismatch_s)


# ====================================================================== disk cache
def synth_corpus(n_utterances: int = 200, seed: int = 0, root: str | os.PathLike | None = None,
                 progress: bool = True) -> Corpus:
    """The built-in synthetic corpus, built once and cached on disk.

    Lives in ``<root>/synth-<n_utterances>-<seed>-v<SYNTH_VERSION>`` (``root`` defaults to
    :func:`zoo.config.cache_dir`); built into a temporary folder renamed at the end, so an
    interrupted build is never taken for a complete one.
    """
    from zoo.config import cache_dir
    from zoo.data.synth import SYNTH_VERSION, build_synth_corpus

    parent = Path(root) if root is not None else cache_dir()
    final = parent / f"synth-{n_utterances}-{seed}-v{SYNTH_VERSION}"
    if (final / "corpus.json").is_file():
        return Corpus(final)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=parent))
    try:
        build_synth_corpus(tmp, n_utterances=n_utterances, seed=seed, progress=progress)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "corpus.json").is_file():
                raise
            shutil.rmtree(tmp)  # another process finished the same corpus first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Corpus(final)


# ====================================================================== features
def _check_mouth_size(mouth_size) -> tuple[int, int]:
    try:
        height, width = (int(s) for s in mouth_size)
    except (TypeError, ValueError):
        raise ZooInputError(f"mouth_size: expected (height, width), got {mouth_size!r}") from None
    if height < 1 or width < 1:
        raise ZooInputError(f"mouth_size: expected positive sizes, got {mouth_size!r}")
    return height, width


def utterance_features(corpus: Corpus, utt: dict | str, stft: STFT | None = None,
                       video: bool = False, mouth_size=(32, 32)) -> dict:
    """STFT features of one utterance, and its mouth frames aligned to them.

    Returns ``{"x": (n_frames, n_freq) float32 power spectrogram}`` and, with ``video``,
    ``{"v": (n_frames, H * W) float32 in [0, 1]}``: every video frame resized to ``mouth_size =
    (H, W)`` with ``cv2.resize`` (area averaging), then interpolated to the STFT frame times by
    :func:`zoo.data.video.align_to_stft`.
    """
    import cv2

    stft = stft or STFT()
    utt = corpus.utterance(utt)
    if stft.sample_rate != corpus.sample_rate:
        raise ZooInputError(f"stft: sample_rate {stft.sample_rate} Hz, the corpus {corpus.root} "
                            f"is at {corpus.sample_rate} Hz")
    x = stft.power(corpus.load_audio(utt)).T.contiguous()
    out = {"x": x}
    if video:
        height, width = _check_mouth_size(mouth_size)
        frames = corpus.load_video(utt)
        small = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA)
                          for f in frames])
        aligned = align_to_stft(small, corpus.video_fps(utt), x.shape[0], stft.frame_rate,
                                name=str(corpus.root / utt["video"]),
                                max_mismatch_s=corpus.max_av_mismatch_s)
        out["v"] = (aligned.reshape(x.shape[0], height * width) / 255.0).float()
    return out


def _split_or_error(corpus: Corpus, split: str) -> list[dict]:
    utts = corpus.split(split)
    if not utts:
        raise ZooInputError(f"split {split!r} of {corpus.root} holds no utterances")
    return utts


# ====================================================================== datasets
class UtteranceDataset(Dataset):
    """Whole utterances of a split, loaded on access.

    Item ``i``: ``{"audio": (n_samples,) float32, "video": (n_video_frames, H, W) float32 in
    [0, 1] (when the utterance has video), "meta": the utterance dict}``. Lengths differ between
    items: iterate one at a time (``DataLoader(..., batch_size=None)``) or pad in a collate_fn.
    """

    def __init__(self, corpus: Corpus, split: str):
        self.corpus = corpus
        self.split = split
        self.utterances = _split_or_error(corpus, split)

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> dict:
        utt = self.utterances[index]
        item = {"audio": self.corpus.load_audio(utt)}
        if utt.get("video"):
            item["video"] = torch.from_numpy(self.corpus.load_video(utt)).float() / 255.0
        item["meta"] = utt
        return item


class FrameDataset(Dataset):
    """Every STFT frame of a split, precomputed once (for frame-wise models: GMM, PPCA, VAE).

    Args:
        corpus, split: the data.
        stft: analysis settings (default :class:`zoo.data.stft.STFT`).
        video: also give each frame its mouth image (``"v"``).
        mouth_size: ``(H, W)`` the mouth frames are resized to.
        min_power_db: if given (e.g. ``-50``), frames whose total power is more than
            ``-min_power_db`` dB below the loudest frame of their utterance are left out (silent
            frames); off by default, so every frame is kept. ``.n_dropped`` counts them.

    Item ``i``: ``{"x": (n_freq,) float32 power}`` (+ ``{"v": (H * W,) float32 in [0, 1]}``).
    Attributes ``.x`` ``(N, n_freq)`` and ``.v`` ``(N, H * W)`` (or ``None``) hold all frames for
    full-batch training; ``.utterance_index`` and ``.frame_index`` ``(N,)`` say where each frame
    comes from (position in ``.utterances`` and STFT frame number).
    """

    def __init__(self, corpus: Corpus, split: str, stft: STFT | None = None, video: bool = False,
                 mouth_size=(32, 32), min_power_db: float | None = None):
        if min_power_db is not None and min_power_db >= 0:
            raise ZooInputError(f"min_power_db: expected a negative level in dB relative to the "
                                f"loudest frame (e.g. -50), got {min_power_db}")
        self.corpus, self.split, self.video = corpus, split, video
        self.stft = stft or STFT()
        self.mouth_size = _check_mouth_size(mouth_size)
        self.utterances = _split_or_error(corpus, split)
        xs, vs, utt_index, frame_index = [], [], [], []
        self.n_dropped = 0
        for i, utt in enumerate(self.utterances):
            feats = utterance_features(corpus, utt, self.stft, video, self.mouth_size)
            keep = torch.ones(feats["x"].shape[0], dtype=torch.bool)
            if min_power_db is not None:
                level = 10 * torch.log10(feats["x"].sum(1) + 1e-30)
                keep = level >= level.max() + min_power_db
                self.n_dropped += int((~keep).sum())
            xs.append(feats["x"][keep])
            if video:
                vs.append(feats["v"][keep])
            frame_index.append(torch.nonzero(keep).flatten())
            utt_index.append(torch.full((int(keep.sum()),), i, dtype=torch.long))
        self.x = torch.cat(xs)
        self.v = torch.cat(vs) if video else None
        self.utterance_index = torch.cat(utt_index)
        self.frame_index = torch.cat(frame_index)

    @property
    def n_freq(self) -> int:
        return self.x.shape[1]

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> dict:
        item = {"x": self.x[index]}
        if self.v is not None:
            item["v"] = self.v[index]
        return item


class SequenceDataset(Dataset):
    """Fixed-length runs of consecutive STFT frames (for dynamical models: DVAE, DKF, ...).

    Each utterance is cut into chunks of ``seq_len`` frames starting every ``hop`` frames
    (default ``seq_len``: no overlap); when that leaves a tail, one more chunk ends at the
    utterance's last frame, so every frame is in some chunk. Utterances shorter than ``seq_len``
    give no chunk (a warning says how many); :meth:`whole_utterances` still has them.

    Item ``i``: ``{"x": (seq_len, n_freq)}`` (+ ``{"v": (seq_len, H * W)}`` with ``video``).
    ``.chunks`` lists ``(utterance position, first frame)`` of each item.
    """

    def __init__(self, corpus: Corpus, split: str, seq_len: int = 50, stft: STFT | None = None,
                 video: bool = False, mouth_size=(32, 32), hop: int | None = None):
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ZooInputError(f"seq_len: expected a positive integer, got {seq_len!r}")
        hop = seq_len if hop is None else hop
        if not isinstance(hop, int) or hop < 1:
            raise ZooInputError(f"hop: expected a positive integer, got {hop!r}")
        self.corpus, self.split, self.video = corpus, split, video
        self.seq_len, self.hop = seq_len, hop
        self.stft = stft or STFT()
        self.mouth_size = _check_mouth_size(mouth_size)
        self.utterances = _split_or_error(corpus, split)
        self._features = [utterance_features(corpus, u, self.stft, video, self.mouth_size)
                          for u in self.utterances]
        self.chunks: list[tuple[int, int]] = []
        too_short = []
        for i, feats in enumerate(self._features):
            n = feats["x"].shape[0]
            if n < seq_len:
                too_short.append(self.utterances[i]["id"])
                continue
            starts = list(range(0, n - seq_len + 1, hop))
            if starts[-1] + seq_len < n:
                starts.append(n - seq_len)
            self.chunks += [(i, s) for s in starts]
        if not self.chunks:
            raise ZooInputError(f"seq_len={seq_len}: longer than every utterance of split "
                                f"{split!r} of {corpus.root}")
        if too_short:
            warnings.warn(f"SequenceDataset({split!r}): {len(too_short)} utterance(s) shorter than "
                          f"seq_len={seq_len} frames give no chunk: {too_short[:5]}", stacklevel=2)

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> dict:
        i, start = self.chunks[index]
        feats = self._features[i]
        return {key: feats[key][start : start + self.seq_len] for key in feats}

    @property
    def x(self) -> torch.Tensor:
        """All chunks as one ``(n_chunks, seq_len, n_freq)`` tensor (a copy)."""
        return torch.stack([self[i]["x"] for i in range(len(self))])

    @property
    def v(self) -> torch.Tensor | None:
        """All chunks' mouth frames ``(n_chunks, seq_len, H * W)``, or ``None`` without video."""
        if not self.video:
            return None
        return torch.stack([self[i]["v"] for i in range(len(self))])

    def whole_utterances(self) -> list[dict]:
        """Every utterance of the split as one variable-length sequence:
        ``{"x": (n_frames, n_freq)}`` (+ ``"v"``), plus ``"meta"`` (the utterance dict)."""
        return [{**feats, "meta": utt} for feats, utt in zip(self._features, self.utterances)]
