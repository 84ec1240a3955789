"""Trifeature renderer and pairing (CoMM Sec. 4.1, App. B.5, E.1), checked against independent
per-pixel ports of the official generator's loops and against construction rules."""

import itertools

import numpy as np
import pytest

from jaxmm.data import trifeature_render as tr


def _official_template(name: str, size: int) -> np.ndarray:
    """Per-pixel loops of the official CoMM `_render_plain_shape` (independent of `_inside`)."""
    s = size
    out = np.zeros((s, s), np.float32)
    for i, j in itertools.product(range(s), range(s)):
        if name == "square":
            v = True
        elif name == "circle":
            v = (i + 0.5 - s // 2) ** 2 + (j + 0.5 - s // 2) ** 2 < (s // 2) ** 2
        elif name == "triangle":
            v = abs(j - s // 2) - abs(i // 2) < 1
        elif name == "plus":
            lo, hi = s // 2 - s // 6, s // 2 + s // 6 + 1
            v = lo <= j < hi or lo <= i < hi
        elif name == "tee":
            v = s // 2 - s // 6 <= j < s // 2 + s // 6 + 1 or i < s // 3
        elif name == "rhombus":
            v = 0 < j - s // 2 + i // 2 < s // 2
        elif name == "pentagon":
            mid = int(s * 0.4)
            v = (
                (abs(j - s // 2) - abs(i * 1.25) < 1)
                if i < mid
                else ((i - mid) // 3.1 < j < s - (i - mid) // 3.1)
            )
        elif name == "star":
            line, line2, line3 = (
                int(s * 0.4),
                int(s * 0.4) + int(0.2 * s),
                int(s * 0.4) + int(0.15 * s),
            )
            v = False
            if i < line:
                v = abs(j - s // 2) - abs(i // 4) < 1
            elif i < line2:
                v = (i - line) * 2.4 < j < s - (i - line) * 2.4
            if i >= line3:
                a, b = s * 0.33 - 0.43 * (i - line3), s * 0.62 - 1.05 * (i - line3)
                v = v or a < j < b or a < s - j < b
        elif name == "fivesquare":
            in_i, in_j = s // 3 <= i < 2 * s // 3, s // 3 <= j < 2 * s // 3
            v = in_i == in_j
        elif name == "trapezoid":
            v = i // 3.1 < j < s - i // 3.1
        out[i, j] = v
    return out


def _iou(a, b):
    a, b = a > 0.5, b > 0.5
    return (a & b).sum() / (a | b).sum()


def test_templates_match_official_pixel_loops():
    for name in tr.SHAPES:
        iou = _iou(tr.shape_template(name, 128), _official_template(name, 128))
        assert iou > 0.95, (name, iou)  # the official loops add one pixel of slack at edges


def test_shape_identified_by_iou_with_unrotated_templates():
    size, rng = 64, np.random.default_rng(0)
    side = round(tr.SHAPE_FRACTION * size)
    templates = [tr.shape_template(s, side) for s in tr.SHAPES]
    for k, name in enumerate(tr.SHAPES):
        r, c = rng.integers(0, size - side + 1, 2)
        mask = tr.shape_mask(name, size, 0, (int(r), int(c)))
        crop = mask[r : r + side, c : c + side]
        assert mask.sum() == crop.sum()  # nothing outside the placed box
        assert int(np.argmax([_iou(crop, t) for t in templates])) == k
    # Rotation about the centre preserves the area (up to pixelisation).
    for name in tr.SHAPES:
        area0 = tr.shape_template(name, side, supersample=4).sum()
        rot = tr.shape_mask(name, size, 33, (0, 0), supersample=4)
        assert abs(rot.sum() - area0) / area0 < 0.03, name


def test_rendered_shape_is_fully_inside_and_solid_colour_exact():
    size = 48
    side = round(tr.SHAPE_FRACTION * size)
    bg = (tr.BACKGROUND * 255).astype(np.uint8)
    for color in range(10):
        for seed in range(5):
            img = tr.render(1, 0, color, size, np.random.default_rng([color, seed]))
            fg = np.any(img != bg, axis=-1)
            # A solid square keeps its full area: nothing was clipped by the image border.
            assert abs(fg.sum() - side * side) / (side * side) < 0.05
            want = (tr.COLOR_RGB[color] * 255).astype(np.uint8)
            assert np.all(img[fg] == want)
    rgb = np.vstack([tr.COLOR_RGB, tr.BACKGROUND])
    dists = np.abs(rgb[:, None] - rgb[None]).sum(-1) + np.eye(len(rgb))
    assert dists.min() > 0.2


def _official_texture(name: str, size: int, p: int, oy: int, ox: int) -> np.ndarray:
    """Per-pixel loops of the official `get_texture` for the periodic textures."""
    lw, slw = p // 3, p // 5
    out = np.zeros((size, size), np.float32)
    for i, j in itertools.product(range(size), range(size)):
        y, x = i + oy, j + ox
        if name == "stripes":
            v = y % p < lw
        elif name == "grid":
            v = y % p < lw or x % p < lw
        elif name == "hexgrid":
            v = (x + int(1.73 * y)) % p < slw or (x - int(1.73 * y)) % p < slw or y % p < slw
        elif name == "dots":
            v = (x % p - p // 2) ** 2 + (y % p - p // 2) ** 2 < (3 * p // 7) ** 2
        elif name == "triangles":
            v = (y % p) // 2 - abs(x % p - p // 2) > 0
        elif name == "zigzags":
            xx = x % p
            if (y // p) % 2:
                xx = p - xx - 1
            v = (y % p) // 2 < xx < (p - p // 2) + (y % p) // 2
        elif name == "pluses":
            hw, yy, xx = 1.5, y % p, x % p
            if (y // p) % 2:
                v = abs(xx) < hw or p - xx < hw or (abs(yy - p // 2) < hw and abs(xx - p // 2) > hw)
            else:
                v = abs(xx - p // 2) < hw or abs(yy - p // 2) < hw
        out[i, j] = v
    return out


PERIODIC = ("stripes", "grid", "hexgrid", "dots", "triangles", "zigzags", "pluses")


@pytest.mark.parametrize("name", PERIODIC)
def test_unrotated_texture_matches_official_loops(name):
    size, p, off = 40, 10, (3, 7)
    mask = tr.texture_mask(name, size, p, 0, off, np.random.default_rng(0))
    # texture_mask draws the centre crop of a 2x canvas: canvas row = image row + size // 2.
    ref = _official_texture(name, 2 * size, p, *off)[
        size // 2 : size // 2 + size, size // 2 : size // 2 + size
    ]
    np.testing.assert_array_equal(mask, ref)


def test_textures_distinguishable_up_to_translation():
    p = tr.default_texture_period(32)
    size = 4 * p
    rng = np.random.default_rng(0)
    tiles = {}
    for name in PERIODIC:
        tiles[name] = {
            tr.texture_mask(name, size, p, 0, (oy, ox), rng).tobytes()
            for oy in range(2 * p)
            for ox in range(p)
        }
    for a, b in itertools.combinations(PERIODIC, 2):
        assert not tiles[a] & tiles[b], (a, b)
    solid = tr.texture_mask("solid", 32, p, 17, (1, 2), rng)
    noise = tr.texture_mask("noise", 64, p, 0, (0, 0), rng)
    rain = tr.texture_mask("rain", 64, p, 0, (0, 0), rng)
    assert solid.min() == 1.0
    assert abs(noise.mean() - 0.5) < 0.05
    height = p - p // 3
    assert abs(rain.mean() - (1 - 0.95**height)) < 0.05


def test_render_deterministic_per_seed():
    a = tr.render(3, 4, 5, 32, np.random.default_rng(11))
    b = tr.render(3, 4, 5, 32, np.random.default_rng(11))
    c = tr.render(3, 4, 5, 32, np.random.default_rng(12))
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)
    with pytest.raises(ValueError, match="shape index"):
        tr.render(10, 0, 0, 32, np.random.default_rng(0))


def test_split_pairs_and_synergy_labels_by_construction():
    train, test = tr.split_combinations(42)
    assert train.shape == (800, 3) and test.shape == (200, 3)
    as_set = lambda a: {tuple(r) for r in a.tolist()}
    assert not as_set(train) & as_set(test)
    assert len(as_set(train) | as_set(test)) == 1000
    mapping = tr.synergy_mapping(42)
    assert sorted(mapping.tolist()) == list(range(10))
    np.testing.assert_array_equal(mapping, tr.synergy_mapping(42))

    imgs = np.repeat(train, 3, axis=0)
    rng = np.random.default_rng(0)
    pairs = tr.sample_pairs(imgs[:, 0], imgs[:, 1], imgs[:, 2], 500, rng)
    assert pairs.shape == (500, 2) and len({tuple(p) for p in pairs.tolist()}) == 500
    assert np.all(imgs[pairs[:, 0], 0] == imgs[pairs[:, 1], 0])
    syn = tr.synergy_label(imgs[pairs[:, 0], 1], imgs[pairs[:, 1], 2], mapping)
    loop = [
        int((t, c) in {(k, int(mapping[k])) for k in range(10)})
        for t, c in zip(imgs[pairs[:, 0], 1], imgs[pairs[:, 1], 2], strict=True)
    ]
    np.testing.assert_array_equal(syn, loop)

    biased = tr.sample_pairs(imgs[:, 0], imgs[:, 1], imgs[:, 2], 300, rng, mapping)
    assert np.all(mapping[imgs[biased[:, 0], 1]] == imgs[biased[:, 1], 2])
    assert np.all(imgs[biased[:, 0], 0] == imgs[biased[:, 1], 0])
    # The test split has about 200^2 / 10 shape-sharing ordered pairs (CoMM: 4 096 used).
    all_test = tr.sample_pairs(test[:, 0], test[:, 1], test[:, 2], 10**9, rng)
    counts = np.bincount(test[:, 0], minlength=10)
    assert len(all_test) == int((counts**2).sum())
