"""Transformer encoder over feature sequences (MOSI / UR-FUNNY / MUsTARD: FactorCL App. D.2 and
CoMM App. B.1 use 5 layers, 5 heads, width 40)."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxmm.models.layers import TransformerBlock, check_rank, dropout
from jaxmm.models.outputs import SEQUENCE, EncoderOutput
from jaxmm.models.posemb import sincos_1d
from jaxmm.models.sequence_utils import default_valid, last_valid, masked_mean


class TransformerEncoder(nnx.Module):
    """Linear input projection, fixed 1-D sine-cosine positions, pre-norm blocks, final LayerNorm.

    Padded steps are removed from attention as keys (key padding mask), so valid outputs and the
    pooled vector do not depend on padded values. MultiBench's reference feeds no positional
    information; `positional=False` reproduces that.

    Args:
      in_features: per-step feature width.
      width: model width (40 in the papers).
      num_layers, num_heads, mlp_ratio, dropout: block options (5, 5, 4.0, 0.0 by default).
      positional: add fixed sine-cosine positions after the input projection.
      pool: "mean" (masked mean) or "last" (last valid step, as MultiBench's `x[-1]`).
      out_dim: if set, a Linear on the pooled vector.
      dtype: compute dtype.
    """

    out_kind = SEQUENCE
    takes_sequence = True

    def __init__(
        self,
        in_features: int,
        width: int = 40,
        *,
        num_layers: int = 5,
        num_heads: int = 5,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        positional: bool = True,
        pool: str = "mean",
        out_dim: int | None = None,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        if pool not in ("mean", "last"):
            raise ValueError(f"pool must be 'mean' or 'last', got {pool!r}")
        self.in_features, self.width = int(in_features), int(width)
        self.positional, self.pool, self.rate, self.dtype = positional, pool, dropout, dtype
        self.in_proj = nnx.Linear(self.in_features, self.width, dtype=dtype, rngs=rngs)
        self.blocks = nnx.List(
            [
                TransformerBlock(
                    self.width,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    dropout=dropout,
                    dtype=dtype,
                    rngs=rngs,
                )
                for _ in range(num_layers)
            ]
        )
        self.norm = nnx.LayerNorm(self.width, dtype=jnp.float32, rngs=rngs)
        self.out = (
            None if out_dim is None else nnx.Linear(self.width, out_dim, dtype=dtype, rngs=rngs)
        )
        self.out_features = self.width
        self.pooled_features = self.width if out_dim is None else int(out_dim)

    def __call__(self, x, valid=None, *, deterministic=True, rngs=None) -> EncoderOutput:
        check_rank(x, 3, "TransformerEncoder", f"(B, T, {self.in_features})")
        valid = default_valid(x, valid, "TransformerEncoder")
        cdt = self.dtype or jnp.float32
        h = self.in_proj(x.astype(cdt))
        if self.positional:
            h = h + sincos_1d(jnp.arange(x.shape[1]), self.width).astype(cdt)[None]
        h = dropout(h, self.rate, deterministic=deterministic, rngs=rngs)
        for block in self.blocks:
            h = block(h, valid, deterministic=deterministic, rngs=rngs)
        h = self.norm(h.astype(jnp.float32)).astype(cdt)
        pooled = masked_mean(h, valid) if self.pool == "mean" else last_valid(h, valid)
        if self.out is not None:
            pooled = self.out(pooled)
        return EncoderOutput(h, valid, pooled)
