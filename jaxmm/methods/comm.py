"""CoMM: Contrastive MultiModal learning (Dufumier, Castillo-Navarro et al., ICLR 2025, Sec. 3.3).

Training, as in Sec. 3.3, Eq. 7 and Algorithm 1 (App. D):

* masks: for n modalities, the n single-modality projections X_i (every modality masked except
  the i-th) followed by the full input X — n + 1 boolean masks, in that order;
* passes: each augmented view t'(X), t''(X) runs the encoders and latent converters once; the
  fusion Transformer then runs once per mask on the present modalities' tokens only (the masks
  are static, so are the shapes: `MultimodalModel.fuse_present`, the official code's token
  dropping), giving z'_i, z''_i (i = 1..n) and z', z'' (full). `drop_masked_tokens=False`
  runs the passes at full length with the masked modalities removed from attention instead
  (the same values to float rounding, ~1.5x the fusion's token rows for n = 2);
* head: the projection head g (3-layer MLP with BatchNorm, App. B.4 / official `_build_mlp`) is
  called, as in the official code, once per view and per mask: each (B, D) batch of z is
  normalised with its own batch statistics (global over the data axis, as the official
  SyncBatchNorm) and the running averages are updated 2 (n + 1) times per step in the official
  order (view 1 masks 1..n, full; then view 2); they are returned to the trainer as state;
* terms: g maps each z to the contrastive space, and
  term m contrasts the masked embedding of one view with the full embedding of the other view,
  L_m = 1/2 [NTXent(g(z'_m), g(z'')) + NTXent(g(z''_m), g(z'))], SimCLR's NT-Xent at tau = 0.1
  (InfoNCE with 2N - 2 negatives, Eq. 6). The last term, m = full, is the SimCLR-on-fused term
  that estimates I(Z'; Z''); the n others estimate I(Z_i; Z'') for Lemma 3 (Eq. 5);
* loss: the (weighted) mean of the n + 1 terms — exactly the official code's `CoMMLoss`
  (github.com/Duplums/CoMM, losses/comm_loss.py), negatives gathered across devices.

At inference no augmentation is applied and the representation is the fused [CLS] embedding of the
full input, before the head (`embed`); `comm_projections(head=True)` runs the head in eval mode
(running averages), as torch's `model.eval()`.

Known remaining deviation from the official passes: the official masked passes call the fusion
without the modalities' padding masks (`mmfusion.py` drops `attn_mask_`); here padded tokens stay
masked in every pass (identical when nothing is padded: images, vectors, fixed-length series).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmm import estimators
from jaxmm.config import Serializable
from jaxmm.methods.base import STATE_UPDATES, Batch, Metrics, Params
from jaxmm.methods.common import (
    NNXMethod,
    check_temperature,
    concat_views,
    dropout_rngs,
    get_view,
)
from jaxmm.methods.registry import register
from jaxmm.models import ModelConfig

FULL = "full"


@dataclasses.dataclass(frozen=True)
class CoMMConfig(Serializable):
    """CoMM's objective (Eq. 7) and its loss ablations (Sec. 5, Fig. 5)."""

    temperature: float = 0.1  # NT-Xent temperature (App. B.4 / official config: 0.1)
    # Which terms of Eq. 7 are optimised: "all" (CoMM), "fused_only" (only full vs full: SimCLR on
    # the fused representation), "unimodal_only" (only the n terms I(Z_i; Z''), full term dropped).
    terms: Literal["all", "fused_only", "unimodal_only"] = "all"
    # Per-term weights, n + 1 values (modalities in model order, then full); the loss is the
    # normalised weighted mean sum_m w_m L_m / sum_m w_m. None = uniform (the paper's Eq. 7). The
    # official code's mean_m(w_m L_m) differs from it by the constant factor sum(w) / (n + 1).
    weights: tuple[float, ...] | None = None
    embed_view: str = "view1"  # batch view read by `embed` when given a full batch
    # Masked passes on the present modalities' tokens only (official); False: full-length passes
    # with masked keys removed from attention (same values; kept for checks and benchmarks).
    drop_masked_tokens: bool = True

    def __post_init__(self):
        check_temperature("CoMMConfig", self.temperature)
        if self.weights is not None:
            w = tuple(float(v) for v in self.weights)
            if any(not math.isfinite(v) or v < 0 for v in w) or sum(w) <= 0:
                raise ValueError(f"CoMMConfig.weights must be finite, >= 0 and not all 0, got {w}")
            object.__setattr__(self, "weights", w)


def comm_masks(n_modalities: int) -> np.ndarray:
    """The n + 1 CoMM masks (App. D): row i keeps only modality i, the last row keeps all.

    Example:
      >>> comm_masks(2).tolist()
      [[True, False], [False, True], [True, True]]
    """
    if n_modalities < 2:
        raise ValueError(f"CoMM needs at least 2 modalities, got {n_modalities}")
    return np.concatenate([np.eye(n_modalities, dtype=bool), np.ones((1, n_modalities), bool)])


def comm_loss_from_projections(
    z1: jax.Array,
    z2: jax.Array,
    *,
    weights: jax.Array | np.ndarray | tuple[float, ...] | None = None,
    temperature: float = 0.1,
    axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """CoMM's Eq. 7 on projections: weighted mean over masks of the symmetric NT-Xent terms.

    ``L_m = 1/2 [NTXent(z1[m], z2[-1]) + NTXent(z2[m], z1[-1])]`` and
    ``loss = sum_m w_m L_m / sum_m w_m``. Row ``-1`` of each input is the full-input (prototype)
    embedding, so the last term is full vs full.

    Args:
      z1: ``(M, B, D)`` head outputs of the first view, one row per mask, full input last.
      z2: ``(M, B, D)`` head outputs of the second view, same layout.
      weights: ``(M,)`` non-negative term weights; None = uniform (Eq. 7).
      temperature: NT-Xent temperature ``tau`` (CoMM: 0.1).
      axis_name: data axis inside ``jax.shard_map``; negatives then come from the global batch and
        the returned values are the global-batch ones (see `jaxmm.estimators`).

    Returns:
      ``(loss, terms)``: the scalar loss and the ``(M,)`` per-term losses ``L_m``.

    References:
      Dufumier et al. 2025 (CoMM), Eq. 6-7 and Algorithm 1; Chen et al. 2020 (SimCLR), Eq. 1.

    Example:
      >>> loss, terms = comm_loss_from_projections(z1, z2, temperature=0.1)
    """
    z1, z2 = jnp.asarray(z1), jnp.asarray(z2)
    if z1.ndim != 3 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both have shape (M, B, D), got {z1.shape} and {z2.shape}")
    m = z1.shape[0]
    if weights is None:
        weights = jnp.ones((m,), jnp.float32)
    weights = jnp.asarray(weights, jnp.float32)
    if weights.shape != (m,):
        raise ValueError(f"weights must have shape ({m},) (one per mask), got {weights.shape}")
    nce = lambda a, b: estimators.ntxent_loss(a, b, temperature=temperature, axis_name=axis_name)
    terms = jnp.stack([0.5 * (nce(z1[i], z2[-1]) + nce(z2[i], z1[-1])) for i in range(m)])
    return jnp.sum(weights * terms) / jnp.sum(weights), terms


@register
class CoMM(NNXMethod):
    """CoMM (Sec. 3.3): one fused representation trained with Eq. 7; see the module docstring.

    Batch: ``view1`` and ``view2`` (two augmentations of the same multimodal input) for `loss`;
    `embed` reads ``batch[cfg.embed_view]`` or a bare ``{"x", "valid"}`` view (no augmentation
    should be applied to it: CoMM's inference input is the clean X).

    Args:
      model_config: the backbone (`jaxmm.models.ModelConfig`, or its dict form); >= 2 modalities.
      config: `CoMMConfig`.

    Example:
      >>> method = CoMM(model_cfg, CoMMConfig())
      >>> params = method.init(jax.random.key(0), batch)
      >>> loss, metrics = method.loss(params, batch, jax.random.key(1))
    """

    name, config_class = "comm", CoMMConfig

    @classmethod
    def views_read(cls, config) -> int:
        return 2  # the loss contrasts view1 with view2

    min_modalities = 2

    def __init__(
        self, model_config: ModelConfig | Mapping[str, Any], config: CoMMConfig | None = None
    ):
        super().__init__(model_config)
        self.config = config = CoMMConfig() if config is None else config
        n = len(self.modality_names)
        masks = comm_masks(n)
        weights = np.ones(n + 1) if config.weights is None else np.asarray(config.weights)
        if weights.shape != (n + 1,):
            raise ValueError(
                f"CoMMConfig.weights needs {n + 1} values (modalities "
                f"{list(self.modality_names)}, then full), got {len(weights)}"
            )
        names = (*self.modality_names, FULL)
        if config.terms == "fused_only":
            # Only the prototype pass is needed: the masked fusion passes are skipped altogether.
            masks, weights, names = masks[-1:], weights[-1:], names[-1:]
        elif config.terms == "unimodal_only":
            weights = np.concatenate([weights[:-1], [0.0]])
            if weights.sum() <= 0:
                raise ValueError("CoMMConfig: terms='unimodal_only' with all unimodal weights 0")
        self.masks = masks  # (M, n) bool, full last
        self.term_names = names
        self.weights = weights.astype(np.float32)

    def _fuse_masks(self, model, x, valid, masks, *, deterministic, rngs) -> jax.Array:
        """(M, B, D) fused embeddings: encoders once, then the fusion once per mask.

        `drop_masked_tokens` (default): M fusion calls on the present modalities' tokens only.
        Otherwise one batched call: tokens are tiled M times and each copy gets its own
        per-example modality mask, so a masked modality's keys are removed from attention exactly
        as in M separate calls (the fusion is per-example).
        """
        tokens = model.encode(x, valid, deterministic=deterministic, rngs=rngs)
        masks = np.asarray(masks, bool)
        if self.config.drop_masked_tokens:
            kw = dict(deterministic=deterministic, rngs=rngs)
            return jnp.stack([model.fuse_present(tokens, mk, **kw) for mk in masks])
        m, b = masks.shape[0], tokens.tokens[0].shape[0]
        tile = lambda a: jnp.tile(a, (m,) + (1,) * (a.ndim - 1))
        tiled = type(tokens)(tuple(map(tile, tokens.tokens)), tuple(map(tile, tokens.masks)))
        per_example = jnp.repeat(jnp.asarray(masks), b, axis=0)  # (M * B, n), mask-major
        z = model.fuse(tiled, per_example, deterministic=deterministic, rngs=rngs)
        return z.reshape(m, b, -1)

    def loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        """Eq. 7 on this device's shard (global-batch value with `axis_name`); see module doc."""
        loss, metrics = self.loss_and_state(params, batch, rng, axis_name=axis_name)
        metrics.pop(STATE_UPDATES, None)
        return loss, metrics

    def loss_and_state(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        """`loss`, with the BatchNorm head's new running averages in metrics[STATE_UPDATES]
        (what the trainer calls; see `jaxmm.methods.base`)."""
        module = self.module(params)
        model = module.model
        v1, v2 = get_view(batch, "view1"), get_view(batch, "view2")
        b = next(iter(v1[0].values())).shape[0]
        # Both views in one encoder/fusion call: no batch statistics before the head, so this
        # equals two separate passes, with half the kernel launches.
        x, valid = concat_views(v1, v2)
        z = self._fuse_masks(
            model, x, valid, self.masks, deterministic=False, rngs=dropout_rngs(rng)
        )
        m = z.shape[0]
        # (2, M, B, D): one head call per view and mask, in the official order (BatchNorm).
        z = z.reshape(m, 2, b, -1).transpose(1, 0, 2, 3)
        p = model.head(z, train=True, axis_name=axis_name)
        loss, terms = comm_loss_from_projections(
            p[0],
            p[1],
            weights=self.weights,
            temperature=self.config.temperature,
            axis_name=axis_name,
        )
        n_global = b if axis_name is None else b * jax.lax.axis_size(axis_name)
        # NT-Xent ranks the positive among 2N - 1 candidates: I >= log(2N - 1) - L (InfoNCE bound).
        log_k = math.log(2 * n_global - 1)
        metrics = {"comm_loss": loss}
        for name, t in zip(self.term_names, terms, strict=True):
            metrics[f"loss_{name}"] = t
            metrics[f"mi_{name}"] = log_k - t
        stats = nnx.state(module, nnx.BatchStat)
        if jax.tree.leaves(stats):
            metrics[STATE_UPDATES] = stats
        return loss, metrics

    def _view(self, batch: Batch) -> tuple[dict, dict]:
        if "x" in batch:
            return batch["x"], batch.get("valid") or {}
        return get_view(batch, self.config.embed_view)

    def embed(self, params: Params, batch: Batch) -> jax.Array:
        """Fused [CLS] embedding of the full input, before the head: (B, D)."""
        x, valid = self._view(batch)
        return self.module(params).model(x, valid, deterministic=True)

    def comm_projections(
        self, params: Params, view: Batch, *, head: bool = False, batch_stats: bool = False
    ) -> dict[str, jax.Array]:
        """Per-mask fused embeddings {modality name: z_i, ..., "full": z}, each (B, D).

        z_i is the fusion output with only modality i present (CoMM's projection X_i); `head=True`
        returns the projection-head outputs instead, in eval mode (BatchNorm running averages)
        or with `batch_stats=True` in train mode (each mask's batch normalised over itself, as
        in `loss`; the running averages are not written back). `view` is ``{"x", "valid"}`` or
        a batch (then ``cfg.embed_view`` is read).
        """
        x, valid = self._view(view)
        model = self.module(params).model
        masks = comm_masks(len(self.modality_names))
        z = self._fuse_masks(model, x, valid, masks, deterministic=True, rngs=None)
        if head:
            z = model.head(z, train=batch_stats)
        return dict(zip((*self.modality_names, FULL), z, strict=True))
