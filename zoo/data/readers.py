"""Readers for real speech-enhancement corpora a user already has on disk (nothing is downloaded).

Each reader pairs noisy recordings with their clean references when it is built (so a missing
partner is reported at once) and reads the audio when an item is asked for:

    corpus = VoiceBankDemand("/data/VoiceBank-DEMAND", split="test")
    item = corpus[0]            # dict(clean=(n,) tensor, noisy=(n,) tensor, id="p232_001", ...)
    corpus.pairs[0].noisy       # the file paths, without reading anything

Audio comes out mono float32 at ``sample_rate`` (16 kHz) through :func:`zoo.data.audio.load_audio`:
a file at another rate (VoiceBank-DEMAND is 48 kHz) is resampled and a stereo file averaged, each
with an ``AudioConversionWarning``. A clean/noisy pair of different lengths is an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

import torch

from zoo.data.audio import SAMPLE_RATE, audio_info, list_audio_files, load_audio
from zoo.data.video import VIDEO_SUFFIXES, read_video
from zoo.errors import ZooInputError


class CorpusPair(NamedTuple):
    """One noisy recording, its clean reference and what is known about it."""

    clean: Path
    noisy: Path
    id: str
    video: Path | None = None
    speaker: str | None = None
    noise: str | None = None
    snr_db: float | None = None


class PairedCorpus:
    """A list of :class:`CorpusPair` read on demand; the readers below build the list.

    ``corpus[i]`` is a dict with ``clean`` and ``noisy`` ``(n_samples,)`` float32 tensors, ``id``,
    the known ``speaker`` / ``noise`` / ``snr_db``, and, when the pair has a video, ``video``
    (``uint8`` grayscale frames ``(n_frames, height, width)``) and ``fps``.
    """

    def __init__(self, pairs: list[CorpusPair], name: str, sample_rate: int = SAMPLE_RATE):
        self.pairs = list(pairs)
        self.name = name
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} pairs)"

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self!r}: index {index} out of range")
        pair = self.pairs[index]
        clean = load_audio(pair.clean, sample_rate=self.sample_rate)
        noisy = load_audio(pair.noisy, sample_rate=self.sample_rate)
        if clean.numel() != noisy.numel():
            raise ZooInputError(
                f"{pair.noisy}: {noisy.numel()} samples but its clean reference {pair.clean} has "
                f"{clean.numel()} (at {self.sample_rate} Hz); expected equal lengths"
            )
        item = {"clean": clean, "noisy": noisy, "id": pair.id, "speaker": pair.speaker,
                "noise": pair.noise, "snr_db": pair.snr_db}
        if pair.video is not None:
            frames, fps = read_video(pair.video, gray=True)
            item["video"] = torch.from_numpy(frames)
            item["fps"] = fps
        return item

    def check_lengths(self) -> None:
        """Compare clean and noisy durations of every pair from the file headers (fast).

        Raises :class:`ZooInputError` naming the first pair whose durations differ by more than
        one sample; ``corpus[i]`` makes the exact check when it reads a pair.
        """
        for pair in self.pairs:
            clean, noisy = audio_info(pair.clean), audio_info(pair.noisy)
            if abs(clean["seconds"] - noisy["seconds"]) * self.sample_rate > 1:
                raise ZooInputError(
                    f"{pair.noisy}: lasts {noisy['seconds']:.4f} s but its clean reference "
                    f"{pair.clean} lasts {clean['seconds']:.4f} s; expected equal lengths"
                )


def _relative_key(path: Path, folder: Path) -> str:
    return path.relative_to(folder).with_suffix("").as_posix()


def _index(files: list[Path], key, folder: Path) -> dict[str, Path]:
    table: dict[str, Path] = {}
    for path in files:
        k = key(path)
        if k in table:
            raise ZooInputError(f"{folder}: two files share the name {k!r} ({table[k]} and "
                                f"{path}); expected one file per utterance")
        table[k] = path
    return table


def _require_dir(folder: Path, what: str) -> Path:
    if not folder.is_dir():
        parent = folder.parent
        there = sorted(p.name for p in parent.iterdir()) if parent.is_dir() else []
        raise ZooInputError(
            f"{folder}: no such directory; expected the {what} there"
            + (f" (found: {', '.join(there[:12])})" if there else f" ({parent} does not exist)")
        )
    return folder


# ------------------------------------------------------------------------- VoiceBank-DEMAND
class VoiceBankDemand(PairedCorpus):
    """VoiceBank-DEMAND (Valentini-Botinhao et al., 2016), as distributed by Edinburgh DataShare.

    Layout under ``root``: ``clean_<set>_wav/`` and ``noisy_<set>_wav/`` with the same file names
    (``p232_001.wav``), ``<set>`` being ``testset``, ``trainset_28spk`` or ``trainset_56spk``.
    A 16 kHz copy in ``<folder>_16k/`` (as made by the DVAE-SE recipes) is used when present.
    The original files are 48 kHz: they are resampled to ``sample_rate`` on reading, with a
    warning. Every noisy file needs a clean partner and vice versa.

    Args:
        split: ``"test"``, ``"train28"`` or ``"train56"`` (or the set names above); ``"train"``
            picks the one training set present.
    """

    SPLITS = {"test": "testset", "train28": "trainset_28spk", "train56": "trainset_56spk"}

    def __init__(self, root: str | os.PathLike, split: str = "test",
                 sample_rate: int = SAMPLE_RATE):
        root = _require_dir(Path(root), "VoiceBank-DEMAND folder")
        subset = self._subset(root, split)
        folders = {}
        for kind in ("clean", "noisy"):
            candidates = [root / f"{kind}_{subset}_wav_16k", root / f"{kind}_{subset}_wav"]
            found = [c for c in candidates if c.is_dir()]
            if not found:
                raise ZooInputError(
                    f"{root}: has no {candidates[1].name}/ (nor {candidates[0].name}/); expected "
                    f"the VoiceBank-DEMAND {kind} {subset} folder there"
                )
            folders[kind] = found[0]
        clean = _index(list_audio_files(folders["clean"]),
                       lambda p: _relative_key(p, folders["clean"]), folders["clean"])
        noisy = _index(list_audio_files(folders["noisy"]),
                       lambda p: _relative_key(p, folders["noisy"]), folders["noisy"])
        pairs = []
        for key, noisy_path in noisy.items():
            if key not in clean:
                raise ZooInputError(f"{noisy_path}: has no clean partner; expected "
                                    f"{folders['clean'] / (key + '.wav')}")
            pairs.append(CorpusPair(clean[key], noisy_path, Path(key).name,
                                    speaker=Path(key).name.split("_")[0]))
        orphans = sorted(set(clean) - set(noisy))
        if orphans:
            raise ZooInputError(f"{clean[orphans[0]]}: has no noisy partner in {folders['noisy']} "
                                f"({len(orphans)} clean files lack one)")
        super().__init__(pairs, f"{root} [{subset}]", sample_rate)

    @classmethod
    def _subset(cls, root: Path, split: str) -> str:
        if split in cls.SPLITS:
            return cls.SPLITS[split]
        if split in cls.SPLITS.values():
            return split
        if split == "train":
            present = [s for s in ("trainset_28spk", "trainset_56spk")
                       if any((root / f"clean_{s}_wav{x}").is_dir() for x in ("", "_16k"))]
            if len(present) == 1:
                return present[0]
            raise ZooInputError(
                f"split 'train': {root} holds {len(present) or 'no'} training sets "
                f"({', '.join(present) or 'none'}); pass split='train28' or 'train56'"
            )
        raise ZooInputError(f"split {split!r}: expected one of {', '.join(cls.SPLITS)} or 'train'")


# ------------------------------------------------------------------------------- WSJ0-QUT
_QUT_NAME = re.compile(r"^(?P<utt>[^_]+)_(?P<noise>.+)_(?P<snr>-?\d+(?:\.\d+)?)$")


class WSJ0QUT(PairedCorpus):
    """WSJ0 utterances mixed with QUT-NOISE (as in Leglaive et al. and Bie et al., DVAE-SE).

    Two layouts are read:

    * paired folders (default): ``root/<split>/clean/`` and ``root/<split>/noisy/`` (or
      ``mixture/``), the same relative file names on both sides (subfolders allowed);
    * the DVAE-SE layout, with ``clean_root`` given: noisy files ``root/<split>/<utt>_<NOISE>_<snr>.wav``
      (e.g. ``440c0201_CAFE-CAFE-2_0.wav``) and clean WSJ0 files ``<utt>.wav`` anywhere under
      ``clean_root`` (e.g. ``wsj0_si_et_05/440/440c0201.wav``); pairs by utterance id, noise
      type and SNR taken from the name. Clean files without a noisy version are allowed there
      (``clean_root`` is the whole WSJ0 subset).

    In the paired layout every noisy file needs a clean partner and vice versa.
    """

    def __init__(self, root: str | os.PathLike, split: str = "test",
                 clean_root: str | os.PathLike | None = None, sample_rate: int = SAMPLE_RATE):
        root = _require_dir(Path(root), "WSJ0-QUT folder")
        split_dir = _require_dir(root / split, f"WSJ0-QUT {split!r} split")
        if clean_root is None:
            pairs = self._paired_folders(split_dir)
        else:
            pairs = self._dvae_se_layout(split_dir, _require_dir(Path(clean_root), "clean WSJ0"))
        super().__init__(pairs, f"{root} [{split}]", sample_rate)

    @staticmethod
    def _paired_folders(split_dir: Path) -> list[CorpusPair]:
        clean_dir = split_dir / "clean"
        noisy_dirs = [split_dir / name for name in ("noisy", "mixture") if (split_dir / name).is_dir()]
        if not clean_dir.is_dir() or not noisy_dirs:
            raise ZooInputError(
                f"{split_dir}: expected subfolders clean/ and noisy/ (or mixture/) holding the "
                "same file names (or pass clean_root= for the DVAE-SE layout)"
            )
        if len(noisy_dirs) > 1:
            raise ZooInputError(f"{split_dir}: has both noisy/ and mixture/; keep one of them")
        noisy_dir = noisy_dirs[0]
        clean = _index(list_audio_files(clean_dir), lambda p: _relative_key(p, clean_dir),
                       clean_dir)
        noisy = _index(list_audio_files(noisy_dir), lambda p: _relative_key(p, noisy_dir),
                       noisy_dir)
        pairs = []
        for key, noisy_path in noisy.items():
            if key not in clean:
                raise ZooInputError(f"{noisy_path}: has no clean partner; expected "
                                    f"{clean_dir / key}{noisy_path.suffix}")
            pairs.append(CorpusPair(clean[key], noisy_path, key))
        orphans = sorted(set(clean) - set(noisy))
        if orphans:
            raise ZooInputError(f"{clean[orphans[0]]}: has no noisy partner in {noisy_dir} "
                                f"({len(orphans)} clean files lack one)")
        return pairs

    @staticmethod
    def _dvae_se_layout(split_dir: Path, clean_root: Path) -> list[CorpusPair]:
        clean = _index(list_audio_files(clean_root), lambda p: p.stem, clean_root)
        pairs = []
        for noisy_path in list_audio_files(split_dir, recursive=False):
            match = _QUT_NAME.match(noisy_path.stem)
            if match is None:
                raise ZooInputError(f"{noisy_path}: expected a name <utt>_<NOISE>_<snr>.wav "
                                    "(e.g. 440c0201_CAFE-CAFE-2_0.wav)")
            utt = match["utt"]
            if utt not in clean:
                raise ZooInputError(f"{noisy_path}: has no clean partner; expected {utt}.wav "
                                    f"somewhere under {clean_root}")
            pairs.append(CorpusPair(clean[utt], noisy_path, noisy_path.stem,
                                    speaker=clean[utt].parent.name, noise=match["noise"],
                                    snr_db=float(match["snr"])))
        return pairs


# ----------------------------------------------------------------------------- NTCD-TIMIT
class NTCDTIMIT(PairedCorpus):
    """NTCD-TIMIT (Abdelaziz, 2017): TCD-TIMIT volunteers' speech with added noise, plus lip video.

    Layout assumed (that of the NTCD-TIMIT audio release and of the AV-VAE recipes)::

        root/Clean/volunteers/<spk>/straightcam/<utt>.wav            clean audio
        root/<Noise>/<snr>/volunteers/<spk>/straightcam/<utt>.wav    noisy, e.g. Cafe/5/...
        video_root/volunteers/<spk>/Clips/straightcam/<utt>.mp4      TCD-TIMIT video

    Videos are also looked for in ``video_root/volunteers/<spk>/straightcam/`` and next to the
    clean wav, with any suffix of :data:`~zoo.data.video.VIDEO_SUFFIXES`. ``corpus[i]["video"]``
    holds the full grayscale frames; crop the mouth with :func:`zoo.data.video.extract_mouth`.

    Args:
        noise_types, snrs, speakers: keep only these (default: all found).
        video_root: where the TCD-TIMIT videos are (default ``root``).
        with_video: when True (default) every pair must have its video; False ignores video.
    """

    def __init__(self, root: str | os.PathLike, noise_types=None, snrs=None, speakers=None,
                 video_root: str | os.PathLike | None = None, with_video: bool = True,
                 sample_rate: int = SAMPLE_RATE):
        root = _require_dir(Path(root), "NTCD-TIMIT folder")
        clean_dir = _require_dir(root / "Clean" / "volunteers", "NTCD-TIMIT clean speech")
        video_root = Path(video_root) if video_root is not None else root
        conditions = self._noise_conditions(root)
        if noise_types is not None:
            unknown = sorted(set(noise_types) - {noise for noise, _, _ in conditions})
            if unknown:
                raise ZooInputError(
                    f"noise_types: {unknown} not found in {root}; found "
                    f"{sorted({noise for noise, _, _ in conditions})}"
                )
            conditions = [c for c in conditions if c[0] in set(noise_types)]
        if snrs is not None:
            conditions = [c for c in conditions if c[1] in {float(s) for s in snrs}]
        if not conditions:
            raise ZooInputError(f"{root}: no noisy folders <Noise>/<snr>/volunteers/ match "
                                f"noise_types={noise_types} snrs={snrs}")
        pairs = []
        for noise, snr, folder in conditions:
            for noisy_path in list_audio_files(folder):
                relative = noisy_path.relative_to(folder)  # <spk>/straightcam/<utt>.wav
                speaker = relative.parts[0]
                if speakers is not None and speaker not in speakers:
                    continue
                clean_path = clean_dir / relative
                if not clean_path.is_file():
                    raise ZooInputError(f"{noisy_path}: has no clean partner; expected {clean_path}")
                video = self._find_video(video_root, clean_path, speaker) if with_video else None
                pairs.append(CorpusPair(clean_path, noisy_path,
                                        f"{noise}/{snr:g}/{speaker}/{noisy_path.stem}", video,
                                        speaker=speaker, noise=noise, snr_db=snr))
        if not pairs:
            raise ZooInputError(f"{root}: no noisy recordings for speakers={speakers}")
        super().__init__(pairs, str(root), sample_rate)

    @staticmethod
    def _noise_conditions(root: Path) -> list[tuple[str, float, Path]]:
        """``(noise, snr_db, folder)`` for every ``root/<Noise>/<snr>/volunteers`` folder."""
        conditions = []
        for noise_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "Clean"):
            for snr_dir in sorted(p for p in noise_dir.iterdir() if p.is_dir()):
                try:
                    snr = float(snr_dir.name)
                except ValueError:
                    continue
                if (snr_dir / "volunteers").is_dir():
                    conditions.append((noise_dir.name, snr, snr_dir / "volunteers"))
        conditions.sort(key=lambda c: (c[0], c[1]))
        if not conditions:
            raise ZooInputError(f"{root}: holds no noisy folders <Noise>/<snr>/volunteers/ "
                                "(e.g. Cafe/5/volunteers/); expected the NTCD-TIMIT layout")
        return conditions

    @staticmethod
    def _find_video(video_root: Path, clean_path: Path, speaker: str) -> Path:
        utt = clean_path.stem
        folders = [video_root / "volunteers" / speaker / "Clips" / "straightcam",
                   video_root / "volunteers" / speaker / "straightcam", clean_path.parent]
        for folder in folders:
            for suffix in VIDEO_SUFFIXES:
                if (folder / (utt + suffix)).is_file():
                    return folder / (utt + suffix)
        raise ZooInputError(
            f"{clean_path}: no video found for it; expected {folders[0] / (utt + '.mp4')} (or in "
            f"{folders[1]} or {folders[2]}); pass video_root= or with_video=False"
        )
