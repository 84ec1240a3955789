"""CoMM attention-based fusion (CoMM Sec. 3.2, App. B): [CLS] + concatenated modality tokens ->
pre-norm Transformer -> final LayerNorm -> [CLS] embedding."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.models.layers import TransformerBlock, dropout


def modality_key_mask(masks: Sequence[jax.Array], modality_mask: jax.Array | None) -> jax.Array:
    """Per-token key mask (B, sum T_m): padding masks AND'ed with the modality mask.

    modality_mask: None (all present), bool (n,) or (B, n); True = modality present.
    """
    n, b = len(masks), masks[0].shape[0]
    if modality_mask is None:
        return jnp.concatenate(masks, axis=1)
    mm = jnp.asarray(modality_mask).astype(bool)
    if mm.shape not in ((n,), (b, n)):
        raise ValueError(f"modality_mask must have shape ({n},) or ({b}, {n}), got {mm.shape}")
    mm = jnp.broadcast_to(mm, (b, n))
    return jnp.concatenate([m & mm[:, i:i + 1] for i, m in enumerate(masks)], axis=1)


class FusionTransformer(nnx.Module):
    """The CoMM fusion block (default: 1 layer, 8 heads).

    A masked modality is removed through the attention mask (probability exactly 0, `where`), not
    by zeroing its tokens: the output for "only modality i" is bitwise independent of the other
    modalities' values and their gradients are exactly 0. The mask is an array, so the n + 1 CoMM
    passes (all modalities, then each alone) share one compiled function. The [CLS] token is
    always attended to, so an all-masked input is still well defined (a function of [CLS] only).

    Args:
      width: token width D.
      num_layers, num_heads, mlp_ratio, dropout: Transformer options.
      dtype: compute dtype; softmax and LayerNorms run in float32 and the output is float32.
    """

    def __init__(self, width: int, *, num_layers: int = 1, num_heads: int = 8,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, dtype=None, rngs: nnx.Rngs):
        self.width, self.rate, self.dtype = width, dropout, dtype
        self.cls = nnx.Param(jax.nn.initializers.normal(0.02)(rngs.params(), (1, 1, width)))
        self.blocks = nnx.List([
            TransformerBlock(width, num_heads, mlp_ratio=mlp_ratio, dropout=dropout, dtype=dtype,
                             rngs=rngs)
            for _ in range(num_layers)
        ])
        self.norm = nnx.LayerNorm(width, dtype=jnp.float32, rngs=rngs)

    def __call__(self, tokens: Sequence[jax.Array], masks: Sequence[jax.Array],
                 modality_mask: jax.Array | None = None, *, deterministic: bool = True,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        """tokens: per modality (B, T_m, D); masks: per modality bool (B, T_m) -> (B, D) float32."""
        if len(tokens) != len(masks) or not tokens:
            raise ValueError(f"need as many masks as token arrays (>0), got {len(tokens)} and "
                             f"{len(masks)}")
        for i, (t, m) in enumerate(zip(tokens, masks, strict=True)):
            if t.ndim != 3 or t.shape[-1] != self.width or tuple(m.shape) != tuple(t.shape[:2]):
                raise ValueError(f"modality {i}: tokens must be (B, T, {self.width}) with mask "
                                 f"(B, T), got {t.shape} and {m.shape}")
        cdt = self.dtype or jnp.float32
        b = tokens[0].shape[0]
        key_mask = modality_key_mask(masks, modality_mask)
        key_mask = jnp.concatenate([jnp.ones((b, 1), bool), key_mask], axis=1)
        cls = jnp.broadcast_to(self.cls[...].astype(cdt), (b, 1, self.width))
        x = jnp.concatenate([cls, *(t.astype(cdt) for t in tokens)], axis=1)
        x = dropout(x, self.rate, deterministic=deterministic, rngs=rngs)
        for block in self.blocks:
            x = block(x, key_mask, deterministic=deterministic, rngs=rngs)
        return self.norm(x[:, 0].astype(jnp.float32))
