"""The zoo's built-in audio-visual speech: a source-filter synthesizer whose articulation also
drives a rendered mouth, and the corpus built from it.

The generative story of one utterance (every random draw from one ``numpy`` Generator):

1. **text**: phrases of words, words of syllables ``(C)(C)V(C)`` from a small phone inventory
   (:data:`PHONES`);
2. **timing**: each phone gets a duration (divided by the speaker's rate and the style's
   tempo, lengthened at the end of a phrase); pauses separate phrases;
3. **articulation**: every 5 ms control frame, jaw opening, lip spreading, lip rounding and lip
   closure in ``[0, 1]``: the phones' targets averaged with their dominance weights under a
   Gaussian window (coarticulation: a /u/ rounds the lips of its neighbours, a /p/ closes them
   whatever the vowel);
4. **sound**: a Rosenberg glottal pulse train at F0 (speaker mean, style shift, declination,
   pitch accents, boundary tones, jitter, shimmer) plus aspiration noise, through a cascade of
   five formant resonators and a nasal pole-zero pair whose frequencies glide between the
   phones' targets (scaled by the speaker's vocal tract), plus a parallel branch of filtered
   noise for fricatives and plosive bursts. Loudness follows the jaw (open vowels are louder)
   and the lips (closed lips silence the mouth; nasals still sound through the nose);
5. **video**: the same articulation, sampled at 30 fps, drives :func:`zoo.data.mouth.render_mouth`.

Waveforms are 16 kHz mono float32 with a peak between 0.5 and 0.9 (set by the style: angry is
loudest, sad quietest), never clipping; the length is padded with silence to a whole number of
video frames. The synthesizer makes audio and video about 50 times faster than real time on one core
(:func:`benchmark_speed`; writing the corpus files costs another quarter).

The corpus on disk (``build_synth_corpus``) follows the zoo's corpus format, read back with
:class:`zoo.data.corpus.Corpus`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import butter, lfilter, sosfilt

from zoo.data.audio import SAMPLE_RATE
from zoo.data.mouth import MouthAppearance, render_mouth, smooth_noise
from zoo.errors import ZooInputError

SYNTH_VERSION = 1  # bump whenever the generated audio or video changes (invalidates caches)
CONTROL_HOP = 80  # samples between control frames (5 ms at 16 kHz)
CONTROL_RATE = SAMPLE_RATE / CONTROL_HOP  # control frames per second
PAUSE = "sil"
# white noise this small (-180 dB) is added before every recursive filter: in silences the filters'
# outputs would otherwise decay into subnormal floats, which CPUs process ~100 times slower
DITHER = 1e-9


# ====================================================================== phone inventory
@dataclass(frozen=True)
class Phone:
    """One phone of the inventory: its acoustic and articulatory targets.

    Attributes:
        label: the symbol (``S`` is "sh", ``@`` the schwa, ``sil`` a pause).
        kind: vowel, stop, nasal, fricative, approximant, aspirate or pause.
        voiced: whether the vocal folds vibrate.
        formants: F1, F2, F3 targets in Hz for an adult male vocal tract (17.5 cm).
        formant_weight: dominance of the formant targets in coarticulation.
        articulation: targets of :data:`zoo.data.mouth.ARTICULATORS` (jaw, spread, round, closure).
        articulation_weight: dominance of each articulation target.
        voicing: amplitude of the glottal source (1 for a vowel).
        frication: ``(noise filter, amplitude)`` of the parallel noise branch, or ``None``.
        burst: amplitude of the release burst of a stop (filtered like ``frication``).
        aspiration: amplitude of the aspiration noise (for /h/ and after voiceless stops).
        nasal_zero_hz: antiresonance frequency of a nasal (its place of articulation).
        duration_ms: range of durations at speaking rate 1.
    """

    label: str
    kind: str
    voiced: bool
    formants: tuple[float, float, float]
    formant_weight: float
    articulation: tuple[float, float, float, float]
    articulation_weight: tuple[float, float, float, float]
    voicing: float = 0.0
    frication: tuple[str, float] | None = None
    burst: float = 0.0
    aspiration: float = 0.0
    nasal_zero_hz: float = 0.0
    duration_ms: tuple[float, float] = (60.0, 90.0)


def _vowel(label, formants, jaw, spread, round_):
    return Phone(label, "vowel", True, formants, 1.0, (jaw, spread, round_, 0.0),
                 (1.0, 1.0, 1.0, 1.0), voicing=1.0, duration_ms=(120.0, 170.0))


_LIPS_FREE = (1.0, 0.15, 0.15, 0.5)  # tongue consonants: the lips take their neighbours' shape
_PHONE_LIST = [
    _vowel("a", (750, 1250, 2600), 1.00, 0.35, 0.00),
    _vowel("e", (480, 1900, 2550), 0.55, 0.70, 0.00),
    _vowel("i", (290, 2250, 3000), 0.25, 1.00, 0.00),
    _vowel("o", (480, 900, 2500), 0.55, 0.00, 0.85),
    _vowel("u", (310, 850, 2300), 0.25, 0.00, 1.00),
    _vowel("@", (520, 1450, 2500), 0.45, 0.30, 0.10),
    # bilabials: the lips close, dominating coarticulation
    Phone("p", "stop", False, (250, 900, 2300), 0.6, (0.1, 0.2, 0.2, 1.0), (1, 0.3, 0.3, 8),
          burst=0.35, aspiration=0.3, duration_ms=(55, 80)),
    Phone("b", "stop", True, (250, 900, 2300), 0.6, (0.1, 0.2, 0.2, 1.0), (1, 0.3, 0.3, 8),
          voicing=0.08, burst=0.2, duration_ms=(50, 70)),
    Phone("m", "nasal", True, (260, 1000, 2300), 0.6, (0.1, 0.2, 0.2, 1.0), (1, 0.3, 0.3, 8),
          voicing=0.45, nasal_zero_hz=1000, duration_ms=(55, 85)),
    # alveolars
    Phone("t", "stop", False, (260, 1750, 2650), 0.5, (0.15, 0.4, 0.0, 0.0), _LIPS_FREE,
          burst=0.6, aspiration=0.3, duration_ms=(50, 75)),
    Phone("d", "stop", True, (260, 1750, 2650), 0.5, (0.15, 0.4, 0.0, 0.0), _LIPS_FREE,
          voicing=0.08, burst=0.35, duration_ms=(45, 65)),
    Phone("n", "nasal", True, (260, 1700, 2650), 0.5, (0.15, 0.4, 0.0, 0.0), _LIPS_FREE,
          voicing=0.45, nasal_zero_hz=1700, duration_ms=(50, 80)),
    Phone("s", "fricative", False, (300, 1700, 2700), 0.5, (0.1, 0.55, 0.0, 0.0),
          (1.5, 0.6, 0.3, 0.5), frication=("s", 0.2), duration_ms=(90, 130)),
    Phone("z", "fricative", True, (300, 1700, 2700), 0.5, (0.1, 0.55, 0.0, 0.0),
          (1.5, 0.6, 0.3, 0.5), voicing=0.4, frication=("s", 0.12), duration_ms=(60, 90)),
    Phone("l", "approximant", True, (360, 1300, 2700), 0.7, (0.3, 0.3, 0.0, 0.0), _LIPS_FREE,
          voicing=0.75, duration_ms=(45, 70)),
    # postalveolar, labiodental, velar, glottal, labial-velar
    Phone("S", "fricative", False, (300, 1800, 2350), 0.5, (0.12, 0.0, 0.6, 0.0),
          (1.5, 1.0, 2.0, 0.5), frication=("S", 0.18), duration_ms=(90, 130)),
    Phone("f", "fricative", False, (300, 1100, 2400), 0.5, (0.12, 0.3, 0.0, 0.65),
          (1.0, 0.5, 0.5, 4.0), frication=("f", 0.12), duration_ms=(80, 110)),
    Phone("v", "fricative", True, (300, 1100, 2400), 0.5, (0.12, 0.3, 0.0, 0.65),
          (1.0, 0.5, 0.5, 4.0), voicing=0.4, frication=("f", 0.07), duration_ms=(55, 80)),
    Phone("k", "stop", False, (280, 1900, 2300), 0.2, (0.3, 0.3, 0.1, 0.0),
          (0.5, 0.1, 0.1, 0.5), burst=0.5, aspiration=0.35, duration_ms=(55, 80)),
    Phone("g", "stop", True, (280, 1900, 2300), 0.2, (0.3, 0.3, 0.1, 0.0),
          (0.5, 0.1, 0.1, 0.5), voicing=0.08, burst=0.3, duration_ms=(50, 70)),
    Phone("h", "aspirate", False, (500, 1500, 2500), 0.05, (0.4, 0.3, 0.1, 0.0),
          (0.05, 0.05, 0.05, 0.05), aspiration=0.3, duration_ms=(50, 75)),
    Phone("w", "approximant", True, (300, 700, 2200), 0.8, (0.15, 0.0, 1.0, 0.0),
          (1.0, 2.0, 5.0, 0.5), voicing=0.75, duration_ms=(45, 70)),
    # the rest position between words and phrases: jaw up, lips together
    Phone(PAUSE, "pause", False, (500, 1500, 2500), 0.3, (0.05, 0.2, 0.1, 0.85),
          (1.0, 0.5, 0.5, 1.0), duration_ms=(0, 0)),
]
PHONES: dict[str, Phone] = {p.label: p for p in _PHONE_LIST}
VOWELS = tuple(p.label for p in _PHONE_LIST if p.kind == "vowel")
ONSETS = ("p", "b", "t", "d", "k", "g", "m", "n", "f", "v", "s", "z", "S", "l", "w", "h")
CODAS = ("p", "t", "k", "m", "n", "s", "z", "l")
CLUSTERS = (("s", "p"), ("s", "t"), ("s", "k"), ("p", "l"), ("b", "l"), ("k", "l"), ("f", "l"))

# noise filters of the parallel branch: (low, high) band edges in Hz for an average speaker
NOISE_BANDS = {
    "s": (3800.0, 7600.0),  # alveolar sibilant: strong high-frequency noise
    "S": (2000.0, 5500.0),  # postalveolar: lower, broader
    "f": (1000.0, 7500.0),  # labiodental: weak and flat
    "burst_lab": (80.0, 2200.0),  # bilabial release: diffuse, falling
    "burst_alv": (2800.0, 7600.0),  # alveolar release: high
    "burst_vel": (1300.0, 3300.0),  # velar release: compact mid-frequency
}
_BURST_FILTER = {"p": "burst_lab", "b": "burst_lab", "t": "burst_alv", "d": "burst_alv",
                 "k": "burst_vel", "g": "burst_vel"}


# ====================================================================== speakers and styles
@dataclass(frozen=True)
class Style:
    """A static speaking style: how it shifts pitch, range, loudness, tempo and voice quality.

    Attributes:
        f0_shift_semitones: mean F0 shift.
        f0_range: scale of the intonation excursions (declination, accents, boundaries).
        level_db: loudness relative to neutral (sets the peak level of the waveform).
        tempo: speaking-rate factor (durations are divided by it).
        tilt: added spectral tilt of the glottal source (positive: softer, darker voice).
    """

    f0_shift_semitones: float
    f0_range: float
    level_db: float
    tempo: float
    tilt: float


STYLES: dict[str, Style] = {
    "neutral": Style(0.0, 1.0, 0.0, 1.0, 0.0),
    "happy": Style(2.5, 1.5, 2.0, 1.1, -0.05),
    "sad": Style(-2.0, 0.5, -2.5, 0.8, 0.2),
    "angry": Style(1.5, 1.3, 2.5, 1.05, -0.2),
}
NEUTRAL_PEAK = 0.66  # waveform peak of neutral speech; styles move it by level_db (0.49-0.88)


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker's voice and face.

    Attributes:
        id: speaker name (``spk00``...).
        sex: ``"female"`` or ``"male"`` (sets the F0 and vocal-tract ranges).
        f0_hz: mean fundamental frequency of neutral speech.
        formant_scale: formant frequencies relative to a 17.5 cm vocal tract (about 1.0 male,
            1.15 female: shorter tracts resonate higher).
        rate: speaking-rate factor (durations are divided by it).
        breathiness: 0-1: aspiration noise, open quotient, first-formant bandwidth.
        jitter: relative cycle-to-cycle F0 perturbation (std).
        shimmer: relative cycle-to-cycle amplitude perturbation (std).
        appearance: the face drawn by the mouth renderer.
    """

    id: str
    sex: str
    f0_hz: float
    formant_scale: float
    rate: float
    breathiness: float
    jitter: float
    shimmer: float
    appearance: MouthAppearance = field(default_factory=MouthAppearance)

    @classmethod
    def sample(cls, rng: np.random.Generator, speaker_id: str) -> Speaker:
        """A random speaker: half female (F0 ~ 210 Hz), half male (F0 ~ 115 Hz)."""
        female = bool(rng.random() < 0.5)
        return cls(
            id=speaker_id,
            sex="female" if female else "male",
            f0_hz=float((210.0 if female else 115.0) * np.exp(0.12 * rng.standard_normal())),
            formant_scale=float((1.15 if female else 1.0) * np.exp(0.04 * rng.standard_normal())),
            rate=float(np.clip(np.exp(0.1 * rng.standard_normal()), 0.8, 1.25)),
            breathiness=float(rng.uniform(0.1, 0.6) if female else rng.uniform(0.0, 0.4)),
            jitter=float(rng.uniform(0.004, 0.012)),
            shimmer=float(rng.uniform(0.02, 0.06)),
            appearance=MouthAppearance.sample(rng),
        )

    def to_dict(self) -> dict:
        return asdict(self)


# ====================================================================== settings
@dataclass(frozen=True)
class SynthSettings:
    """Generator settings (keyword arguments of :func:`build_synth_corpus`).

    Attributes:
        words_per_utterance: inclusive range of the number of words.
        words_per_phrase: inclusive range of words between two pauses.
        styles: the styles used; utterance ``i`` of a speaker gets ``styles[i % len(styles)]``.
        video_fps: video frame rate (Hz).
        mouth_size: height and width of the mouth frames (pixels).
        head_motion: scale of the rendered head motion (0: still).
        lighting: scale of the rendered lighting drift (0: constant).
        noise_floor_db: level of the recording's white noise floor relative to the peak
            (keeps the power spectrum of pauses away from exact zeros).
        wav_subtype: libsndfile subtype of the written wav files (``"PCM_16"`` or ``"FLOAT"``).
        write_avi: also write ``video/<id>.avi`` (MJPG, 4x upscaled) to look at.
    """

    words_per_utterance: tuple[int, int] = (4, 9)
    words_per_phrase: tuple[int, int] = (2, 5)
    styles: tuple[str, ...] = tuple(STYLES)
    video_fps: int = 30
    mouth_size: int = 64
    head_motion: float = 1.0
    lighting: float = 1.0
    noise_floor_db: float = -70.0
    wav_subtype: str = "PCM_16"
    write_avi: bool = False

    def __post_init__(self):
        for name in ("words_per_utterance", "words_per_phrase"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ZooInputError(f"{name}: expected 1 <= low <= high, got {(lo, hi)}")
        unknown = [s for s in self.styles if s not in STYLES]
        if unknown or not self.styles:
            raise ZooInputError(f"styles: expected a non-empty subset of {list(STYLES)}, got "
                                f"{list(self.styles)}")
        if not (isinstance(self.video_fps, int) and self.video_fps > 0):
            raise ZooInputError(f"video_fps: expected a positive integer, got {self.video_fps!r}")
        if self.wav_subtype not in ("PCM_16", "FLOAT"):
            raise ZooInputError(f"wav_subtype: expected 'PCM_16' or 'FLOAT', got "
                                f"{self.wav_subtype!r}")

    @classmethod
    def from_kwargs(cls, **settings) -> SynthSettings:
        """Settings from keyword arguments; an unknown name is a ZooInputError listing the known."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ZooInputError(f"unknown synthesizer setting(s) {unknown}; known: {sorted(known)}")
        for name in ("words_per_utterance", "words_per_phrase", "styles"):
            if name in settings:
                settings[name] = tuple(settings[name])
        return cls(**settings)

    def to_dict(self) -> dict:
        return asdict(self)


# ====================================================================== 1-2: text and timing
def sample_words(rng: np.random.Generator, n_words: int) -> list[list[str]]:
    """``n_words`` random words, each a list of phone labels, one stressed syllable first."""
    words = []
    for _ in range(n_words):
        n_syllables = int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))
        phones: list[str] = []
        for k in range(n_syllables):
            shape = rng.random()
            if shape < 0.1 and k == 0:
                onset: tuple[str, ...] = ()
            elif shape < 0.2:
                onset = CLUSTERS[rng.integers(len(CLUSTERS))]
            else:
                onset = (ONSETS[rng.integers(len(ONSETS))],)
            stressed = k == 0
            vowel = "@" if (not stressed and rng.random() < 0.4) else VOWELS[rng.integers(5)]
            coda = (CODAS[rng.integers(len(CODAS))],) if rng.random() < 0.35 else ()
            phones += [*onset, vowel, *coda]
        words.append(phones)
    return words


def word_text(phones: list[str]) -> str:
    """Spelling of a word (``S`` is written ``sh``, the schwa ``e``)."""
    return "".join({"S": "sh", "@": "e"}.get(p, p) for p in phones)


def plan_timing(rng: np.random.Generator, words: list[list[str]], phrase_sizes: list[int],
                rate: float) -> tuple[list[tuple[str, float, float]], list[dict]]:
    """Phone segments ``[(label, start_s, end_s)]`` with pauses, and per-phone timing details.

    ``rate`` divides every duration (speaker rate x style tempo). The details list, one dict per
    segment, holds the release time of stops (``release_s``), whether the vowel is stressed and
    phrase final, and the phrase index (-1 for pauses).
    """
    segments: list[tuple[str, float, float]] = []
    details: list[dict] = []
    t = float(rng.uniform(0.15, 0.25)) / rate

    def add(label, duration, **info):
        nonlocal t
        segments.append((label, t, t + duration))
        details.append({"start_s": t, **info})
        t += duration

    segments.append((PAUSE, 0.0, t))
    details.append({"start_s": 0.0, "phrase": -1})
    w = 0
    for p_index, size in enumerate(phrase_sizes):
        for k in range(size):
            phones = words[w]
            w += 1
            last_word = k == size - 1
            last_vowel = max(i for i, p in enumerate(phones) if PHONES[p].kind == "vowel")
            first_vowel = min(i for i, p in enumerate(phones) if PHONES[p].kind == "vowel")
            for i, label in enumerate(phones):
                phone = PHONES[label]
                lo, hi = phone.duration_ms
                duration = rng.uniform(lo, hi) / 1000
                stressed = phone.kind == "vowel" and i == first_vowel
                if phone.kind == "vowel" and not stressed:
                    duration *= 0.6
                final = last_word and i >= last_vowel
                if final:
                    duration *= 1.35  # phrase-final lengthening
                info = {"phrase": p_index, "stressed": stressed, "final": final}
                if phone.kind == "stop":
                    burst = rng.uniform(0.008, 0.012)
                    vot = rng.uniform(0.025, 0.045) if not phone.voiced else 0.005
                    info["closure_s"] = duration / rate
                    duration = duration + burst + vot
                add(label, duration / rate, **info)
            if not last_word and rng.random() < 0.15:
                add(PAUSE, rng.uniform(0.04, 0.09) / rate, phrase=-1)
        pause = rng.uniform(0.18, 0.4) if p_index < len(phrase_sizes) - 1 else rng.uniform(0.2, 0.3)
        add(PAUSE, pause / rate, phrase=-1)
    for seg, info in zip(segments, details):
        if "closure_s" in info:
            info["release_s"] = seg[1] + info.pop("closure_s")
    return segments, details


# ====================================================================== 3: articulation
def _segment_index(segments, times: np.ndarray) -> np.ndarray:
    starts = np.array([s[1] for s in segments])
    return np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(segments) - 1)


def _control_targets(segments, details, times):
    """Per control frame: the phone whose target applies (stops release into the next phone)."""
    seg = _segment_index(segments, times)
    labels = [s[0] for s in segments]
    target_label = np.array(labels, dtype=object)[seg]
    releases = np.array([d.get("release_s", np.inf) for d in details])
    released = times >= releases[seg]
    nxt = np.minimum(seg + 1, len(segments) - 1)
    target_label = np.where(released, np.array(labels, dtype=object)[nxt], target_label)
    return seg, target_label, released


def _blend(targets: np.ndarray, weights: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Dominance-weighted Gaussian smoothing: ``G * (w target) / G * w`` along axis 0."""
    num = gaussian_filter1d(targets * weights, sigma_frames, axis=0, mode="nearest")
    den = gaussian_filter1d(weights, sigma_frames, axis=0, mode="nearest")
    return num / den


ARTICULATION_SMOOTHING_MS = (28.0, 20.0, 22.0, 12.0)  # jaw, spread, round, closure


def articulation_track(segments, details=None, frame_rate: float = CONTROL_RATE,
                       n_frames: int | None = None) -> np.ndarray:
    """Articulation ``(n_frames, 4)`` in ``[0, 1]`` (columns ``ARTICULATORS``) of a phone sequence.

    Args:
        segments: ``[(label, start_s, end_s)]`` with labels from :data:`PHONES`.
        details: per-segment timing details from :func:`plan_timing` (the release time of stops
            lets the lips open before the aspiration); optional.
        frame_rate: frames per second; frame ``j`` is at ``j / frame_rate`` seconds.
        n_frames: default: up to the end of the last segment.
    """
    unknown = sorted({s[0] for s in segments} - set(PHONES))
    if unknown:
        raise ZooInputError(f"segments: unknown phone labels {unknown}; known: {sorted(PHONES)}")
    if details is None:
        details = [{} for _ in segments]
    if n_frames is None:
        n_frames = int(math.ceil(segments[-1][2] * frame_rate)) + 1
    times = np.arange(n_frames) / frame_rate
    _, target_label, _ = _control_targets(segments, details, times)
    targets = np.array([PHONES[lab].articulation for lab in target_label])
    weights = np.array([PHONES[lab].articulation_weight for lab in target_label])
    out = np.empty_like(targets)
    for k, ms in enumerate(ARTICULATION_SMOOTHING_MS):
        out[:, k] = _blend(targets[:, k], weights[:, k], ms / 1000 * frame_rate)
    return np.clip(out, 0.0, 1.0)


# ====================================================================== 4: sound
def rosenberg_flow(phase: np.ndarray, open_quotient: float) -> np.ndarray:
    """Glottal flow of the Rosenberg pulse at cycle positions ``phase`` in ``[0, 1)``.

    Opens over ``0.7 * open_quotient`` of the cycle (raised cosine), closes over the remaining
    ``0.3 * open_quotient`` (quarter cosine), stays closed the rest of the cycle.
    """
    t_open = 0.7 * open_quotient
    t_close = 0.3 * open_quotient
    rising = 0.5 * (1 - np.cos(np.pi * phase / t_open))
    falling = np.cos(0.5 * np.pi * (phase - t_open) / t_close)
    return np.where(phase < t_open, rising, np.where(phase < open_quotient, falling, 0.0))


def _resonator_poly(freq_hz: np.ndarray, bandwidth_hz: np.ndarray) -> np.ndarray:
    """Denominators ``(n, 3)`` ``[1, -2 r cos(theta), r^2]`` of second-order resonators."""
    r = np.exp(-np.pi * bandwidth_hz / SAMPLE_RATE)
    theta = 2 * np.pi * freq_hz / SAMPLE_RATE
    return np.stack([np.ones_like(r), -2 * r * np.cos(theta), r * r], -1)


def _polymul_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise polynomial product of ``(n, a)`` and ``(n, b)`` coefficient arrays."""
    out = np.zeros((p.shape[0], p.shape[1] + q.shape[1] - 1))
    for j in range(q.shape[1]):
        out[:, j : j + p.shape[1]] += p * q[:, j : j + 1]
    return out


def time_varying_filter(x: np.ndarray, b: np.ndarray, a: np.ndarray, hop: int) -> np.ndarray:
    """Filter ``x`` with coefficients ``b (n_blocks, nb)``, ``a (n_blocks, na)`` changing every
    ``hop`` samples.

    Each block is filtered with ``scipy.signal.lfilter``; its initial state is rebuilt from the
    true past inputs and outputs for the block's own coefficients (as a direct-form filter with
    changing coefficients behaves), so coefficient changes cause no state transients.
    """
    n_blocks, order = a.shape[0], a.shape[1] - 1
    b = np.pad(b, ((0, 0), (0, order + 1 - b.shape[1])))
    # state z_i = sum_{m=0}^{order-i} (b_{i+m} x[n-1-m] - a_{i+m} y[n-1-m]),  i = 1..order
    i = np.arange(1, order + 1)[:, None]
    m = np.arange(order)[None, :]
    idx = i + m
    valid = idx <= order
    idx = np.where(valid, idx, 0)
    hank_b = np.where(valid, b[:, idx], 0.0)  # (n_blocks, order, order)
    hank_a = np.where(valid, a[:, idx], 0.0)
    n = x.shape[0]
    x_pad = np.concatenate([np.zeros(order), x])
    starts = np.arange(n_blocks) * hop
    past_x = x_pad[starts[:, None] + order - 1 - m[0]]  # x[n-1-m] for every block start
    zi_from_x = np.einsum("bij,bj->bi", hank_b, past_x)
    y = np.empty(n)
    past_y = np.zeros(order)
    for j in range(n_blocks):
        s, e = starts[j], min(starts[j] + hop, n)
        if s >= n:
            break
        zi = zi_from_x[j] - hank_a[j] @ past_y
        y[s:e], _ = lfilter(b[j], a[j], x[s:e], zi=zi)
        past_y = y[max(0, e - order) : e][::-1]
        if past_y.shape[0] < order:
            past_y = np.pad(past_y, (0, order - past_y.shape[0]))
    return y


def noise_filter(band: tuple[float, float], scale: float) -> np.ndarray:
    """Second-order-sections filter passing ``band`` (edges x ``scale``, capped below Nyquist),
    normalised to unit power gain for white noise (so an envelope sets the output RMS)."""
    hi = min(band[1] * scale, 0.48 * SAMPLE_RATE)
    if band[0] < 100:
        sos = butter(2, hi, btype="lowpass", fs=SAMPLE_RATE, output="sos")
    else:
        sos = butter(2, (min(band[0] * scale, 6000.0), hi), btype="bandpass", fs=SAMPLE_RATE,
                     output="sos")
    impulse = np.zeros(4096)
    impulse[0] = 1.0
    sos[0, :3] /= np.sqrt(np.sum(sosfilt(sos, impulse) ** 2))
    return sos


@dataclass
class SynthUtterance:
    """One synthesized utterance.

    Attributes:
        audio: ``(n_samples,)`` float32 waveform at 16 kHz.
        frames: ``(n_video_frames, size, size)`` uint8 mouth frames at ``meta["fps"]``.
        articulation: ``(n_video_frames, 4)`` float32 articulation of each video frame (the
            ground truth behind the frames, columns ``ARTICULATORS``).
        meta: speaker, style, phones, words, f0 statistics, fps, n_samples, ...
        f0_hz: ``(n_control_frames,)`` F0 every 5 ms (:data:`CONTROL_RATE`), NaN where unvoiced.
    """

    audio: np.ndarray
    frames: np.ndarray
    articulation: np.ndarray
    meta: dict
    f0_hz: np.ndarray


def synthesize_utterance(speaker: Speaker, style: str, rng: np.random.Generator,
                         settings: SynthSettings | None = None) -> SynthUtterance:
    """Generate one utterance of ``speaker`` in ``style``.

    The text and base durations are drawn first from ``rng``, so two calls with equal generator
    states and different styles say the same words (the style then scales pitch, tempo and
    loudness): that is how the tests check the direction of each style.
    """
    settings = settings or SynthSettings()
    if style not in STYLES:
        raise ZooInputError(f"style: expected one of {list(STYLES)}, got {style!r}")
    sty = STYLES[style]
    sr = SAMPLE_RATE

    # ---- 1-2. text and timing
    n_words = int(rng.integers(settings.words_per_utterance[0],
                               settings.words_per_utterance[1] + 1))
    words = sample_words(rng, n_words)
    phrase_sizes = []
    left = n_words
    while left > 0:
        size = int(rng.integers(settings.words_per_phrase[0], settings.words_per_phrase[1] + 1))
        phrase_sizes.append(min(size, left))
        left -= phrase_sizes[-1]
    rate = speaker.rate * sty.tempo
    segments, details = plan_timing(rng, words, phrase_sizes, rate)

    # whole number of video frames: pad to a multiple of sr / gcd(sr, fps) samples
    block = sr // math.gcd(sr, settings.video_fps)
    n_samples = int(math.ceil(segments[-1][2] * sr / block)) * block
    end_s = n_samples / sr
    segments[-1] = (segments[-1][0], segments[-1][1], end_s)
    n_ctrl = n_samples // CONTROL_HOP + 1
    t_ctrl = np.arange(n_ctrl) / CONTROL_RATE

    # ---- 3. articulation, and the per-frame acoustic targets
    seg, target_label, released = _control_targets(segments, details, t_ctrl)
    art = articulation_track(segments, details, CONTROL_RATE, n_ctrl)
    jaw, _, _, closure = art.T
    phones_now = [PHONES[segments[s][0]] for s in seg]  # the phone being said (its sources)
    phones_tgt = [PHONES[lab] for lab in target_label]  # whose vocal tract shape applies

    formant_t = np.array([p.formants for p in phones_tgt], float)
    formant_w = np.array([p.formant_weight for p in phones_tgt], float)[:, None]
    formants = _blend(formant_t, np.repeat(formant_w, 3, 1), 20 / 1000 * CONTROL_RATE)
    formants *= speaker.formant_scale

    is_nasal = np.array([p.kind == "nasal" for p in phones_now], float)
    nasality = gaussian_filter1d(is_nasal, 15 / 1000 * CONTROL_RATE, mode="nearest")
    zero_t = np.array([p.nasal_zero_hz or 270.0 for p in phones_now])
    zero_hz = _blend(zero_t, is_nasal + 1e-6, 40 / 1000 * CONTROL_RATE)
    nasal_zero = 270.0 + np.clip(nasality * 1.3, 0, 1) * (zero_hz - 270.0)

    voicing_t = np.array([p.voicing for p in phones_now])
    voicing_t = np.where(released & (voicing_t > 0), 0.5, voicing_t)  # voiced stop release
    voicing = gaussian_filter1d(voicing_t, 2.0, mode="nearest")
    aspiration_t = np.array([p.aspiration if p.kind != "stop" else 0.0 for p in phones_now])
    aspiration_t += np.where(released, [p.aspiration for p in phones_now], 0.0)
    aspiration = gaussian_filter1d(aspiration_t, 1.5, mode="nearest")
    breath = np.clip(speaker.breathiness + 0.5 * sty.tilt, 0.0, 1.0)

    # loudness follows the articulators: open jaw louder, closed lips silence the mouth
    jaw_gain = 10 ** (-6.0 * (1 - jaw) / 20)
    lip_gain = np.clip(1 - closure * (1 - nasality), 0, 1)
    voicing = voicing * jaw_gain * lip_gain

    # ---- 4a. intonation: F0 in semitones around the speaker's mean
    semitones = np.full(n_ctrl, sty.f0_shift_semitones)
    contour = np.zeros(n_ctrl)
    phrase_of = np.array([d.get("phrase", -1) for d in details])[seg]
    for p_index in range(len(phrase_sizes)):
        in_phrase = phrase_of == p_index
        if not in_phrase.any():
            continue
        t0, t1 = t_ctrl[in_phrase][0], t_ctrl[in_phrase][-1]
        span = max(t1 - t0, 1e-3)
        contour += in_phrase * (1.5 - 3.0 * (t_ctrl - t0) / span)  # declination
        final = p_index == len(phrase_sizes) - 1
        boundary = np.clip((t_ctrl - (t1 - 0.2)) / 0.2, 0, 1) * in_phrase
        contour += boundary * (-3.0 if final else 2.5)  # final fall / continuation rise
    for (_, start, end), d in zip(segments, details):
        if d.get("stressed") and rng.random() < 0.6:
            centre = 0.5 * (start + end) + 0.02
            width = 0.6 * (end - start) + 0.03
            contour += rng.uniform(2.0, 4.5) * np.exp(-0.5 * ((t_ctrl - centre) / width) ** 2)
    semitones += sty.f0_range * contour + 0.4 * smooth_noise(rng, n_ctrl, 20.0)
    f0_ctrl = speaker.f0_hz * 2 ** (semitones / 12)

    # ---- 4b. glottal source: Rosenberg pulses with jitter and shimmer, spectral tilt
    t_samples = np.arange(n_samples) / sr
    f0 = np.interp(t_samples, t_ctrl, f0_ctrl)
    cycle0 = np.floor(np.cumsum(f0) / sr).astype(np.int64)
    n_cycles = int(cycle0[-1]) + 2
    f0 = f0 * (1 + speaker.jitter * rng.standard_normal(n_cycles))[cycle0]
    phase = np.cumsum(f0) / sr
    cycle = np.floor(phase).astype(np.int64)
    open_quotient = float(np.clip(0.5 + 0.3 * breath, 0.4, 0.85))
    flow = rosenberg_flow(phase - cycle, open_quotient)
    # the flow derivative grows with F0; dividing by F0 keeps the loudness (and so the crest
    # factor) independent of the intonation, which the style's level alone then sets
    shimmer = (1 + speaker.shimmer * rng.standard_normal(n_cycles))[cycle]
    pulses = np.diff(flow, prepend=0.0) * shimmer / f0
    pulses /= np.sqrt(np.mean(pulses**2)) + 1e-12
    tilt = float(np.clip(0.3 + 0.3 * breath + sty.tilt, 0.0, 0.85))
    pulses = lfilter([1 - tilt], [1, -tilt], pulses)

    def ctrl_to_samples(track):
        return np.interp(t_samples, t_ctrl, track)

    voicing_s = ctrl_to_samples(voicing)
    open_phase = (flow > 0).astype(float)
    noise = rng.standard_normal(n_samples)
    breath_noise = (0.04 + 0.18 * breath) * voicing_s * (0.3 + 0.7 * open_phase)
    aspiration_s = ctrl_to_samples(aspiration) * (1 - 0.5 * np.clip(voicing_s, 0, 1) *
                                                   (1 - open_phase))
    source = voicing_s * pulses + (breath_noise + aspiration_s) * noise + DITHER * noise

    # ---- 4c. cascade vocal tract: F1-F5 and a nasal pole-zero pair, updated every 5 ms
    n_blocks = n_ctrl
    f_scale = speaker.formant_scale
    freqs = np.concatenate([formants, np.tile([3500 * f_scale, 4300 * f_scale], (n_ctrl, 1)),
                            np.full((n_ctrl, 1), 270.0)], 1)
    bandwidths = np.array([80.0 + 60 * breath, 90.0, 150.0, 250.0, 300.0, 100.0])
    freqs = np.minimum(freqs, 0.45 * sr)
    den = np.ones((n_blocks, 1))
    gain = np.ones(n_blocks)
    for k in range(freqs.shape[1]):
        poly = _resonator_poly(freqs[:, k], np.full(n_blocks, bandwidths[k]))
        den = _polymul_rows(den, poly)
        gain *= poly.sum(1)  # unit gain at 0 Hz for every resonator
    zero = _resonator_poly(nasal_zero, np.full(n_blocks, 100.0))
    num = zero / zero.sum(1, keepdims=True) * gain[:, None]
    voiced_out = time_varying_filter(source, num, den, CONTROL_HOP)

    # ---- 4d. parallel branch: fricative noise and stop bursts, levels relative to vowels
    vowel_level = np.sqrt(np.mean(voiced_out[voicing_s > 0.7 * voicing_s.max()] ** 2))
    noise_out = np.zeros(n_samples)
    fric_env: dict[str, np.ndarray] = {}
    fric_labels = np.array([p.frication[0] if p.frication else "" for p in phones_now])
    fric_amp = np.array([p.frication[1] if p.frication else 0.0 for p in phones_now])
    for name in sorted(set(fric_labels) - {""}):
        env = gaussian_filter1d(np.where(fric_labels == name, fric_amp, 0.0), 2.5,
                                mode="nearest")
        fric_env[name] = ctrl_to_samples(env)
    for (label, _, _), d in zip(segments, details):
        if "release_s" in d:
            name = _BURST_FILTER[label]
            env = fric_env.setdefault(name, np.zeros(n_samples))
            s0 = int(d["release_s"] * sr)
            length = min(int(0.03 * sr), n_samples - s0)
            n = np.arange(length)
            decay = np.exp(-n / (0.005 * sr)) * np.minimum(1.0, n / (0.0008 * sr))
            env[s0 : s0 + length] += 2.0 * PHONES[label].burst * decay
    # noise is shaped by the envelope first, then by the front cavity (the filter), so bursts
    # and onsets stay band-limited; voiced fricatives are pulsed by the glottis
    voiced_fric = np.array([p.voiced and p.kind == "fricative" for p in phones_now], float)
    excitation = noise * (1 - 0.5 * ctrl_to_samples(voiced_fric) * (1 - open_phase))
    for name, env in sorted(fric_env.items()):
        sos = noise_filter(NOISE_BANDS[name], min(f_scale, 1.1))
        noise_out += sosfilt(sos, env * excitation + DITHER * noise)
    audio = voiced_out + vowel_level * noise_out

    # ---- loudness: peak set by the style, plus the recording's noise floor
    peak = NEUTRAL_PEAK * 10 ** (sty.level_db / 20) * float(rng.uniform(0.97, 1.02))
    audio *= peak / np.max(np.abs(audio))
    audio += peak * 10 ** (settings.noise_floor_db / 20) * rng.standard_normal(n_samples)
    audio = audio.astype(np.float32)

    # ---- 5. video: the same articulation at the video frame centres
    n_video = n_samples * settings.video_fps // sr
    t_video = (np.arange(n_video) + 0.5) / settings.video_fps
    art_video = np.stack([np.interp(t_video, t_ctrl, art[:, k]) for k in range(4)], 1)
    frames = render_mouth(art_video, speaker.appearance, rng, size=settings.mouth_size,
                          head_motion=settings.head_motion, lighting=settings.lighting)

    voiced_ctrl = voicing > 0.3 * voicing.max()
    f0_voiced = f0_ctrl[voiced_ctrl]
    n_phones = sum(1 for s in segments if s[0] != PAUSE)
    speech_s = sum(s[2] - s[1] for s in segments if s[0] != PAUSE)
    meta = {
        "speaker": speaker.id,
        "style": style,
        "phones": [[label, round(start, 5), round(end, 5)] for label, start, end in segments],
        "words": [word_text(w) for w in words],
        "f0_mean_hz": float(np.mean(f0_voiced)),
        "f0_std_hz": float(np.std(f0_voiced)),
        "f0_min_hz": float(np.min(f0_voiced)),
        "f0_max_hz": float(np.max(f0_voiced)),
        "phones_per_s": n_phones / speech_s,
        "rms_db": float(20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))),
        "peak": float(np.max(np.abs(audio))),
        "fps": settings.video_fps,
        "n_samples": n_samples,
        "n_video_frames": int(n_video),
        "sample_rate": sr,
    }
    f0_track = np.where(voiced_ctrl, f0_ctrl, np.nan)
    return SynthUtterance(audio, frames, art_video.astype(np.float32), meta, f0_track)


# ====================================================================== corpus
def corpus_speakers(seed: int, n_speakers: int) -> list[Speaker]:
    """The speakers of a corpus: speaker ``k`` is drawn from the generator ``(seed, 1, k)``."""
    width = max(2, len(str(n_speakers - 1)))
    return [Speaker.sample(np.random.default_rng([seed, 1, k]), f"spk{k:0{width}d}")
            for k in range(n_speakers)]


def speaker_splits(speaker_ids: list[str], seed: int,
                   fractions=(0.7, 0.15, 0.15)) -> dict[str, list[str]]:
    """Speaker-disjoint train/val/test lists (about 70/15/15 %, at least one speaker each)."""
    n = len(speaker_ids)
    if n < 3:
        raise ZooInputError(f"n_speakers: at least 3 speakers are needed for train/val/test, "
                            f"got {n}")
    order = np.random.default_rng([seed, 3]).permutation(n)
    n_val = max(1, round(fractions[1] * n))
    n_test = max(1, round(fractions[2] * n))
    n_train = n - n_val - n_test
    shuffled = [speaker_ids[i] for i in order]
    return {
        "train": sorted(shuffled[:n_train]),
        "val": sorted(shuffled[n_train : n_train + n_val]),
        "test": sorted(shuffled[n_train + n_val :]),
    }


def generate_corpus_utterance(seed: int, index: int, speakers: list[Speaker],
                              settings: SynthSettings) -> SynthUtterance:
    """Utterance ``index`` of a corpus: speaker ``index % n``, a style cycling per speaker, and
    its own generator ``(seed, 2, index)`` (so any utterance can be regenerated alone)."""
    speaker = speakers[index % len(speakers)]
    style = settings.styles[(index // len(speakers)) % len(settings.styles)]
    return synthesize_utterance(speaker, style, np.random.default_rng([seed, 2, index]), settings)


def _write_avi(path: Path, frames: np.ndarray, fps: int) -> None:
    import cv2

    size = frames.shape[1] * 4
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    if not writer.isOpened():
        raise ZooInputError(f"{path}: OpenCV cannot write an MJPG avi here")
    for frame in frames:
        big = cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR)
        writer.write(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR))
    writer.release()


def build_synth_corpus(out_dir, n_utterances: int = 200, n_speakers: int | None = None,
                       seed: int = 0, progress: bool = True, **settings):
    """Generate the synthetic audio-visual corpus into ``out_dir`` and return it as a Corpus.

    Args:
        out_dir: folder to create (it must not exist or be empty).
        n_utterances: number of utterances.
        n_speakers: number of speakers (default: one per 10 utterances, between 3 and 50).
            Utterance ``i`` is said by speaker ``i % n_speakers``.
        seed: everything (speakers, splits, every utterance) follows from it.
        progress: show a tqdm progress bar.
        **settings: :class:`SynthSettings` fields (e.g. ``words_per_utterance=(2, 4)``,
            ``write_avi=True``).

    Layout written (see :mod:`zoo.data.corpus`): ``corpus.json``, ``utterances.jsonl``,
    ``wav/<id>.wav`` and ``video/<id>.npz`` (``frames`` uint8 ``(N, H, W)`` and the ground-truth
    ``articulation`` float32 ``(N, 4)``); ``corpus.json`` is written last, so an interrupted build
    is never read as a corpus.
    """
    from tqdm.auto import tqdm

    from zoo.data.audio import save_audio
    from zoo.data.corpus import FORMAT_VERSION, Corpus

    cfg = SynthSettings.from_kwargs(**settings)
    if not isinstance(n_utterances, int) or n_utterances < 3:
        raise ZooInputError(f"n_utterances: expected an integer >= 3, got {n_utterances!r}")
    if n_speakers is None:
        n_speakers = int(np.clip(round(n_utterances / 10), 3, 50))
    if not isinstance(n_speakers, int) or not 3 <= n_speakers <= n_utterances:
        raise ZooInputError(f"n_speakers: expected an integer in [3, n_utterances="
                            f"{n_utterances}], got {n_speakers!r}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ZooInputError(f"{out}: already exists and is not an empty folder; choose a new "
                            "folder (or delete this one)")
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "video").mkdir(exist_ok=True)

    speakers = corpus_speakers(seed, n_speakers)
    splits = speaker_splits([s.id for s in speakers], seed)
    split_of = {spk: name for name, spks in splits.items() for spk in spks}
    width = max(4, len(str(n_utterances - 1)))
    with open(out / "utterances.jsonl", "w") as index_file:
        for i in tqdm(range(n_utterances), desc="synth corpus", unit="utt", disable=not progress):
            utt = generate_corpus_utterance(seed, i, speakers, cfg)
            utt_id = f"{utt.meta['speaker']}_{i:0{width}d}"
            save_audio(out / "wav" / f"{utt_id}.wav", utt.audio, subtype=cfg.wav_subtype)
            np.savez_compressed(out / "video" / f"{utt_id}.npz", frames=utt.frames,
                                articulation=utt.articulation)
            if cfg.write_avi:
                _write_avi(out / "video" / f"{utt_id}.avi", utt.frames, cfg.video_fps)
            record = {"id": utt_id, "speaker": utt.meta["speaker"], "style": utt.meta["style"],
                      "split": split_of[utt.meta["speaker"]], "wav": f"wav/{utt_id}.wav",
                      "video": f"video/{utt_id}.npz",
                      **{k: v for k, v in utt.meta.items() if k not in ("speaker", "style")}}
            index_file.write(json.dumps(record) + "\n")
    info = {
        "name": "synth",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "video_fps": cfg.video_fps,
        "mouth_size": [cfg.mouth_size, cfg.mouth_size],
        "generator": {"module": "zoo.data.synth", "version": SYNTH_VERSION,
                      "n_utterances": n_utterances, "n_speakers": n_speakers, **cfg.to_dict()},
        "splits": splits,
        "speakers": {s.id: s.to_dict() for s in speakers},
    }
    tmp = out / "corpus.json.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, out / "corpus.json")
    return Corpus(out)


def benchmark_speed(seconds: float = 20.0, seed: int = 0) -> float:
    """Seconds of audio (with its video) generated per second of CPU time of this process.

    CPU time (summed over the process's threads) rather than wall time, so a busy machine does
    not slow the figure down; run under ``taskset -c 0`` to measure one core.
    """
    speakers = corpus_speakers(seed, 3)
    cfg = SynthSettings()
    done = 0.0
    start = time.process_time()
    i = 0
    while done < seconds:
        utt = generate_corpus_utterance(seed, i, speakers, cfg)
        done += utt.meta["n_samples"] / SAMPLE_RATE
        i += 1
    return done / (time.process_time() - start)
