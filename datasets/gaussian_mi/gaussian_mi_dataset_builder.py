"""Gaussian data with known (conditional) mutual information.

* `d{dim}_mi{k}` / `d{dim}_mi{k}_cubic`: correlated Gaussians x ~ N(0, I_d),
  y = rho x + sqrt(1 - rho^2) eps with rho chosen so that I(X; Y) = k nats
  (Poole et al. 2019, Sec. 4; FactorCL App. D.2, dims {20, 50, 100, 200}, MI {2, ..., 10});
  the cubic variant stores y^3, which leaves the MI unchanged.
* `cmi_dz{d}`: the CCMI "Model I" data behind FactorCL Tables 9-10 (x1, x2 scalar, conditioning
  c of dimension d_z; Table 9 uses d_z = 20, Table 10 d_z in {1, 10, 20, 50, 100}).

Samplers and closed forms come from `jaxmm.data.gaussian`. The true value in nats is stored in
the metadata (`true_mi`) and the description, and returned by `true_mi(config)`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from jaxmm.data import gaussian

_VERSION = "1.0.0"


@dataclasses.dataclass(eq=False)
class GaussianMIConfig(tfds.core.BuilderConfig):
    """Which setting, its size and its sample counts."""

    kind: str = "correlated"  # "correlated" or "conditional"
    dim: int = 20  # x, y dimension (correlated) or x1, x2 dimension (conditional)
    mi: float = 2.0  # target I(X; Y) in nats (correlated)
    cubic: bool = False  # store y^3 (correlated)
    cond_dim: int = 20  # d_z of c (conditional)
    noise_std: float = 0.1  # channel noise s (conditional)
    num_train: int = 64_000
    num_test: int = 8_192
    seed: int = 0


def true_mi(config: GaussianMIConfig) -> float:
    """Closed-form I(X; Y) (correlated) or I(X1; X2 | C) (conditional) of `config`, in nats."""
    if config.kind == "correlated":
        return gaussian.mi_for_rho(gaussian.rho_for_mi(config.mi, config.dim), config.dim)
    if config.kind == "conditional":
        return gaussian.conditional_mi(config.noise_std, config.dim)
    raise ValueError(f"kind must be 'correlated' or 'conditional', got {config.kind!r}")


def _configs() -> list[GaussianMIConfig]:
    out = []
    for dim in (20, 50, 100, 200):
        for mi in (2, 4, 6, 8, 10):
            for cubic in (False, True):
                out.append(
                    GaussianMIConfig(
                        name=f"d{dim}_mi{mi}" + ("_cubic" if cubic else ""),
                        version=_VERSION,
                        description=f"correlated Gaussians, dim {dim}, I(X;Y) = {mi} nats"
                        + (", y cubed" if cubic else ""),
                        dim=dim,
                        mi=float(mi),
                        cubic=cubic,
                    )
                )
    for dz in (1, 10, 20, 50, 100):
        out.append(
            GaussianMIConfig(
                name=f"cmi_dz{dz}",
                version=_VERSION,
                kind="conditional",
                dim=1,
                cond_dim=dz,
                num_train=50_000,
                description=f"CCMI Model I, d_z = {dz} (FactorCL Tables 9-10)",
            )
        )
    return out


class GaussianMi(tfds.core.GeneratorBasedBuilder):
    """Samples with a closed-form (conditional) mutual information."""

    name = "gaussian_mi"
    VERSION = tfds.core.Version(_VERSION)
    RELEASE_NOTES = {_VERSION: "Correlated and conditional Gaussian MI benchmarks."}
    BUILDER_CONFIGS = _configs()
    DEFAULT_CONFIG_NAME = "d20_mi2"

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        value = true_mi(cfg)

        def vec(d):
            return tfds.features.Tensor(shape=(d,), dtype=np.float32)

        if cfg.kind == "correlated":
            feats = {"x": vec(cfg.dim), "y": vec(cfg.dim)}
            meta = {"rho": gaussian.rho_for_mi(cfg.mi, cfg.dim)}
        else:
            feats = {"x1": vec(cfg.dim), "x2": vec(cfg.dim), "c": vec(cfg.cond_dim)}
            meta = {"noise_std": cfg.noise_std}
        return tfds.core.DatasetInfo(
            builder=self,
            description=(__doc__ or "") + f"\nThis config: {cfg.description}; "
            f"true {'MI' if cfg.kind == 'correlated' else 'CMI'} = {value:.4f} nats.",
            features=tfds.features.FeaturesDict(feats),
            metadata=tfds.core.MetadataDict(true_mi=value, kind=cfg.kind, **meta),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        cfg = self.builder_config
        return {
            "train": self._generate_examples(0, cfg.num_train),
            "test": self._generate_examples(1, cfg.num_test),
        }

    def _generate_examples(self, split_id: int, n: int):
        cfg = self.builder_config
        rng = np.random.default_rng([cfg.seed, split_id])
        if cfg.kind == "correlated":
            rho = gaussian.rho_for_mi(cfg.mi, cfg.dim)
            x, y = gaussian.sample_correlated_gaussian_np(rng, n, cfg.dim, rho, cubic=cfg.cubic)
            data = {"x": x, "y": y}
        else:
            data = gaussian.sample_conditional_gaussian_np(
                rng, n, cond_dim=cfg.cond_dim, noise_std=cfg.noise_std, dim=cfg.dim
            )
        for i in range(n):
            yield i, {k: v[i] for k, v in data.items()}


BUILDER = GaussianMi
