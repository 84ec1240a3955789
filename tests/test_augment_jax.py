"""Device (JAX) augmentations against the host NumPy ones for given draws, plus statistics,
shapes and determinism per key."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxmm.data import augment as host
from jaxmm.data import augment_jax as aj

RS = np.random.default_rng(0)
IMAGES = RS.uniform(size=(6, 12, 16, 3)).astype(np.float32)


def test_crop_resize_matches_numpy_bilinear_of_the_crop():
    key = jax.random.key(1)
    for i in range(8):
        box = np.asarray(
            aj.crop_box(jax.random.fold_in(key, i), 12, 16, (0.08, 1.0), (0.75, 4 / 3))
        )
        top, left, h, w = (int(v) for v in box)
        assert 0 < h <= 12 and 0 < w <= 16 and top + h <= 12 and left + w <= 16
        ref = host.resize_bilinear(IMAGES[0, top : top + h, left : left + w], 12, 16)
        out = jax.jit(aj.crop_resize)(IMAGES[0], jnp.asarray(box))
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_crop_area_statistics_follow_scale():
    boxes = jax.vmap(lambda k: aj.crop_box(k, 64, 64, (0.25, 1.0), (3 / 4, 4 / 3)))(
        jax.random.split(jax.random.key(0), 2000)
    )
    area = np.asarray(boxes[:, 2] * boxes[:, 3]) / 64**2
    assert 0.2 < area.min() and area.max() <= 1.0
    assert abs(area.mean() - 0.625) < 0.05  # U[0.25, 1] area (rounded sides)


def test_flip_grayscale_jitter_blur_match_numpy_for_given_draws():
    x = IMAGES[0]
    np.testing.assert_allclose(
        aj.random_grayscale(jax.random.key(0), IMAGES, p=1.0)[0],
        np.repeat(host.grayscale(x), 3, axis=-1),
        rtol=1e-6,
    )
    flipped = np.asarray(aj.horizontal_flip(jax.random.key(0), IMAGES, p=1.0))
    np.testing.assert_array_equal(flipped, IMAGES[:, :, ::-1])
    ramp = np.zeros((400, 2, 2, 3), np.float32) + np.arange(2.0, dtype=np.float32)[:, None]
    frac = np.mean(np.asarray(aj.horizontal_flip(jax.random.key(3), ramp))[:, 0, 0, 0])
    assert 0.4 < frac < 0.6
    # Colour jitter: brightness then hue then contrast then saturation, given factors.
    f = np.array([1.2, 0.7, 1.3, 0.05], np.float32)
    ref = np.clip(x * f[0], 0, 1)
    hsv = host.rgb_to_hsv(ref)
    hsv[..., 0] = (hsv[..., 0] + f[3]) % 1.0
    ref = host.hsv_to_rgb(hsv)
    ref = np.clip(f[1] * ref + (1 - f[1]) * host.grayscale(ref).mean(), 0, 1)
    ref = np.clip(f[2] * ref + (1 - f[2]) * host.grayscale(ref), 0, 1)
    out = jax.jit(aj.jitter_ops)(x, jnp.asarray(f), jnp.array([0, 3, 1, 2]))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    # Blur: separable Gaussian with reflect padding, by explicit loops.
    sigma, k = 1.3, 5
    taps = np.exp(-0.5 * (np.arange(-2, 3) / sigma) ** 2)
    taps /= taps.sum()
    pad = np.pad(x, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    ref = np.zeros_like(x)
    for i in range(12):
        for j in range(16):
            ref[i, j] = np.einsum("a,b,abc->c", taps, taps, pad[i : i + 5, j : j + 5])
    np.testing.assert_allclose(jax.jit(aj.blur, static_argnums=2)(x, sigma, k), ref, atol=1e-5)


def test_jitter_ops_follow_every_order_alone_and_under_vmap():
    """All 24 orders against the NumPy composition of the four host ops, one image at a time
    and as one vmapped batch (one order per image: the batched path `color_jitter` takes)."""
    f = np.array([1.3, 0.6, 1.4, -0.08], np.float32)

    def ops(x, op):
        if op == 0:
            return np.clip(x * f[0], 0, 1)
        if op == 1:
            return np.clip(f[1] * x + (1 - f[1]) * host.grayscale(x).mean(), 0, 1)
        if op == 2:
            return np.clip(f[2] * x + (1 - f[2]) * host.grayscale(x), 0, 1)
        hsv = host.rgb_to_hsv(x)
        hsv[..., 0] = (hsv[..., 0] + f[3]) % 1.0
        return host.hsv_to_rgb(hsv)

    orders = np.array(list(itertools.permutations(range(4))), np.int32)
    x = RS.uniform(size=(len(orders), 6, 7, 3)).astype(np.float32)
    refs = []
    for img, order in zip(x, orders, strict=True):
        ref = img
        for op in order:
            ref = ops(ref, op)
        refs.append(ref)
    one = jax.jit(aj.jitter_ops)
    for img, order, ref in zip(x, orders, refs, strict=True):
        np.testing.assert_allclose(one(img, jnp.asarray(f), order), ref, rtol=1e-4, atol=1e-5)
    batched = jax.jit(jax.vmap(aj.jitter_ops, in_axes=(0, None, 0)))(x, jnp.asarray(f), orders)
    np.testing.assert_allclose(batched, np.stack(refs), rtol=1e-4, atol=1e-5)


def test_simclr_chain_is_deterministic_per_key_and_keeps_range():
    fn = jax.jit(aj.simclr_augment)
    a, b = fn(jax.random.key(7), IMAGES), fn(jax.random.key(7), IMAGES)
    np.testing.assert_array_equal(a, b)
    c = fn(jax.random.key(8), IMAGES)
    assert a.shape == IMAGES.shape and a.dtype == jnp.float32
    assert not np.allclose(a, c)
    assert float(a.min()) >= -1e-6 and float(a.max()) <= 1 + 1e-6
    # Images in one batch get different draws.
    same = np.repeat(IMAGES[:1], 6, axis=0)
    out = np.asarray(fn(jax.random.key(1), same))
    assert not np.allclose(out[0], out[1])
