"""MLP encoder for vector modalities (tabular data, proprioception, force summaries)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.models.layers import check_rank, dropout
from jaxmm.models.outputs import VECTOR, EncoderOutput


def quick_gelu(x):
    """QuickGELU, x * sigmoid(1.702 x) (CLIP; the official CoMM fusion Transformer's MLP)."""
    return x * jax.nn.sigmoid(1.702 * x)


_ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "quick_gelu": quick_gelu,
    "leaky_relu": jax.nn.leaky_relu,
}


def get_activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class MLPEncoder(nnx.Module):
    """Linear layers with an activation between them: (B, in_features) -> (B, out_dim).

    CoMM App. B.1 / FactorCL App. D.2: MIMIC tabular = 2-layer MLP (hidden 10, out 10);
    Vision&Touch proprioception = 5-layer MLP (Lee et al. 2020).

    Args:
      in_features: input width.
      hidden_dims: widths of the hidden layers (len = number of layers - 1).
      out_dim: output width.
      activation: "relu" | "gelu" | "leaky_relu".
      dropout: rate applied after each hidden activation when deterministic=False.
      dtype: compute dtype (params stay float32).
    """

    out_kind = VECTOR
    takes_sequence = False

    def __init__(
        self,
        in_features: int,
        hidden_dims: Sequence[int] = (),
        out_dim: int = 128,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        dims = (int(in_features), *(int(h) for h in hidden_dims), int(out_dim))
        self.in_features = dims[0]
        self.act = activation
        get_activation(activation)  # fail at construction, not at the first call
        self.rate = dropout
        self.dtype = dtype
        self.layers = nnx.List(
            [
                nnx.Linear(a, b, dtype=dtype, rngs=rngs)
                for a, b in zip(dims[:-1], dims[1:], strict=True)
            ]
        )
        self.out_features = self.pooled_features = dims[-1]

    def __call__(self, x, valid=None, *, deterministic=True, rngs=None) -> EncoderOutput:
        check_rank(x, 2, "MLPEncoder", f"(B, {self.in_features})")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"MLPEncoder expects {self.in_features} features, got {x.shape}")
        act = get_activation(self.act)
        h = x.astype(self.dtype or jnp.float32)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = dropout(act(h), self.rate, deterministic=deterministic, rngs=rngs)
        return EncoderOutput(h, None, h)
