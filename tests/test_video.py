"""Video: file round trips, mouth extraction, alignment to STFT frames, visual corruptions."""

import numpy as np
import pytest
import torch

from zoo.data.corrupt import CORRUPTIONS, blur, corrupt_video, freeze_frames, occlude
from zoo.data.video import align_to_stft, extract_mouth, read_video, write_video
from zoo.errors import ZooInputError


def moving_square_video(n_frames=12, height=48, width=64, color=False):
    """Smooth frames (a gradient and a bright square moving right), easy on lossy codecs."""
    rows, cols = np.mgrid[0:height, 0:width]
    frames = np.empty((n_frames, height, width), dtype=np.uint8)
    for t in range(n_frames):
        frame = 40 + 100 * cols / width
        frame[12:28, 4 + 3 * t : 20 + 3 * t] = 220
        frames[t] = frame.astype(np.uint8)
    if color:
        return np.stack([frames, frames[:, ::-1, :], np.full_like(frames, 90)], axis=-1)
    return frames


# ------------------------------------------------------------------------------ file I/O
@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
@pytest.mark.parametrize("color", [False, True])
def test_write_read_round_trip_with_lossy_codec(tmp_path, suffix, color):
    frames = moving_square_video(color=color)
    path = write_video(tmp_path / "sub" / f"clip{suffix}", frames, fps=25)
    back, fps = read_video(path, gray=not color)
    assert fps == pytest.approx(25.0)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(float) - frames).mean() < 6.0  # lossy, but close


def test_lossless_round_trip_and_float_frames(tmp_path):
    frames = moving_square_video(n_frames=5, color=True)
    path = write_video(tmp_path / "clip.mkv", frames.astype(np.float32) / 255.0, fps=30)
    back, fps = read_video(path)
    assert fps == pytest.approx(30.0)
    assert np.abs(back.astype(int) - frames).max() <= 1  # FFV1 is lossless up to YUV rounding
    gray, _ = read_video(path, gray=True)
    assert gray.shape == frames.shape[:3]


def test_read_video_errors_name_the_file(tmp_path):
    with pytest.raises(ZooInputError, match="missing.avi: no such video"):
        read_video(tmp_path / "missing.avi")
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(b"RIFF not really a video" * 50)
    with pytest.raises(ZooInputError, match="corrupt.avi"):
        read_video(corrupt)
    with pytest.raises(ZooInputError, match="is a directory"):
        read_video(tmp_path)
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(tmp_path / "empty.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0,
                             (64, 48))
    writer.release()  # a valid header and no frame
    with pytest.raises(ZooInputError, match="empty.avi: holds no readable video frames"):
        read_video(tmp_path / "empty.avi")


def test_write_video_refuses_bad_input(tmp_path):
    frames = moving_square_video(n_frames=2)
    with pytest.raises(ZooInputError, match=r"\[0, 1\]"):
        write_video(tmp_path / "a.avi", frames.astype(np.float32), fps=25)
    with pytest.raises(ZooInputError, match="suffix '.xyz'"):
        write_video(tmp_path / "a.xyz", frames, fps=25)
    with pytest.raises(ZooInputError, match="fps"):
        write_video(tmp_path / "a.avi", frames, fps=0)
    with pytest.raises(ZooInputError, match="shape"):
        write_video(tmp_path / "a.avi", frames[0], fps=25)


# ---------------------------------------------------------------------- mouth extraction
FACE = (40, 20, 80, 80)  # x, y, w, h: the mouth box is centred at (80, 86.7), 40 px square


def face_video(n_frames=8):
    """Gray frames (120 x 160) with a bright 'mouth' rectangle in the face's lower third."""
    frames = np.full((n_frames, 120, 160), 50, dtype=np.uint8)
    frames[:, 80:94, 70:90] = 220
    return frames


def test_extract_mouth_crops_the_lower_third_of_the_face():
    mouths, no_face = extract_mouth(face_video(), size=(32, 48), detector=lambda f: [FACE],
                                    smooth=1)
    assert mouths.shape == (8, 32, 48) and mouths.dtype == np.uint8
    assert not no_face.any()
    assert mouths[:, 12:20, 18:30].mean() > 200  # the mouth fills the centre of the crop
    assert mouths[:, :3, :].mean() < 60 and mouths[:, :, :3].mean() < 60  # background around it


def test_extract_mouth_picks_the_largest_face_and_accepts_rgb():
    rgb = np.repeat(face_video()[..., None], 3, axis=-1)
    detector = lambda f: np.array([[0, 0, 10, 10], FACE])  # noqa: E731
    mouths, _ = extract_mouth(rgb, detector=detector, smooth=1)
    assert mouths.shape == (8, 64, 64)
    assert mouths[:, 24:40, 24:40].mean() > 200


def test_frames_without_face_reuse_the_last_box_and_are_flagged():
    frames = face_video()
    frames[3:5] = 50  # the mouth is gone there, but the box is reused
    boxes = {0: [], 3: None, 4: ()}

    def detector(frame, calls=iter(range(100))):
        return boxes.get(next(calls), [FACE])

    mouths, no_face = extract_mouth(frames, detector=detector, smooth=1)
    assert no_face.tolist() == [True, False, False, True, True, False, False, False]
    assert np.array_equal(mouths[0], mouths[1])  # before the first detection: the first box
    assert mouths[3].mean() == pytest.approx(50, abs=1)
    assert np.array_equal(mouths[5], mouths[1])


def test_box_smoothing_removes_detector_jitter():
    jitter = [np.array(FACE) + [6 * (-1) ** t, 0, 0, 0] for t in range(8)]
    detector_calls = iter(jitter)
    raw, _ = extract_mouth(face_video(), detector=lambda f: [next(detector_calls)], smooth=1)
    detector_calls = iter(jitter)
    smooth, _ = extract_mouth(face_video(), detector=lambda f: [next(detector_calls)], smooth=2)
    assert not np.array_equal(raw[1], raw[2])  # the raw crop jumps by 12 px between frames
    assert all(np.array_equal(smooth[1], smooth[t]) for t in range(2, 8))  # averaged out


def test_extract_mouth_with_no_face_anywhere_is_an_error():
    with pytest.raises(ZooInputError, match="clip.mp4: no face found in any of its 8 frames"):
        extract_mouth(face_video(), detector=lambda f: [], name="clip.mp4")


def test_haar_path_on_an_image_without_face():
    """OpenCV 4 ships the Haar cascade: no face in the photo -> error. OpenCV 5 has none."""
    cv2 = pytest.importorskip("cv2")
    datasets = pytest.importorskip("sklearn.datasets")
    photo = datasets.load_sample_image("china.jpg")  # a temple, no face
    frames = np.stack([photo, photo])
    if hasattr(cv2, "CascadeClassifier"):
        with pytest.raises(ZooInputError, match="no face found"):
            extract_mouth(frames)
    else:
        with pytest.raises(ZooInputError, match="CascadeClassifier.*detector="):
            extract_mouth(frames)
    with pytest.raises(ZooInputError, match="nothere.xml"):
        extract_mouth(frames, cascade="nothere.xml")


# ------------------------------------------------------------------------- STFT alignment
def test_align_to_stft_shapes_and_modes():
    ramp = np.arange(30, dtype=np.float32)  # video frame k has value k, 30 fps, 1 s
    n_stft, rate = 63, 62.5
    t = np.arange(n_stft) / rate
    interp = align_to_stft(ramp, 30.0, n_stft, rate)
    assert interp.shape == (n_stft,) and interp.dtype == torch.float32
    assert np.allclose(interp.numpy(), np.clip(t * 30 - 0.5, 0, 29), atol=1e-5)
    repeat = align_to_stft(ramp, 30.0, n_stft, rate, mode="repeat")
    assert np.array_equal(repeat.numpy(), np.minimum(np.floor(t * 30), 29))
    mouths = np.random.default_rng(0).integers(0, 255, (30, 8, 6), dtype=np.uint8)
    assert align_to_stft(mouths, 30.0, n_stft, rate).shape == (n_stft, 8, 6)


def test_align_to_stft_errors():
    frames = np.zeros((30, 4, 4))
    with pytest.raises(ZooInputError, match="clip: video lasts 1.00 s.*audio lasts 2.00 s"):
        align_to_stft(frames, 30.0, 125, 62.5, name="clip")
    with pytest.raises(ZooInputError, match="mode"):
        align_to_stft(frames, 30.0, 63, 62.5, mode="nearest")
    with pytest.raises(ZooInputError, match="no frames"):
        align_to_stft(np.zeros((0, 4, 4)), 30.0, 63, 62.5)


# ------------------------------------------------------------------------------ corruptions
@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_corruptions_hit_the_requested_fraction_and_leave_input_untouched(kind, fraction, dtype):
    rng = np.random.default_rng(0)
    frames = rng.integers(1, 255, (20, 16, 12)).astype(dtype)
    original = frames.copy()
    out, affected = corrupt_video(frames, kind, fraction, rng=1)
    assert np.array_equal(frames, original)
    assert out.shape == frames.shape and out.dtype == frames.dtype
    assert affected.dtype == bool and affected.sum() == round(fraction * 20)
    assert np.array_equal(out[~affected], frames[~affected])
    assert all(not np.array_equal(out[i], frames[i]) for i in np.flatnonzero(affected))
    again, affected_again = corrupt_video(frames, kind, fraction, rng=1)
    assert np.array_equal(again, out) and np.array_equal(affected_again, affected)


def test_each_corruption_does_what_it_says():
    frames = np.random.default_rng(0).integers(1, 255, (10, 16, 12)).astype(np.uint8)
    out, hit = occlude(frames, 0.5, rng=0, patch_size=(4, 6), fill=0)
    assert ((out[hit] == 0).sum(axis=(1, 2)) == 24).all()  # one 4x6 black patch per frame
    out, hit = blur(frames, 0.5, rng=0, sigma=3.0)
    assert out[hit].astype(float).std() < 0.5 * frames[hit].astype(float).std()
    out, hit = corrupt_video(frames, "drop", 0.3, rng=0)
    assert (out[hit] == 0).all()
    out, hit = freeze_frames(frames, 0.5, rng=0)
    kept = np.flatnonzero(~hit)
    for i in np.flatnonzero(hit):
        before = kept[kept < i]
        assert np.array_equal(out[i], frames[before[-1] if before.size else kept[0]])


def test_corruptions_keep_torch_tensors_and_colour_frames():
    frames = torch.randint(0, 255, (6, 8, 8, 3), dtype=torch.uint8)
    original = frames.clone()
    for kind in CORRUPTIONS:
        out, hit = corrupt_video(frames, kind, 0.5, rng=0)
        assert torch.is_tensor(out) and out.shape == frames.shape and hit.sum() == 3
    assert torch.equal(frames, original)


def test_corruption_errors():
    frames = np.zeros((4, 8, 8), dtype=np.uint8)
    with pytest.raises(ZooInputError, match="'smear'.*blur.*occlude"):
        corrupt_video(frames, "smear", 0.5)
    with pytest.raises(ZooInputError, match="fraction"):
        corrupt_video(frames, "drop", 1.5)
    with pytest.raises(ZooInputError, match="no frame to hold"):
        freeze_frames(frames, 1.0)
    with pytest.raises(ZooInputError, match="patch_size"):
        occlude(frames, 0.5, patch_size=9)
    with pytest.raises(ZooInputError, match="frames"):
        blur(np.zeros((8, 8)), 0.5)
