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


def _normal(std: float):
    return jax.nn.initializers.normal(std)


def _torch_bias(fan_in: int):
    """torch.nn.Linear's default bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
        key, shape, dtype, -bound, bound
    )


def check_rank(x: jax.Array, rank: int, what: str, layout: str) -> None:
    if x.ndim != rank:
        raise ValueError(f"{what} expects {layout}, got shape {tuple(x.shape)}")


class MultiHeadAttention(nnx.Module):
    """Self-attention whose masked keys are removed exactly.

    Masked keys get logit `finfo.min` and probability exactly 0 (`jnp.where`, not zeroed inputs),
    so outputs at any query, and their gradients, do not depend on masked tokens' values at all.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        *,
        stds: tuple[float, float] | None = None,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        kw = {} if stds is None else [dict(kernel_init=_normal(s)) for s in stds]
        self.qkv = nnx.Linear(width, 3 * width, dtype=dtype, rngs=rngs, **(kw[0] if kw else {}))
        self.out = nnx.Linear(width, width, dtype=dtype, rngs=rngs, **(kw[1] if kw else {}))

    def __call__(self, x: jax.Array, key_mask: jax.Array, num_queries: int | None = None):
        """x: (B, T, D); key_mask: bool (B, T), True for tokens that may be attended to.

        num_queries: None -> every token queries, (B, T, D) out; n -> only the first n tokens
        query (their rows of the full output, (B, n, D)), e.g. a [CLS] read-out: the query
        projection then runs on n tokens only.
        """
        b, t, d = x.shape
        h = self.num_heads
        if num_queries is None:
            q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3, h, d // h), 3, axis=2)
            q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
        else:  # the Linear's columns are [q | k | v]: project the first n tokens to q only
            kernel, bias = self.qkv.kernel[...], self.qkv.bias[...]
            x, kernel, bias = nnx.nn.dtypes.promote_dtype((x, kernel, bias), dtype=self.qkv.dtype)
            q = (x[:, :num_queries] @ kernel[:, :d] + bias[:d]).reshape(b, num_queries, h, d // h)
            kv = (x @ kernel[:, d:] + bias[d:]).reshape(b, t, 2, h, d // h)
            k, v = kv[:, :, 0], kv[:, :, 1]
            t = num_queries
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        logits = logits / math.sqrt(d // h)
        m = key_mask[:, None, None, :]
        probs = jnp.where(m, jax.nn.softmax(jnp.where(m, logits, _NEG), axis=-1), 0.0)
        y = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
        return self.out(y.reshape(b, t, d))


class TransformerBlock(nnx.Module):
    """Pre-norm block: x + attn(LN(x)), then x + MLP(LN(x)) (MLP width * mlp_ratio).

    Args:
      width, num_heads, mlp_ratio, dropout: block options.
      activation: the MLP's activation ("gelu", tanh approximation; "quick_gelu" for CoMM's fusion).
      eps: LayerNorm epsilon (flax default 1e-6; torch / official CoMM 1e-5).
      stds: None (flax default inits: LeCun-normal kernels, zero biases) or the CLIP / official
        CoMM init (qkv, attn-out, fc1, fc2) kernel stds; then qkv / attn-out biases are 0 (torch
        MultiheadAttention) and fc1 / fc2 biases U(+-1/sqrt(fan_in)) (torch Linear).
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        activation: str = "gelu",
        eps: float = 1e-6,
        stds: tuple[float, float, float, float] | None = None,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        from jaxmm.models.mlp import get_activation  # mlp imports nothing from here; no cycle

        hidden = int(round(width * mlp_ratio))
        self.dtype = dtype
        self.rate = dropout
        self.act = get_activation(activation)
        self.norm1 = nnx.LayerNorm(width, epsilon=eps, dtype=jnp.float32, rngs=rngs)
        self.attn = MultiHeadAttention(
            width, num_heads, stds=None if stds is None else stds[:2], dtype=dtype, rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(width, epsilon=eps, dtype=jnp.float32, rngs=rngs)
        fc = [{}, {}]
        if stds is not None:
            fc = [
                dict(kernel_init=_normal(stds[2]), bias_init=_torch_bias(width)),
                dict(kernel_init=_normal(stds[3]), bias_init=_torch_bias(hidden)),
            ]
        self.fc1 = nnx.Linear(width, hidden, dtype=dtype, rngs=rngs, **fc[0])
        self.fc2 = nnx.Linear(hidden, width, dtype=dtype, rngs=rngs, **fc[1])

    def _norm(self, norm: nnx.LayerNorm, x: jax.Array) -> jax.Array:
        return norm(x.astype(jnp.float32)).astype(x.dtype)

    def __call__(self, x, key_mask, *, num_queries=None, deterministic=True, rngs=None):
        """x: (B, T, D) -> (B, T, D), or (B, n, D) for the first n tokens with `num_queries=n`.

        `num_queries=n` gives the first n rows of the full block's output (same function, to float
        rounding) at the cost of n queries: the keys and values still come from every token. A
        last layer read out at [CLS] needs nothing else (`FusionTransformer`).
        """
        kw = dict(deterministic=deterministic, rngs=rngs)
        attn = self.attn(self._norm(self.norm1, x), key_mask, num_queries)
        if num_queries is not None:
            x = x[:, :num_queries]
        x = x + dropout(attn, self.rate, **kw)
        y = self.fc2(self.act(self.fc1(self._norm(self.norm2, x))))
        return x + dropout(y, self.rate, **kw)
