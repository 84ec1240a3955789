"""GRU encoder over time series (MIMIC time series: CoMM App. B.1, FactorCL App. D.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.models.layers import check_rank
from jaxmm.models.outputs import SEQUENCE, EncoderOutput
from jaxmm.models.sequence_utils import default_valid


class GRUEncoder(nnx.Module):
    """Single-layer GRU (Cho et al. 2014, PyTorch gate convention) with a padding mask.

    r = s(W_ir x + b_ir + W_hr h + b_hr), z = s(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.
    At padded steps the state is carried unchanged, so the last state is the state after the last
    VALID step and padded values (even garbage) never reach it. The recurrence runs in float32.

    Returns EncoderOutput(features=(B, T, hidden) states, mask, pooled=last state, optionally
    mapped by a Linear to out_dim as in FactorCL's MIMIC encoder (GRU 30 -> Linear 15)).

    Args:
      in_features: per-step input width.
      hidden: hidden size.
      out_dim: if set, a Linear on the last state gives `pooled`.
      dtype: compute dtype of the input projection and of the returned features.
    """

    out_kind = SEQUENCE
    takes_sequence = True

    def __init__(
        self,
        in_features: int,
        hidden: int = 30,
        *,
        out_dim: int | None = None,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.in_features = int(in_features)
        self.hidden = int(hidden)
        self.dtype = dtype
        self.input_proj = nnx.Linear(self.in_features, 3 * self.hidden, dtype=dtype, rngs=rngs)
        self.hidden_proj = nnx.Linear(self.hidden, 3 * self.hidden, rngs=rngs)
        self.out = (
            None if out_dim is None else nnx.Linear(self.hidden, out_dim, dtype=dtype, rngs=rngs)
        )
        self.out_features = self.hidden
        self.pooled_features = self.hidden if out_dim is None else int(out_dim)

    def __call__(self, x, valid=None, *, deterministic=True, rngs=None) -> EncoderOutput:
        check_rank(x, 3, "GRUEncoder", f"(B, T, {self.in_features})")
        valid = default_valid(x, valid, "GRUEncoder")
        xi = self.input_proj(x.astype(self.dtype or jnp.float32)).astype(jnp.float32)
        wh, bh = self.hidden_proj.kernel[...], self.hidden_proj.bias[...]
        hd = self.hidden

        def step(h, inputs):
            xi_t, m_t = inputs
            hh = h @ wh + bh
            r = jax.nn.sigmoid(xi_t[:, :hd] + hh[:, :hd])
            z = jax.nn.sigmoid(xi_t[:, hd : 2 * hd] + hh[:, hd : 2 * hd])
            n = jnp.tanh(xi_t[:, 2 * hd :] + r * hh[:, 2 * hd :])
            h = jnp.where(m_t[:, None], (1.0 - z) * n + z * h, h)
            return h, h

        # zeros_like (not zeros) so the carry inherits xi's shard_map varying axes.
        h0 = jnp.zeros_like(xi[:, 0, :hd])
        last, states = jax.lax.scan(step, h0, (xi.swapaxes(0, 1), valid.T))
        cdt = self.dtype or jnp.float32
        states, last = states.swapaxes(0, 1).astype(cdt), last.astype(cdt)
        pooled = last if self.out is None else self.out(last)
        return EncoderOutput(states, valid, pooled)
