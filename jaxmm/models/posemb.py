"""Fixed sine-cosine positional embeddings (Vaswani et al. 2017, Sec. 3.5; 2-D form of MAE,
He et al. 2022, as used for ViT patch tokens in CoMM App. B.1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sincos_1d(positions: jax.Array, dim: int) -> jax.Array:
    """Sine-cosine embedding of (N,) positions -> (N, dim).

    omega_k = 1 / 10000^(k / (dim/2)), k < dim/2; emb = [sin(p * omega), cos(p * omega)]
    (sines in the first half, cosines in the second, as in MAE's `get_1d_sincos_pos_embed`).
    """
    if dim % 2:
        raise ValueError(f"sincos_1d needs an even dim, got {dim}")
    omega = 1.0 / 10000.0 ** (jnp.arange(dim // 2, dtype=jnp.float32) / (dim / 2.0))
    angles = positions.astype(jnp.float32)[:, None] * omega[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=1)


def sincos_2d(height: int, width: int, dim: int) -> jax.Array:
    """MAE 2-D sine-cosine embedding for an (height, width) grid -> (height * width, dim).

    Row-major token order (index i * width + j). Following MAE's `get_2d_sincos_pos_embed`, the
    first dim/2 channels embed the column j and the last dim/2 the row i.

    Example:
      >>> sincos_2d(4, 4, 64).shape
      (16, 64)
    """
    if dim % 4:
        raise ValueError(f"sincos_2d needs dim divisible by 4, got {dim}")
    rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    emb_col = sincos_1d(cols.reshape(-1), dim // 2)
    emb_row = sincos_1d(rows.reshape(-1), dim // 2)
    return jnp.concatenate([emb_col, emb_row], axis=1)
