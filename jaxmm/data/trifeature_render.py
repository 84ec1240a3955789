"""Procedural renderer of Trifeature images and the bimodal pairing of CoMM (NumPy only).

Trifeature (Hermann & Lampinen 2020, "What shapes feature representations?") draws one of ten
shapes, filled with one of ten textures, in one of ten colours, on a grey background. CoMM
(Dufumier et al. 2025, Sec. 4.1, App. B.5 and E.1) pairs two such images into the *bimodal*
Trifeature dataset. This module reproduces the official CoMM generator
(`TrifeaturesDataModule` in the CoMM code release) with vectorised NumPy instead of per-pixel
loops and `scipy.ndimage.rotate`:

* a shape template covers 128/224 (~57%) of the image side; it is rotated by an integer angle in
  [-45, 45) degrees about its centre and placed at a uniformly random position such that the
  rotated bounding box lies fully inside the image;
* a texture is a binary pattern of period `period` pixels (10 at the official 224 px), rotated
  independently about the image centre with nearest-neighbour sampling, then multiplied with
  the shape mask;
* pixel = mask * colour + (1 - mask) * grey, stored as uint8 by truncating 255 * value.

The shape inequalities below are those of the official templates written in continuous
coordinates (u = row / side, v = column / side, both in [0, 1)), so a template is resolution-free
and can be anti-aliased by supersampling.

Pairing (CoMM App. B.5): the 1 000 (shape, texture, colour) combinations are split 80/20 with a
fixed seed; each training combination is rendered `num_per_combination` times, each test
combination once. A pair is an ordered pair of images of one split that share their shape. The
synergy task asks whether (texture of image 1, colour of image 2) belongs to a fixed seeded
texture -> colour mapping; the *biased* training set keeps only pairs that respect it.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ANGLE_RANGE",
    "BACKGROUND",
    "COLORS",
    "COLOR_RGB",
    "SHAPES",
    "SHAPE_FRACTION",
    "TEXTURES",
    "all_combinations",
    "default_texture_period",
    "render",
    "sample_pairs",
    "shape_mask",
    "shape_template",
    "split_combinations",
    "synergy_label",
    "synergy_mapping",
    "texture_mask",
]

SHAPES = (
    "triangle", "square", "plus", "circle", "tee",
    "rhombus", "pentagon", "star", "fivesquare", "trapezoid",
)  # fmt: skip
TEXTURES = (
    "solid", "stripes", "grid", "hexgrid", "dots",
    "noise", "triangles", "zigzags", "rain", "pluses",
)  # fmt: skip
COLORS = (
    "red", "green", "blue", "yellow", "pink",
    "cyan", "purple", "ocean", "orange", "white",
)  # fmt: skip
# RGB in [0, 1], as in the official generator.
COLOR_RGB = np.array(
    [
        (1.0, 0.0, 0.0),
        (0.0, 1.0, 0.0),
        (0.0, 0.0, 1.0),
        (1.0, 1.0, 0.0),
        (1.0, 0.4, 1.0),
        (0.0, 1.0, 1.0),
        (0.3, 0.0, 0.5),
        (0.1, 0.4, 0.5),
        (1.0, 0.6, 0.0),
        (1.0, 1.0, 1.0),
    ],
    dtype=np.float32,
)
BACKGROUND = np.array((0.5, 0.5, 0.5), dtype=np.float32)
SHAPE_FRACTION = 128.0 / 224.0  # official BASE_SIZE / RENDER_SIZE
ANGLE_RANGE = 45  # degrees; angles are integers in [-45, 45) as in the official code
_OFFICIAL_SIZE, _OFFICIAL_PERIOD = 224, 10


def default_texture_period(image_size: int) -> int:
    """Texture period in pixels: 10 at 224 px (official), never below 6 px.

    Scaling the official period linearly would give 1.4 px at 32 px, where no texture can be
    told apart; 6 px keeps about three periods across a 32 px image's shape.
    """
    return max(6, round(_OFFICIAL_PERIOD * image_size / _OFFICIAL_SIZE))


def _inside(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Official template inequalities in continuous coordinates (u = row, v = column in [0,1))."""
    if name == "square":
        return np.ones_like(u, dtype=bool)
    if name == "circle":
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 < 0.25
    if name == "triangle":  # apex at the top, base along the bottom edge
        return np.abs(v - 0.5) < u / 2
    if name == "plus":
        bar = (np.abs(v - 0.5) <= 1 / 6) | (np.abs(u - 0.5) <= 1 / 6)
        return bar
    if name == "tee":
        return (np.abs(v - 0.5) <= 1 / 6) | (u < 1 / 3)
    if name == "rhombus":  # a sheared square, as in the official template
        return (v - 0.5 + u / 2 > 0) & (v - 0.5 + u / 2 < 0.5)
    if name == "pentagon":
        roof = (u < 0.4) & (np.abs(v - 0.5) < 1.25 * u)
        x_off = (u - 0.4) / 3.1
        body = (u >= 0.4) & (v > x_off) & (v < 1 - x_off)
        return roof | body
    if name == "star":
        top = (u < 0.4) & (np.abs(v - 0.5) < u / 4)
        x_off = (u - 0.4) * 2.4
        arms = (u >= 0.4) & (u < 0.6) & (v > x_off) & (v < 1 - x_off)
        lo = 0.33 - 0.43 * (u - 0.55)
        hi = 0.62 - 1.05 * (u - 0.55)
        legs = (u >= 0.55) & (((v > lo) & (v < hi)) | ((1 - v > lo) & (1 - v < hi)))
        return top | arms | legs
    if name == "fivesquare":  # four corner squares and the centre square
        in_u = (u >= 1 / 3) & (u < 2 / 3)
        in_v = (v >= 1 / 3) & (v < 2 / 3)
        return in_u == in_v
    if name == "trapezoid":
        x_off = u / 3.1
        return (v > x_off) & (v < 1 - x_off)
    raise ValueError(f"unknown shape {name!r}; expected one of {SHAPES}")


def _subpixel_offsets(supersample: int) -> np.ndarray:
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    return (np.arange(supersample) + 0.5) / supersample


def shape_template(shape: str, size: int, supersample: int = 1) -> np.ndarray:
    """Unrotated template of `shape` on a (size, size) grid, float32 coverage in [0, 1]."""
    sub = _subpixel_offsets(supersample)
    coords = (np.arange(size)[:, None] + sub[None, :]).reshape(-1) / size
    u, v = np.meshgrid(coords, coords, indexing="ij")
    cov = _inside(shape, u, v).astype(np.float32)
    return cov.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def shape_mask(
    shape: str,
    image_size: int,
    angle: float,
    top_left: tuple[int, int],
    supersample: int = 1,
) -> np.ndarray:
    """Coverage in [0, 1] of `shape` rotated by `angle` degrees, bounding box at `top_left`.

    The template side is round(SHAPE_FRACTION * image_size); after rotation its axis-aligned
    bounding box has side ceil(side * (|cos| + |sin|)), as `scipy.ndimage.rotate(reshape=True)`.
    """
    side = round(SHAPE_FRACTION * image_size)
    theta = math.radians(angle)
    box = math.ceil(side * (abs(math.cos(theta)) + abs(math.sin(theta))) - 1e-9)
    sub = _subpixel_offsets(supersample)
    rows = (np.arange(image_size)[:, None] + sub[None, :]).reshape(-1)
    p_r, p_c = np.meshgrid(rows, rows, indexing="ij")
    centre_r = top_left[0] + box / 2
    centre_c = top_left[1] + box / 2
    # Inverse map: rotate each output point back into the template frame (x right, y up).
    x, y = p_c - centre_c, -(p_r - centre_r)
    cos, sin = math.cos(theta), math.sin(theta)
    xs, ys = cos * x + sin * y, -sin * x + cos * y
    u, v = (-ys + side / 2) / side, (xs + side / 2) / side
    inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1) & _inside(shape, u, v)
    cov = inside.astype(np.float32)
    return cov.reshape(image_size, supersample, image_size, supersample).mean(axis=(1, 3))


def _pattern(
    texture: str, y: np.ndarray, x: np.ndarray, period: int, rng: np.random.Generator, grid: int
) -> np.ndarray:
    """Official texture rules on integer coordinates of a (grid, grid) canvas."""
    p = period
    lw, slw = max(p // 3, 1), max(p // 5, 1)
    if texture == "solid":
        return np.ones_like(y, dtype=bool)
    if texture == "stripes":
        return y % p < lw
    if texture == "grid":
        return (y % p < lw) | (x % p < lw)
    if texture == "hexgrid":
        y173 = np.floor(1.73 * y).astype(np.int64)
        return ((x + y173) % p < slw) | ((x - y173) % p < slw) | (y % p < slw)
    if texture == "dots":
        yy, xx = y % p - p // 2, x % p - p // 2
        return xx**2 + yy**2 < (3 * p // 7) ** 2
    if texture == "triangles":
        return (y % p) // 2 - np.abs(x % p - p // 2) > 0
    if texture == "zigzags":
        yy, xx = y % p, x % p
        xx = np.where((y // p) % 2 == 1, p - xx - 1, xx)
        off = yy // 2
        return (off < xx) & (xx < (p - p // 2) + off)
    if texture == "pluses":
        hw = max(1.5 * p / _OFFICIAL_PERIOD, 1.0)
        yy, xx = y % p, x % p
        shifted = (
            (np.abs(xx) < hw)
            | (p - xx < hw)
            | ((np.abs(yy - p // 2) < hw) & (np.abs(xx - p // 2) > hw))
        )
        centred = (np.abs(xx - p // 2) < hw) | (np.abs(yy - p // 2) < hw)
        return np.where((y // p) % 2 == 1, shifted, centred)
    if texture == "noise":
        field = rng.random((grid, grid)) < 0.5
        return field[y, x]
    if texture == "rain":
        # Each canvas pixel starts a 1-px wide streak of height p - p // 3 with probability 0.05.
        height = p - p // 3
        starts = (rng.random((grid, grid)) < 0.05).astype(np.int32)
        csum = np.concatenate([np.zeros((1, grid), np.int32), np.cumsum(starts, axis=0)])
        r = np.arange(grid)
        streak = (csum[r + 1] - csum[np.maximum(r + 1 - height, 0)]) > 0
        return streak[y, x]
    raise ValueError(f"unknown texture {texture!r}; expected one of {TEXTURES}")


def texture_mask(
    texture: str,
    image_size: int,
    period: int,
    angle: float,
    offset: tuple[int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    """Binary {0, 1} float32 texture: pattern on a 2x canvas, rotated, centre-cropped.

    Nearest-neighbour sampling of the rotated canvas matches `rotate(order=0, reshape=False)`.
    `rng` feeds only the random textures (noise, rain).
    """
    if period < 2:
        raise ValueError(f"texture period must be >= 2 pixels, got {period}")
    grid = 2 * image_size
    idx = np.arange(image_size) + image_size // 2 + 0.5  # crop pixel centres on the canvas
    p_r, p_c = np.meshgrid(idx, idx, indexing="ij")
    theta = math.radians(angle)
    x, y = p_c - image_size, -(p_r - image_size)
    cos, sin = math.cos(theta), math.sin(theta)
    xs, ys = cos * x + sin * y, -sin * x + cos * y
    src_r = np.clip(np.floor(image_size - ys), 0, grid - 1).astype(np.int64)
    src_c = np.clip(np.floor(xs + image_size), 0, grid - 1).astype(np.int64)
    pat = _pattern(texture, src_r + offset[0], src_c + offset[1], period, rng, grid + period)
    return pat.astype(np.float32)


def render(
    shape: int,
    texture: int,
    color: int,
    image_size: int,
    rng: np.random.Generator,
    *,
    period: int | None = None,
    supersample: int = 1,
) -> np.ndarray:
    """Renders one Trifeature image as uint8 (image_size, image_size, 3).

    Args:
      shape, texture, color: class indices into SHAPES, TEXTURES, COLORS.
      image_size: side in pixels (224 in the paper).
      rng: source of the random rotations, position, texture phase and random textures.
      period: texture period in pixels (default `default_texture_period(image_size)`).
      supersample: k > 1 anti-aliases the shape edge with k x k samples per pixel.

    Returns:
      uint8 RGB image; background (127, 127, 127).
    """
    for name, val, n in (
        ("shape", shape, len(SHAPES)),
        ("texture", texture, len(TEXTURES)),
        ("color", color, len(COLORS)),
    ):
        if not 0 <= int(val) < n:
            raise ValueError(f"{name} index must lie in [0, {n}), got {val}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
    period = default_texture_period(image_size) if period is None else int(period)
    side = round(SHAPE_FRACTION * image_size)
    angle = int(rng.integers(-ANGLE_RANGE, ANGLE_RANGE))
    theta = math.radians(angle)
    box = math.ceil(side * (abs(math.cos(theta)) + abs(math.sin(theta))) - 1e-9)
    top_left = (
        int(rng.integers(0, image_size - box + 1)),
        int(rng.integers(0, image_size - box + 1)),
    )
    mask = shape_mask(SHAPES[shape], image_size, angle, top_left, supersample)
    tex_offset = (int(rng.integers(0, period)), int(rng.integers(0, period)))
    tex_angle = int(rng.integers(-ANGLE_RANGE, ANGLE_RANGE))
    mask = mask * texture_mask(TEXTURES[texture], image_size, period, tex_angle, tex_offset, rng)
    img = mask[..., None] * COLOR_RGB[color] + (1.0 - mask[..., None]) * BACKGROUND
    return (img * 255.0).astype(np.uint8)


def all_combinations() -> np.ndarray:
    """The 1 000 (shape, texture, colour) index triples, in the official nested order."""
    s, t, c = np.meshgrid(np.arange(10), np.arange(10), np.arange(10), indexing="ij")
    return np.stack([s.ravel(), t.ravel(), c.ravel()], axis=1)


def split_combinations(seed: int, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of the 1 000 combinations into (train (800, 3), test (200, 3)) triples."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    combos = all_combinations()
    perm = np.random.default_rng(seed).permutation(len(combos))
    n_train = int(train_fraction * len(combos))
    return combos[np.sort(perm[:n_train])], combos[np.sort(perm[n_train:])]


def synergy_mapping(seed: int) -> np.ndarray:
    """Texture -> colour mapping of the synergy task: mapping[texture] = colour (a permutation).

    CoMM App. B.5: "we defined a mapping between the ten textures and the ten colors"; like the
    official code it is a seeded random permutation of the colours.
    """
    return np.random.default_rng([seed, 7]).permutation(len(COLORS))


def synergy_label(texture1: np.ndarray, color2: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """1 where (texture of image 1, colour of image 2) is one of the mapping's 10 pairs."""
    return (np.asarray(mapping)[np.asarray(texture1)] == np.asarray(color2)).astype(np.int64)


def sample_pairs(
    shapes: np.ndarray,
    textures: np.ndarray,
    colors: np.ndarray,
    max_pairs: int,
    rng: np.random.Generator,
    mapping: np.ndarray | None = None,
) -> np.ndarray:
    """Ordered image pairs (i, j) sharing their shape, subsampled without replacement.

    Args:
      shapes, textures, colors: (n,) class indices of the rendered images of one split.
      max_pairs: number of pairs to keep; all allowed pairs when fewer exist.
      rng: subsampling randomness.
      mapping: if given (biased synergy set), keep only pairs with mapping[texture_i] == colour_j.

    Returns:
      int64 (m, 2) image indices, m = min(max_pairs, #allowed), sorted by (i, j).
    """
    shapes = np.asarray(shapes)
    allowed = shapes[:, None] == shapes[None, :]
    if mapping is not None:
        allowed &= np.asarray(mapping)[np.asarray(textures)][:, None] == np.asarray(colors)[None, :]
    ii, jj = np.nonzero(allowed)
    keep = np.sort(rng.choice(len(ii), size=min(int(max_pairs), len(ii)), replace=False))
    return np.stack([ii[keep], jj[keep]], axis=1).astype(np.int64)
