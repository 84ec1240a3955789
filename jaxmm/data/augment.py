"""Host-side (NumPy) augmentations for multimodal contrastive learning.

Every augmentation is a small class with explicit parameters, built by name through
`make_augmentation(name, **kwargs)` so pipelines can be configured from plain lists of
`(name, kwargs)`. Randomness comes only from the `np.random.Generator` passed in (grain's
`RandomMap` hands one per element, seeded from the pipeline seed and the element index), so an
augmentation is a pure function of (input, generator state).

Two call signatures:
  * per-modality `Augmentation`: `aug(x, valid, rng) -> (x, valid)`; `x` float32 (images: (H, W, 3)
    in [0, 1], time series: (T, d), tabular: (d,)) or int32 token ids (T,); `valid` is the bool (T,)
    step mask of a sequence modality, or None for images and tabular features.
  * `JointAugmentation` (multi-drop, multi-crop): `aug(xs, valids, rng) -> (xs, valids)` over dicts
    keyed by modality name, applying ONE random draw to several time-aligned modalities.

Time-series convention (the models use masks end to end): dropped steps stay in place, are marked
False in the `<modality>_valid` mask and are zeroed; a crop moves the kept contiguous window to the
front and re-pads the tail with zeros / False, so every output keeps its input shape.

References:
  * SimCLR image set: Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
    Representations", App. A (RandomResizedCrop, ColorJitter p=0.8, RandomGrayscale p=0.2,
    GaussianBlur, HorizontalFlip); used for raw images in CoMM (Dufumier et al. 2025), App. B.2.
  * Time series: CoMM App. C.1 (Gaussian noise, random drop 0-80%, random crop 8-100%, and the
    multimodal multi-drop / multi-crop for time-aligned modalities).
  * Unique augmentation: FactorCL (Liang et al. 2023), Sec. 3.2 Eq. (18) and App. C: augment the
    second modality without removing what the first one refers to; for images "the unique
    augmentation simply removes the cropping operation" (flipping and colour jittering are kept).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

IMAGE = "image"
TIME_SERIES = "time_series"
TABULAR = "tabular"
TOKENS = "tokens"
KINDS = (IMAGE, TIME_SERIES, TABULAR, TOKENS)

# ITU-R BT.601 luma, the weights torchvision's rgb_to_grayscale uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _check_prob(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {p}")
    return float(p)


def _check_range(name: str, lo: float, hi: float, low: float = 0.0, high: float = math.inf):
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name} must satisfy {low} <= min <= max <= {high}, got ({lo}, {hi})")
    return float(lo), float(hi)


def _check_image(x: np.ndarray, rgb: bool = True) -> None:
    # Geometric augmentations (crop, blur, flip) take any channel count; colour ones need RGB.
    if x.ndim != 3 or (rgb and x.shape[-1] != 3):
        want = "(H, W, 3)" if rgb else "(H, W, C)"
        raise ValueError(f"image augmentations expect {want} float images, got shape {x.shape}")


class Augmentation:
    """Base class: a per-modality augmentation `(x, valid, rng) -> (x, valid)`."""

    kinds: tuple[str, ...] = ()

    def __call__(self, x: np.ndarray, valid: np.ndarray | None, rng: np.random.Generator):
        raise TypeError(f"{type(self).__name__} must override __call__")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class JointAugmentation:
    """Base class: one random draw applied consistently to several time-aligned modalities."""

    modalities: tuple[str, ...] = ()

    def __call__(
        self, xs: dict[str, np.ndarray], valids: dict[str, np.ndarray], rng: np.random.Generator
    ):
        raise TypeError(f"{type(self).__name__} must override __call__")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


# ----------------------------------------------------------------------------------------------
# Images: float32 (H, W, 3) in [0, 1].
# ----------------------------------------------------------------------------------------------


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an (h, w, c) array with half-pixel centres (align_corners=False).

    Matches `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` without
    antialiasing; source coordinates are clamped to the image, as there.
    """
    h, w = image.shape[:2]

    def axis(out: int, size: int):
        src = np.clip((np.arange(out, dtype=np.float32) + 0.5) * (size / out) - 0.5, 0, size - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, size - 1)
        return lo, hi, (src - lo).astype(np.float32)

    y0, y1, wy = axis(height, h)
    x0, x1, wx = axis(width, w)
    wx = wx[None, :, None]
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return (top * (1 - wy[:, None, None]) + bottom * wy[:, None, None]).astype(np.float32)


class RandomResizedCrop(Augmentation):
    """Crop a random area fraction `scale` and aspect ratio `ratio`, resized back to (H, W).

    Same sampling as torchvision's RandomResizedCrop (10 tries, log-uniform ratio, then a centre
    crop with the ratio clamped); the output keeps the input size.
    """

    kinds = (IMAGE,)

    def __init__(
        self, scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3)
    ):
        self.scale = _check_range("random_resized_crop scale", *scale, high=1.0)
        self.ratio = _check_range("random_resized_crop ratio", *ratio)
        if self.ratio[0] <= 0 or self.scale[1] <= 0:
            raise ValueError(
                f"random_resized_crop needs positive scale/ratio, got {scale}, {ratio}"
            )

    def crop_box(self, height: int, width: int, rng: np.random.Generator):
        """Returns (top, left, h, w) of the crop, before resizing."""
        area = height * width
        log_ratio = np.log(self.ratio)
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return top, left, h, w
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, x, valid, rng):
        _check_image(x, rgb=False)
        top, left, h, w = self.crop_box(x.shape[0], x.shape[1], rng)
        return resize_bilinear(x[top : top + h, left : left + w], x.shape[0], x.shape[1]), valid


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> HSV with hue in [0, 1) (the `colorsys` convention)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc, minc = rgb.max(-1), rgb.min(-1)
    delta = maxc - minc
    # Grey pixels (delta = 0) get hue 0 and, since maxc = 0 implies delta = 0, saturation 0.
    inv = 1.0 / np.maximum(delta, 1e-12)
    h = np.where(
        maxc == r, (g - b) * inv, np.where(maxc == g, (b - r) * inv + 2.0, (r - g) * inv + 4.0)
    )
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, delta / np.maximum(maxc, 1e-12), maxc], axis=-1).astype(np.float32)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_hsv`, via the closed form c_n = v - v s clip(min(k, 4 - k), 0, 1) with
    k = (n + 6 h) mod 6 and n = 5, 3, 1 for R, G, B (no per-sector branching)."""
    h, s, v = hsv[..., :1], hsv[..., 1:2], hsv[..., 2:]
    k = (np.array([5.0, 3.0, 1.0], np.float32) + 6.0 * h) % 6.0
    return (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


def grayscale(x: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W, 1) luma."""
    return (x @ _LUMA)[..., None]


class ColorJitter(Augmentation):
    """With probability `p`, jitter brightness, contrast, saturation and hue in a random order.

    Factors are drawn as in torchvision: brightness / contrast / saturation factor
    ~ U[max(0, 1-s), 1+s], hue shift ~ U[-hue, hue] (fraction of the colour wheel, hue <= 0.5).
    Defaults are the SimCLR/CoMM values (0.4, 0.4, 0.4, 0.1) with p = 0.8.
    """

    kinds = (IMAGE,)

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        p: float = 0.8,
    ):
        for name, value in (
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ):
            if value < 0:
                raise ValueError(f"color_jitter {name} must be >= 0, got {value}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"color_jitter hue must be in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.hue = hue
        self.p = _check_prob("color_jitter p", p)

    def __call__(self, x, valid, rng):
        _check_image(x)
        if rng.uniform() >= self.p:
            return x, valid
        x = x.astype(np.float32)
        for op in rng.permutation(4):
            if op == 0 and self.brightness > 0:
                f = rng.uniform(max(0.0, 1 - self.brightness), 1 + self.brightness)
                x = np.clip(x * f, 0.0, 1.0)
            elif op == 1 and self.contrast > 0:
                f = rng.uniform(max(0.0, 1 - self.contrast), 1 + self.contrast)
                x = np.clip(f * x + (1 - f) * grayscale(x).mean(), 0.0, 1.0)
            elif op == 2 and self.saturation > 0:
                f = rng.uniform(max(0.0, 1 - self.saturation), 1 + self.saturation)
                x = np.clip(f * x + (1 - f) * grayscale(x), 0.0, 1.0)
            elif op == 3 and self.hue > 0:
                hsv = rgb_to_hsv(x)
                hsv[..., 0] = (hsv[..., 0] + rng.uniform(-self.hue, self.hue)) % 1.0
                x = hsv_to_rgb(hsv)
        return x.astype(np.float32), valid


class RandomGrayscale(Augmentation):
    """With probability `p` (SimCLR: 0.2), replace the image by its luma on all three channels."""

    kinds = (IMAGE,)

    def __init__(self, p: float = 0.2):
        self.p = _check_prob("random_grayscale p", p)

    def __call__(self, x, valid, rng):
        _check_image(x)
        if rng.uniform() >= self.p:
            return x, valid
        return np.repeat(grayscale(x), 3, axis=-1).astype(np.float32), valid


class GaussianBlur(Augmentation):
    """With probability `p`, separable Gaussian blur with sigma ~ U[sigma] (reflect padding).

    SimCLR: kernel size 10% of the image side (odd, >= 3 here), sigma in [0.1, 2.0], p = 0.5.
    """

    kinds = (IMAGE,)

    def __init__(
        self, sigma: Sequence[float] = (0.1, 2.0), p: float = 0.5, kernel_size: int | None = None
    ):
        self.sigma = _check_range("gaussian_blur sigma", *sigma)
        if self.sigma[0] <= 0:
            raise ValueError(f"gaussian_blur sigma must be > 0, got {sigma}")
        if kernel_size is not None and (kernel_size < 1 or kernel_size % 2 == 0):
            raise ValueError(f"gaussian_blur kernel_size must be odd and >= 1, got {kernel_size}")
        self.p = _check_prob("gaussian_blur p", p)
        self.kernel_size = kernel_size

    def __call__(self, x, valid, rng):
        _check_image(x, rgb=False)
        if rng.uniform() >= self.p:
            return x, valid
        sigma = rng.uniform(*self.sigma)
        k = self.kernel_size or max(3, int(0.1 * min(x.shape[:2])) // 2 * 2 + 1)
        r = k // 2
        taps = np.exp(-0.5 * (np.arange(-r, r + 1, dtype=np.float32) / sigma) ** 2)
        taps /= taps.sum()
        h, w = x.shape[:2]
        padded = np.pad(x, ((r, r), (0, 0), (0, 0)), mode="reflect" if h > r else "edge")
        x = sum(t * padded[i : i + h] for i, t in enumerate(taps))
        padded = np.pad(x, ((0, 0), (r, r), (0, 0)), mode="reflect" if w > r else "edge")
        x = sum(t * padded[:, i : i + w] for i, t in enumerate(taps))
        return x.astype(np.float32), valid


class HorizontalFlip(Augmentation):
    """With probability `p` (default 0.5), mirror the image left-right."""

    kinds = (IMAGE,)

    def __init__(self, p: float = 0.5):
        self.p = _check_prob("horizontal_flip p", p)

    def __call__(self, x, valid, rng):
        _check_image(x, rgb=False)
        if rng.uniform() >= self.p:
            return x, valid
        return np.ascontiguousarray(x[:, ::-1]), valid


# ----------------------------------------------------------------------------------------------
# Time series (T, d) with a bool (T,) mask; tabular (d,); tokens (T,).
# ----------------------------------------------------------------------------------------------


class GaussianNoise(Augmentation):
    """Add N(0, sigma^2) noise; `sigma` is a scalar or one value per feature (last axis).

    For sequences only valid steps are perturbed, so padding stays exactly zero.
    """

    kinds = (TIME_SERIES, TABULAR)

    def __init__(self, sigma: float | Sequence[float] = 0.1):
        sig = np.asarray(sigma, dtype=np.float32)
        if sig.ndim > 1 or np.any(sig < 0):
            raise ValueError(f"gaussian_noise sigma must be >= 0 scalar or 1-D, got {sigma}")
        self.sigma = sig

    def __call__(self, x, valid, rng):
        if self.sigma.ndim == 1 and x.shape[-1] != self.sigma.shape[0]:
            raise ValueError(
                f"gaussian_noise has {self.sigma.shape[0]} per-feature sigmas, input has "
                f"{x.shape[-1]} features (shape {x.shape})"
            )
        noise = rng.standard_normal(x.shape).astype(np.float32) * self.sigma
        if valid is not None:
            noise *= valid.reshape(valid.shape + (1,) * (x.ndim - 1))
        return (x + noise).astype(np.float32), valid


def _need_mask(name: str, x: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    if valid is None:
        raise ValueError(f"{name} needs a sequence modality with a step mask, got shape {x.shape}")
    if valid.shape != x.shape[:1]:
        raise ValueError(f"{name}: mask shape {valid.shape} does not match steps of {x.shape}")
    return valid


def _mask_steps(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep.reshape(keep.shape + (1,) * (x.ndim - 1)), x, np.zeros((), x.dtype))


def sample_drop(
    valid: np.ndarray, fraction: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """Returns the new mask after dropping floor(f * n_valid) valid steps, f ~ U[fraction]."""
    idx = np.flatnonzero(valid)
    k = int(math.floor(rng.uniform(*fraction) * idx.size))
    dropped = rng.choice(idx, size=k, replace=False) if k else idx[:0]
    keep = valid.copy()
    keep[dropped] = False
    return keep


def sample_crop(
    valid: np.ndarray, fraction: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int]:
    """Returns (start, length) of a contiguous window covering f ~ U[fraction] of the extent.

    The extent is [0, last valid step]; the window has at least one step.
    """
    idx = np.flatnonzero(valid)
    extent = int(idx[-1]) + 1 if idx.size else valid.shape[0]
    length = min(extent, max(1, int(round(rng.uniform(*fraction) * extent))))
    start = int(rng.integers(0, extent - length + 1))
    return start, length


def apply_crop(x: np.ndarray, valid: np.ndarray, start: int, length: int):
    """Moves steps [start, start + length) to the front and re-pads the tail (zeros / False)."""
    out = np.zeros_like(x)
    keep = np.zeros_like(valid)
    out[:length] = x[start : start + length]
    keep[:length] = valid[start : start + length]
    return _mask_steps(out, keep), keep


class RandomDrop(Augmentation):
    """Drop a fraction f ~ U[fraction] of the valid steps (CoMM App. C.1: 0-80%).

    Dropped steps are marked False in the mask and zeroed; positions are kept (see module doc).
    """

    kinds = (TIME_SERIES, TOKENS)

    def __init__(self, fraction: Sequence[float] = (0.0, 0.8)):
        self.fraction = _check_range("random_drop fraction", *fraction, high=1.0)

    def __call__(self, x, valid, rng):
        keep = sample_drop(_need_mask("random_drop", x, valid), self.fraction, rng)
        return _mask_steps(x, keep), keep


class RandomCrop(Augmentation):
    """Keep a contiguous window of f ~ U[fraction] of the steps (CoMM App. C.1: 8-100%)."""

    kinds = (TIME_SERIES, TOKENS)

    def __init__(self, fraction: Sequence[float] = (0.08, 1.0)):
        self.fraction = _check_range("random_crop fraction", *fraction, high=1.0)
        if self.fraction[1] <= 0:
            raise ValueError(f"random_crop fraction must allow a non-empty window, got {fraction}")

    def __call__(self, x, valid, rng):
        valid = _need_mask("random_crop", x, valid)
        return apply_crop(x, valid, *sample_crop(valid, self.fraction, rng))


class TokenMask(Augmentation):
    """Replace each valid token by `mask_token_id` with probability `p` (BERT-style, 15%)."""

    kinds = (TOKENS,)

    def __init__(self, mask_token_id: int, p: float = 0.15):
        self.mask_token_id = int(mask_token_id)
        self.p = _check_prob("token_mask p", p)

    def __call__(self, x, valid, rng):
        hit = rng.uniform(size=x.shape) < self.p
        if valid is not None:
            hit &= valid
        return np.where(hit, np.asarray(self.mask_token_id, x.dtype), x), valid


# ----------------------------------------------------------------------------------------------
# Joint (multimodal) augmentations for time-aligned modalities, CoMM App. C.1.
# ----------------------------------------------------------------------------------------------


def _aligned(name: str, modalities: Sequence[str], xs, valids) -> np.ndarray:
    missing = [m for m in modalities if m not in xs or m not in valids]
    if missing:
        raise ValueError(f"{name}: sequence modalities {missing} not in the example")
    lengths = {m: valids[m].shape[0] for m in modalities}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{name} needs time-aligned modalities of equal length, got {lengths}")
    # A step is droppable / croppable when any modality observes it.
    return np.logical_or.reduce([valids[m] for m in modalities])


class MultiDrop(JointAugmentation):
    """Drop the SAME steps (f ~ U[fraction] of the union of valid steps) in all `modalities`."""

    def __init__(self, modalities: Sequence[str], fraction: Sequence[float] = (0.0, 0.8)):
        if len(modalities) < 1:
            raise ValueError("multi_drop needs at least one modality name")
        self.modalities = tuple(modalities)
        self.fraction = _check_range("multi_drop fraction", *fraction, high=1.0)

    def __call__(self, xs, valids, rng):
        keep = sample_drop(_aligned("multi_drop", self.modalities, xs, valids), self.fraction, rng)
        xs, valids = dict(xs), dict(valids)
        for m in self.modalities:
            valids[m] = valids[m] & keep
            xs[m] = _mask_steps(xs[m], valids[m])
        return xs, valids


class MultiCrop(JointAugmentation):
    """Keep the SAME contiguous window (f ~ U[fraction] of the steps) in all `modalities`."""

    def __init__(self, modalities: Sequence[str], fraction: Sequence[float] = (0.08, 1.0)):
        if len(modalities) < 1:
            raise ValueError("multi_crop needs at least one modality name")
        self.modalities = tuple(modalities)
        self.fraction = _check_range("multi_crop fraction", *fraction, high=1.0)
        if self.fraction[1] <= 0:
            raise ValueError(f"multi_crop fraction must allow a non-empty window, got {fraction}")

    def __call__(self, xs, valids, rng):
        union = _aligned("multi_crop", self.modalities, xs, valids)
        start, length = sample_crop(union, self.fraction, rng)
        xs, valids = dict(xs), dict(valids)
        for m in self.modalities:
            xs[m], valids[m] = apply_crop(xs[m], valids[m], start, length)
        return xs, valids


# ----------------------------------------------------------------------------------------------
# Registry and presets.
# ----------------------------------------------------------------------------------------------

AUGMENTATIONS: dict[str, type] = {
    "random_resized_crop": RandomResizedCrop,
    "color_jitter": ColorJitter,
    "random_grayscale": RandomGrayscale,
    "gaussian_blur": GaussianBlur,
    "horizontal_flip": HorizontalFlip,
    "gaussian_noise": GaussianNoise,
    "random_drop": RandomDrop,
    "random_crop": RandomCrop,
    "token_mask": TokenMask,
    "multi_drop": MultiDrop,
    "multi_crop": MultiCrop,
}


def make_augmentation(name: str, **kwargs: Any) -> Augmentation | JointAugmentation:
    """Builds a registered augmentation; unknown names or bad kwargs raise ValueError."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; known: {sorted(AUGMENTATIONS)}")
    try:
        return AUGMENTATIONS[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for augmentation {name!r}: {e}") from e


AugConfig = Sequence[tuple[str, Mapping[str, Any]]]


def simclr_image_augmentations(
    *, strength: float = 1.0, crop_scale=(0.08, 1.0), blur_p: float = 0.5, flip: bool = True
) -> list:
    """SimCLR image set (CoMM App. B.2); `strength` scales the jitter (0.4, 0.4, 0.4, 0.1)."""
    augs = [("random_resized_crop", {"scale": tuple(crop_scale)})]
    if flip:
        augs.append(("horizontal_flip", {"p": 0.5}))
    augs += [
        (
            "color_jitter",
            {
                "brightness": 0.4 * strength,
                "contrast": 0.4 * strength,
                "saturation": 0.4 * strength,
                "hue": min(0.5, 0.1 * strength),
                "p": 0.8,
            },
        ),
        ("random_grayscale", {"p": 0.2}),
    ]
    if blur_p > 0:
        augs.append(("gaussian_blur", {"sigma": (0.1, 2.0), "p": blur_p}))
    return augs


def unique_image_augmentations(*, strength: float = 1.0, flip: bool = True) -> list:
    """FactorCL unique augmentation for an image modality (App. C: standard set minus cropping).

    Only pixel-wise colour changes (and, unless `flip=False`, a mirror) are applied, so every
    object part the other modality may refer to stays in the image: no crop and no blur.
    """
    augs = [("horizontal_flip", {"p": 0.5})] if flip else []
    augs.append(
        (
            "color_jitter",
            {
                "brightness": 0.4 * strength,
                "contrast": 0.4 * strength,
                "saturation": 0.4 * strength,
                "hue": min(0.5, 0.1 * strength),
                "p": 0.8,
            },
        )
    )
    return augs


def comm_time_series_augmentations(*, sigma: float = 0.1, drop=(0.0, 0.8)) -> list:
    """CoMM's default for time series (App. C.1): Gaussian noise then random drop."""
    return [("gaussian_noise", {"sigma": sigma}), ("random_drop", {"fraction": tuple(drop)})]
