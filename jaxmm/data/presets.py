"""The one table of augmentation presets: per modality kind, preset name -> its host chain and,
for images, its device version (CoMM App. B.2 and C.1; FactorCL App. C for "unique").

`ModalityData.augment` names a preset of its kind; the grain pipeline applies `host(strength)`
(a list of `(augmentation name, kwargs)` for `pipeline.ModalitySpec`), and a config with
``data.augment_on="device"`` applies `device(strength)` (a function ``(key, images (B, H, W, 3)
in [0, 1]) -> images`` of `jaxmm.data.augment_jax`) inside the train step. Both come from the
same row, so the two paths cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from jaxmm.data import augment as aug_lib
from jaxmm.data import augment_jax as aj

HostChain = list[tuple[str, dict[str, Any]]]
DeviceFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Preset:
    host: Callable[[float], HostChain]  # strength -> the pipeline's augmentation list
    device: Callable[[float], DeviceFn] | None = None  # strength -> batched jitted version


def _jitter(s: float) -> dict[str, float]:
    """The colour-jitter strengths of both paths: 0.4 s for brightness/contrast/saturation, hue
    0.1 s (at most 0.5)."""
    return {"jitter": 0.4 * s, "hue": min(0.5, 0.1 * s)}


def _device_unique(s: float) -> DeviceFn:
    j = _jitter(s)

    def unique(key, x):
        k1, k2 = jax.random.split(key)
        x = aj.horizontal_flip(k1, x)
        return aj.color_jitter(k2, x, j["jitter"], j["jitter"], j["jitter"], j["hue"], 0.8)

    return unique


PRESETS: dict[str, dict[str, Preset]] = {
    aug_lib.IMAGE: {
        "simclr": Preset(
            lambda s: aug_lib.simclr_image_augmentations(strength=s),
            lambda s: lambda key, x: aj.simclr_augment(key, x, **_jitter(s)),
        ),
        # SimCLR for small images (<= 64 px, the demo's 32 px Trifeature): crop scale (0.5, 1),
        # no blur. At 32 px a 0.08 crop keeps under half of the object in 22% of views and a
        # sigma <= 2 px blur erases a 4-6 px texture (SimCLR's own CIFAR recipe drops the blur);
        # the ablation is in docs/results.md.
        "simclr_small": Preset(
            lambda s: aug_lib.simclr_image_augmentations(
                strength=s, crop_scale=(0.5, 1.0), blur_p=0.0
            ),
            lambda s: (
                lambda key, x: aj.simclr_augment(
                    key, x, crop_scale=(0.5, 1.0), blur_p=0.0, **_jitter(s)
                )
            ),
        ),
        # FactorCL's unique augmentation: flip and colour jitter, no crop.
        "unique": Preset(lambda s: aug_lib.unique_image_augmentations(strength=s), _device_unique),
        # Geometric only, for any channel count and standardised values (.npz images): colour
        # jitter assumes RGB in [0, 1].
        "crop": Preset(lambda s: [("random_resized_crop", {"scale": (0.25, 1.0)})]),
        "none": Preset(lambda s: [], lambda s: lambda key, x: x),
    },
    aug_lib.TIME_SERIES: {
        # CoMM's default (App. C.1): Gaussian noise then dropping 0-80% of the steps.
        "noise_drop": Preset(lambda s: aug_lib.comm_time_series_augmentations(sigma=0.1 * s)),
        "noise": Preset(lambda s: [("gaussian_noise", {"sigma": 0.1 * s})]),
        "drop": Preset(lambda s: [("random_drop", {"fraction": (0.0, 0.8)})]),
        "crop": Preset(lambda s: [("random_crop", {"fraction": (0.08, 1.0)})]),
        "none": Preset(lambda s: []),
    },
    # CoMM App. B.2: tabular components get independent Gaussian noise (all assumed continuous).
    aug_lib.TABULAR: {
        "noise": Preset(lambda s: [("gaussian_noise", {"sigma": 0.1 * s})]),
        "none": Preset(lambda s: []),
    },
    aug_lib.TOKENS: {"none": Preset(lambda s: [])},
}

# The preset of `augment="default"`, per kind (CoMM's defaults).
DEFAULT = {
    aug_lib.IMAGE: "simclr",
    aug_lib.TIME_SERIES: "noise_drop",
    aug_lib.TABULAR: "noise",
    aug_lib.TOKENS: "none",
}


def resolve(kind: str, preset: str) -> str:
    """The preset name `preset` stands for ("default" -> the kind's default)."""
    return DEFAULT[kind] if preset == "default" else preset


def host(kind: str, preset: str, strength: float = 1.0) -> HostChain:
    """The pipeline's augmentation list of `preset` for a modality of `kind`."""
    return PRESETS[kind][resolve(kind, preset)].host(strength)


def device(kind: str, preset: str, strength: float = 1.0) -> DeviceFn:
    """The device version of `preset` (images only); one ValueError naming those that have one."""
    row = PRESETS.get(kind, {}).get(resolve(kind, preset)) if kind in DEFAULT else None
    if row is None or row.device is None:
        have = sorted(n for n, p in PRESETS[aug_lib.IMAGE].items() if p.device is not None)
        raise ValueError(
            f"no device version of {kind} preset {preset!r}; device presets (images): "
            f"{', '.join(have)}"
        )
    return row.device(strength)
