"""Shared building blocks: dropout with explicit RNGs, masked multi-head attention, pre-norm
Transformer block. Softmax and LayerNorm run in float32 whatever the compute dtype."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

# Finite rather than -inf so that a query whose keys are all masked gives no NaN (its softmax is
# uniform, then zeroed by the probability mask); exp(_NEG - max) underflows to exactly 0.
_NEG = float(jnp.finfo(jnp.float32).min)


def dropout(x: jax.Array, rate: float, *, deterministic: bool, rngs: nnx.Rngs | None) -> jax.Array:
    """Inverted dropout drawing its key from `rngs.dropout()`; identity when deterministic."""
    if deterministic or rate == 0.0:
        return x
    if rngs is None:
        raise ValueError("dropout with deterministic=False needs rngs (e.g. nnx.Rngs(dropout=key))")
    keep = jax.random.bernoulli(rngs.dropout(), 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def check_rank(x: jax.Array, rank: int, what: str, layout: str) -> None:
    if x.ndim != rank:
        raise ValueError(f"{what} expects {layout}, got shape {tuple(x.shape)}")


class MultiHeadAttention(nnx.Module):
    """Self-attention whose masked keys are removed exactly.

    Masked keys get logit `finfo.min` and probability exactly 0 (`jnp.where`, not zeroed inputs),
    so outputs at any query, and their gradients, do not depend on masked tokens' values at all.
    """

    def __init__(self, width: int, num_heads: int, *, dtype=None, rngs: nnx.Rngs):
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nnx.Linear(width, 3 * width, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(width, width, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, key_mask: jax.Array) -> jax.Array:
        """x: (B, T, D); key_mask: bool (B, T), True for tokens that may be attended to."""
        b, t, d = x.shape
        h = self.num_heads
        q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3, h, d // h), 3, axis=2)
        q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        logits = logits / math.sqrt(d // h)
        m = key_mask[:, None, None, :]
        probs = jnp.where(m, jax.nn.softmax(jnp.where(m, logits, _NEG), axis=-1), 0.0)
        y = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
        return self.out(y.reshape(b, t, d))


class TransformerBlock(nnx.Module):
    """Pre-norm block: x + attn(LN(x)), then x + MLP(LN(x)) (GELU MLP, width * mlp_ratio)."""

    def __init__(
        self,
        width: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        hidden = int(round(width * mlp_ratio))
        self.dtype = dtype
        self.rate = dropout
        self.norm1 = nnx.LayerNorm(width, dtype=jnp.float32, rngs=rngs)
        self.attn = MultiHeadAttention(width, num_heads, dtype=dtype, rngs=rngs)
        self.norm2 = nnx.LayerNorm(width, dtype=jnp.float32, rngs=rngs)
        self.fc1 = nnx.Linear(width, hidden, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, width, dtype=dtype, rngs=rngs)

    def _norm(self, norm: nnx.LayerNorm, x: jax.Array) -> jax.Array:
        return norm(x.astype(jnp.float32)).astype(x.dtype)

    def __call__(self, x, key_mask, *, deterministic=True, rngs=None):
        kw = dict(deterministic=deterministic, rngs=rngs)
        x = x + dropout(self.attn(self._norm(self.norm1, x), key_mask), self.rate, **kw)
        y = self.fc2(jax.nn.gelu(self.fc1(self._norm(self.norm2, x))))
        return x + dropout(y, self.rate, **kw)
