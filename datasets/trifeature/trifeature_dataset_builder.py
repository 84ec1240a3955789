"""Bimodal Trifeature (CoMM, Dufumier et al. 2025, Sec. 4.1, App. B.5 and E.1).

Pairs of procedurally rendered Trifeature images (Hermann & Lampinen 2020) that share their shape.
Tasks on every pair: `shape` (redundancy), `texture1` / `texture2` (uniqueness), `color1` /
`color2`, and `synergy` = 1 iff (texture of image 1, colour of image 2) belongs to a fixed seeded
texture -> colour mapping (`synergy_mapping()`, stored in the dataset metadata). The `*_biased`
configs keep only training pairs that respect the mapping (CoMM Experiment 2); their test split
is the unbiased one of the matching config.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from jaxmm.data import trifeature_render as tr

_VERSION = "1.0.0"


@dataclasses.dataclass(eq=False)
class TrifeatureConfig(tfds.core.BuilderConfig):
    """Rendering and pairing options (defaults: the paper's counts)."""

    image_size: int = 32  # side in pixels; the paper renders 224
    texture_period: int | None = None  # None -> trifeature_render.default_texture_period
    supersample: int = 2  # anti-aliasing of shape edges (k x k samples per pixel)
    biased: bool = False  # synergy experiment: training pairs respect the mapping
    num_train_pairs: int = 10_000  # CoMM App. B.5
    max_test_pairs: int = 4_096  # all shape-sharing test pairs when fewer (about 4 000)
    num_per_combination: int = 3  # training renders per (shape, texture, colour)
    train_fraction: float = 0.8  # 800 / 200 combinations
    seed: int = 42


def _config(size: int, biased: bool) -> TrifeatureConfig:
    name = f"px{size}" + ("_biased" if biased else "")
    what = "biased synergy training pairs" if biased else "pairs sharing a shape"
    return TrifeatureConfig(
        name=name,
        version=_VERSION,
        description=f"{size}x{size} px images, {what}.",
        image_size=size,
        biased=biased,
    )


def synergy_mapping(config: TrifeatureConfig | None = None) -> dict[str, str]:
    """The synergy task's texture -> colour mapping of `config` (default px32), by name."""
    seed = TrifeatureConfig(name="_").seed if config is None else config.seed
    mapping = tr.synergy_mapping(seed)
    return {tr.TEXTURES[t]: tr.COLORS[int(c)] for t, c in enumerate(mapping)}


class Trifeature(tfds.core.GeneratorBasedBuilder):
    """Bimodal Trifeature pairs rendered on the fly (no download)."""

    name = "trifeature"
    VERSION = tfds.core.Version(_VERSION)
    RELEASE_NOTES = {_VERSION: "NumPy re-implementation of the official CoMM generator."}
    BUILDER_CONFIGS = [_config(s, b) for b in (False, True) for s in (32, 64, 224)]
    DEFAULT_CONFIG_NAME = "px32"

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        hw = (cfg.image_size, cfg.image_size, 3)
        img = tfds.features.Tensor(shape=hw, dtype=np.uint8, encoding="zlib")
        label = tfds.features.Tensor(shape=(), dtype=np.int64)
        mapping = tr.synergy_mapping(cfg.seed)
        pairs = ", ".join(f"{tr.TEXTURES[t]}={tr.COLORS[int(c)]}" for t, c in enumerate(mapping))
        return tfds.core.DatasetInfo(
            builder=self,
            description=(__doc__ or "") + f"\nSynergy mapping (texture=colour): {pairs}.",
            features=tfds.features.FeaturesDict(
                {
                    "image1": img,
                    "image2": img,
                    "shape": label,
                    "texture1": label,
                    "texture2": label,
                    "color1": label,
                    "color2": label,
                    "synergy": label,
                }
            ),
            metadata=tfds.core.MetadataDict(
                synergy_mapping=[int(c) for c in mapping],
                shapes=list(tr.SHAPES),
                textures=list(tr.TEXTURES),
                colors=list(tr.COLORS),
                texture_period=cfg.texture_period or tr.default_texture_period(cfg.image_size),
            ),
            homepage="https://github.com/Duplums/CoMM",
            citation="Dufumier et al., What to align in multimodal contrastive learning? "
            "ICLR 2025.",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples("train"), "test": self._generate_examples("test")}

    def _render_split(self, split: str):
        cfg = self.builder_config
        train, test = tr.split_combinations(cfg.seed, cfg.train_fraction)
        combos = np.repeat(train, cfg.num_per_combination, axis=0) if split == "train" else test
        split_id = 0 if split == "train" else 1
        images = np.stack(
            [
                tr.render(
                    *map(int, c),
                    cfg.image_size,
                    np.random.default_rng([cfg.seed, split_id, i]),
                    period=cfg.texture_period,
                    supersample=cfg.supersample,
                )
                for i, c in enumerate(combos)
            ]
        )
        return images, combos

    def _generate_examples(self, split: str):
        cfg = self.builder_config
        images, combos = self._render_split(split)
        mapping = tr.synergy_mapping(cfg.seed)
        biased = cfg.biased and split == "train"
        n_pairs = cfg.num_train_pairs if split == "train" else cfg.max_test_pairs
        # Seeded per split (not per config) so a biased config shares its test pairs.
        rng = np.random.default_rng([cfg.seed, 2, 0 if split == "train" else 1, int(biased)])
        pairs = tr.sample_pairs(
            combos[:, 0], combos[:, 1], combos[:, 2], n_pairs, rng, mapping if biased else None
        )
        syn = tr.synergy_label(combos[pairs[:, 0], 1], combos[pairs[:, 1], 2], mapping)
        for k, (i, j) in enumerate(pairs):
            yield (
                int(k),
                {
                    "image1": images[i],
                    "image2": images[j],
                    "shape": int(combos[i, 0]),
                    "texture1": int(combos[i, 1]),
                    "texture2": int(combos[j, 1]),
                    "color1": int(combos[i, 2]),
                    "color2": int(combos[j, 2]),
                    "synergy": int(syn[k]),
                },
            )


BUILDER = Trifeature
