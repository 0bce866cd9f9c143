"""Video: reading and writing files, mouth extraction, and alignment of frames to STFT frames.

Mouth frames are ``uint8`` or float arrays of shape ``(n_video_frames, height, width)``
(grayscale). Video and audio run at different rates (e.g. 30 fps against 62.5 STFT
frames/s); every model that reads video sees it resampled to the STFT frame rate by
:func:`align_to_stft`, which says how.

File I/O goes through OpenCV (``opencv-python-headless``, FFmpeg backend). Codecs that write
with it: MJPG in ``.avi`` (default for ``.avi``, lossy), ``mp4v`` in ``.mp4`` (lossy) and FFV1
in ``.mkv`` (lossless). Colour frames are RGB in the zoo (OpenCV's BGR is converted on the way).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from zoo.errors import ZooInputError


def align_to_stft(
    frames,
    video_fps: float,
    n_stft_frames: int,
    stft_frame_rate: float,
    mode: str = "interpolate",
    name: str = "video",
    max_mismatch_s: float = 0.5,
) -> torch.Tensor:
    """Resample visual frames to the STFT frame times.

    STFT frame ``n`` is centred at ``n / stft_frame_rate`` seconds; video frame ``k`` covers
    ``[k, k + 1) / video_fps`` and is taken at its centre ``(k + 1/2) / video_fps``.

    Args:
        frames: ``(n_video_frames, ...)`` array or tensor.
        video_fps: video frame rate (Hz).
        n_stft_frames: number of STFT frames of the matching audio.
        stft_frame_rate: STFT frames per second (``STFT.frame_rate``).
        mode: ``"interpolate"`` (linear between the two nearest video frames) or ``"repeat"``
            (nearest earlier video frame, i.e. each video frame repeated).
        max_mismatch_s: refuse a video whose duration differs from the audio's by more than this.

    Returns:
        float32 tensor ``(n_stft_frames, ...)``.
    """
    frames = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
    if frames.dim() < 1 or frames.shape[0] == 0:
        raise ZooInputError(f"{name}: has no frames; expected (n_video_frames, ...)")
    if mode not in ("interpolate", "repeat"):
        raise ZooInputError(f"align_to_stft mode must be 'interpolate' or 'repeat', got {mode!r}")
    video_seconds = frames.shape[0] / video_fps
    audio_seconds = n_stft_frames / stft_frame_rate
    if abs(video_seconds - audio_seconds) > max_mismatch_s:
        raise ZooInputError(
            f"{name}: video lasts {video_seconds:.2f} s ({frames.shape[0]} frames at "
            f"{video_fps:g} fps) but the audio lasts {audio_seconds:.2f} s; expected them to "
            f"match within {max_mismatch_s} s"
        )
    frames = frames.float()
    t = torch.arange(n_stft_frames, dtype=torch.float64) / stft_frame_rate
    pos = (t * video_fps - 0.5).clamp(0, frames.shape[0] - 1)  # fractional video-frame index
    if mode == "repeat":
        return frames[(t * video_fps).floor().long().clamp(0, frames.shape[0] - 1)]
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=frames.shape[0] - 1)
    frac = (pos - lo).float().reshape(-1, *([1] * (frames.dim() - 1)))
    return frames[lo] * (1 - frac) + frames[hi] * frac


# ------------------------------------------------------------------------------ file I/O
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".mpg", ".mpeg")
DEFAULT_CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".mkv": "FFV1"}


def _frames_to_uint8(frames, name: str) -> np.ndarray:
    """``uint8`` frames as they are; float frames in [0, 1] scaled to 0..255 (others refused)."""
    array = frames.detach().cpu().numpy() if torch.is_tensor(frames) else np.asarray(frames)
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ZooInputError(f"{name}: float frames contain NaN/Inf")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ZooInputError(
                f"{name}: float frames must lie in [0, 1] (they are scaled to 0..255), got "
                f"values in [{low:.3g}, {high:.3g}]; convert to uint8 yourself for another range"
            )
        return np.rint(array * 255.0).astype(np.uint8)
    raise ZooInputError(f"{name}: expected uint8 or float frames, got dtype {array.dtype}")


def read_video(path: str | os.PathLike, gray: bool = False) -> tuple[np.ndarray, float]:
    """Read every frame of a video file.

    Returns:
        ``(frames, fps)``: ``uint8`` frames ``(n_frames, height, width, 3)`` in RGB order, or
        ``(n_frames, height, width)`` with ``gray=True``; ``fps`` as the file states it.
    """
    import cv2

    path = Path(path)
    if not path.exists():
        raise ZooInputError(f"{path}: no such video file")
    if path.is_dir():
        raise ZooInputError(f"{path}: is a directory, expected a video file")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ZooInputError(f"{path}: cannot be opened as a video (corrupt or unknown format)")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            code = cv2.COLOR_BGR2GRAY if gray else cv2.COLOR_BGR2RGB
            frames.append(cv2.cvtColor(frame, code))
    finally:
        capture.release()
    if not frames:
        raise ZooInputError(f"{path}: holds no readable video frames (corrupt or empty video)")
    if not (np.isfinite(fps) and fps > 0):
        raise ZooInputError(f"{path}: does not state a frame rate (got {fps}); expected fps > 0")
    return np.stack(frames), fps


def write_video(path: str | os.PathLike, frames, fps: float, codec: str | None = None) -> Path:
    """Write frames to a video file (parent folders are created).

    Args:
        frames: ``(n_frames, height, width)`` grayscale or ``(n_frames, height, width, 3)`` RGB,
            ``uint8``, or float in [0, 1] (scaled to 0..255).
        fps: frame rate (Hz).
        codec: FourCC; by default from the suffix (:data:`DEFAULT_CODECS`: ``.avi`` MJPG,
            ``.mp4`` mp4v, ``.mkv`` FFV1 lossless).
    """
    import cv2

    path = Path(path)
    array = _frames_to_uint8(frames, f"write_video({path}) frames")
    if array.ndim == 3:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise ZooInputError(
            f"write_video({path}): expected frames (n_frames, height, width) or "
            f"(n_frames, height, width, 3), got shape {tuple(array.shape)}"
        )
    if not (isinstance(fps, (int, float, np.number)) and fps > 0):
        raise ZooInputError(f"write_video({path}): fps must be a positive number, got {fps!r}")
    if codec is None:
        if path.suffix.lower() not in DEFAULT_CODECS:
            raise ZooInputError(
                f"write_video({path}): no default codec for suffix {path.suffix!r}; use one of "
                f"{', '.join(DEFAULT_CODECS)} or pass codec= (a FourCC such as 'MJPG')"
            )
        codec = DEFAULT_CODECS[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = array.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(fps),
                             (width, height))
    if not writer.isOpened():
        raise ZooInputError(
            f"write_video({path}): OpenCV cannot write codec {codec!r} here; try .avi (MJPG), "
            ".mp4 (mp4v) or .mkv (FFV1)"
        )
    try:
        for frame in array:
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


# ----------------------------------------------------------------------- mouth extraction
FaceDetector = Callable[[np.ndarray], object]
"""A face detector: a grayscale ``uint8`` frame ``(height, width)`` -> face boxes, an array-like
``(n_faces, 4)`` of ``(x, y, width, height)`` in pixels (empty or ``None`` when no face)."""


def haar_face_detector(cascade: str | os.PathLike | None = None, scale_factor: float = 1.1,
                       min_neighbors: int = 5, min_size: tuple[int, int] = (30, 30)
                       ) -> FaceDetector:
    """OpenCV's Viola-Jones frontal-face detector as a :data:`FaceDetector`.

    ``cascade`` defaults to ``haarcascade_frontalface_default.xml`` from ``cv2.data.haarcascades``.
    OpenCV 4.x ships that file and ``cv2.CascadeClassifier``; OpenCV 5 moved both out of the main
    package: there, pass ``cascade=`` with a path to the XML file of an OpenCV 4 build, or a
    detector of your own to :func:`extract_mouth`.
    """
    import cv2

    if cascade is None:
        folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
        cascade = Path(folder) / "haarcascade_frontalface_default.xml"
    cascade = Path(cascade)
    if not hasattr(cv2, "CascadeClassifier"):
        raise ZooInputError(
            f"cascade {cascade}: this OpenCV ({cv2.__version__}) has no CascadeClassifier "
            "(OpenCV 5 moved the Haar detector out); install opencv-python-headless<5 or pass "
            "detector= (a function: grayscale frame -> (x, y, w, h) face boxes)"
        )
    if not cascade.is_file():
        raise ZooInputError(
            f"cascade {cascade}: no such Haar cascade file; expected "
            "haarcascade_frontalface_default.xml (shipped in cv2.data.haarcascades by OpenCV 4)"
        )
    classifier = cv2.CascadeClassifier(str(cascade))
    if classifier.empty():
        raise ZooInputError(f"cascade {cascade}: cannot be loaded as a Haar cascade")

    def detect(gray: np.ndarray):
        return classifier.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=scale_factor,
                                           minNeighbors=min_neighbors, minSize=min_size)

    return detect


def _largest_box(boxes) -> np.ndarray | None:
    boxes = np.asarray(boxes if boxes is not None else [], dtype=np.float64).reshape(-1, 4)
    if boxes.shape[0] == 0:
        return None
    return boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 (edges padded with the end values)."""
    if window <= 1:
        return values
    half = window // 2
    padded = np.pad(values, ((half, window - 1 - half), (0, 0)), mode="edge")
    kernel = np.ones(window) / window
    return np.stack([np.convolve(padded[:, j], kernel, mode="valid")
                     for j in range(values.shape[1])], axis=1)


def extract_mouth(frames, size: tuple[int, int] = (64, 64), detector: FaceDetector | None = None,
                  cascade: str | os.PathLike | None = None, smooth: int = 5,
                  name: str = "video") -> tuple[np.ndarray, np.ndarray]:
    """Crop the mouth region of a face video: grayscale, resized to ``size``.

    Per frame, the largest face box ``(x, y, w, h)`` gives a mouth box centred at
    ``(x + w/2, y + 5h/6)`` (the centre of the lower third of the face), ``w/2`` wide and
    ``h/3`` high, then widened or heightened to the aspect ratio of ``size`` (nothing is
    stretched). Box centres and sizes are smoothed over time by a centred moving average of
    ``smooth`` frames. A frame where no face is found reuses the previous frame's box (frames
    before the first detection use the first one) and is flagged in the returned mask. Parts of
    a box outside the image repeat the border pixels.

    Args:
        frames: ``(n_frames, height, width, 3)`` RGB or ``(n_frames, height, width)`` grayscale,
            ``uint8`` (or float in [0, 1]).
        size: output ``(height, width)`` in pixels.
        detector: a :data:`FaceDetector`; default :func:`haar_face_detector` with ``cascade``.

    Returns:
        ``(mouths, no_face)``: ``uint8`` ``(n_frames, *size)`` and a boolean ``(n_frames,)`` mask
        of the frames where no face was found.
    """
    import cv2

    array = _frames_to_uint8(frames, name)
    if array.ndim == 4 and array.shape[-1] == 3:
        array = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY)
                          for f in array])
    if array.ndim != 3 or array.shape[0] == 0:
        raise ZooInputError(
            f"{name}: expected frames (n_frames, height, width[, 3]), got shape {array.shape}"
        )
    out_h, out_w = (int(size[0]), int(size[1]))
    if out_h < 1 or out_w < 1:
        raise ZooInputError(f"size: expected a positive (height, width), got {size!r}")
    if isinstance(smooth, bool) or not isinstance(smooth, (int, np.integer)) or smooth < 1:
        raise ZooInputError(f"smooth: expected a window of >= 1 frames, got {smooth!r}")
    if detector is None:
        detector = haar_face_detector(cascade)

    n_frames, height, width = array.shape
    faces = [_largest_box(detector(np.ascontiguousarray(frame))) for frame in array]
    no_face = np.array([face is None for face in faces])
    if no_face.all():
        raise ZooInputError(f"{name}: no face found in any of its {n_frames} frames; expected a "
                            "frontal face video")

    # Mouth boxes as (centre x, centre y, width, height), gaps filled from the previous box.
    found = np.flatnonzero(~no_face)
    source = np.maximum.accumulate(np.where(no_face, -1, np.arange(n_frames)))
    source[source < 0] = found[0]
    face = np.stack([faces[i] for i in source])
    x, y, w, h = face.T
    box_w, box_h = w / 2.0, h / 3.0
    aspect = out_w / out_h
    box_w, box_h = np.maximum(box_w, box_h * aspect), np.maximum(box_h, box_w / aspect)
    boxes = _moving_average(np.stack([x + w / 2.0, y + 5.0 * h / 6.0, box_w, box_h], 1), smooth)

    mouths = np.empty((n_frames, out_h, out_w), dtype=np.uint8)
    for i, (centre_x, centre_y, bw, bh) in enumerate(boxes):
        left, top = int(round(centre_x - bw / 2.0)), int(round(centre_y - bh / 2.0))
        rows = np.clip(np.arange(top, top + max(1, int(round(bh)))), 0, height - 1)
        cols = np.clip(np.arange(left, left + max(1, int(round(bw)))), 0, width - 1)
        crop = array[i][np.ix_(rows, cols)]
        mouths[i] = cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return mouths, no_face
