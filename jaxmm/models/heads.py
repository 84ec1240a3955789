"""Projection heads (SimCLR, Chen et al. 2020, Sec. 2.1): CoMM uses a 3-layer MLP with BatchNorm
(official code: Linear-BatchNorm-ReLU x 2, then Linear), FactorCL 1-layer MLPs (FactorCL App. D.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.models.mlp import get_activation

HEAD_NORMS = ("batch", "layer", "none")


class BatchNorm1d(nnx.Module):
    """BatchNorm over the batch axis -2 of (..., N, F) inputs, with torch's semantics.

    Training (`train=True`): every leading index g of x[g] is one forward call of a torch
    `BatchNorm1d` on an (N, F) batch: it is normalised with its own biased batch moments, and the
    running averages are then updated once per group, in the flattened leading order,
    ``r <- (1 - momentum) r + momentum s_g`` with the unbiased variance (N / (N - 1)), i.e. in
    closed form ``r_K = (1-m)^K r_0 + sum_g m (1-m)^(K-1-g) s_g``. With `axis_name` (inside
    `jax.shard_map`) the moments are those of the global batch, as the official code's
    `nn.SyncBatchNorm`: mean = pmean(local mean), var = pmean(local E[(x - mean)^2]) (exact for
    equal shards), N = global count; the running averages are then the same on every device.
    Evaluation (`train=False`): normalised with the running averages (torch eval mode).

    The running averages are `nnx.BatchStat` variables: they are part of the method's state
    (`nnx.split(module)`), flow out of the loss through `jaxmm.methods.base.STATE_UPDATES` and are
    checkpointed with the parameters.

    Args:
      features: F.
      momentum: running-average momentum (torch convention: weight of the new value; 0.1).
      eps: added to the variance (torch: 1e-5).
    """

    def __init__(self, features: int, *, momentum: float = 0.1, eps: float = 1e-5):
        self.momentum, self.eps = float(momentum), float(eps)
        self.scale = nnx.Param(jnp.ones((features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((features,), jnp.float32))

    def __call__(self, x: jax.Array, *, train: bool = True, axis_name: str | None = None):
        x = x.astype(jnp.float32)
        if x.ndim < 2:
            raise ValueError(f"BatchNorm1d expects (..., N, F), got shape {x.shape}")
        if not train:
            mean, var = self.mean[...], self.var[...]
        else:
            n = x.shape[-2]
            mean = jnp.mean(x, axis=-2, keepdims=True)
            if axis_name is not None:
                mean = jax.lax.pmean(mean, axis_name)
            var = jnp.mean(jnp.square(x - mean), axis=-2, keepdims=True)
            if axis_name is not None:
                var = jax.lax.pmean(var, axis_name)
                n = n * jax.lax.axis_size(axis_name)
            self._update_running(mean, var * (n / max(n - 1, 1)))
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]

    def _update_running(self, mean: jax.Array, var: jax.Array) -> None:
        f = mean.shape[-1]
        means = jax.lax.stop_gradient(mean).reshape(-1, f)
        vars_ = jax.lax.stop_gradient(var).reshape(-1, f)
        k, m = means.shape[0], self.momentum
        w = m * (1.0 - m) ** jnp.arange(k - 1, -1, -1, dtype=jnp.float32)  # (K,), oldest first
        keep = (1.0 - m) ** k
        self.mean[...] = keep * self.mean[...] + w @ means
        self.var[...] = keep * self.var[...] + w @ vars_


class ProjectionHead(nnx.Module):
    """Linear -> [norm] -> act, repeated over hidden_dims, then a final Linear to out_dim.

    hidden_dims=() gives a single Linear. Output is float32 (it feeds the contrastive loss).
    With norm="batch" (the official CoMM head) the input is (..., N, D) and every leading index
    is normalised over its own N rows (one torch forward call per index, see `BatchNorm1d`).

    Args:
      in_features: input width.
      hidden_dims: hidden widths (CoMM: two hidden layers, i.e. a 3-layer MLP).
      out_dim: projection width.
      norm: "batch" (BatchNorm1d, official CoMM), "layer" or "none" after each hidden Linear.
      activation: "relu" | "gelu" | "quick_gelu" | "leaky_relu".
      dtype: compute dtype (normalisation runs in float32).
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
        if norm not in HEAD_NORMS:
            raise ValueError(f"norm must be one of {HEAD_NORMS}, got {norm!r}")
        get_activation(activation)
        dims = (int(in_features), *(int(h) for h in hidden_dims), int(out_dim))
        self.act, self.dtype, self.norm = activation, dtype, norm
        self.layers = nnx.List(
            [
                nnx.Linear(a, b, dtype=dtype, rngs=rngs)
                for a, b in zip(dims[:-1], dims[1:], strict=True)
            ]
        )
        if norm == "layer":
            norms = [
                nnx.LayerNorm(d, epsilon=1e-5, dtype=jnp.float32, rngs=rngs) for d in dims[1:-1]
            ]
        elif norm == "batch":
            norms = [BatchNorm1d(d) for d in dims[1:-1]]
        else:
            norms = []
        self.norms = nnx.List(norms)

    def __call__(self, z, *, train: bool = True, axis_name: str | None = None):
        """z: (..., D) -> (..., out_dim) float32. `train` / `axis_name`: BatchNorm only (batch
        statistics, global over `axis_name`, vs running averages)."""
        act = get_activation(self.act)
        h = z.astype(self.dtype or jnp.float32)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i == last:
                break
            if self.norm == "batch":
                h = self.norms[i](h, train=train, axis_name=axis_name).astype(h.dtype)
            elif self.norm == "layer":
                h = self.norms[i](h.astype(jnp.float32)).astype(h.dtype)
            h = act(h)
        return h.astype(jnp.float32)
