"""FactorCL controlled synthetic data (Liang et al. 2023, Sec. 4.1, Fig. 1, Table 1, App. D.2).

Generator of the official FactorCL release (`Synthetic/dataset.py`, `generate_data` and
`get_labels`): latent groups are drawn i.i.d. N(0, 0.5 I) -- shared `ws` ('12', 10 dims), unique
to modality 1 `w1` ('1', 6 dims), unique to modality 2 `w2` ('2', 6 dims). Modality i is the
concatenation of the groups it contains, in the order (ws, wi), times a fixed Uniform(0, 1)
matrix to 100 dims: x1 = [ws, w1] T1, x2 = [ws, w2] T2. The label reads the first
(l_s, l_1, l_2) coordinates of (ws, w1, w2): y = 1[sigmoid(mean of those coordinates) >= 0.5],
i.e. 1[mean >= 0].

Unique-information ratio (x-axis of FactorCL Fig. 1): the paper does not give per-point
dimensions, so we define ratio = (l_1 + l_2) / (l_s + l_1 + l_2), the fraction of the label's
coordinates that only one modality sees. Configs `ratioXX` use 10 label coordinates split as
l_s = 10 (1 - r), l_1 = l_2 = 5 r for r in {0, 0.2, ..., 1.0}; `official` is the released example
(label reads all 10 + 6 + 6 coordinates, ratio 12/22). 30 000 samples split 80/20 at random.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

_VERSION = "1.0.0"


@dataclasses.dataclass(eq=False)
class FactorCLConfig(tfds.core.BuilderConfig):
    """Latent sizes, label read-out and sample counts (defaults: the official example)."""

    shared_dim: int = 10  # '12'
    unique1_dim: int = 6  # '1'
    unique2_dim: int = 6  # '2'
    label_shared: int = 10  # leading coordinates of ws the label reads
    label_unique1: int = 6
    label_unique2: int = 6
    transform_dim: int = 100  # modality dimension
    variance: float = 0.5  # latent covariance 0.5 I (official SEP)
    num_samples: int = 30_000
    train_fraction: float = 0.8
    seed: int = 0


def unique_ratio(config: FactorCLConfig) -> float:
    """(l_1 + l_2) / (l_s + l_1 + l_2): share of label coordinates unique to one modality."""
    total = config.label_shared + config.label_unique1 + config.label_unique2
    return (config.label_unique1 + config.label_unique2) / total


def _ratio_config(tenths: int) -> FactorCLConfig:
    u = tenths // 2  # r = tenths / 10 -> l_1 = l_2 = 5 r
    return FactorCLConfig(
        name=f"ratio{tenths:02d}",
        version=_VERSION,
        description=f"unique ratio {tenths / 10:.1f}: label reads ws[:{10 - 2 * u}], "
        f"w1[:{u}], w2[:{u}]",
        label_shared=10 - 2 * u,
        label_unique1=u,
        label_unique2=u,
    )


def _validate(cfg: FactorCLConfig) -> None:
    for field, group in (
        ("label_shared", "shared_dim"),
        ("label_unique1", "unique1_dim"),
        ("label_unique2", "unique2_dim"),
    ):
        if not 0 <= getattr(cfg, field) <= getattr(cfg, group):
            raise ValueError(
                f"{field}={getattr(cfg, field)} must lie in [0, {group}={getattr(cfg, group)}]"
            )
    if cfg.label_shared + cfg.label_unique1 + cfg.label_unique2 == 0:
        raise ValueError("the label must read at least one latent coordinate")
    if not 0.0 < cfg.train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got {cfg.train_fraction}")


def generate(cfg: FactorCLConfig) -> dict[str, np.ndarray]:
    """All samples of `cfg` (before the split): x1, x2, ws, w1, w2, label, plus T1, T2."""
    _validate(cfg)
    rng = np.random.default_rng(cfg.seed)
    t1 = rng.uniform(0.0, 1.0, (cfg.shared_dim + cfg.unique1_dim, cfg.transform_dim))
    t2 = rng.uniform(0.0, 1.0, (cfg.shared_dim + cfg.unique2_dim, cfg.transform_dim))
    std = np.sqrt(cfg.variance)
    n = cfg.num_samples
    ws = std * rng.standard_normal((n, cfg.shared_dim))
    w1 = std * rng.standard_normal((n, cfg.unique1_dim))
    w2 = std * rng.standard_normal((n, cfg.unique2_dim))
    read = np.concatenate(
        [ws[:, : cfg.label_shared], w1[:, : cfg.label_unique1], w2[:, : cfg.label_unique2]], 1
    )
    return {
        "x1": (np.concatenate([ws, w1], 1) @ t1).astype(np.float32),
        "x2": (np.concatenate([ws, w2], 1) @ t2).astype(np.float32),
        "ws": ws.astype(np.float32),
        "w1": w1.astype(np.float32),
        "w2": w2.astype(np.float32),
        "label": (read.mean(axis=1) >= 0).astype(np.int64),
        "T1": t1.astype(np.float32),
        "T2": t2.astype(np.float32),
    }


class FactorclSynthetic(tfds.core.GeneratorBasedBuilder):
    """FactorCL synthetic bimodal data with controlled shared/unique label information."""

    name = "factorcl_synthetic"
    VERSION = tfds.core.Version(_VERSION)
    RELEASE_NOTES = {_VERSION: "Vectorised port of the official FactorCL generator."}
    BUILDER_CONFIGS = [
        FactorCLConfig(
            name="official",
            version=_VERSION,
            description="official example: label reads ws, w1, w2 entirely",
        ),
        *[_ratio_config(t) for t in (0, 2, 4, 6, 8, 10)],
    ]
    DEFAULT_CONFIG_NAME = "official"

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        _validate(cfg)

        def vec(d):
            return tfds.features.Tensor(shape=(d,), dtype=np.float32)

        data = generate(dataclasses.replace(cfg, num_samples=1))
        return tfds.core.DatasetInfo(
            builder=self,
            description=(__doc__ or "") + f"\nThis config: {cfg.description}",
            features=tfds.features.FeaturesDict(
                {
                    "x1": vec(cfg.transform_dim),
                    "x2": vec(cfg.transform_dim),
                    "ws": vec(cfg.shared_dim),
                    "w1": vec(cfg.unique1_dim),
                    "w2": vec(cfg.unique2_dim),
                    "label": tfds.features.Tensor(shape=(), dtype=np.int64),
                }
            ),
            metadata=tfds.core.MetadataDict(
                unique_ratio=unique_ratio(cfg),
                label_dims={"12": cfg.label_shared, "1": cfg.label_unique1, "2": cfg.label_unique2},
                T1=data["T1"].tolist(),
                T2=data["T2"].tolist(),
            ),
            homepage="https://github.com/pliang279/FactorCL",
            citation="Liang et al., Factorized Contrastive Learning: Going Beyond Multi-view "
            "Redundancy, NeurIPS 2023.",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        cfg = self.builder_config
        data = generate(cfg)
        perm = np.random.default_rng([cfg.seed, 1]).permutation(cfg.num_samples)
        n_train = int(cfg.train_fraction * cfg.num_samples)
        return {
            "train": self._generate_examples(data, perm[:n_train]),
            "test": self._generate_examples(data, perm[n_train:]),
        }

    def _generate_examples(self, data, indices):
        keys = ("x1", "x2", "ws", "w1", "w2")
        for i in indices:
            ex = {k: data[k][i] for k in keys}
            ex["label"] = int(data["label"][i])
            yield int(i), ex


BUILDER = FactorclSynthetic
