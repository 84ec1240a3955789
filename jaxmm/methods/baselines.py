"""The baselines CoMM is compared with (Dufumier et al. 2025, Sec. 4 and App. B.1), one interface.

Each follows the official CoMM code (github.com/Duplums/CoMM, `pl_modules/` and `losses/`):

* `Cross` (CLIP, Radford et al. 2021): per-modality encoders + linear projectors, symmetric CLIP
  loss with a learnable logit scale (init log(1/0.07), clamped to [0, ln 100]); mean over modality
  pairs for n > 2. One view.
* `CrossSelf` (SLIP-style, Mu et al. 2022; `losses/cross_self_loss.py`): per-modality 3-layer MLP
  heads; NT-Xent between modalities (cross term) + `ssl_scale` x the mean over modalities of the
  two-view NT-Xent (self terms). For n = 2 this is the official
  ``cross + ssl_scale * 0.5 * (ssl_1 + ssl_2)``.
* `SimCLR` (Chen et al. 2020) on the fused input: NT-Xent between the two views' fused embeddings.
* `SupCon` (Khosla et al. 2020): supervised contrastive loss on the fused embeddings of both views;
  CoMM's fine-tuning objective (App. B.4, "with no additional parameters").
* `CMC` (Tian et al. 2020): per-modality embeddings with linear heads, mean NT-Xent over all
  modality pairs (`losses/cmc_loss.py`). One view.
* `ModalSupCon`: FactorCL's SimCLR and SupCon baselines (official `SupConModel`): `SupConLoss`
  with the two modalities' projections as the two views of each sample, with or without labels.

`embed`: Cross / CrossSelf / CMC / ModalSupCon return the concatenation of the per-modality
encoder outputs before the heads (modality order of the model config), as their
`extract_features`; SimCLR and SupCon return the fused embedding (full input, before any head).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm import estimators
from jaxmm.config import Serializable
from jaxmm.methods.base import Batch, Metrics, Params
from jaxmm.methods.common import (
    MethodModule,
    NNXMethod,
    check_temperature,
    concat_views,
    dropout_rngs,
    get_view,
    unimodal_heads,
)
from jaxmm.methods.registry import register
from jaxmm.models import ModelConfig, MultimodalModel

LN_100 = math.log(100.0)


def _view(batch: Batch, key: str) -> tuple[dict, dict]:
    """A bare {"x", "valid"} view, or `batch[key]` of a full batch."""
    if "x" in batch:
        return batch["x"], batch.get("valid") or {}
    return get_view(batch, key)


def _batch_size(view: tuple[dict, dict]) -> int:
    return next(iter(view[0].values())).shape[0]


def _pairs(names: tuple[str, ...]) -> list[tuple[str, str]]:
    return list(itertools.combinations(names, 2))


class _UnimodalMethod(NNXMethod):
    """Per-modality pooled encoder outputs with one projection head each (Cross, CrossSelf, CMC)."""

    min_modalities = 2

    def _build_module(self, model: MultimodalModel, rngs: nnx.Rngs) -> MethodModule:
        heads = unimodal_heads(model, self.config.head_hidden_dims, self.config.proj_dim, rngs)
        return MethodModule(model, heads=heads)

    def _project(self, module: MethodModule, view, rng) -> dict[str, jax.Array]:
        h = module.model.encode_unimodal(*view, deterministic=False, rngs=dropout_rngs(rng))
        return {m: module.heads[m](h[m]) for m in self.modality_names}

    def embed(self, params: Params, batch: Batch) -> jax.Array:
        """Concatenated per-modality encoder outputs (before heads), model modality order."""
        h = self.module(params).model.encode_unimodal(*_view(batch, "view1"), deterministic=True)
        return jnp.concatenate([h[m] for m in self.modality_names], axis=-1)


# ------------------------------------------------------------------------------------------------
# Cross (CLIP).


@dataclasses.dataclass(frozen=True)
class CrossConfig(Serializable):
    """CLIP between modalities (CoMM App. B.1 "Cross")."""

    proj_dim: int = 128  # projector output width (official MultiBench configs: 128 / 256)
    head_hidden_dims: tuple[int, ...] = ()  # () = a linear projector, as in the paper
    init_logit_scale: float = math.log(1 / 0.07)  # CLIP's initial log inverse temperature
    max_logit_scale: float = LN_100  # CLIP clamps the scale at 100
    view: str = "view1"  # the single (unaugmented in the paper) view contrasted across modalities

    def __post_init__(self):
        if self.proj_dim < 1:
            raise ValueError(f"CrossConfig.proj_dim must be >= 1, got {self.proj_dim}")
        if not 0 <= self.max_logit_scale:
            raise ValueError(
                f"CrossConfig.max_logit_scale must be >= 0, got {self.max_logit_scale}"
            )


@register
class Cross(_UnimodalMethod):
    """CLIP-style cross-modal contrastive learning; see the module docstring.

    The logit scale is a plain parameter; the clamp to [0, max_logit_scale] (the official code's
    in-place `clamp_(0, 4.6052)` after each step) is applied inside the loss, so a parameter above
    the bound behaves exactly like the bound (zero gradient past it).

    Example:
      >>> method = Cross(model_cfg, CrossConfig(proj_dim=64))
      >>> loss, metrics = method.loss(method.init(key, batch), batch, key)
    """

    name, config_class = "cross", CrossConfig

    @classmethod
    def own_data_config(cls, width: int) -> CrossConfig:
        return CrossConfig(proj_dim=width)

    def __init__(
        self, model_config: ModelConfig | Mapping[str, Any], config: CrossConfig | None = None
    ):
        super().__init__(model_config)
        self.config = CrossConfig() if config is None else config

    def _build_module(self, model: MultimodalModel, rngs: nnx.Rngs) -> MethodModule:
        heads = unimodal_heads(model, self.config.head_hidden_dims, self.config.proj_dim, rngs)
        return MethodModule(model, heads=heads, logit_scale=self.config.init_logit_scale)

    def loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        """Mean over modality pairs of the symmetric CLIP loss (Radford et al. 2021, Fig. 3)."""
        module = self.module(params)
        p = self._project(module, get_view(batch, self.config.view), rng)
        log_scale = jnp.clip(module.logit_scale[...], 0.0, self.config.max_logit_scale)
        metrics = {}
        for a, b in _pairs(self.modality_names):
            metrics[f"clip_{a}_{b}"] = estimators.clip_loss(
                p[a], p[b], logit_scale=log_scale, axis_name=axis_name
            )
        loss = jnp.mean(jnp.stack(list(metrics.values())))
        metrics.update(cross_loss=loss, logit_scale=jnp.exp(log_scale))
        return loss, metrics


# ------------------------------------------------------------------------------------------------
# Cross+Self (SLIP-style).


@dataclasses.dataclass(frozen=True)
class CrossSelfConfig(Serializable):
    """Cross-modal + per-modality self-supervised NT-Xent (CoMM App. B.1 "Cross+Self")."""

    proj_dim: int = 256  # MLP head output width (official: 256)
    head_hidden_dims: tuple[int, ...] = (1024, 1024)  # 3-layer MLP heads (official mlp_dim 1024)
    temperature: float = 0.1  # NT-Xent temperature of every term
    ssl_scale: float = 1.0  # weight of the (mean) self terms relative to the cross term
    # View contrasted across modalities. The official code uses the unaugmented input, which the
    # jaxmm batch contract does not carry: the first augmented view stands in for it.
    cross_view: Literal["view1", "view2"] = "view1"

    def __post_init__(self):
        check_temperature("CrossSelfConfig", self.temperature)
        if self.ssl_scale < 0:
            raise ValueError(f"CrossSelfConfig.ssl_scale must be >= 0, got {self.ssl_scale}")


@register
class CrossSelf(_UnimodalMethod):
    """SLIP-style: ``mean_pairs NTXent(p_a, p_b) + ssl_scale * mean_m NTXent(p'_m, p''_m)``.

    Both terms go through the same per-modality heads (official `CrossSelf.forward`).
    """

    name, config_class = "cross_self", CrossSelfConfig

    @classmethod
    def views_read(cls, config) -> int:
        return 2  # the loss contrasts view1 with view2

    @classmethod
    def own_data_config(cls, width: int) -> CrossSelfConfig:
        return CrossSelfConfig(proj_dim=width, head_hidden_dims=(width,))

    def __init__(
        self, model_config: ModelConfig | Mapping[str, Any], config: CrossSelfConfig | None = None
    ):
        super().__init__(model_config)
        self.config = CrossSelfConfig() if config is None else config

    def loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        module = self.module(params)
        v1, v2 = get_view(batch, "view1"), get_view(batch, "view2")
        b = _batch_size(v1)
        p = self._project(module, concat_views(v1, v2), rng)  # one encoder pass for both views
        p1 = {m: z[:b] for m, z in p.items()}
        p2 = {m: z[b:] for m, z in p.items()}
        pc = p1 if self.config.cross_view == "view1" else p2
        nce = lambda u, v: estimators.ntxent_loss(
            u, v, temperature=self.config.temperature, axis_name=axis_name
        )
        metrics = {f"cross_{a}_{c}": nce(pc[a], pc[c]) for a, c in _pairs(self.modality_names)}
        cross = jnp.mean(jnp.stack(list(metrics.values())))
        selfs = {f"self_{m}": nce(p1[m], p2[m]) for m in self.modality_names}
        self_term = jnp.mean(jnp.stack(list(selfs.values())))
        loss = cross + self.config.ssl_scale * self_term
        metrics.update(selfs, cross_loss=cross, self_loss=self_term, cross_self_loss=loss)
        return loss, metrics


# ------------------------------------------------------------------------------------------------
# CMC.


@dataclasses.dataclass(frozen=True)
class CMCConfig(Serializable):
    """Contrastive Multiview Coding across modalities (official `cmc_heads`: linear, 256-d)."""

    proj_dim: int = 256  # head output width
    head_hidden_dims: tuple[int, ...] = ()  # () = linear heads, as in the official configs
    temperature: float = 0.1  # NT-Xent temperature
    view: str = "view1"  # the single view contrasted across modalities

    def __post_init__(self):
        check_temperature("CMCConfig", self.temperature)


@register
class CMC(_UnimodalMethod):
    """CMC (Tian et al. 2020, "full graph"): mean NT-Xent over all C(n, 2) modality pairs."""

    name, config_class = "cmc", CMCConfig

    @classmethod
    def own_data_config(cls, width: int) -> CMCConfig:
        return CMCConfig(proj_dim=width)

    def __init__(
        self, model_config: ModelConfig | Mapping[str, Any], config: CMCConfig | None = None
    ):
        super().__init__(model_config)
        self.config = CMCConfig() if config is None else config

    def loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        p = self._project(self.module(params), get_view(batch, self.config.view), rng)
        metrics = {
            f"nce_{a}_{b}": estimators.ntxent_loss(
                p[a], p[b], temperature=self.config.temperature, axis_name=axis_name
            )
            for a, b in _pairs(self.modality_names)
        }
        loss = jnp.mean(jnp.stack(list(metrics.values())))
        metrics["cmc_loss"] = loss
        return loss, metrics


# ------------------------------------------------------------------------------------------------
# FactorCL's baselines: SupConLoss between the two modalities' projections.


@dataclasses.dataclass(frozen=True)
class ModalSupConConfig(Serializable):
    """FactorCL's SimCLR / SupCon baselines (official `SupConModel`, `Synthetic/`)."""

    use_labels: bool = True  # True: SupCon (same label = positive); False: FactorCL's "SimCLR"
    label_key: str = "label"  # key in batch["labels"]: int class ids (B,), when use_labels
    proj_dim: int = 128  # head output width (official: the encoder's embed_dim, 128)
    head_hidden_dims: tuple[int, ...] = (128, 128)  # official mlp(embed, embed, embed, 1)
    temperature: float = 0.07  # official SupConLoss default
    base_temperature: float | None = 0.07  # T / T_base factor of the reference code
    normalize: bool = False  # the official model feeds unnormalised projections
    view: str = "view1"  # the single (unaugmented) view whose modalities are contrasted

    def __post_init__(self):
        check_temperature("ModalSupConConfig", self.temperature)
        if self.proj_dim < 1:
            raise ValueError(f"ModalSupConConfig.proj_dim must be >= 1, got {self.proj_dim}")


@register
class ModalSupCon(_UnimodalMethod):
    """SupCon L_out (Khosla et al. 2020, Eq. 2) with the MODALITIES as the views of a sample.

    FactorCL (Liang et al. 2023, Sec. 4.1 and App. D.2) compares against SimCLR and SupCon
    trained on the two modalities: the official `SupConModel` stacks the projections
    ``[p1(e1(x1)), p2(e2(x2))]`` as the two views of each sample and applies `SupConLoss`
    (temperature 0.07, unnormalised features). With labels it is supervised (every same-label
    projection of either modality is a positive); without, each sample is its own class and the
    loss is the two-view NT-Xent between modalities (anchors from both modalities, same-modality
    negatives included): FactorCL's "SimCLR", which can only learn what x1 and x2 share.
    `embed` is ``[e1(x1), e2(x2)]``, the official `get_embedding`.
    """

    name, config_class = "modal_supcon", ModalSupConConfig

    @classmethod
    def labels_read(cls, config: ModalSupConConfig) -> tuple[str, ...]:
        return (config.label_key,) if config.use_labels else ()

    def __init__(
        self,
        model_config: ModelConfig | Mapping[str, Any],
        config: ModalSupConConfig | None = None,
    ):
        super().__init__(model_config)
        self.config = ModalSupConConfig() if config is None else config
        if len(self.modality_names) != 2:
            raise ValueError(
                f"modal_supcon contrasts two modalities; the model has {list(self.modality_names)}"
            )

    def loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        cfg = self.config
        view = get_view(batch, cfg.view)
        b = _batch_size(view)
        if cfg.use_labels:
            labels = batch.get("labels", {})
            if cfg.label_key not in labels:
                raise ValueError(
                    f"modal_supcon: batch['labels'] has no {cfg.label_key!r} "
                    f"(ModalSupConConfig.label_key); got {sorted(labels)}"
                )
            y = labels[cfg.label_key]
            if y.ndim != 1 or not jnp.issubdtype(y.dtype, jnp.integer):
                raise ValueError(
                    f"modal_supcon: labels[{cfg.label_key!r}] must be integer class ids of "
                    f"shape (B,), got {y.dtype} {y.shape}"
                )
        else:  # every sample its own class, globally unique under data parallelism
            offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * b
            y = offset + jnp.arange(b)
        p = self._project(self.module(params), view, rng)
        feats = jnp.stack([p[m] for m in self.modality_names], axis=1)  # (B, 2, D)
        loss = estimators.supcon_loss(
            feats,
            y,
            temperature=cfg.temperature,
            base_temperature=cfg.base_temperature,
            normalize=cfg.normalize,
            axis_name=axis_name,
        )
        return loss, {"supcon" if cfg.use_labels else "ntxent": loss}


# ------------------------------------------------------------------------------------------------
# Fused-representation baselines: SimCLR and SupCon.


class _FusedMethod(NNXMethod):
    """Two views through the full model (all modalities fused)."""

    def _fused_views(self, params: Params, batch: Batch, rng: jax.Array, use_head: bool):
        model = self.module(params).model
        v1, v2 = get_view(batch, "view1"), get_view(batch, "view2")
        b = _batch_size(v1)
        z = model(*concat_views(v1, v2), deterministic=False, rngs=dropout_rngs(rng))
        if use_head:  # one head call per view (BatchNorm head: per-view batch statistics)
            z = model.head(z.reshape(2, b, -1)).reshape(2 * b, -1)
        return z[:b], z[b:]

    def embed(self, params: Params, batch: Batch) -> jax.Array:
        """Fused embedding of the full input, before the head: (B, D)."""
        return self.module(params).model(*_view(batch, "view1"), deterministic=True)


@dataclasses.dataclass(frozen=True)
class SimCLRConfig(Serializable):
    """SimCLR on the fused multimodal input (the model config's projection head)."""

    temperature: float = 0.1  # NT-Xent temperature

    def __post_init__(self):
        check_temperature("SimCLRConfig", self.temperature)


@register
class SimCLR(_FusedMethod):
    """NT-Xent between the fused (full-mask) projections of the two views (Chen et al. 2020, Eq. 1).

    Equal to CoMM with ``terms="fused_only"``.
    """

    name, config_class = "simclr", SimCLRConfig

    @classmethod
    def views_read(cls, config) -> int:
        return 2  # the loss contrasts view1 with view2

    def __init__(
        self, model_config: ModelConfig | Mapping[str, Any], config: SimCLRConfig | None = None
    ):
        super().__init__(model_config)
        self.config = SimCLRConfig() if config is None else config

    def loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        z1, z2 = self._fused_views(params, batch, rng, use_head=True)
        loss = estimators.ntxent_loss(
            z1, z2, temperature=self.config.temperature, axis_name=axis_name
        )
        return loss, {"ntxent": loss}


@dataclasses.dataclass(frozen=True)
class SupConConfig(Serializable):
    """Supervised contrastive loss on the fused embeddings (CoMM's fine-tuning, App. B.4)."""

    label_key: str = "label"  # key in batch["labels"]: int class ids (B,)
    temperature: float = 0.07  # official `SupConLoss` default
    base_temperature: float | None = 0.07  # T / T_base factor of the reference code; None = 1
    use_head: bool = False  # False: contrast the fused embedding itself ("no additional params")

    def __post_init__(self):
        check_temperature("SupConConfig", self.temperature)


@register
class SupCon(_FusedMethod):
    """SupCon L_out (Khosla et al. 2020, Eq. 2) on the two views' fused embeddings as (B, 2, D)."""

    name, config_class = "supcon", SupConConfig

    @classmethod
    def views_read(cls, config) -> int:
        return 2  # the loss contrasts view1 with view2

    @classmethod
    def labels_read(cls, config: SupConConfig) -> tuple[str, ...]:
        return (config.label_key,)

    def __init__(
        self, model_config: ModelConfig | Mapping[str, Any], config: SupConConfig | None = None
    ):
        super().__init__(model_config)
        self.config = SupConConfig() if config is None else config

    def loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        labels = batch.get("labels", {})
        key = self.config.label_key
        if key not in labels:
            raise ValueError(
                f"SupCon: batch['labels'] has no {key!r} (SupConConfig.label_key); "
                f"got {sorted(labels)}"
            )
        y = labels[key]
        if y.ndim != 1 or not jnp.issubdtype(y.dtype, jnp.integer):
            raise ValueError(
                f"SupCon: labels[{key!r}] must be integer class ids of shape (B,), got "
                f"{y.dtype} {y.shape}"
            )
        z1, z2 = self._fused_views(params, batch, rng, use_head=self.config.use_head)
        loss = estimators.supcon_loss(
            jnp.stack([z1, z2], axis=1),
            y,
            temperature=self.config.temperature,
            base_temperature=self.config.base_temperature,
            axis_name=axis_name,
        )
        return loss, {"supcon": loss}
