"""Batched, seeded, jit-able image augmentations in JAX (the SimCLR set of `jaxmm.data.augment`).

The host versions (`jaxmm.data.augment`, NumPy, one image per call) are what the grain pipeline
runs on CPU; these run the same augmentations on a whole (B, H, W, 3) float batch in [0, 1] on
the device, inside or next to the train step, with shapes fixed at trace time. Every function
takes an explicit key and gives the same output for the same key; each image gets its own key
(`jax.random.split(key, B)`).

Same sampling as the host versions (torchvision's conventions): random resized crop with 10
vectorised tries then a centre-crop fallback, bilinear resize with half-pixel centres and
coordinates clamped to the crop; colour jitter (brightness, contrast, saturation, hue) applied in
a random order with probability p; grayscale with BT.601 luma; separable Gaussian blur with
reflect padding and sigma ~ U[sigma]; horizontal flip. The random streams differ from NumPy's, so
outputs match the host versions in distribution, and exactly for given draws (crop box, factors,
sigma), which is what tests/test_augment_jax.py checks.

Example:
  >>> aug = jax.jit(simclr_augment)
  >>> views = aug(jax.random.key(0), images)          # (B, H, W, 3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

_LUMA = jnp.array([0.299, 0.587, 0.114], jnp.float32)  # BT.601, as torchvision


def _check_images(x: jax.Array) -> None:
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (B, H, W, 3), got shape {x.shape}")


def _per_image(fn, key: jax.Array, images: jax.Array, *args) -> jax.Array:
    _check_images(images)
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda k, x: fn(k, x, *args))(keys, images.astype(jnp.float32))


# -- random resized crop ------------------------------------------------------------------------


def crop_box(key: jax.Array, height: int, width: int, scale, ratio) -> jax.Array:
    """torchvision's RandomResizedCrop box (top, left, h, w) as int32 (4,): 10 tries, first fit."""
    area = height * width
    k1, k2, k3, k4 = jax.random.split(key, 4)
    target = area * jax.random.uniform(k1, (10,), minval=scale[0], maxval=scale[1])
    log_r = jax.random.uniform(k2, (10,), minval=math.log(ratio[0]), maxval=math.log(ratio[1]))
    aspect = jnp.exp(log_r)
    w = jnp.round(jnp.sqrt(target * aspect)).astype(jnp.int32)
    h = jnp.round(jnp.sqrt(target / aspect)).astype(jnp.int32)
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = jnp.argmax(ok)
    hh, ww = h[first], w[first]
    top = jnp.floor(jax.random.uniform(k3) * (height - hh + 1)).astype(jnp.int32)
    left = jnp.floor(jax.random.uniform(k4) * (width - ww + 1)).astype(jnp.int32)
    # Fallback (no try fits): centre crop with the aspect ratio clamped to `ratio`.
    in_aspect = width / height
    if in_aspect < ratio[0]:
        fh, fw = int(round(width / ratio[0])), width
    elif in_aspect > ratio[1]:
        fh, fw = height, int(round(height * ratio[1]))
    else:
        fh, fw = height, width
    fallback = jnp.array([(height - fh) // 2, (width - fw) // 2, fh, fw], jnp.int32)
    return jnp.where(jnp.any(ok), jnp.stack([top, left, hh, ww]), fallback)


def crop_resize(x: jax.Array, box: jax.Array) -> jax.Array:
    """(H, W, C) image, box (top, left, h, w) -> the crop resized bilinearly back to (H, W)
    (half-pixel centres, source coordinates clamped to the crop: `augment.resize_bilinear`)."""
    height, width = x.shape[:2]
    top, left, h, w = (box[i].astype(jnp.float32) for i in range(4))

    def axis(out, start, size):
        src = (jnp.arange(out, dtype=jnp.float32) + 0.5) * (size / out) - 0.5
        src = jnp.clip(src, 0.0, size - 1.0)
        lo = jnp.floor(src)
        hi = jnp.minimum(lo + 1.0, size - 1.0)
        return (start + lo).astype(jnp.int32), (start + hi).astype(jnp.int32), src - lo

    y0, y1, wy = axis(height, top, h)
    x0, x1, wx = axis(width, left, w)
    wx = wx[None, :, None]
    rows0, rows1 = x[y0], x[y1]
    upper = rows0[:, x0] * (1 - wx) + rows0[:, x1] * wx
    lower = rows1[:, x0] * (1 - wx) + rows1[:, x1] * wx
    return upper * (1 - wy[:, None, None]) + lower * wy[:, None, None]


def random_resized_crop(
    key: jax.Array,
    images: jax.Array,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> jax.Array:
    """(B, H, W, 3) -> same shape: a random area fraction `scale` / aspect `ratio` per image."""
    scale, ratio = tuple(map(float, scale)), tuple(map(float, ratio))

    def one(k, x):
        return crop_resize(x, crop_box(k, x.shape[0], x.shape[1], scale, ratio))

    return _per_image(one, key, images)


# -- flip, grayscale, colour jitter, blur -------------------------------------------------------


def horizontal_flip(key: jax.Array, images: jax.Array, p: float = 0.5) -> jax.Array:
    """Mirror each image left-right with probability p."""
    return _per_image(lambda k, x: jnp.where(jax.random.uniform(k) < p, x[:, ::-1], x), key, images)


def grayscale(x: jax.Array) -> jax.Array:
    """(..., 3) -> (..., 1) BT.601 luma."""
    return (x @ _LUMA)[..., None]


def random_grayscale(key: jax.Array, images: jax.Array, p: float = 0.2) -> jax.Array:
    """Replace each image by its luma on all three channels with probability p."""

    def one(k, x):
        return jnp.where(jax.random.uniform(k) < p, jnp.repeat(grayscale(x), 3, axis=-1), x)

    return _per_image(one, key, images)


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
    """(..., 3) RGB in [0, 1] -> HSV with hue in [0, 1) (the `colorsys` convention)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc, minc = rgb.max(-1), rgb.min(-1)
    delta = maxc - minc
    inv = 1.0 / jnp.maximum(delta, 1e-12)
    h = jnp.where(
        maxc == r, (g - b) * inv, jnp.where(maxc == g, (b - r) * inv + 2.0, (r - g) * inv + 4.0)
    )
    h = jnp.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return jnp.stack([h, delta / jnp.maximum(maxc, 1e-12), maxc], axis=-1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    """Inverse of `rgb_to_hsv`: c_n = v - v s clip(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6."""
    h, s, v = hsv[..., :1], hsv[..., 1:2], hsv[..., 2:]
    k = (jnp.array([5.0, 3.0, 1.0], jnp.float32) + 6.0 * h) % 6.0
    return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def jitter_ops(x: jax.Array, factors: jax.Array, order: jax.Array) -> jax.Array:
    """Brightness, contrast, saturation factors and hue shift (`factors`, (4,)) applied to one
    (H, W, 3) image in `order` (a permutation of 0..3 in that naming), each step clipped to
    [0, 1] (the hue shift stays in range by itself).

    The hue shift runs once, between the ops that `order` puts before it and those it puts
    after. Brightness, contrast and saturation are each one clipped affine map a x + b, so each
    other position is one map with (a, b) picked by `order`. Under `vmap` (one order per image)
    a `lax.switch` would compute all four ops at each of the four positions, the HSV round trip
    four times; this form computes it once and six affine maps.
    """
    hue_at = jnp.argmax(order == 3)

    def affine(x, op):
        # op 0: brightness f x; 1: contrast f x + (1 - f) mean(luma);
        # op 2: saturation f x + (1 - f) luma.
        a = factors[jnp.minimum(op, 2)]
        luma = grayscale(x)
        b = jnp.where(op == 0, 0.0, (1 - a) * jnp.where(op == 1, luma.mean(), luma))
        return jnp.clip(a * x + b, 0.0, 1.0)

    for i in range(3):  # positions before the hue shift (it is at 3 at the latest)
        x = jnp.where(i < hue_at, affine(x, order[i]), x)
    hsv = rgb_to_hsv(x)
    x = hsv_to_rgb(hsv.at[..., 0].set((hsv[..., 0] + factors[3]) % 1.0))
    for i in range(1, 4):  # positions after it (it is at 0 at the earliest)
        x = jnp.where(i > hue_at, affine(x, order[i]), x)
    return x


def color_jitter(
    key: jax.Array,
    images: jax.Array,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 0.8,
) -> jax.Array:
    """With probability p per image: factors ~ U[max(0, 1-s), 1+s], hue shift ~ U[-hue, hue],
    applied in a random order (torchvision's ColorJitter; SimCLR/CoMM defaults)."""
    lo = jnp.array([max(0.0, 1 - brightness), max(0.0, 1 - contrast), max(0.0, 1 - saturation)])
    hi = jnp.array([1 + brightness, 1 + contrast, 1 + saturation])

    def one(k, x):
        k_apply, k_f, k_h, k_order = jax.random.split(k, 4)
        f = jax.random.uniform(k_f, (3,), minval=lo, maxval=hi)
        shift = jax.random.uniform(k_h, (1,), minval=-hue, maxval=hue)
        order = jax.random.permutation(k_order, 4)
        out = jitter_ops(x, jnp.concatenate([f, shift]), order)
        return jnp.where(jax.random.uniform(k_apply) < p, out, x)

    return _per_image(one, key, images)


def blur(x: jax.Array, sigma: jax.Array, kernel_size: int) -> jax.Array:
    """Separable Gaussian blur of one (H, W, C) image, reflect padding, `kernel_size` odd."""
    r = kernel_size // 2
    taps = jnp.exp(-0.5 * (jnp.arange(-r, r + 1, dtype=jnp.float32) / sigma) ** 2)
    taps = taps / taps.sum()
    h, w = x.shape[:2]
    padded = jnp.pad(x, ((r, r), (0, 0), (0, 0)), mode="reflect" if h > r else "edge")
    x = sum(taps[i] * padded[i : i + h] for i in range(kernel_size))
    padded = jnp.pad(x, ((0, 0), (r, r), (0, 0)), mode="reflect" if w > r else "edge")
    return sum(taps[i] * padded[:, i : i + w] for i in range(kernel_size))


def gaussian_blur(
    key: jax.Array,
    images: jax.Array,
    sigma: Sequence[float] = (0.1, 2.0),
    p: float = 0.5,
    kernel_size: int | None = None,
) -> jax.Array:
    """With probability p per image, blur with sigma ~ U[sigma]; kernel 10% of the side (odd,
    >= 3) unless given (SimCLR)."""
    k = kernel_size or max(3, int(0.1 * min(images.shape[1:3])) // 2 * 2 + 1)
    if k % 2 == 0:
        raise ValueError(f"gaussian_blur kernel_size must be odd, got {k}")

    def one(key, x):
        k_apply, k_s = jax.random.split(key)
        s = jax.random.uniform(k_s, minval=sigma[0], maxval=sigma[1])
        return jnp.where(jax.random.uniform(k_apply) < p, blur(x, s, k), x)

    return _per_image(one, key, images)


def simclr_augment(
    key: jax.Array,
    images: jax.Array,
    *,
    crop_scale: Sequence[float] = (0.08, 1.0),
    jitter: float = 0.4,
    hue: float = 0.1,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    blur_p: float = 0.5,
    flip_p: float = 0.5,
) -> jax.Array:
    """The SimCLR chain (Chen et al. 2020, App. A; CoMM App. B.2): crop, flip, colour jitter,
    grayscale, blur, on a (B, H, W, 3) batch in [0, 1]."""
    k = jax.random.split(key, 5)
    x = random_resized_crop(k[0], images, crop_scale)
    x = horizontal_flip(k[1], x, flip_p)
    x = color_jitter(k[2], x, jitter, jitter, jitter, hue, jitter_p)
    x = random_grayscale(k[3], x, gray_p)
    return gaussian_blur(k[4], x, p=blur_p) if blur_p > 0 else x
