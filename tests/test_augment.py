"""Augmentations (jaxmm/data/augment.py) against independent NumPy / stdlib computations."""

import colorsys

import numpy as np
import pytest

from jaxmm.data import augment as A


def _img(seed=0, h=16, w=20):
    return np.random.default_rng(seed).uniform(size=(h, w, 3)).astype(np.float32)


def _series(seed=0, t=50, d=3, n_valid=None):
    x = np.random.default_rng(seed).normal(size=(t, d)).astype(np.float32)
    valid = np.zeros(t, bool)
    valid[: n_valid or t] = True
    return np.where(valid[:, None], x, 0).astype(np.float32), valid


# Every registered per-modality augmentation, forced to fire (p=1), with an input of its kind.
_ALWAYS = {
    "random_resized_crop": ({}, "image"),
    "color_jitter": ({"p": 1.0}, "image"),
    "random_grayscale": ({"p": 1.0}, "image"),
    "gaussian_blur": ({"p": 1.0}, "image"),
    "horizontal_flip": ({"p": 1.0}, "image"),
    "gaussian_noise": ({"sigma": 0.5}, "series"),
    "random_drop": ({}, "series"),
    "random_crop": ({}, "series"),
    "token_mask": ({"mask_token_id": 0, "p": 0.5}, "tokens"),
}


def _input(kind):
    if kind == "image":
        return _img(), None
    if kind == "series":
        return _series(n_valid=40)
    return np.arange(1, 41, dtype=np.int32), np.ones(40, bool)


@pytest.mark.parametrize("name", sorted(_ALWAYS))
def test_shape_dtype_and_seeded_determinism(name):
    kwargs, kind = _ALWAYS[name]
    aug = A.make_augmentation(name, **kwargs)
    x, valid = _input(kind)
    run = lambda seed: aug(
        x.copy(), None if valid is None else valid.copy(), np.random.default_rng(seed)
    )
    (a, _), (b, _) = run(1), run(1)
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, b)
    if name in ("horizontal_flip", "random_grayscale"):  # deterministic once they fire
        return
    outs = [run(s)[0] for s in range(2, 6)]
    assert any(not np.array_equal(a, o) for o in outs), "different seeds never changed the output"


def test_unknown_name_and_bad_kwargs_raise():
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'"):
        A.make_augmentation("rotate")
    with pytest.raises(ValueError, match="bad arguments for augmentation 'random_drop'"):
        A.make_augmentation("random_drop", frac=(0, 1))
    with pytest.raises(ValueError, match="fraction"):
        A.make_augmentation("random_drop", fraction=(0.5, 0.2))
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):  # geometric: any channel count
        A.make_augmentation("horizontal_flip")(np.zeros((4, 4)), None, np.random.default_rng(0))


def test_horizontal_flip_is_exact_mirror():
    x = _img()
    out, _ = A.HorizontalFlip(p=1.0)(x, None, np.random.default_rng(0))
    np.testing.assert_array_equal(out, x[:, ::-1])
    same, _ = A.HorizontalFlip(p=0.0)(x, None, np.random.default_rng(0))
    np.testing.assert_array_equal(same, x)


def test_grayscale_has_equal_channels_equal_to_bt601_luma():
    x = _img()
    out, _ = A.RandomGrayscale(p=1.0)(x, None, np.random.default_rng(0))
    luma = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    for c in range(3):
        np.testing.assert_allclose(out[..., c], luma, atol=1e-6)


def test_hsv_round_trip_matches_colorsys():
    rgb = np.random.default_rng(3).uniform(size=(200, 3)).astype(np.float32)
    rgb[:5] = [[0.2, 0.2, 0.2], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]
    hsv = A.rgb_to_hsv(rgb)
    want = np.array([colorsys.rgb_to_hsv(*p) for p in rgb.astype(np.float64)])
    np.testing.assert_allclose(hsv, want, atol=1e-5)
    np.testing.assert_allclose(A.hsv_to_rgb(hsv), rgb, atol=1e-5)


def test_bilinear_resize_matches_pixel_loop():
    x = _img(h=5, w=7)
    out = A.resize_bilinear(x, 8, 3)

    def sample(i, j):  # half-pixel centres, clamped, written out per pixel
        sy = min(max((i + 0.5) * 5 / 8 - 0.5, 0), 4)
        sx = min(max((j + 0.5) * 7 / 3 - 0.5, 0), 6)
        y0, x0 = int(np.floor(sy)), int(np.floor(sx))
        y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
        fy, fx = sy - y0, sx - x0
        return (1 - fy) * ((1 - fx) * x[y0, x0] + fx * x[y0, x1]) + fy * (
            (1 - fx) * x[y1, x0] + fx * x[y1, x1]
        )

    want = np.array([[sample(i, j) for j in range(3)] for i in range(8)])
    np.testing.assert_allclose(out, want, atol=1e-6)
    np.testing.assert_allclose(A.resize_bilinear(x, 5, 7), x, atol=1e-6)


def test_random_resized_crop_box_respects_scale_and_ratio():
    crop = A.RandomResizedCrop(scale=(0.2, 0.6), ratio=(0.5, 2.0))
    for seed in range(200):
        top, left, h, w = crop.crop_box(64, 48, np.random.default_rng(seed))
        assert 0 <= top and top + h <= 64 and 0 <= left and left + w <= 48
        # Rounding h and w to integers moves the area/ratio by at most one pixel per side.
        assert 0.2 * 64 * 48 - (h + w + 1) <= h * w <= 0.6 * 64 * 48 + (h + w + 1)
        assert 0.5 * h - 1 <= w <= 2.0 * h + 1
    identity = A.RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    x = _img(h=12, w=12)
    np.testing.assert_allclose(identity(x, None, np.random.default_rng(0))[0], x, atol=1e-6)


def test_gaussian_blur_preserves_constants_and_mass():
    blur = A.GaussianBlur(p=1.0, sigma=(1.0, 1.0), kernel_size=5)
    const = np.full((12, 12, 3), 0.3, np.float32)
    np.testing.assert_allclose(blur(const, None, np.random.default_rng(0))[0], 0.3, atol=1e-6)
    delta = np.zeros((15, 15, 3), np.float32)
    delta[7, 7] = 1.0
    out = blur(delta, None, np.random.default_rng(0))[0]
    taps = np.exp(-0.5 * np.arange(-2, 3) ** 2)
    taps /= taps.sum()
    np.testing.assert_allclose(out[5:10, 5:10, 0], np.outer(taps, taps), atol=1e-6)
    np.testing.assert_allclose(out.sum((0, 1)), 1.0, atol=1e-5)


def test_color_jitter_acts_pixelwise_and_stays_in_unit_range():
    # Every jitter op is a per-pixel map (contrast uses the global mean only), so pixels that
    # were equal stay equal: the structure of the image is never moved.
    x = np.repeat(_img(h=4, w=4), 2, axis=1)
    for seed in range(20):
        out, _ = A.ColorJitter(p=1.0, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.5)(
            x, None, np.random.default_rng(seed)
        )
        np.testing.assert_array_equal(out[:, 0::2], out[:, 1::2])
        assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6


def test_random_drop_fraction_in_range_and_only_valid_steps():
    x, valid = _series(t=60, n_valid=50)
    lo, hi = 0.1, 0.8
    drop = A.RandomDrop(fraction=(lo, hi))
    for seed in range(100):
        out, keep = drop(x, valid, np.random.default_rng(seed))
        frac = 1 - keep.sum() / valid.sum()
        assert lo - 1 / 50 <= frac <= hi
        assert not keep[50:].any() and np.all(keep <= valid)
        np.testing.assert_array_equal(out[keep], x[keep])
        assert np.all(out[~keep] == 0)


def _find_window(out, keep, x):
    """Returns (start, length) such that out is x[start:start+length] moved to the front."""
    length = int(keep.sum())
    assert keep[:length].all() and not keep[length:].any(), "kept steps must be a prefix"
    assert np.all(out[length:] == 0)
    starts = [
        s for s in range(len(x) - length + 1) if np.array_equal(out[:length], x[s : s + length])
    ]
    assert starts, "output is not a contiguous window of the input"
    return starts[0], length


def test_random_crop_keeps_contiguous_window_of_8_to_100_percent():
    x, valid = _series(t=100, n_valid=100)
    lengths = []
    for seed in range(100):
        out, keep = A.RandomCrop()(x, valid, np.random.default_rng(seed))
        _, length = _find_window(out, keep, x)
        lengths.append(length)
    assert min(lengths) >= 8 and max(lengths) <= 100 and len(set(lengths)) > 10


def test_multi_drop_drops_the_same_steps_in_every_modality():
    a, va = _series(seed=0, t=40, d=3)
    b, vb = _series(seed=1, t=40, d=5)
    tokens = np.arange(1, 41, dtype=np.int32)
    aug = A.MultiDrop(modalities=("a", "b", "tok"), fraction=(0.3, 0.8))
    xs, vs = aug(
        {"a": a, "b": b, "tok": tokens, "img": _img()},
        {"a": va, "b": vb, "tok": np.ones(40, bool)},
        np.random.default_rng(5),
    )
    np.testing.assert_array_equal(vs["a"], vs["b"])
    np.testing.assert_array_equal(vs["a"], vs["tok"])
    assert 0.3 * 40 - 1 <= (~vs["a"]).sum() <= 0.8 * 40
    assert np.all(xs["a"][~vs["a"]] == 0) and np.all(xs["tok"][~vs["a"]] == 0)
    np.testing.assert_array_equal(xs["b"][vs["b"]], b[vs["b"]])
    with pytest.raises(ValueError, match="equal length"):
        aug(
            {"a": a, "b": b[:30], "tok": tokens},
            {"a": va, "b": vb[:30], "tok": np.ones(40, bool)},
            np.random.default_rng(0),
        )


def test_multi_crop_keeps_the_same_window_in_every_modality():
    a, va = _series(seed=0, t=60, d=2)
    b, vb = _series(seed=1, t=60, d=4)
    aug = A.MultiCrop(modalities=("a", "b"))
    for seed in range(20):
        xs, vs = aug({"a": a, "b": b}, {"a": va, "b": vb}, np.random.default_rng(seed))
        assert _find_window(xs["a"], vs["a"], a) == _find_window(xs["b"], vs["b"], b)


def test_token_mask_rate_and_padding():
    tokens = np.arange(1, 5001, dtype=np.int32)
    valid = np.ones(5000, bool)
    valid[4000:] = False
    out, v = A.TokenMask(mask_token_id=0, p=0.15)(tokens, valid, np.random.default_rng(0))
    hit = out != tokens
    assert np.all(out[hit] == 0) and not hit[4000:].any()
    # Binomial(4000, 0.15): std ~ 22.6 masked tokens; 5 std either side.
    assert abs(hit.sum() - 600) < 5 * 22.6
    np.testing.assert_array_equal(v, valid)


def test_gaussian_noise_per_feature_sigma_and_untouched_padding():
    x = np.zeros((4000, 3), np.float32)
    valid = np.ones(4000, bool)
    valid[3000:] = False
    out, _ = A.GaussianNoise(sigma=[0.1, 1.0, 0.0])(x, valid, np.random.default_rng(0))
    np.testing.assert_allclose(out[:3000].std(0), [0.1, 1.0, 0.0], rtol=0.05, atol=1e-7)
    assert np.all(out[3000:] == 0)
    tab, _ = A.GaussianNoise(sigma=0.2)(np.zeros(5000, np.float32), None, np.random.default_rng(1))
    assert abs(tab.std() - 0.2) < 0.01


def test_unique_image_augmentation_never_crops_a_marked_corner():
    # FactorCL App. C: the unique augmentation is the standard set without cropping; a 3x3 mark
    # in the top-left corner must survive every draw, at most mirrored to the top-right corner.
    x = np.full((16, 16, 3), 0.2, np.float32)
    x[:3, :3] = [0.9, 0.1, 0.5]
    augs = [A.make_augmentation(n, **k) for n, k in A.unique_image_augmentations()]
    assert not any(isinstance(a, A.RandomResizedCrop | A.GaussianBlur) for a in augs)
    left = np.zeros((16, 16), bool)
    left[:3, :3] = True
    right = left[:, ::-1]

    def marked_at(out, mark):
        inside, outside = out[mark], out[~mark]
        return (
            np.all(inside == inside[0])
            and np.all(outside == outside[0])
            and not np.allclose(inside[0], outside[0])
        )

    for seed in range(50):
        rng = np.random.default_rng(seed)
        out = x
        for a in augs:
            out, _ = a(out, None, rng)
        assert marked_at(out, left) or marked_at(out, right), f"mark lost (seed {seed})"
    full = A.simclr_image_augmentations()
    assert [n for n, _ in full][0] == "random_resized_crop"
    assert "horizontal_flip" not in [n for n, _ in A.unique_image_augmentations(flip=False)]


def test_simclr_small_preset_keeps_half_the_image_and_never_blurs():
    # The demo's preset for 32 px images (jaxmm.experiment "simclr_small"): crop scale (0.5, 1)
    # and no Gaussian blur, the rest of SimCLR's set unchanged.
    from jaxmm.data import inputs

    names = inputs.ModalityData("image1", "image", "simclr_small").augmentations()
    assert [n for n, _ in names] == [
        "random_resized_crop",
        "horizontal_flip",
        "color_jitter",
        "random_grayscale",
    ]
    crop = A.make_augmentation(names[0][0], **names[0][1])
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(2000):
        top, left, h, w = crop.crop_box(32, 32, rng)
        areas.append(h * w / 32**2)
    # Rounding of the box to whole pixels lets an area fall a little under the nominal 0.5.
    assert min(areas) >= 0.45 and max(areas) <= 1.0
    paper = dict(inputs.ModalityData("image1", "image", "simclr").augmentations())
    assert paper["random_resized_crop"]["scale"] == (0.08, 1.0) and "gaussian_blur" in paper
