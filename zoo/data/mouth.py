"""A grayscale mouth renderer driven by an articulation track (OpenCV drawing).

The synthetic corpus renders its video from the same articulation that shapes its sound
(:mod:`zoo.data.synth`), so a model can learn that an open jaw means a loud open vowel and closed
lips mean /p b m/ or silence.

Articulation (input): ``(n_frames, 4)`` floats in ``[0, 1]``, columns :data:`ARTICULATORS`:

* ``jaw``     jaw opening (0 closed, 1 wide open as in /a/);
* ``spread``  lip spreading (1 as in /i/: wider mouth, corners lifted);
* ``round``   lip rounding / protrusion (1 as in /u/: narrow, round opening, thicker lips);
* ``closure`` lip closure (1 as in /p b m/: lips pressed together whatever the jaw does).

Output: ``(n_frames, size, size)`` ``uint8`` mouth-region frames. Each frame is drawn at
``SUPERSAMPLE`` times the output size with anti-aliased polygons (skin, upper and lower lip,
dark cavity, teeth, tongue), moved by a small smooth head motion (translation, rotation,
scale) and reduced with area averaging; a slow lighting drift (gain, offset, gradient) and a
little sensor noise are added at the output size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from zoo.errors import ZooInputError

ARTICULATORS = ("jaw", "spread", "round", "closure")
SUPERSAMPLE = 2
_SHIFT = 4  # fixed-point bits of the polygon coordinates given to cv2 (1/16 pixel)


@dataclass(frozen=True)
class MouthAppearance:
    """How one speaker's mouth looks (all scales are 1 for an average face).

    Attributes:
        skin_tone: gray level of the skin, 0-255.
        lip_darkness: the lips are this fraction darker than the skin (0-1).
        lip_thickness: scale of the lip heights.
        mouth_width: scale of the mouth width.
        teeth_brightness: gray level of the upper teeth, 0-255.
    """

    skin_tone: float = 165.0
    lip_darkness: float = 0.32
    lip_thickness: float = 1.0
    mouth_width: float = 1.0
    teeth_brightness: float = 215.0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> MouthAppearance:
        """A random face: skin 95-205 gray, lips 20-45 % darker, thickness and width +-15 %."""
        return cls(
            skin_tone=float(rng.uniform(95, 205)),
            lip_darkness=float(rng.uniform(0.2, 0.45)),
            lip_thickness=float(np.exp(0.15 * rng.standard_normal())),
            mouth_width=float(np.clip(np.exp(0.08 * rng.standard_normal()), 0.85, 1.15)),
            teeth_brightness=float(rng.uniform(185, 240)),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def check_articulation(articulation, name: str = "articulation") -> np.ndarray:
    """Return ``articulation`` as a float64 ``(n_frames, 4)`` array, or raise ZooInputError."""
    art = np.asarray(articulation, dtype=np.float64)
    if art.ndim != 2 or art.shape[1] != len(ARTICULATORS) or art.shape[0] == 0:
        raise ZooInputError(
            f"{name}: expected shape (n_frames, {len(ARTICULATORS)}) with columns "
            f"{ARTICULATORS}, got {art.shape}"
        )
    if not np.isfinite(art).all() or art.min() < -1e-6 or art.max() > 1 + 1e-6:
        raise ZooInputError(f"{name}: values must be finite and in [0, 1]")
    return art


def smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """``(n,)`` Gaussian-smoothed white noise with unit standard deviation (``sigma`` in samples)."""
    pad = int(4 * sigma) + 1
    white = rng.standard_normal(n + 2 * pad)
    smooth = gaussian_filter1d(white, sigma, mode="wrap")[pad : pad + n]
    # std of white noise filtered by a unit-area Gaussian of width sigma
    return smooth * np.sqrt(2 * np.sqrt(np.pi) * sigma)


# ------------------------------------------------------------------------------ geometry
_XS = np.linspace(-1.0, 1.0, 41)  # positions across the mouth, corner to corner


def lip_contours(jaw: float, spread: float, round_: float, closure: float,
                 appearance: MouthAppearance) -> dict:
    """The four lip contours of one frame, in units of the image size, centred on the mouth.

    Returns a dict of ``(41,)`` arrays: ``x`` (shared abscissa) and ``upper_outer``,
    ``upper_inner``, ``lower_inner``, ``lower_outer`` (ordinates, y grows downwards), plus the
    scalars ``open_height`` and ``inner_half_width``.
    """
    half_width = 0.29 * appearance.mouth_width * (1 + 0.18 * spread - 0.28 * round_)
    thickness = appearance.lip_thickness * (1 + 0.4 * round_ - 0.25 * closure)
    upper_height, lower_height = 0.072 * thickness, 0.095 * thickness
    open_height = 0.27 * (0.08 + 0.92 * jaw) * (1 - closure) * (1 - 0.2 * spread)
    inner_half_width = half_width * (0.92 - 0.45 * round_)
    exponent = 0.85 - 0.45 * round_  # smaller: rounder, boxier opening

    x = _XS
    x_abs = np.abs(x)
    corner_lift = -0.03 * spread + 0.01 * round_
    midline = corner_lift * x**2
    u = x * half_width / inner_half_width
    opening = np.clip(1 - u**2, 0, 1) ** exponent
    profile = np.clip(1 - x**2, 0, 1) ** 0.45
    cupid_bow = 1 + 0.18 * np.exp(-(((x_abs - 0.28) / 0.12) ** 2)) - 0.22 * np.exp(
        -((x / 0.09) ** 2)
    )
    # the outer contours bulge smoothly over the whole width around the (narrower) opening
    broad = np.clip(1 - x**2, 0, 1) ** 0.6
    upper_inner = midline - 0.25 * open_height * opening
    lower_inner = midline + 0.75 * open_height * opening
    upper_outer = midline - (0.25 * open_height * broad + upper_height * profile) * cupid_bow
    lower_outer = midline + 0.75 * open_height * broad + lower_height * profile
    return {
        "x": x * half_width,
        "upper_outer": np.minimum(upper_outer, upper_inner - 0.5 * upper_height * profile),
        "upper_inner": upper_inner,
        "lower_inner": lower_inner,
        "lower_outer": np.maximum(lower_outer, lower_inner + 0.5 * lower_height * profile),
        "open_height": open_height,
        "inner_half_width": inner_half_width,
    }


def _poly(xs, ys_forward, ys_backward, cx, cy, scale):
    """Closed polygon (fixed point, for cv2) along ``ys_forward`` then back along ``ys_backward``."""
    px = np.concatenate([xs, xs[::-1]]) * scale + cx
    py = np.concatenate([ys_forward, ys_backward[::-1]]) * scale + cy
    return np.round(np.stack([px, py], -1) * (1 << _SHIFT)).astype(np.int32)


def _mask(shape, polys) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of the union of ``polys``."""
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, polys, 255, lineType=cv2.LINE_AA, shift=_SHIFT)
    return m.astype(np.float32) * (1 / 255)


def _skin(appearance: MouthAppearance, size: int, rng: np.random.Generator | None) -> np.ndarray:
    """Static skin background ``(size, size)`` float32: shading, philtrum, a little texture."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    skin = appearance.skin_tone * (1.04 - 0.12 * (yy - 0.5) ** 2 - 0.1 * (xx - 0.5) ** 2)
    # philtrum: a soft vertical groove above the upper lip
    groove = np.exp(-(((xx - 0.5) / 0.05) ** 2)) * np.exp(-(((yy - 0.18) / 0.12) ** 2))
    skin = skin * (1 - 0.06 * groove)
    if rng is not None:
        texture = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 2)
        skin = skin + 4.0 * texture / (texture.std() + 1e-6)
    return skin.astype(np.float32)


def _draw_frame(skin: np.ndarray, art: np.ndarray, appearance: MouthAppearance) -> np.ndarray:
    """One high-resolution frame (float32), mouth centred slightly below the image centre."""
    size = skin.shape[0]
    jaw, spread, round_, closure = (float(a) for a in art)
    c = lip_contours(jaw, spread, round_, closure, appearance)
    cx, cy = 0.5 * size, 0.5 * size
    img = skin.copy()

    # work inside the mouth's bounding box only
    x0 = max(0, int(cx + (c["x"][0] - 0.04) * size))
    x1 = min(size, int(cx + (c["x"][-1] + 0.04) * size) + 1)
    y0 = max(0, int(cy + (c["upper_outer"].min() - 0.04) * size))
    y1 = min(size, int(cy + (c["lower_outer"].max() + 0.12) * size) + 1)
    box = img[y0:y1, x0:x1]
    shape = box.shape
    ox, oy = cx - x0, cy - y0

    lip = appearance.skin_tone * (1 - appearance.lip_darkness)
    xs = c["x"]
    upper = _mask(shape, [_poly(xs, c["upper_outer"], c["upper_inner"], ox, oy, size)])
    lower = _mask(shape, [_poly(xs, c["lower_inner"], c["lower_outer"], ox, oy, size)])
    cavity = _mask(shape, [_poly(xs, c["upper_inner"], c["lower_inner"], ox, oy, size)])

    # image-size units, 0 at the mouth centre; a column and a row (maps below are separable)
    rel_y = ((np.arange(shape[0], dtype=np.float32) - oy) / size)[:, None]
    rel_x = ((np.arange(shape[1], dtype=np.float32) - ox) / size)[None, :]

    # shadow under the lower lip (mentolabial sulcus) follows the lower lip
    chin_y = c["lower_outer"][20] + 0.035
    sulcus = np.exp(-((rel_y - chin_y) / 0.025) ** 2) * np.exp(-((rel_x / (0.7 * xs[-1])) ** 2))
    box *= 1 - 0.12 * sulcus

    # lips: upper lip in shade, lower lip lit, with a highlight on its middle
    lower_mid = 0.5 * (c["lower_inner"][20] + c["lower_outer"][20])
    highlight = np.exp(-(((rel_y - lower_mid) / 0.025) ** 2)) * np.exp(
        -((rel_x / (0.45 * xs[-1])) ** 2)
    )
    box += upper * (0.86 * lip - box)
    box += lower * (lip * (1 + 0.14 * highlight) - box)

    # mouth cavity: dark, with the tongue low and the teeth at the top (and a little at the bottom)
    if c["open_height"] > 1e-3:
        top = c["upper_inner"][20]
        bottom = c["lower_inner"][20]
        tongue = np.exp(-(((rel_y - bottom) / (0.45 * (bottom - top) + 1e-6)) ** 2)) * np.exp(
            -((rel_x / (0.8 * c["inner_half_width"])) ** 2)
        )
        inside = 22.0 + 55.0 * tongue
        teeth_arch = np.sqrt(np.clip(1 - (rel_x / (0.8 * c["inner_half_width"])) ** 2, 0, 1))
        upper_teeth = rel_y < top + 0.045 * teeth_arch
        lower_teeth = (rel_y > bottom - 0.02) & (np.abs(rel_x) < 0.6 * c["inner_half_width"])
        inside = np.where(upper_teeth, appearance.teeth_brightness, inside)
        inside = np.where(lower_teeth, 0.7 * appearance.teeth_brightness, inside)
        box += cavity * (inside - box)

    # the dark line where the lips meet (always there, strongest when they are closed)
    line = np.zeros(shape, np.uint8)
    pts = _poly(xs, c["upper_inner"], c["upper_inner"], ox, oy, size)[: len(xs)]
    cv2.polylines(line, [pts], False, 255, thickness=max(1, size // 64), lineType=cv2.LINE_AA,
                  shift=_SHIFT)
    line_alpha = line.astype(np.float32) * (0.55 / 255)
    box += line_alpha * (0.45 * lip - box)
    return img


def render_mouth(
    articulation,
    appearance: MouthAppearance | None = None,
    rng: np.random.Generator | None = None,
    size: int = 64,
    head_motion: float = 1.0,
    lighting: float = 1.0,
    sensor_noise: float = 1.2,
) -> np.ndarray:
    """Draw the mouth for every articulation frame.

    Args:
        articulation: ``(n_frames, 4)`` in ``[0, 1]``, columns :data:`ARTICULATORS`.
        appearance: the speaker's face (default: an average one).
        rng: random source of the head motion, lighting drift, skin texture and sensor noise;
            ``None`` renders a still, evenly lit, noise-free mouth.
        size: output height and width in pixels.
        head_motion: scale of the head motion (1: about +-1.5 px, +-3 degrees, +-3 % zoom).
        lighting: scale of the lighting drift (1: gain +-8 %, offset +-6 gray levels).
        sensor_noise: standard deviation of the white pixel noise, in gray levels.

    Returns:
        ``(n_frames, size, size)`` uint8.
    """
    art = check_articulation(articulation)
    if size < 16:
        raise ZooInputError(f"size: expected at least 16 pixels, got {size}")
    appearance = appearance or MouthAppearance()
    n = art.shape[0]
    hi = size * SUPERSAMPLE
    skin = _skin(appearance, hi, rng)

    if rng is not None:
        sigma = 8.0  # frames: head motion and lighting drift change over ~ quarter seconds
        shift_x = 1.5 * head_motion * smooth_noise(rng, n, sigma)
        shift_y = 1.0 * head_motion * smooth_noise(rng, n, sigma)
        angle = 3.0 * head_motion * smooth_noise(rng, n, sigma)
        zoom = 1 + 0.03 * head_motion * smooth_noise(rng, n, sigma)
        gain = 1 + 0.08 * lighting * smooth_noise(rng, n, 2 * sigma)
        offset = 6.0 * lighting * smooth_noise(rng, n, 2 * sigma)
        slope = 10.0 * lighting * smooth_noise(rng, n, 2 * sigma)
        light_dir = rng.uniform(0, 2 * np.pi)
    else:
        shift_x = shift_y = angle = offset = slope = np.zeros(n)
        zoom = gain = np.ones(n)
        light_dir = 0.0

    out = np.empty((n, size, size), np.float32)
    centre = (hi / 2, hi / 2)
    for k in range(n):
        frame = _draw_frame(skin, art[k], appearance)
        warp = cv2.getRotationMatrix2D(centre, float(angle[k]), float(zoom[k]))
        warp[:, 2] += (shift_x[k] * SUPERSAMPLE, shift_y[k] * SUPERSAMPLE)
        frame = cv2.warpAffine(frame, warp, (hi, hi), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        out[k] = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    direction = np.cos(light_dir) * xx + np.sin(light_dir) * yy  # (size, size), in [-0.7, 0.7]
    out = out * gain[:, None, None].astype(np.float32) + (
        offset[:, None, None] + slope[:, None, None] * direction
    ).astype(np.float32)
    if rng is not None and sensor_noise > 0:
        out += sensor_noise * rng.standard_normal(out.shape, dtype=np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
