"""Projection heads (SimCLR, Chen et al. 2020, Sec. 2.1): CoMM uses a 3-layer MLP, FactorCL
1-layer MLPs (FactorCL App. D.2)."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

from jaxmm.models.mlp import get_activation


class ProjectionHead(nnx.Module):
    """Linear -> [LayerNorm] -> act, repeated over hidden_dims, then a final Linear to out_dim.

    hidden_dims=() gives a single Linear. Output is float32 (it feeds the contrastive loss).

    Args:
      in_features: input width.
      hidden_dims: hidden widths (CoMM: two hidden layers, i.e. a 3-layer MLP).
      out_dim: projection width.
      norm: "none" or "layer" after each hidden Linear.
      activation: "relu" | "gelu" | "leaky_relu".
      dtype: compute dtype.
    """

    def __init__(
        self,
        in_features: int,
        hidden_dims: Sequence[int] = (512, 512),
        out_dim: int = 256,
        *,
        norm: str = "none",
        activation: str = "relu",
        dtype=None,
        rngs: nnx.Rngs,
    ):
        if norm not in ("none", "layer"):
            raise ValueError(f"norm must be 'none' or 'layer', got {norm!r}")
        get_activation(activation)
        dims = (int(in_features), *(int(h) for h in hidden_dims), int(out_dim))
        self.act, self.dtype = activation, dtype
        self.layers = nnx.List(
            [
                nnx.Linear(a, b, dtype=dtype, rngs=rngs)
                for a, b in zip(dims[:-1], dims[1:], strict=True)
            ]
        )
        self.norms = nnx.List(
            [nnx.LayerNorm(d, dtype=jnp.float32, rngs=rngs) for d in dims[1:-1]]
            if norm == "layer"
            else []
        )

    def __call__(self, z):
        act = get_activation(self.act)
        h = z.astype(self.dtype or jnp.float32)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i == last:
                break
            if len(self.norms):
                h = self.norms[i](h.astype(jnp.float32)).astype(h.dtype)
            h = act(h)
        return h.astype(jnp.float32)
