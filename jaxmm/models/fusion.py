"""CoMM fusion blocks.

* `FusionTransformer`, CoMM's attention-based fusion (Sec. 3.2, App. B): [CLS] + concatenated
  modality tokens -> pre-norm Transformer -> final LayerNorm -> [CLS] embedding.
* `LinearFusion`, the shallow "Concat + Linear" fusion of CoMM's fusion-module ablation (Sec. 5,
  Table 4): per-modality pooled tokens -> per-modality Linear -> concatenation -> Linear ->
  LayerNorm.

Both take (tokens, masks, modality_mask) and return (B, D), so `MultimodalModel.fuse` and
CoMM's masked passes do not depend on which one a `FusionConfig` selects.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.models.layers import TransformerBlock, dropout


def broadcast_modality_mask(modality_mask: jax.Array | None, n: int, b: int) -> jax.Array:
    """bool (B, n) presence mask from None (all present), (n,) or (B, n); True = present."""
    if modality_mask is None:
        return jnp.ones((b, n), bool)
    mm = jnp.asarray(modality_mask).astype(bool)
    if mm.shape not in ((n,), (b, n)):
        raise ValueError(f"modality_mask must have shape ({n},) or ({b}, {n}), got {mm.shape}")
    return jnp.broadcast_to(mm, (b, n))


def _check_tokens(tokens: Sequence[jax.Array], masks: Sequence[jax.Array], width: int) -> None:
    if len(tokens) != len(masks) or not tokens:
        raise ValueError(
            f"need as many masks as token arrays (>0), got {len(tokens)} and {len(masks)}"
        )
    for i, (t, m) in enumerate(zip(tokens, masks, strict=True)):
        if t.ndim != 3 or t.shape[-1] != width or tuple(m.shape) != tuple(t.shape[:2]):
            raise ValueError(
                f"modality {i}: tokens must be (B, T, {width}) with mask "
                f"(B, T), got {t.shape} and {m.shape}"
            )


def masked_mean_tokens(tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over the valid tokens: (B, T, D), bool (B, T) -> float32 (B, D).

    Padded tokens are removed with `where` (not multiplied by 0), so even non-finite padding
    values leave the mean, and its gradient, untouched. A row with no valid token gives zeros.
    """
    valid = mask.astype(bool)[..., None]
    total = jnp.sum(jnp.where(valid, tokens.astype(jnp.float32), 0.0), axis=1)
    count = jnp.sum(valid.astype(jnp.float32), axis=1)
    return total / jnp.maximum(count, 1.0)


def modality_key_mask(masks: Sequence[jax.Array], modality_mask: jax.Array | None) -> jax.Array:
    """Per-token key mask (B, sum T_m): padding masks AND'ed with the modality mask.

    modality_mask: None (all present), bool (n,) or (B, n); True = modality present.
    """
    if modality_mask is None:
        return jnp.concatenate(masks, axis=1)
    mm = broadcast_modality_mask(modality_mask, len(masks), masks[0].shape[0])
    return jnp.concatenate([m & mm[:, i : i + 1] for i, m in enumerate(masks)], axis=1)


class FusionTransformer(nnx.Module):
    """The CoMM fusion block (default: 1 layer, 8 heads), as the official `FusionTransformer`.

    Matches the official code (github.com/Duplums/CoMM, models/mmfusion.py, "concat" fusion,
    "cls" pool): [CLS] ~ N(0, 1); pre-norm blocks with a QuickGELU MLP; LayerNorm eps 1e-5; the
    CLIP init (qkv N(0, D^-1/2), attention-out and fc2 N(0, D^-1/2 (2L)^-1/2), fc1 N(0, (2D)^-1/2),
    attention biases 0, MLP biases torch's uniform). Remaining deviation: the official attention
    projects q, k, v with torch's fused `in_proj`; ours is one Linear to 3D split into q, k, v --
    the same function and parameter count.

    Masking a modality (`modality_mask`, an array): its keys are removed from attention
    (probability exactly 0, `where`), so the output for "only modality i" is bitwise independent
    of the other modalities' values and their gradients are exactly 0; one compiled function
    serves every mask. When the mask is known at trace time (CoMM's n + 1 passes) call the block
    on the present modalities' tokens only (`MultimodalModel.fuse_present`): that is the official
    code's token dropping, the same function (to float rounding) at a shorter sequence. The [CLS]
    token is always attended to, so an all-masked input is still well defined (a function of
    [CLS] only).

    Args:
      width: token width D.
      num_layers, num_heads, mlp_ratio, dropout: Transformer options.
      dtype: compute dtype; softmax and LayerNorms run in float32 and the output is float32.
    """

    eps = 1e-5  # torch LayerNorm default, as the official code

    def __init__(
        self,
        width: int,
        *,
        num_layers: int = 1,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.width, self.rate, self.dtype = width, dropout, dtype
        self.cls = nnx.Param(jax.random.normal(rngs.params(), (1, 1, width), jnp.float32))
        proj_std = width**-0.5 * (2 * num_layers) ** -0.5
        stds = (width**-0.5, proj_std, (2 * width) ** -0.5, proj_std)
        self.blocks = nnx.List(
            [
                TransformerBlock(
                    width,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    dropout=dropout,
                    activation="quick_gelu",
                    eps=self.eps,
                    stds=stds,
                    dtype=dtype,
                    rngs=rngs,
                )
                for _ in range(num_layers)
            ]
        )
        self.norm = nnx.LayerNorm(width, epsilon=self.eps, dtype=jnp.float32, rngs=rngs)

    def __call__(
        self,
        tokens: Sequence[jax.Array],
        masks: Sequence[jax.Array],
        modality_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        """tokens: per modality (B, T_m, D); masks: per modality bool (B, T_m) -> (B, D) float32."""
        _check_tokens(tokens, masks, self.width)
        cdt = self.dtype or jnp.float32
        b = tokens[0].shape[0]
        key_mask = modality_key_mask(masks, modality_mask)
        key_mask = jnp.concatenate([jnp.ones((b, 1), bool), key_mask], axis=1)
        cls = jnp.broadcast_to(self.cls[...].astype(cdt), (b, 1, self.width))
        x = jnp.concatenate([cls, *(t.astype(cdt) for t in tokens)], axis=1)
        x = dropout(x, self.rate, deterministic=deterministic, rngs=rngs)
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1  # only [CLS] is read out: 1 query in the last block
            x = block(
                x, key_mask, num_queries=1 if last else None, deterministic=deterministic, rngs=rngs
            )
        return self.norm(x[:, 0].astype(jnp.float32))


class LinearFusion(nnx.Module):
    """Shallow "Concat + Linear" fusion: CoMM's fusion-module ablation (Sec. 5, Table 4).

    z = LayerNorm(W [s_1; ...; s_n] + b), with slot s_i = W_i mean_t(tokens_i) + b_i when
    modality i is present and s_i = 0 when it is masked. Every step is affine in the tokens, so no
    cross-modal interaction (e.g. XOR synergy) can be formed before the LayerNorm; that is the point
    of the ablation.

    Pooling choice: the paper projects "modality-specific representations to the common latent
    space using only linear layers", without latent converters. Here each modality's converted
    tokens are mean-pooled over its valid tokens. The built-in converters (identity / Linear, patch
    convolution + fixed positions, FT tokenizer, one-token Linear) are all affine, so converter,
    mean and W_i together are one affine map of the encoder's features, i.e. the paper's
    linear-only projection, while `MultimodalModel.encode` and its `Tokens` contract (width D)
    stay exactly as for the attention fusion. CoMM's tiled masked passes and every other method
    therefore run unchanged. (For a GRU the pool is the mean of its valid hidden states rather
    than its last one.)

    Masking: slot i is replaced by exact zeros with `where` (fixed slot layout), so the output for
    a mask and its gradient are bitwise independent of a masked modality's values; padded tokens
    are dropped from the mean the same way. An all-masked input gives LayerNorm(b).

    Args:
      width: token and output width D.
      num_modalities: n, the number of slots.
      dropout: rate on the concatenated slots when deterministic=False.
      dtype: compute dtype; pooling and LayerNorm run in float32 and the output is float32.
    """

    def __init__(
        self, width: int, num_modalities: int, *, dropout: float = 0.0, dtype=None, rngs: nnx.Rngs
    ):
        if num_modalities < 1:
            raise ValueError(f"LinearFusion needs num_modalities >= 1, got {num_modalities}")
        self.width, self.num_modalities = width, num_modalities
        self.rate, self.dtype = dropout, dtype
        self.proj = nnx.List(
            [nnx.Linear(width, width, dtype=dtype, rngs=rngs) for _ in range(num_modalities)]
        )
        self.out = nnx.Linear(num_modalities * width, width, dtype=dtype, rngs=rngs)
        self.norm = nnx.LayerNorm(width, dtype=jnp.float32, rngs=rngs)

    def __call__(
        self,
        tokens: Sequence[jax.Array],
        masks: Sequence[jax.Array],
        modality_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        """tokens: per modality (B, T_m, D); masks: per modality bool (B, T_m) -> (B, D) float32."""
        _check_tokens(tokens, masks, self.width)
        if len(tokens) != self.num_modalities:
            raise ValueError(
                f"LinearFusion was built for {self.num_modalities} modalities, got "
                f"{len(tokens)} token arrays"
            )
        cdt = self.dtype or jnp.float32
        present = broadcast_modality_mask(modality_mask, self.num_modalities, tokens[0].shape[0])
        slots = []
        for i, (t, m, proj) in enumerate(zip(tokens, masks, self.proj, strict=True)):
            s = proj(masked_mean_tokens(t, m).astype(cdt))
            slots.append(jnp.where(present[:, i : i + 1], s, jnp.zeros((), s.dtype)))
        h = dropout(
            jnp.concatenate(slots, axis=-1), self.rate, deterministic=deterministic, rngs=rngs
        )
        return self.norm(self.out(h).astype(jnp.float32))
